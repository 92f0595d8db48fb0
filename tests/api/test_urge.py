"""催办 through the API: who may urge, who hears of it, how it counts, and the subscriber's cooldown."""

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.kernel.settings import Settings
from dispatch.tickets.models import OutboxMessage
from tests.conftest import local_day, log_in, subscriber_headers
from tests.dispatch.test_offers import CENTRE, on_duty, report  # noqa: F401 (on_duty: a fixture)


def urged_events(db: Session, ticket_id: int) -> list[dict[str, Any]]:
    return [p for p in db.scalars(select(OutboxMessage.payload).where(OutboxMessage.topic == "feed")
                                  .order_by(OutboxMessage.id))
            if p["type"] == "ticket.urged" and p["ticket_id"] == ticket_id]


def test_a_pending_ticket_urged_is_told_to_the_technicians_it_is_offered_to(
        client: TestClient, as_user, db: Session, on_duty) -> None:  # noqa: F811
    ticket = report(client, as_user("dispatcher.xl"))
    reply = client.post(f"/api/v1/tickets/{ticket['id']}/urge", json={"note": "用户第二次来电"},
                        headers=as_user("clerk.xl"))
    assert reply.status_code == 200, reply.text
    assert reply.json()["urge_count"] == 1 and reply.json()["urged_at"] is not None
    [event] = urged_events(db, ticket["id"])
    assert sorted(event["technician_ids"]) == sorted(o["technician_id"] for o in ticket["offers"])
    assert event["note"] == "用户第二次来电"
    seen = client.get(f"/api/v1/tickets/{ticket['id']}", headers=as_user("dispatcher.xl")).json()
    assert [e["action"] for e in seen["events"]][-1] == "urge"


def test_an_accepted_ticket_urged_is_told_to_its_holder_only(client, as_user, db, on_duty) -> None:  # noqa: F811
    ticket = report(client, as_user("dispatcher.xl"))
    assert client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=log_in(client, "tech02")).status_code == 200
    client.post(f"/api/v1/tickets/{ticket['id']}/urge", json={}, headers=as_user("dispatcher.xl"))
    [event] = urged_events(db, ticket["id"])
    assert event["technician_ids"] == [on_duty["tech02"]]


def test_a_subscriber_urges_their_own_report_once_in_ten_minutes(client, as_user, db, settings) -> None:
    me = subscriber_headers(db, settings, phone="13800007777")
    body = {"type_code": "broadband_fault", "description": "还是没网",
            "contact": {"name": "李四", "phone": "13800007777"}, "location": {"lat": CENTRE.lat, "lng": CENTRE.lng}}
    mine = client.post("/api/v1/tickets", json=body, headers=me).json()

    first = client.post(f"/api/v1/tickets/{mine['id']}/urge", json={}, headers=me)
    assert first.status_code == 200, first.text
    again = client.post(f"/api/v1/tickets/{mine['id']}/urge", json={}, headers=me)
    assert again.status_code == 429 and again.json()["code"] == "urged_recently"
    assert 540 < int(again.headers["Retry-After"]) <= 600
    # Staff are not held to the subscriber's pace.
    assert client.post(f"/api/v1/tickets/{mine['id']}/urge", json={}, headers=as_user("clerk.xl")).json()[
        "urge_count"] == 2
    someone_else = subscriber_headers(db, settings, phone="13800008888")
    assert client.post(f"/api/v1/tickets/{mine['id']}/urge", json={}, headers=someone_else).status_code == 404


def test_urges_count_in_statistics_and_closed_or_technicians_refused(client, as_user, on_duty,  # noqa: F811
                                                                     settings: Settings) -> None:
    dispatcher = as_user("dispatcher.xl")
    ticket = report(client, dispatcher)
    for _ in range(3):
        client.post(f"/api/v1/tickets/{ticket['id']}/urge", json={}, headers=dispatcher)
    day = local_day(settings, ticket["created_at"])
    stats = client.get("/api/v1/stats", params={"from": day, "to": day}, headers=dispatcher).json()
    assert stats["urges"] >= 3 and 0 < stats["urged_rate"] <= 1
    assert client.post(f"/api/v1/tickets/{ticket['id']}/urge", json={},
                       headers=log_in(client, "tech01")).status_code == 403
    client.post(f"/api/v1/tickets/{ticket['id']}/invalidate", json={"reason": "重复"}, headers=dispatcher)
    closed = client.post(f"/api/v1/tickets/{ticket['id']}/urge", json={}, headers=dispatcher)
    assert closed.status_code == 409 and closed.json()["code"] == "invalid_transition"
