"""The console's lists through GET /api/v1/tickets: time-left order across pages, the total, text search, the
filters together, region scope, and bad input as problem JSON."""

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from dispatch.tickets.models import Ticket
from tests.api.test_scope import EH_POINT, TICKETS, XL_G01_POINT, region_id, report, technician_id

NOW = datetime.now(UTC)


def due_in(db: Session, ticket: dict[str, Any], minutes: int, *, column: str = "response_due_at") -> None:
    db.execute(update(Ticket).where(Ticket.id == ticket["id"]).values({column: NOW + timedelta(minutes=minutes)}))
    db.flush()


def every_page(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        reply = client.get(TICKETS, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert reply.status_code == 200, reply.text
        seen += reply.json()["items"]
        cursor = reply.json()["next_cursor"]
        if cursor is None:
            return seen


def test_due_order_puts_the_least_time_left_first_across_pages_and_p1_above_all(
        client: TestClient, as_user, db: Session) -> None:
    dispatcher = as_user("dispatcher.xl")
    made = [report(client, dispatcher, f"1390000{n:04d}", type_code="stb_fault") for n in range(5)]
    for ticket, minutes in zip(made, [50, -5, 20, 20, 90], strict=True):
        due_in(db, ticket, minutes)
    # Held: its race is now against the resolution deadline, 10 minutes out.
    client.post(f"{TICKETS}/{made[4]['id']}/assign", json={"technician_id": technician_id(db, "tech04")},
                headers=dispatcher)
    due_in(db, made[4], 10, column="resolution_due_at")
    client.patch(f"{TICKETS}/{made[0]['id']}", json={"priority": "P1"}, headers=dispatcher)

    listed = every_page(client, dispatcher, type_code="stb_fault", order="due", limit=2)

    ids = [t["id"] for t in made]
    # P1 first whatever its time; then the overdue one, the held one, and the two due in 20 minutes by id.
    assert [t["id"] for t in listed] == [ids[0], ids[1], ids[4], ids[2], ids[3]]


def test_the_total_counts_every_page_of_the_filter_and_only_when_asked(
        client: TestClient, as_user, db: Session) -> None:
    dispatcher = as_user("dispatcher.xl")
    for n in range(7):
        report(client, dispatcher, f"1390001{n:04d}", type_code="stb_fault")
    report(client, dispatcher, "13900019999")  # broadband: another type

    counted = client.get(TICKETS, params={"type_code": "stb_fault", "limit": 3, "with_total": "true"},
                         headers=dispatcher).json()
    plain = client.get(TICKETS, params={"type_code": "stb_fault", "limit": 3}, headers=dispatcher).json()

    assert len(counted["items"]) == 3 and counted["total"] == 7 and counted["next_cursor"]
    assert plain["total"] is None


def test_search_finds_a_ticket_by_part_of_its_number_address_or_phone(
        client: TestClient, as_user, db: Session) -> None:
    dispatcher = as_user("dispatcher.xl")
    wanted = client.post(TICKETS, headers=dispatcher, json={
        "type_code": "broadband_fault", "description": "断网了", "location": XL_G01_POINT,
        "address": "幸福里小区 7 号楼", "contact": {"name": "李四", "phone": "13912345678"}}).json()
    other = report(client, dispatcher, "13800000000")

    for term in ("幸福里", "2345", wanted["number"][-6:], wanted["number"].lower()):
        found = client.get(TICKETS, params={"q": term, "with_total": "true"}, headers=dispatcher).json()
        assert [t["id"] for t in found["items"]] == [wanted["id"]], term
        assert found["total"] == 1
    # A wildcard is a character like any other, not "anything".
    assert client.get(TICKETS, params={"q": "%%"}, headers=dispatcher).json()["items"] == []
    assert other["id"] not in [t["id"] for t in every_page(client, dispatcher, q="幸福")]


def test_search_stays_inside_the_callers_regions_and_a_technician_cannot_search_phones(
        client: TestClient, as_user, db: Session) -> None:
    report(client, as_user("dispatcher.xl"), "13955554444", location=XL_G01_POINT)
    erenhot = report(client, as_user("dispatcher.eh"), "13955553333", location=EH_POINT)

    assert client.get(TICKETS, params={"q": "139555"}, headers=as_user("dispatcher.eh")).json()["items"] == [erenhot]
    assert client.get(TICKETS, params={"q": "139555", "with_total": "true"},
                      headers=as_user("admin")).json()["total"] == 2
    # tech01 sees Xilinhot's pool, but not who reported: the phone answers nothing.
    assert client.get(TICKETS, params={"q": "13955554444"}, headers=as_user("tech01")).json()["items"] == []


def test_the_filters_narrow_together(client: TestClient, as_user, db: Session) -> None:
    dispatcher = as_user("dispatcher.xl")
    in_g01 = [report(client, dispatcher, f"1390002{n:04d}", location=XL_G01_POINT) for n in range(3)]
    elsewhere = report(client, dispatcher, "13900029999")
    tech04 = technician_id(db, "tech04")
    client.post(f"{TICKETS}/{in_g01[0]['id']}/assign", json={"technician_id": tech04}, headers=dispatcher)
    client.patch(f"{TICKETS}/{in_g01[1]['id']}", json={"priority": "P2"}, headers=dispatcher)
    db.execute(update(Ticket).where(Ticket.id == in_g01[2]["id"]).values(state="timed_out"))
    db.flush()
    g01 = region_id(db, "XL-G01")

    def ids(**params: Any) -> list[int]:
        return [t["id"] for t in every_page(client, dispatcher, type_code="broadband_fault", region_id=g01, **params)]

    assert ids() == [in_g01[2]["id"], in_g01[1]["id"], in_g01[0]["id"]]
    assert elsewhere["id"] not in ids()
    assert ids(state="accepted", technician_id=tech04) == [in_g01[0]["id"]]
    assert ids(priority="P2", state="pending") == [in_g01[1]["id"]]
    assert ids(sla="breached") == [in_g01[2]["id"]]
    assert ids(state="accepted", priority="P2") == []


def test_bad_list_input_is_422_with_the_field_at_fault(client: TestClient, as_user) -> None:
    dispatcher = as_user("dispatcher.xl")
    cases = {
        "q": {"q": "x" * 65},
        "with_total": {"with_total": "perhaps"},
        "order": {"order": "oldest"},
        "cursor": {"order": "due", "cursor": "YXQ6MToxMjM0NTY3ODk="},  # "at:1:123456789": no id
    }
    report(client, dispatcher, "13900030001")
    report(client, dispatcher, "13900030002")
    for field, params in cases.items():
        reply = client.get(TICKETS, params=params, headers=dispatcher)
        assert reply.status_code == 422, (field, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in reply.json()["errors"]], reply.json()
    newest_cursor = client.get(TICKETS, params={"limit": 1}, headers=dispatcher).json()["next_cursor"]
    mixed = client.get(TICKETS, params={"order": "due", "cursor": newest_cursor}, headers=dispatcher)
    assert mixed.status_code == 422 and mixed.json()["errors"][0]["field"] == "cursor"
    line_break = client.get(TICKETS, params={"q": "幸福\n里"}, headers=dispatcher)
    assert line_break.status_code == 422 and line_break.json()["errors"][0]["field"] == "q"
