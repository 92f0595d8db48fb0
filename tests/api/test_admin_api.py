"""What the console's admin screens write beside the older endpoints: retiring a ticket type, the list of
users, and a technician's skills, limit and region."""

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from dispatch.kernel.settings import Settings
from tests.api.test_audit import events
from tests.api.test_scope import TICKETS, XL_POINT, region_id, technician_id
from tests.conftest import log_in, on_duty, subscriber_headers

TYPES = "/api/v1/ticket-types"
TECHNICIANS = "/api/v1/technicians"


def retire(client: TestClient, code: str, retired: bool = True) -> dict:
    reply = client.patch(f"{TYPES}/{code}", json={"retired": retired}, headers=log_in(client, "admin"))
    assert reply.status_code == 200, reply.text
    return reply.json()


def listed_codes(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, bool]:
    reply = client.get(TYPES, headers=headers or {})
    assert reply.status_code == 200, reply.text
    return {t["code"]: t["retired"] for t in reply.json()}


def report(client: TestClient, headers: dict[str, str], type_code: str, phone: str) -> httpx.Response:
    body = {"type_code": type_code, "description": "没信号", "location": XL_POINT,
            "contact": {"name": "张三", "phone": phone}}
    return client.post(TICKETS, json=body, headers=headers)


def test_a_retired_type_is_refused_at_intake_naming_type_code(client: TestClient, db: Session,
                                                             settings: Settings) -> None:
    assert retire(client, "tv_no_signal")["retired"] is True
    for headers in (log_in(client, "dispatcher.xl"), subscriber_headers(db, settings)):
        refused = report(client, headers, "tv_no_signal", "13900000801")
        assert refused.status_code == 422, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["type_code"]
    assert report(client, log_in(client, "dispatcher.xl"), "broadband_fault", "13900000802").status_code == 201


def test_a_retired_type_is_listed_to_staff_only(client: TestClient, db: Session, settings: Settings) -> None:
    retire(client, "tv_no_signal")
    for nobody_on_staff in (None, subscriber_headers(db, settings), log_in(client, "tech01")):
        assert "tv_no_signal" not in listed_codes(client, nobody_on_staff)
    for staff in ("admin", "dispatcher.xl", "clerk.xl", "payroll"):
        codes = listed_codes(client, log_in(client, staff))
        assert codes["tv_no_signal"] is True and codes["broadband_fault"] is False
    retire(client, "tv_no_signal", False)
    assert listed_codes(client)["tv_no_signal"] is False


def test_retiring_a_type_is_audited_with_before_and_after(client: TestClient) -> None:
    retire(client, "tv_no_signal")
    latest = events(client, action="ticket_type.changed")[0]
    assert latest["actor_label"] == "admin"
    assert latest["detail"] == {"code": "tv_no_signal", "changes": {"retired": [False, True]}}


def test_only_an_admin_retires_a_type(client: TestClient) -> None:
    refused = client.patch(f"{TYPES}/tv_no_signal", json={"retired": True}, headers=log_in(client, "dispatcher.xl"))
    assert refused.status_code == 403
    assert listed_codes(client)["tv_no_signal"] is False


def test_tickets_of_a_retired_type_carry_on(client: TestClient, db: Session) -> None:
    dispatcher = log_in(client, "dispatcher.xl")
    ticket = report(client, dispatcher, "tv_no_signal", "13900000803").json()
    retire(client, "tv_no_signal")
    assigned = client.post(f"{TICKETS}/{ticket['id']}/assign", json={"technician_id": technician_id(db, "tech01")},
                           headers=dispatcher)
    assert assigned.status_code == 200, assigned.text
    assert client.get(f"{TICKETS}/{ticket['id']}", headers=dispatcher).json()["type_code"] == "tv_no_signal"
    retyped = client.patch(f"{TICKETS}/{ticket['id']}", json={"type_code": "broadband_fault"}, headers=dispatcher)
    assert retyped.status_code == 200, retyped.text
    back = client.patch(f"{TICKETS}/{ticket['id']}", json={"type_code": "tv_no_signal"}, headers=dispatcher)
    assert back.status_code == 422 and back.json()["errors"][0]["field"] == "type_code"


