"""Time limits on real PostgreSQL and Redis: warnings, timeouts, resolution breaches and the escalation chain.

The tests shorten the SLAs (a 10-minute response, 60-minute resolution type)
and move the sweep's clock instead of sleeping.
"""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from redis import Redis
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from dispatch.kernel.settings import Settings, SlaSettings
from dispatch.tickets import sla
from dispatch.tickets.models import EscalationStep, OutboxMessage, Ticket, TicketType
from geo.models import Region
from tests.conftest import on_duty

SHORT = "sla_short"  # response 10 min, resolution 60 min: warnings at 8 and 48 min


@pytest.fixture
def short_type(db: Session) -> TicketType:
    ticket_type = TicketType(code=SHORT, name="测试短时限", skills=[], standard_hours=Decimal("1.00"),
                             piece_rate=Decimal("10.00"), response_sla_min=10, resolution_sla_min=60)
    db.add(ticket_type)
    db.flush()
    return ticket_type


def point_in(db: Session, code: str) -> dict[str, float]:
    lat, lng = db.execute(select(func.ST_Y(func.ST_PointOnSurface(Region.boundary)),
                                 func.ST_X(func.ST_PointOnSurface(Region.boundary))).where(Region.code == code)).one()
    return {"lat": lat, "lng": lng}


def report(client: TestClient, headers: dict[str, str], location: dict[str, float], *, phone: str = "13900002222",
           type_code: str = SHORT) -> dict[str, Any]:
    body = {"type_code": type_code, "description": "光猫红灯", "location": location,
            "contact": {"name": "王五", "phone": phone}}
    reply = client.post("/api/v1/tickets", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def at(ticket: dict[str, Any], field: str) -> datetime:
    return datetime.fromisoformat(ticket[field])


def sweep(db: Session, redis: Redis, settings: Settings, now: datetime) -> sla.SweepResult:
    return sla.sweep(db, redis, cfg=settings.sla, now=now, limit=100)


def feed_events(db: Session, ticket_id: int) -> list[dict[str, Any]]:
    payloads = db.scalars(select(OutboxMessage.payload).where(OutboxMessage.topic == "feed")
                          .order_by(OutboxMessage.id))
    return [p for p in payloads if p["ticket_id"] == ticket_id and p["type"] != "ticket.created"]


def read(client: TestClient, headers: dict[str, str], ticket_id: int) -> dict[str, Any]:
    reply = client.get(f"/api/v1/tickets/{ticket_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


@pytest.fixture
def g01(db: Session) -> dict[str, float]:
    return point_in(db, "XL-G01")


def test_a_pending_ticket_warns_times_out_stays_grabbable_and_escalates_in_order(
        client, as_user, db, redis, settings, short_type, g01) -> None:
    dispatcher = as_user("dispatcher.xl")
    ticket = report(client, dispatcher, g01)
    created = at(ticket, "created_at")
    assert at(ticket, "response_due_at") == created + timedelta(minutes=10)

    assert sweep(db, redis, settings, created + timedelta(minutes=7)).total == 0
    assert sweep(db, redis, settings, created + timedelta(minutes=8, seconds=1)).warned == 1
    timeout = sweep(db, redis, settings, created + timedelta(minutes=10, seconds=1))
    assert timeout.timed_out == [ticket["id"]] and timeout.escalated == 1
    timed_out_at = created + timedelta(minutes=10, seconds=1)
    for minutes in (15, 30, 60):  # the XL chain's later steps
        assert sweep(db, redis, settings, timed_out_at + timedelta(minutes=minutes)).escalated == 1
    assert sweep(db, redis, settings, timed_out_at + timedelta(hours=5)).total == 0, "the chain ends at HQ"

    events = feed_events(db, ticket["id"])
    assert [e["type"] for e in events] == ["ticket.sla_warning", "ticket.timed_out"] + ["ticket.escalated"] * 4
    escalations = [e for e in events if e["type"] == "ticket.escalated"]
    assert [e["level"] for e in escalations] == [1, 2, 3, 4]
    assert [[r["username"] for r in e["recipients"]] for e in escalations] == [
        ["dispatcher.xl.g01"], ["dispatcher.xl"], ["manager.xl"], ["admin"]]
    assert events[0]["kind"] == "response"

    seen = read(client, dispatcher, ticket["id"])
    assert seen["state"] == "timed_out"
    assert seen["sla"]["breached"] and seen["sla"]["escalation_level"] == 4
    assert [e["action"] for e in seen["events"]] == ["create", "sla_warning", "time_out"] + ["escalate"] * 4
    grabbed = client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=on_duty(client, as_user("tech01")))
    assert grabbed.status_code == 200, grabbed.text
    assert grabbed.json()["state"] == "accepted"


def test_a_sweep_run_again_sends_nothing_twice(client, as_user, db, redis, settings, short_type, g01) -> None:
    ticket = report(client, as_user("dispatcher.xl"), g01)
    now = at(ticket, "created_at") + timedelta(minutes=11)
    assert sweep(db, redis, settings, now).total == 2  # the timeout and the first escalation step
    outbox_rows = db.scalar(select(func.count()).select_from(OutboxMessage))
    assert sweep(db, redis, settings, now).total == 0
    assert sweep(db, redis, settings, now + timedelta(minutes=1)).total == 0
    assert db.scalar(select(func.count()).select_from(OutboxMessage)) == outbox_rows


def test_escalation_stops_once_a_technician_takes_the_ticket(client, as_user, db, redis, settings, short_type,
                                                            g01) -> None:
    dispatcher = as_user("dispatcher.xl")
    ticket = report(client, dispatcher, g01)
    timed_out_at = at(ticket, "created_at") + timedelta(minutes=11)
    assert sweep(db, redis, settings, timed_out_at).escalated == 1
    tech01 = on_duty(client, as_user("tech01"))
    assert client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=tech01).status_code == 200

    assert sweep(db, redis, settings, timed_out_at + timedelta(minutes=20)).escalated == 0
    seen = read(client, dispatcher, ticket["id"])
    assert [e["action"] for e in seen["events"]].count("escalate") == 1
    assert not seen["sla"]["breached"] and seen["sla"]["next_escalation_at"] is None
    assert db.get(Ticket, ticket["id"]).next_escalation_at is None


