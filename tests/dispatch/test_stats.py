"""GET /api/v1/stats over hand-placed tickets: October 2026 in Xilinhot (broadband_fault: 30 min to accept,
240 min to resolve), times set the way the lifecycle would have left them."""

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.tickets.models import Ticket, TicketEvent, TicketState
from geo.models import Region
from technicians.models import Technician

TZ = ZoneInfo("Asia/Shanghai")
OCTOBER = {"from": "2026-10-01", "to": "2026-10-31"}
_phones = itertools.count(1)
Headers = Callable[[str], dict[str, str]]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


class Past:
    def __init__(self, client: TestClient, as_user: Headers, db: Session) -> None:
        self.client, self.as_user, self.db = client, as_user, db

    def technician(self, username: str) -> int:
        return self.db.scalars(select(Technician.id).join(User, User.id == Technician.user_id)
                               .where(User.username == username)).one()

    def ticket(self, created: str, *, state: TicketState = TicketState.PENDING, accepted: str | None = None,
               completed: str | None = None, timed_out: str | None = None, by: str | None = None,
               satisfaction: int | None = None, type_code: str = "broadband_fault",
               where: tuple[float, float] = (43.935, 116.08), reporter: str = "dispatcher.xl") -> int:
        body = {"type_code": type_code, "description": "无信号", "location": {"lat": where[0], "lng": where[1]},
                "contact": {"name": "王五", "phone": f"1360000{next(_phones):04d}"}}
        reply = self.client.post("/api/v1/tickets", json=body, headers=self.as_user(reporter))
        assert reply.status_code == 201, reply.text
        ticket_id: int = reply.json()["id"]
        created_at = at(created)
        technician_id = self.technician(by) if by else None
        self.db.execute(update(Ticket).where(Ticket.id == ticket_id).values(
            state=state, created_at=created_at, response_due_at=created_at + timedelta(minutes=30),
            resolution_due_at=created_at + timedelta(minutes=240), technician_id=technician_id,
            completed_at=at(completed) if completed else None, satisfaction=satisfaction))
        if timed_out:
            self._event(ticket_id, timed_out, "time_out", TicketState.TIMED_OUT, None)
        if accepted:
            self._event(ticket_id, accepted, "grab", TicketState.ACCEPTED, technician_id)
        return ticket_id

    def _event(self, ticket_id: int, when: str, action: str, to_state: TicketState, technician_id: int | None) -> None:
        self.db.add(TicketEvent(ticket_id=ticket_id, at=at(when), actor="test", actor_role="system", action=action,
                                from_state=None, to_state=to_state, technician_id=technician_id, data={}))
        self.db.flush()

    def stats(self, username: str = "dispatcher.xl", **params: str) -> Any:
        return self.client.get("/api/v1/stats", params={**OCTOBER, **params}, headers=self.as_user(username))


@pytest.fixture
def past(client: TestClient, as_user: Headers, db: Session) -> Past:
    S = TicketState
    desk = Past(client, as_user, db)
    desk.ticket("2026-10-10 10:00", state=S.COMPLETED, accepted="2026-10-10 10:10", completed="2026-10-10 11:10",
                by="tech04", satisfaction=5)
    desk.ticket("2026-10-10 12:00", state=S.COMPLETED, accepted="2026-10-10 12:50", completed="2026-10-10 17:00",
                by="tech04", satisfaction=3)
    desk.ticket("2026-10-11 08:00", state=S.ACCEPTED, timed_out="2026-10-11 08:30", accepted="2026-10-11 09:00",
                by="tech05")
    desk.ticket("2026-10-12 09:00", state=S.INVALID)
    desk.ticket("2026-10-31 23:59")  # the last minute of the month still belongs to it
    desk.ticket("2026-11-01 00:00")  # November
    return desk


def test_period_totals_are_computed_by_hand(past: Past) -> None:
    reply = past.stats()
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["from"], body["to"], body["tickets"]) == ("2026-10-01", "2026-10-31", 5)
    assert body["by_state"] == {"completed": 2, "accepted": 1, "invalid": 1, "pending": 1}
    # accept: 10, 50, 60 minutes; complete: 70, 300
    assert (body["accept_median_min"], body["accept_p90_min"]) == pytest.approx((50, 58))
    assert (body["complete_median_min"], body["complete_p90_min"]) == pytest.approx((185, 277))
    # response met by the first only, among the three taken and the pending one past due (invalid left out)
    assert body["response_sla_attainment"] == pytest.approx(0.25)
    assert body["resolution_sla_attainment"] == pytest.approx(0.25)
    assert (body["timeout_rate"], body["invalid_rate"]) == pytest.approx((0.2, 0.2))
    assert (body["satisfaction_avg"], body["satisfaction_count"]) == (pytest.approx(4.0), 2)


def test_per_technician_and_per_grid(past: Past) -> None:
    body = past.stats().json()
    people = {row["technician_id"]: row for row in body["by_technician"]}
    tech04 = people[past.technician("tech04")]
    assert (tech04["tickets"], tech04["complete_median_min"], tech04["satisfaction_avg"]) == (2, 185, 4.0)
    assert people[past.technician("tech05")]["timeout_rate"] == 1.0
    assert sum(row["tickets"] for row in body["by_region"]) == 5
    assert [row["type_code"] for row in body["by_type"]] == ["broadband_fault"]


def test_another_branch_sees_none_of_it_and_cannot_name_it(past: Past) -> None:
    assert past.stats("dispatcher.eh").json()["tickets"] == 0
    xl = past.db.scalars(select(Region.id).where(Region.code == "XL")).one()
    reply = past.stats("dispatcher.eh", region_id=str(xl))
    assert reply.status_code == 404


@pytest.mark.parametrize(("params", "field"), [({"from": "2026-12-01", "to": "2026-11-01"}, "from"),
                                               ({"from": "2025-01-01", "to": "2026-12-31"}, "to"),
                                               ({"region_id": "987654"}, "region_id")])
def test_bad_input_is_422(past: Past, params: dict[str, str], field: str) -> None:
    reply = past.stats(**params)
    assert reply.status_code == 422 and field in [e["field"] for e in reply.json()["errors"]]


def test_technicians_and_clerks_get_403(past: Past) -> None:
    assert past.stats("tech04").status_code == 403
    assert past.stats("clerk.xl").status_code == 403
