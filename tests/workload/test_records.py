"""Work records priced by hand-computed fixtures: the demo rates (fixtures/rates.yaml) and default factors.

broadband_fault pays 30.00 (1.5 h) until 2026-06-30 and 32.00 from 2026-07-01 company-wide, 36.00 in
Erenhot; night x1.50 (22:00-06:00), holiday x2.00, 5 km+ x1.10, 15 km+ x1.20, satisfaction 1 x0.80, 5 x1.05.
"""

from datetime import UTC, date, datetime
from decimal import Decimal

from redis import Redis
from sqlalchemy import select

from dispatch.kernel.auth import Actor, PrincipalKind, Role
from dispatch.tickets.models import TicketEvent
from geo.latlng import LatLng
from technicians import live
from tests.conftest import on_duty
from tests.workload.conftest import EH_POINT, Books, local
from workload import service
from workload.models import Adjustment, AdjustmentKind, WorkRecord

ADMIN = Actor(kind=PrincipalKind.USER, id=0, role=Role.ADMIN, label="admin")


def test_a_day_visit_pays_the_rate_in_force_and_counts_hours(books: Books) -> None:
    record = books.record(accepted="2026-11-10 09:00", arrived="2026-11-10 09:45", completed="2026-11-10 11:15")
    assert (record.piece_rate, record.standard_hours) == (Decimal("32.00"), Decimal("1.50"))
    assert (record.total_hours, record.onsite_hours) == (Decimal("2.25"), Decimal("1.50"))
    assert (record.night, record.holiday, record.distance_m) == (False, False, None)
    assert (record.points, record.pay) == (Decimal("1.50"), Decimal("32.00"))
    assert record.work_date == date(2026, 11, 10)


def test_night_work_earns_the_night_factor(books: Books) -> None:
    # Arrived before 22:00 but finished after it: the visit touched the night window.
    record = books.record(accepted="2026-11-10 20:30", arrived="2026-11-10 21:30", completed="2026-11-10 22:40")
    assert record.night and record.night_factor == Decimal("1.50")
    assert (record.points, record.pay) == (Decimal("2.25"), Decimal("48.00"))


def test_early_morning_is_night_too_and_six_oclock_is_not(books: Books) -> None:
    assert books.record(completed="2026-11-11 05:59").night
    assert not books.record(completed="2026-11-11 06:00").night


def test_distance_band_from_where_the_ticket_was_taken(books: Books) -> None:
    # 0.072° of latitude north of the ticket is about 8 km: the 5 km band.
    record = books.record(completed="2026-11-12 10:00", accepted_from=LatLng(43.935 + 0.072, 116.08))
    assert record.distance_m is not None and 7900 < record.distance_m < 8100
    assert record.distance_factor == Decimal("1.10")
    assert (record.points, record.pay) == (Decimal("1.65"), Decimal("35.20"))


def test_a_holiday_doubles_the_pay(books: Books) -> None:
    record = books.record(completed="2026-10-02 14:00")  # 国庆节
    assert record.holiday and (record.points, record.pay) == (Decimal("3.00"), Decimal("64.00"))


def test_night_on_a_holiday_multiplies_both(books: Books) -> None:
    record = books.record(completed="2026-10-01 23:00")
    assert record.pay == Decimal("96.00")  # 32.00 x 1.50 x 2.00


def test_a_rate_change_mid_month_applies_from_its_date(books: Books) -> None:
    service.add_rate(books.db, actor=ADMIN, type_code="tv_no_signal", region_id=None, valid_from=date(2026, 11, 16),
                     piece_rate=Decimal("28.00"), standard_hours=Decimal("1.20"))
    before = books.record(type_code="tv_no_signal", completed="2026-11-15 12:00")
    after = books.record(type_code="tv_no_signal", completed="2026-11-16 12:00")
    assert (before.pay, before.points) == (Decimal("25.00"), Decimal("1.00"))
    assert (after.pay, after.points) == (Decimal("28.00"), Decimal("1.20"))


def test_a_branch_rate_wins_over_the_company_rate_there(books: Books) -> None:
    record = books.record(completed="2026-11-10 12:00", point=EH_POINT, username="tech33")
    assert record.pay == Decimal("36.00")