def test_escalation_stops_when_the_ticket_is_invalidated(client, as_user, db, redis, settings, short_type,
                                                        g01) -> None:
    dispatcher = as_user("dispatcher.xl")
    ticket = report(client, dispatcher, g01)
    timed_out_at = at(ticket, "created_at") + timedelta(minutes=11)
    sweep(db, redis, settings, timed_out_at)
    reply = client.post(f"/api/v1/tickets/{ticket['id']}/invalidate", json={"reason": "重复报修"}, headers=dispatcher)
    assert reply.status_code == 200, reply.text
    assert sweep(db, redis, settings, timed_out_at + timedelta(hours=2)).total == 0


def test_an_accepted_ticket_past_its_resolution_sla_is_flagged_and_escalated_until_completed(
        client, as_user, db, redis, settings, short_type, g01) -> None:
    dispatcher, tech = as_user("dispatcher.xl"), as_user("tech01")
    ticket = report(client, dispatcher, g01)
    assert client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=on_duty(client, tech)).status_code == 200
    created = at(ticket, "created_at")
    assert sweep(db, redis, settings, created + timedelta(minutes=30)).total == 0, "a taken ticket never times out"
    assert sweep(db, redis, settings, created + timedelta(minutes=48, seconds=1)).warned == 1
    breach = sweep(db, redis, settings, created + timedelta(minutes=60, seconds=1))
    assert (breach.breached, breach.escalated, breach.timed_out) == (1, 1, [])

    seen = read(client, dispatcher, ticket["id"])
    assert seen["state"] == "accepted" and seen["sla"]["breached"] and seen["sla"]["breached_at"]
    listed = client.get("/api/v1/tickets", params={"sla": "breached"}, headers=dispatcher).json()["items"]
    assert [t["id"] for t in listed] == [ticket["id"]]
    warning, flagged, escalated = feed_events(db, ticket["id"])[-3:]
    assert (warning["type"], warning["kind"]) == ("ticket.sla_warning", "resolution")
    assert flagged["type"] == "ticket.sla_breached"
    assert (escalated["kind"], escalated["level"]) == ("resolution", 1)
    assert warning["technician_ids"], "the technician holding the ticket hears of it too"

    reply = client.post(f"/api/v1/tickets/{ticket['id']}/complete", json={"note": "修好了"}, headers=tech)
    assert reply.status_code == 200, reply.text
    assert sweep(db, redis, settings, created + timedelta(hours=3)).escalated == 0


