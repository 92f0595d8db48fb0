"""What a technician reads: the pool of their grab scope without who reported it, their own tickets in full,
and nothing of another technician's work in progress (PRODUCT.md, organisation and permissions)."""

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.kernel.settings import Settings
from dispatch.tickets.models import Offer
from geo.latlng import LatLng
from technicians import live
from technicians.models import Technician
from tests.conftest import on_duty, subscriber_headers

TICKETS = "/api/v1/tickets"
XL_POINT = {"lat": 43.935, "lng": 116.08}
NAME, PHONE = "王小明", "13912345678"
EXPECTED_POOL_FIELDS = {"description": "光猫红灯", "address": "锡林浩特市额尔敦路 12 号",
                        "type_code": "broadband_fault"}


def report(client: TestClient, headers: dict[str, str], phone: str = PHONE) -> dict[str, Any]:
    body = {"type_code": "broadband_fault", "description": "光猫红灯", "location": XL_POINT,
            "address": "锡林浩特市额尔敦路 12 号", "contact": {"name": NAME, "phone": phone}}
    reply = client.post(TICKETS, json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def technician_id(db: Session, username: str) -> int:
    return db.scalars(select(Technician.id).join(User, User.id == Technician.user_id)
                      .where(User.username == username)).one()


def act(client: TestClient, ticket_id: int, verb: str, headers: dict[str, str],
        body: dict[str, Any] | None = None) -> dict[str, Any]:
    if verb == "grab":
        on_duty(client, headers)  # a phone that grabs is on duty and located
    reply = client.post(f"{TICKETS}/{ticket_id}/{verb}", json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def read(client: TestClient, ticket_id: int, headers: dict[str, str]) -> dict[str, Any]:
    reply = client.get(f"{TICKETS}/{ticket_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def listed(client: TestClient, headers: dict[str, str]) -> dict[int, dict[str, Any]]:
    reply = client.get(TICKETS, params={"limit": 500}, headers=headers)
    assert reply.status_code == 200, reply.text
    return {t["id"]: t for t in reply.json()["items"]}


def assert_not_found(client: TestClient, ticket_id: int, headers: dict[str, str]) -> None:
    for path in (f"{TICKETS}/{ticket_id}", f"{TICKETS}/{ticket_id}/attachments"):
        reply = client.get(path, headers=headers)
        assert reply.status_code == 404, (path, reply.text)
        assert reply.json()["code"] == "ticket_not_found"
    assert ticket_id not in listed(client, headers)


def test_a_pool_ticket_shows_a_technician_where_and_what_but_not_who(client: TestClient, as_user, db: Session,
                                                                      settings: Settings) -> None:
    subscriber = subscriber_headers(db, settings, phone=PHONE, name=NAME)
    ticket = report(client, subscriber)

    seen = read(client, ticket["id"], as_user("tech01"))

    assert seen["contact"] is None
    assert {k: seen[k] for k in EXPECTED_POOL_FIELDS} == EXPECTED_POOL_FIELDS
    assert seen["region_id"] == ticket["region_id"] and seen["location"] == ticket["location"]
    # The report's event is the subscriber's: their log-in is their name, shown here as the role only.
    [created] = seen["events"]
    assert (created["action"], created["actor"], created["actor_role"]) == ("create", "subscriber", "subscriber")
    assert NAME not in str(seen) and PHONE not in str(seen)
    assert listed(client, as_user("tech01"))[ticket["id"]]["contact"] is None


def test_staff_and_the_reporting_subscriber_still_see_the_contact(client: TestClient, as_user, db: Session,
                                                                  settings: Settings) -> None:
    subscriber = subscriber_headers(db, settings, phone=PHONE, name=NAME)
    ticket = report(client, subscriber)
    for headers in (subscriber, as_user("dispatcher.xl"), as_user("clerk.xl"), as_user("payroll"), as_user("admin")):
        seen = read(client, ticket["id"], headers)
        assert seen["contact"] == {"name": NAME, "phone": PHONE}
        assert seen["events"][0]["actor"] == NAME


def test_the_contact_shows_once_the_technician_holds_the_ticket(client: TestClient, as_user) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    tech01 = as_user("tech01")

    grabbed = act(client, ticket["id"], "grab", tech01)

    assert grabbed["contact"] == {"name": NAME, "phone": PHONE}
    seen = read(client, ticket["id"], tech01)
    assert seen["contact"] == {"name": NAME, "phone": PHONE}
    assert [(e["action"], e["actor"]) for e in seen["events"]] == [("create", "dispatcher.xl"), ("grab", "tech01")]
    assert listed(client, tech01)[ticket["id"]]["contact"] == {"name": NAME, "phone": PHONE}
    assert [t["id"] for t in client.get("/api/v1/me/tickets", headers=tech01).json()] == [ticket["id"]]


def test_another_technicians_ticket_in_progress_does_not_exist_for_them(client: TestClient, as_user) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    act(client, ticket["id"], "grab", as_user("tech01"))

    assert_not_found(client, ticket["id"], as_user("tech02"))
    reply = client.post(f"{TICKETS}/{ticket['id']}/complete", json={"note": "x"}, headers=as_user("tech02"))
    assert reply.status_code == 404


def test_a_reassigned_ticket_leaves_its_former_holder(client: TestClient, as_user, db: Session) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    act(client, ticket["id"], "grab", as_user("tech01"))

    act(client, ticket["id"], "assign", as_user("dispatcher.xl"), {"technician_id": technician_id(db, "tech02")})

    assert_not_found(client, ticket["id"], as_user("tech01"))
    assert read(client, ticket["id"], as_user("tech02"))["contact"] == {"name": NAME, "phone": PHONE}


def test_a_finished_ticket_stays_in_full_with_who_worked_it_and_no_one_else(client: TestClient, as_user) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    tech01 = as_user("tech01")
    act(client, ticket["id"], "grab", tech01)
    act(client, ticket["id"], "complete", tech01, {"note": "换了光猫"})
    act(client, ticket["id"], "followup", as_user("clerk.xl"), {"satisfaction": 5})

    seen = read(client, ticket["id"], tech01)

    assert seen["state"] == "completed"
    assert seen["contact"] == {"name": NAME, "phone": PHONE}
    assert seen["completion_note"] == "换了光猫"
    assert_not_found(client, ticket["id"], as_user("tech02"))


def test_a_handed_back_ticket_is_pool_again_and_its_reasons_stay_with_staff(client: TestClient, as_user) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    tech01 = as_user("tech01")
    act(client, ticket["id"], "grab", tech01)
    act(client, ticket["id"], "arrive", tech01, {"location": XL_POINT})

    released = act(client, ticket["id"], "release", tech01, {"reason": f"用户{PHONE}改约到明天"})

    assert released["contact"] is None  # no longer theirs
    for username in ("tech01", "tech02"):
        seen = read(client, ticket["id"], as_user(username))
        assert seen["contact"] is None and PHONE not in str(seen)
        assert [(e["action"], e["actor"], e["note"], e["location"]) for e in seen["events"][1:]] == [
            ("grab", "technician", None, None), ("arrive", "technician", None, None),
            ("release", "technician", None, None)]
    staff_view = read(client, ticket["id"], as_user("dispatcher.xl"))
    assert staff_view["events"][-1]["note"] == f"用户{PHONE}改约到明天"
    assert staff_view["events"][2]["location"] is not None


def test_an_invalidated_pool_ticket_leaves_the_pool(client: TestClient, as_user) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    act(client, ticket["id"], "invalidate", as_user("dispatcher.xl"), {"reason": "重复报修"})
    assert_not_found(client, ticket["id"], as_user("tech01"))


def test_another_branchs_pool_does_not_exist_for_a_technician(client: TestClient, as_user) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    assert read(client, ticket["id"], as_user("tech01"))["contact"] is None
    assert_not_found(client, ticket["id"], as_user("tech33"))  # Erenhot


def test_offers_and_the_near_me_pool_hide_the_contact(client: TestClient, as_user, db: Session,
                                                      redis: Redis) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    tech01 = technician_id(db, "tech01")
    db.add(Offer(ticket_id=ticket["id"], technician_id=tech01, ring=1, distance_m=250.0,
                 offered_at=datetime.now(UTC)))
    db.flush()
    live.place_at(redis, live.LiveKeys.of(ticket["branch_id"]), tech01, point=LatLng(43.936, 116.08), seen_at=0)

    offers = client.get("/api/v1/me/offers", headers=as_user("tech01"))
    pool = client.get("/api/v1/me/pool", headers=as_user("tech01"))

    assert offers.status_code == 200 and pool.status_code == 200, (offers.text, pool.text)
    [offered] = [o["ticket"] for o in offers.json() if o["ticket"]["id"] == ticket["id"]]
    [pooled] = [t for t in pool.json() if t["id"] == ticket["id"]]
    for seen in (offered, pooled):
        assert seen["contact"] is None
        assert {k: seen[k] for k in EXPECTED_POOL_FIELDS} == EXPECTED_POOL_FIELDS


@pytest.mark.parametrize("username", ["tech01", "dispatcher.xl"])
def test_attachments_of_a_pool_ticket_are_listed_to_whoever_may_see_it(client: TestClient, as_user,
                                                                        username: str) -> None:
    ticket = report(client, as_user("dispatcher.xl"))
    photo = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    uploaded = client.post(f"{TICKETS}/{ticket['id']}/attachments", files={"file": ("a.png", photo, "image/png")},
                           headers=as_user("dispatcher.xl"))
    assert uploaded.status_code == 201, uploaded.text

    reply = client.get(f"{TICKETS}/{ticket['id']}/attachments", headers=as_user(username))

    assert reply.status_code == 200, reply.text
    assert [a["id"] for a in reply.json()] == [uploaded.json()["id"]]