def test_completion_at_2359_local_on_the_last_day_belongs_to_that_month(books: Books) -> None:
    last = books.record(completed="2026-11-30 23:59")
    first = books.record(completed="2026-12-01 00:00")
    assert last.completed_at.astimezone(UTC) == datetime(2026, 11, 30, 15, 59, tzinfo=UTC)
    assert (last.work_date, first.work_date) == (date(2026, 11, 30), date(2026, 12, 1))
    november = books.get("/api/v1/workload", **{"from": "2026-11-01", "to": "2026-11-30"}).json()["items"]
    assert sum(row["tickets"] for row in november) == 1


def test_low_satisfaction_reprices_the_visit_in_an_open_period(books: Books) -> None:
    record = books.record(completed="2026-11-10 12:00")
    service.rate_visit(books.db, ticket_id=record.ticket_id, satisfaction=1, actor_label="clerk.xl",
                       cfg=books.settings.workload, now=local("2026-11-11 09:00"), tz="Asia/Shanghai")
    assert (record.satisfaction, record.satisfaction_factor) == (1, Decimal("0.80"))
    assert (record.points, record.pay) == (Decimal("1.20"), Decimal("25.60"))


def test_a_rating_after_the_period_closed_is_paid_next_month_and_the_record_stays(books: Books) -> None:
    record = books.record(completed="2026-10-15 12:00")
    service.close_period(books.db, actor=ADMIN, branch_id=record.branch_id, month=date(2026, 10, 1),
                         now=local("2026-11-02 09:00"), tz="Asia/Shanghai")
    service.rate_visit(books.db, ticket_id=record.ticket_id, satisfaction=5, actor_label="clerk.xl",
                       cfg=books.settings.workload, now=local("2026-11-03 09:00"), tz="Asia/Shanghai")
    assert (record.satisfaction, record.pay) == (None, Decimal("32.00"))
    late = books.db.scalars(select(Adjustment).where(Adjustment.work_record_id == record.id)).one()
    assert (late.kind, late.period, late.amount) == (AdjustmentKind.SATISFACTION, date(2026, 11, 1), Decimal("1.60"))


def test_the_completing_technician_is_credited_after_a_reassignment(books: Books, redis: Redis) -> None:
    ticket = books.report()
    tech04 = on_duty(books.client, books.as_user("tech04"))
    grabbed = books.client.post(f"/api/v1/tickets/{ticket.id}/grab", headers=tech04)
    assert grabbed.status_code == 200, grabbed.text
    tech05 = books.technician("tech05")
    moved = books.client.post(f"/api/v1/tickets/{ticket.id}/assign", json={"technician_id": tech05.id},
                              headers=books.as_user("dispatcher.xl"))
    assert moved.status_code == 200, moved.text
    for verb, body in (("arrive", {"location": {"lat": 43.935, "lng": 116.08}}), ("complete", {"note": "换光猫"})):
        reply = books.client.post(f"/api/v1/tickets/{ticket.id}/{verb}", json=body, headers=books.as_user("tech05"))
        assert reply.status_code == 200, reply.text
    record = books.db.scalars(select(WorkRecord).where(WorkRecord.ticket_id == ticket.id)).one()
    assert (record.technician_id, record.technician_name) == (tech05.id, tech05.name)
    assert record.standard_hours == Decimal("1.50")
    holders = books.db.scalars(select(TicketEvent.technician_id).where(
        TicketEvent.ticket_id == ticket.id, TicketEvent.action.in_(["grab", "reassign"])).order_by(TicketEvent.id))
    assert list(holders) == [books.technician("tech04").id, tech05.id]
    # The nearest search's fairness tie-break reads the period's hours from the work records.
    loads = redis.hgetall(live.LiveKeys.of(ticket.branch_id).load)
    assert loads[str(tech05.id).encode()] == b"0|1.5"
    assert loads[str(books.technician("tech04").id).encode()] == b"0|0"


def test_a_followup_through_the_api_applies_the_rating_to_the_record(books: Books) -> None:
    ticket = books.report()
    on_duty(books.client, books.as_user("tech04"))
    for verb, user, body in (("grab", "tech04", None), ("complete", "tech04", {"note": "好了"}),
                             ("followup", "clerk.xl", {"satisfaction": 2})):
        reply = books.client.post(f"/api/v1/tickets/{ticket.id}/{verb}", json=body, headers=books.as_user(user))
        assert reply.status_code == 200, reply.text
    record = books.db.scalars(select(WorkRecord).where(WorkRecord.ticket_id == ticket.id)).one()
    base = record.piece_rate * record.night_factor * record.distance_factor * record.holiday_factor
    assert record.satisfaction == 2
    assert record.pay == (base * Decimal("0.90")).quantize(Decimal("0.01"))