def test_an_admin_lists_every_user_page_by_page(client: TestClient) -> None:
    admin = log_in(client, "admin")
    seen: list[str] = []
    cursor = None
    while True:
        reply = client.get("/api/v1/users", params={"limit": 7, **({"cursor": cursor} if cursor else {})},
                           headers=admin)
        assert reply.status_code == 200, reply.text
        seen += [u["username"] for u in reply.json()["items"]]
        cursor = reply.json()["next_cursor"]
        if cursor is None:
            break
    assert {"admin", "dispatcher.xl", "payroll", "tech01", "tech40"} <= set(seen)
    assert len(seen) == len(set(seen)) > 7
    assert client.get("/api/v1/users", headers=log_in(client, "dispatcher.xl")).status_code == 403


def test_a_dispatcher_changes_a_technicians_limit_and_it_is_audited(client: TestClient, db: Session) -> None:
    tech01 = technician_id(db, "tech01")
    changed = client.patch(f"{TECHNICIANS}/{tech01}", json={"max_active": 1, "skills": ["tv", "broadband", "tv"]},
                           headers=log_in(client, "dispatcher.xl"))
    assert changed.status_code == 200, changed.text
    assert (changed.json()["max_active"], changed.json()["skills"]) == (1, ["broadband", "tv"])
    assert client.get(f"{TECHNICIANS}/{tech01}", headers=log_in(client, "admin")).json()["max_active"] == 1
    audited = events(client, action="technician.changed")[0]
    assert (audited["actor_label"], audited["target_id"]) == ("dispatcher.xl", tech01)
    assert audited["detail"] == {"changes": {"max_active": [3, 1]}}


def test_a_technician_is_changed_only_within_the_callers_regions(client: TestClient, db: Session) -> None:
    tech01 = technician_id(db, "tech01")
    elsewhere = client.patch(f"{TECHNICIANS}/{tech01}", json={"max_active": 2}, headers=log_in(client, "dispatcher.eh"))
    assert elsewhere.status_code == 404
    moved_out = client.patch(f"{TECHNICIANS}/{tech01}", json={"region_id": region_id(db, "EH")},
                             headers=log_in(client, "dispatcher.xl"))
    assert moved_out.status_code == 403
    clerk = client.patch(f"{TECHNICIANS}/{tech01}", json={"max_active": 2}, headers=log_in(client, "clerk.xl"))
    assert clerk.status_code == 403
    assert client.get(f"{TECHNICIANS}/{tech01}", headers=log_in(client, "admin")).json()["max_active"] == 3


def test_a_skill_taken_away_stops_offers_needing_it_at_once(client: TestClient, db: Session) -> None:
    at = {"lat": 43.963615, "lng": 116.054121}
    on_duty(client, log_in(client, "tech01"), at=at)
    dispatcher = log_in(client, "dispatcher.xl")

    def nearest_tv() -> set[int]:
        reply = client.get(f"{TECHNICIANS}/nearest", params={**at, "k": 50, "type_code": "tv_no_signal"},
                           headers=dispatcher)
        assert reply.status_code == 200, reply.text
        return {c["technician_id"] for c in reply.json()}

    tech01 = technician_id(db, "tech01")
    assert tech01 in nearest_tv()
    taken_away = client.patch(f"{TECHNICIANS}/{tech01}", json={"skills": ["broadband"]}, headers=dispatcher)
    assert taken_away.status_code == 200, taken_away.text
    assert tech01 not in nearest_tv()


def test_a_regions_surge_switches_are_listed_newest_first_within_scope(client: TestClient, db: Session) -> None:
    dispatcher = log_in(client, "dispatcher.xl")
    xl = region_id(db, "XL")
    for on, reason in ((True, "暴雪"), (False, "雪停")):
        switched = client.post(f"/api/v1/regions/{xl}/surge", json={"on": on, "reason": reason}, headers=dispatcher)
        assert switched.status_code == 200, switched.text
    page = client.get(f"/api/v1/regions/{xl}/surge/switches", params={"limit": 1}, headers=dispatcher).json()
    assert [(s["on"], s["reason"], s["switched_by"]) for s in page["items"]] == [(False, "雪停", "dispatcher.xl")]
    rest = client.get(f"/api/v1/regions/{xl}/surge/switches", params={"cursor": page["next_cursor"]},
                      headers=dispatcher).json()
    assert [(s["on"], s["reason"]) for s in rest["items"]] == [(True, "暴雪")] and rest["next_cursor"] is None
    elsewhere = client.get(f"/api/v1/regions/{xl}/surge/switches", headers=log_in(client, "dispatcher.eh"))
    assert elsewhere.status_code == 404
