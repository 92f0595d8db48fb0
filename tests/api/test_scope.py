"""Region scope: who sees which tickets, as 404s and as list contents; list paging and filters."""

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.tickets.models import Ticket
from geo.models import Region
from technicians.models import Technician
from tests.conftest import on_duty

XL_POINT = {"lat": 43.935, "lng": 116.08}  # grid XL-G05
XL_G01_POINT = {"lat": 43.96, "lng": 116.05}
EH_POINT = {"lat": 43.66, "lng": 111.96}
TICKETS = "/api/v1/tickets"


def report(client: TestClient, headers: dict[str, str], phone: str, location: dict = XL_POINT,
           type_code: str = "broadband_fault") -> dict:
    body = {"type_code": type_code, "description": "断网了", "location": location,
            "contact": {"name": "张三", "phone": phone}}
    reply = client.post(TICKETS, json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    return reply.json()


def region_id(db: Session, code: str) -> int:
    return db.scalars(select(Region.id).where(Region.code == code)).one()


def technician_id(db: Session, username: str) -> int:
    return db.scalars(select(Technician.id).join(User, User.id == Technician.user_id)
                      .where(User.username == username)).one()


def listed_ids(client: TestClient, headers: dict[str, str], **params: object) -> list[int]:
    reply = client.get(TICKETS, params={"limit": 500, **params}, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["next_cursor"] is None
    return [t["id"] for t in reply.json()["items"]]


@pytest.fixture
def two_branches(client: TestClient, as_user) -> tuple[dict, dict]:
    """One pending ticket in Xilinhot and one in Erenhot."""
    xl = report(client, as_user("dispatcher.xl"), "13900000101")
    eh = report(client, as_user("dispatcher.eh"), "13900000102", location=EH_POINT)
    return xl, eh


# --- one ticket of another branch -------------------------------------------------

def test_dispatcher_gets_404_for_a_ticket_of_another_branch(client: TestClient, as_user, two_branches) -> None:
    xl, _ = two_branches
    reply = client.get(f"{TICKETS}/{xl['id']}", headers=as_user("dispatcher.eh"))
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("application/problem+json")
    # Indistinguishable from a ticket that does not exist at all.
    missing = client.get(f"{TICKETS}/999999999", headers=as_user("dispatcher.eh"))
    assert (missing.status_code, missing.json()["code"]) == (404, reply.json()["code"])


def test_every_action_on_another_branchs_ticket_is_404_and_changes_nothing(client: TestClient, as_user, db: Session,
                                                                           two_branches) -> None:
    xl, _ = two_branches
    eh = as_user("dispatcher.eh")
    url = f"{TICKETS}/{xl['id']}"
    actions = [
        ("POST", "/assign", {"technician_id": technician_id(db, "tech33")}),
        ("POST", "/release", {"reason": "不归我管"}),
        ("POST", "/arrive", {"location": XL_POINT}),
        ("POST", "/complete", {"note": "修好了"}),
        ("POST", "/followup", {"satisfaction": 5}),
        ("POST", "/invalidate", {"reason": "假报修"}),
        ("PATCH", "", {"type_code": "tv_no_signal"}),
    ]
    for method, suffix, body in actions:
        reply = client.request(method, url + suffix, json=body, headers=eh)
        assert reply.status_code == 404, (method, suffix, reply.text)
    upload = client.post(f"{url}/attachments", files={"file": ("a.png", b"\x89PNG\r\n\x1a\n", "image/png")},
                         headers=eh)
    assert upload.status_code == 404
    detail = client.get(url, headers=as_user("dispatcher.xl")).json()
    assert detail["state"] == "pending" and detail["type_code"] == "broadband_fault"
    assert [e["action"] for e in detail["events"]] == ["create"]


def test_technician_of_another_branch_cannot_grab(client: TestClient, as_user, two_branches) -> None:
    xl, _ = two_branches
    reply = client.post(f"{TICKETS}/{xl['id']}/grab", headers=on_duty(client, as_user("tech33"), at=EH_POINT))
    assert reply.status_code == 403 and reply.json()["code"] == "out_of_scope"
    assert client.get(f"{TICKETS}/{xl['id']}", headers=as_user("dispatcher.xl")).json()["state"] == "pending"


# --- lists -----------------------------------------------------------------------------

def test_branch_dispatchers_list_only_their_branch(client: TestClient, as_user, two_branches) -> None:
    xl, eh = two_branches
    eh_sees = listed_ids(client, as_user("dispatcher.eh"))
    xl_sees = listed_ids(client, as_user("dispatcher.xl"))
    assert eh["id"] in eh_sees and xl["id"] not in eh_sees
    assert xl["id"] in xl_sees and eh["id"] not in xl_sees


def test_filtering_by_a_foreign_region_shows_nothing_of_it(client: TestClient, as_user, db: Session,
                                                           two_branches) -> None:
    xl, _ = two_branches
    eh = as_user("dispatcher.eh")
    assert listed_ids(client, eh, region_id=region_id(db, "XL")) == []
    assert listed_ids(client, eh, region_id=region_id(db, "XL-G05")) == []
    assert xl["id"] in listed_ids(client, as_user("admin"), region_id=region_id(db, "XL"))


@pytest.mark.parametrize("username", ["admin", "payroll"])
def test_headquarters_users_see_both_branches(client: TestClient, as_user, two_branches, username: str) -> None:
    xl, eh = two_branches
    sees = listed_ids(client, as_user(username))
    assert {xl["id"], eh["id"]} <= set(sees)
    assert client.get(f"{TICKETS}/{xl['id']}", headers=as_user(username)).status_code == 200
    assert client.get(f"{TICKETS}/{eh['id']}", headers=as_user(username)).status_code == 200


def test_technician_sees_their_branch_pool_not_the_other(client: TestClient, as_user, two_branches) -> None:
    xl, eh = two_branches
    xl_tech, eh_tech = as_user("tech01"), as_user("tech33")
    assert xl["id"] in listed_ids(client, xl_tech) and eh["id"] not in listed_ids(client, xl_tech)
    assert eh["id"] in listed_ids(client, eh_tech) and xl["id"] not in listed_ids(client, eh_tech)
    assert client.get(f"{TICKETS}/{eh['id']}", headers=xl_tech).status_code == 404
    assert client.get(f"{TICKETS}/{xl['id']}", headers=eh_tech).status_code == 404


def test_technician_sees_their_own_ticket_even_from_another_branch(client: TestClient, as_user, db: Session,
                                                                   two_branches) -> None:
    xl, _ = two_branches
    assigned = client.post(f"{TICKETS}/{xl['id']}/assign", json={"technician_id": technician_id(db, "tech33")},
                           headers=as_user("admin"))
    assert assigned.status_code == 200, assigned.text
    eh_tech = as_user("tech33")
    assert xl["id"] in listed_ids(client, eh_tech)
    assert client.get(f"{TICKETS}/{xl['id']}", headers=eh_tech).status_code == 200


def test_regions_of_a_branch_dispatcher_leave_out_the_other_branch(client: TestClient, as_user) -> None:
    reply = client.get("/api/v1/regions", headers=as_user("dispatcher.eh"))
    assert reply.status_code == 200
    codes = {r["code"] for r in reply.json()}
    assert {"EH", "EH-G01", "EH-G02", "EH-G03"} <= codes
    assert not {c for c in codes if c.startswith("XL")}
    everything = {r["code"] for r in client.get("/api/v1/regions", headers=as_user("admin")).json()}
    assert {"XL", "XL-G01", "EH"} <= everything


# --- paging -------------------------------------------------------------------------------

def test_pages_walk_every_visible_ticket_exactly_once(client: TestClient, as_user) -> None:
    admin = as_user("admin")
    made = [report(client, as_user("dispatcher.xl"), f"1390000020{i}")["id"] for i in range(5)]
    made += [report(client, as_user("dispatcher.eh"), f"1390000030{i}", location=EH_POINT)["id"] for i in range(2)]
    everything = listed_ids(client, admin)
    assert set(made) <= set(everything)
    walked: list[int] = []
    cursor = None
    for _ in range(len(everything) + 1):
        params: dict[str, object] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(TICKETS, params=params, headers=admin).json()
        assert len(page["items"]) <= 2
        walked += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == everything
    assert len(walked) == len(set(walked))
    assert walked == sorted(walked, reverse=True)  # newest first


@pytest.mark.parametrize("limit", [0, 501])
def test_limit_outside_1_to_500_is_422(client: TestClient, as_user, limit: int) -> None:
    reply = client.get(TICKETS, params={"limit": limit}, headers=as_user("admin"))
    assert reply.status_code == 422
    assert reply.json()["code"] == "validation_error"
    assert [e["field"] for e in reply.json()["errors"]] == ["limit"]


def test_forged_cursor_is_422(client: TestClient, as_user) -> None:
    reply = client.get(TICKETS, params={"cursor": "not-a-cursor!"}, headers=as_user("admin"))
    assert reply.status_code == 422 and reply.json()["errors"][0]["field"] == "cursor"


# --- filters ------------------------------------------------------------------------------

def test_list_filters_select_matching_tickets(client: TestClient, as_user, db: Session) -> None:
    xl, admin = as_user("dispatcher.xl"), as_user("admin")
    plain = report(client, xl, "13900000401")
    tv = report(client, xl, "13900000402", type_code="tv_no_signal")
    north = report(client, xl, "13900000403", location=XL_G01_POINT)
    dropped = report(client, xl, "13900000404")
    taken = report(client, xl, "13900000405")
    erenhot = report(client, as_user("dispatcher.eh"), "13900000406", location=EH_POINT)
    assert client.post(f"{TICKETS}/{dropped['id']}/invalidate", json={"reason": "假报修"},
                       headers=xl).status_code == 200
    tech01 = technician_id(db, "tech01")
    assert client.post(f"{TICKETS}/{taken['id']}/assign", json={"technician_id": tech01},
                       headers=xl).status_code == 200
    mine = {plain["id"], tv["id"], north["id"], dropped["id"], taken["id"], erenhot["id"]}

    def only_mine(**params: object) -> set[int]:
        return set(listed_ids(client, admin, **params)) & mine

    assert only_mine(state="invalid") == {dropped["id"]}
    assert only_mine(state="accepted") == {taken["id"]}
    assert only_mine(state="pending") == {plain["id"], tv["id"], north["id"], erenhot["id"]}
    assert only_mine(type_code="tv_no_signal") == {tv["id"]}
    assert only_mine(region_id=region_id(db, "XL-G01")) == {north["id"]}
    assert only_mine(region_id=region_id(db, "EH")) == {erenhot["id"]}
    assert only_mine(region_id=region_id(db, "XL")) == mine - {erenhot["id"]}
    assert only_mine(technician_id=tech01) == {taken["id"]}


def test_created_from_and_to_bound_the_creation_time(client: TestClient, as_user, db: Session) -> None:
    xl = as_user("dispatcher.xl")
    old = report(client, xl, "13900000501")
    new = report(client, xl, "13900000502")
    now = datetime.now(UTC)
    db.execute(update(Ticket).where(Ticket.id == old["id"]).values(created_at=now - timedelta(days=3)))
    db.expire_all()
    cut = (now - timedelta(days=1)).isoformat()
    ours = {old["id"], new["id"]}
    assert set(listed_ids(client, xl, created_to=cut)) & ours == {old["id"]}
    assert set(listed_ids(client, xl, created_from=cut)) & ours == {new["id"]}
    window = {"created_from": (now - timedelta(days=4)).isoformat(),
              "created_to": (now - timedelta(days=2)).isoformat()}
    assert set(listed_ids(client, xl, **window)) & ours == {old["id"]}
    assert set(listed_ids(client, xl, created_from=(now + timedelta(hours=1)).isoformat())) & ours == set()