def test_a_region_without_a_chain_of_its_own_uses_the_default_chain(client, as_user, db, redis, settings, short_type,
                                                                       g01) -> None:
    branch_id = db.scalar(select(Region.id).where(Region.code == "XL"))
    db.execute(delete(EscalationStep).where(EscalationStep.region_id == branch_id))
    ticket = report(client, as_user("dispatcher.xl"), g01)
    timed_out_at = at(ticket, "created_at") + timedelta(minutes=11)
    cfg = SlaSettings(escalation_delays_min=(0, 1, 2, 3))
    for minute in range(4):
        assert sla.sweep(db, redis, cfg=cfg, now=timed_out_at + timedelta(minutes=minute), limit=10).escalated == 1
    titles = [e["title"] for e in feed_events(db, ticket["id"]) if e["type"] == "ticket.escalated"]
    assert titles == ["网格值机员", "分公司值机员", "分公司经理", "总部"]


def test_the_first_warning_is_skipped_for_a_ticket_already_late(client, as_user, db, redis, settings, short_type,
                                                                  g01) -> None:
    ticket = report(client, as_user("dispatcher.xl"), g01)
    result = sweep(db, redis, settings, at(ticket, "created_at") + timedelta(hours=1))
    assert (result.warned, len(result.timed_out)) == (0, 1)


def test_retyping_moves_the_due_and_warning_times_and_a_later_warning_goes_out_again(
        client, as_user, db, redis, settings, short_type, g01) -> None:
    dispatcher = as_user("dispatcher.xl")
    ticket = report(client, dispatcher, g01)
    created = at(ticket, "created_at")
    sweep(db, redis, settings, created + timedelta(minutes=9))  # warned at 8 of 10 minutes
    reply = client.patch(f"/api/v1/tickets/{ticket['id']}", json={"type_code": "stb_fault"}, headers=dispatcher)
    assert reply.status_code == 200, reply.text
    assert at(reply.json(), "response_due_at") == created + timedelta(minutes=60)
    assert reply.json()["sla"]["response_warned_at"] is None, "the 48-minute warning is still to come"
    assert sweep(db, redis, settings, created + timedelta(minutes=20)).total == 0
    assert sweep(db, redis, settings, created + timedelta(minutes=48, seconds=1)).warned == 1


def test_sla_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLA__ESCALATION_DELAYS_MIN", "[0, 5, 10, 20]")
    monkeypatch.setenv("SLA__WARNING_FRACTION", "0.75")
    cfg = Settings().sla
    assert cfg.escalation_delays_min == (0, 5, 10, 20) and cfg.warning_fraction == 0.75


@pytest.mark.parametrize("delays", ["[0, 30, 15, 60]", "[-5, 0, 15, 30]", "[0, 15, 30]"])
def test_escalation_delays_out_of_order_or_short_are_refused(monkeypatch: pytest.MonkeyPatch, delays: str) -> None:
    monkeypatch.setenv("SLA__ESCALATION_DELAYS_MIN", delays)
    with pytest.raises(ValidationError):
        Settings()


def test_an_acknowledged_escalation_goes_no_higher_and_the_ticket_stays_red(
        client, as_user, db, redis, settings, short_type, g01) -> None:
    dispatcher = as_user("dispatcher.xl")
    ticket = report(client, dispatcher, g01)
    timed_out_at = at(ticket, "created_at") + timedelta(minutes=11)
    sweep(db, redis, settings, timed_out_at)
    reply = client.post(f"/api/v1/tickets/{ticket['id']}/acknowledge", json={"note": "我来处理"}, headers=dispatcher)
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"] == "timed_out" and reply.json()["sla"]["breached"]
    assert reply.json()["sla"]["next_escalation_at"] is None

    assert sweep(db, redis, settings, timed_out_at + timedelta(hours=2)).escalated == 0
    acknowledged = [e for e in feed_events(db, ticket["id"]) if e["type"] == "ticket.acknowledged"]
    assert [(e["kind"], e["level"]) for e in acknowledged] == [("response", 1)]
    again = client.post(f"/api/v1/tickets/{ticket['id']}/acknowledge", json={}, headers=dispatcher)
    assert (again.status_code, again.json()["code"]) == (409, "invalid_transition")


def test_only_dispatchers_acknowledge_and_only_escalating_tickets(client, as_user, db, redis, settings, short_type,
                                                                  g01) -> None:
    ticket = report(client, as_user("dispatcher.xl"), g01)
    path = f"/api/v1/tickets/{ticket['id']}/acknowledge"
    assert client.post(path, json={}, headers=as_user("dispatcher.xl")).status_code == 409, "nothing breached yet"
    sweep(db, redis, settings, at(ticket, "created_at") + timedelta(minutes=11))
    assert client.post(path, json={}, headers=as_user("clerk.xl")).status_code == 403
    assert client.post(path, json={}, headers=as_user("dispatcher.eh")).status_code == 404
    assert client.post(path, json={"note": "x" * 2001}, headers=as_user("dispatcher.xl")).status_code == 422
