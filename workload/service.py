"""Work records, rates, adjustments and pay periods, in payroll's words."""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import BindParameter, ColumnElement, ScalarSelect, column, func, select, table
from sqlalchemy.orm import InstrumentedAttribute, Session

from dispatch.audit import service as audit
from dispatch.audit.models import AuditAction
from dispatch.kernel.auth import Actor
from dispatch.kernel.errors import InvalidInput
from dispatch.kernel.settings import WorkloadSettings
from geo.distance import haversine_m
from geo.latlng import LatLng
from geo.models import Region, RegionKind
from geo.regions import path_steps, region_in_scope, within
from technicians.service import get_technician
from workload import export, pay, queries
from workload.errors import PeriodClosed, PeriodNotOver
from workload.models import Adjustment, AdjustmentKind, Holiday, PayPeriod, WorkRate, WorkRecord

# Ticket types belong to the layer above; a rate only needs to know the code exists.
TICKET_TYPE = table("ticket_type", column("code"))


@dataclass(frozen=True)
class Completion:
    """A ticket's completion as values: everything a work record needs, without the tickets' models."""

    ticket_id: int
    ticket_number: str
    type_code: str
    type_name: str
    region_id: int
    branch_id: int
    technician_id: int
    technician_name: str
    accepted_at: datetime
    arrived_at: datetime | None
    completed_at: datetime
    site: LatLng
    accepted_from: LatLng | None  # where the technician was when they took the ticket
    # The ticket type's own rate: paid where no work_rate row is in force.
    type_piece_rate: Decimal
    type_standard_hours: Decimal
    # A visit to a report grouped under an incident: paid at the type's visit rate, never the rates in force.
    visit: bool = False


def month_of(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def local_date(at: datetime, tz: str) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


# --- rates --------------------------------------------------------------------

def rate_in_force(session: Session, *, type_code: str, region_id: int, on: date) -> WorkRate | None:
    """The rate for this type on this date: the most specific region first, then the latest start."""
    steps = path_steps(session.execute(select(Region.path).where(Region.id == region_id)).scalar_one())
    candidates = session.scalars(select(WorkRate).where(
        WorkRate.type_code == type_code, WorkRate.valid_from <= on,
        WorkRate.region_id.is_(None) | WorkRate.region_id.in_(steps)))
    depth = {region: i + 1 for i, region in enumerate(steps)}
    return max(candidates, key=lambda r: (depth.get(r.region_id, 0) if r.region_id else 0, r.valid_from),
               default=None)


def add_rate(session: Session, *, actor: Actor, type_code: str, region_id: int | None, valid_from: date,
             piece_rate: Decimal, standard_hours: Decimal) -> WorkRate:
    """A new rate from a date on; records already written keep the rate they were paid with.

    Raises: InvalidInput (a rate for that type, region and date exists), NotFound (region out of scope).
    """
    if session.scalar(select(TICKET_TYPE.c.code).where(TICKET_TYPE.c.code == type_code)) is None:
        raise InvalidInput("type_code", f"unknown ticket type {type_code!r}")
    if region_id is not None:
        region_in_scope(session, region_id, actor.scope)
    elif actor.scope is not None:
        raise InvalidInput("region_id", "a rate for every region needs HQ; give one of your regions")
    if find_rate(session, type_code=type_code, region_id=region_id, valid_from=valid_from) is not None:
        raise InvalidInput("valid_from", f"a {type_code} rate from {valid_from} exists already there")
    rate = WorkRate(type_code=type_code, region_id=region_id, valid_from=valid_from, piece_rate=piece_rate,
                    standard_hours=standard_hours, created_by=actor.label)
    session.add(rate)
    session.flush()
    return rate


def find_rate(session: Session, *, type_code: str, region_id: int | None, valid_from: date) -> WorkRate | None:
    return session.scalar(select(WorkRate).where(
        WorkRate.type_code == type_code, WorkRate.valid_from == valid_from,
        WorkRate.region_id.is_(None) if region_id is None else WorkRate.region_id == region_id))


def add_holiday(session: Session, *, day: date, name: str) -> bool:
    """Put a day in the holiday calendar; False when it is there already."""
    if session.get(Holiday, day) is not None:
        return False
    session.add(Holiday(day=day, name=name))
    session.flush()
    return True


def list_rates(session: Session, *, actor: Actor) -> list[WorkRate]:
    visible = WorkRate.region_id.is_(None) | within(WorkRate.region_id, actor.scope)
    return list(session.scalars(select(WorkRate).where(visible).order_by(
        WorkRate.type_code, WorkRate.region_id.nulls_first(), WorkRate.valid_from)))


# --- work records ---------------------------------------------------------------

def record_work(session: Session, *, completion: Completion, cfg: WorkloadSettings, tz: str) -> WorkRecord:
    """Write the work record of a completed ticket, priced by the rate in force at completion."""
    zone = ZoneInfo(tz)
    completed_local = completion.completed_at.astimezone(zone)
    work_date = completed_local.date()
    rate = None if completion.visit else rate_in_force(session, type_code=completion.type_code,
                                                       region_id=completion.region_id, on=work_date)
    piece_rate = rate.piece_rate if rate else completion.type_piece_rate
    standard_hours = rate.standard_hours if rate else completion.type_standard_hours
    distance_m = round(haversine_m(completion.accepted_from, completion.site)) if completion.accepted_from else None
    clock = [completed_local] + ([completion.arrived_at.astimezone(zone)] if completion.arrived_at else [])
    night = pay.is_night(clock, cfg)
    holiday = session.get(Holiday, work_date) is not None
    factors = pay.Factors(night=cfg.night_factor if night else pay.ONE,
                          distance=pay.distance_factor(distance_m, cfg),
                          holiday=cfg.holiday_factor if holiday else pay.ONE, satisfaction=pay.ONE)
    points, amount = pay.points_and_pay(standard_hours=standard_hours, piece_rate=piece_rate, factors=factors)
    record = WorkRecord(
        ticket_id=completion.ticket_id, ticket_number=completion.ticket_number,
        technician_id=completion.technician_id, technician_name=completion.technician_name,
        type_code=completion.type_code, type_name=completion.type_name, region_id=completion.region_id,
        branch_id=completion.branch_id, work_date=work_date, accepted_at=completion.accepted_at,
        arrived_at=completion.arrived_at, completed_at=completion.completed_at, standard_hours=standard_hours,
        onsite_hours=pay.hours_between(completion.arrived_at, completion.completed_at),
        total_hours=pay.hours_between(completion.accepted_at, completion.completed_at), distance_m=distance_m,
        rate_id=rate.id if rate else None, piece_rate=piece_rate, night=night, holiday=holiday,
        night_factor=factors.night, distance_factor=factors.distance, holiday_factor=factors.holiday,
        satisfaction=None, satisfaction_factor=factors.satisfaction, points=points, pay=amount,
    )
    session.add(record)
    session.flush()
    return record


def _factors_of(record: WorkRecord, satisfaction_factor: Decimal) -> pay.Factors:
    return pay.Factors(night=record.night_factor, distance=record.distance_factor, holiday=record.holiday_factor,
                       satisfaction=satisfaction_factor)


def rate_visit(session: Session, *, ticket_id: int, satisfaction: int, actor_label: str, cfg: WorkloadSettings,
               now: datetime, tz: str) -> WorkRecord | None:
    """Apply the follow-up's rating to the visit's pay.

    In an open period the record itself is repriced; once its period is
    closed the record stays frozen and the difference is paid as an
    adjustment in the branch's next open period.
    """
    record = session.scalar(select(WorkRecord).where(WorkRecord.ticket_id == ticket_id).with_for_update())
    if record is None:
        return None  # completed before work records existed
    factor = pay.satisfaction_factor(satisfaction, cfg)
    points, amount = pay.points_and_pay(standard_hours=record.standard_hours, piece_rate=record.piece_rate,
                                        factors=_factors_of(record, factor))
    if not is_closed(session, branch_id=record.branch_id, month=month_of(record.work_date)):
        record.satisfaction, record.satisfaction_factor = satisfaction, factor
        record.points, record.pay = points, amount
    elif amount != record.pay:
        late_month = open_period_from(session, branch_id=record.branch_id,
                                      month=max(next_month(month_of(record.work_date)), month_of(local_date(now, tz))))
        session.add(Adjustment(
            kind=AdjustmentKind.SATISFACTION, branch_id=record.branch_id, region_id=record.region_id,
            period=late_month, technician_id=record.technician_id, technician_name=record.technician_name,
            work_record_id=record.id, amount=amount - record.pay, created_by=actor_label,
            reason=f"回访满意度 {satisfaction} 分（工单 {record.ticket_number}，所属月份已结账）"))
    session.flush()
    return record


def hours_since(technician_id: InstrumentedAttribute[int] | ColumnElement[int],
                since: date | BindParameter[date]) -> ScalarSelect[Decimal]:
    """Standard hours credited to the technician from `since` on (the fairness tie-break's labor hours),
    as a subquery, so a caller reads them in the statement that reads the technician."""
    return (select(func.coalesce(func.sum(WorkRecord.standard_hours), 0))
            .where(WorkRecord.technician_id == technician_id, WorkRecord.work_date >= since).scalar_subquery())


# --- periods and adjustments ---------------------------------------------------------

def is_closed(session: Session, *, branch_id: int, month: date) -> bool:
    return session.scalar(select(PayPeriod.id).where(PayPeriod.branch_id == branch_id,
                                                     PayPeriod.month == month)) is not None


def open_period_from(session: Session, *, branch_id: int, month: date) -> date:
    """The first month from `month` on that the branch has not closed."""
    closed = set(session.scalars(select(PayPeriod.month).where(PayPeriod.branch_id == branch_id,
                                                               PayPeriod.month >= month)))
    while month in closed:
        month = next_month(month)
    return month


def region_id_of(session: Session, ref: str) -> int:
    """A region by its code (XL) or id, as an operator types it.

    Raises: InvalidInput (no such region).
    """
    found = session.scalar(select(Region.id).where(
        (Region.code == ref) | (Region.id == int(ref) if ref.isdigit() else Region.code == ref)))
    if found is None:
        raise InvalidInput("region", f"no region {ref!r}")
    return found


def branch_of(session: Session, region_id: int) -> int:
    """Raises: InvalidInput (the whole company is no branch)."""
    steps = path_steps(session.execute(select(Region.path).where(Region.id == region_id)).scalar_one())
    if len(steps) < 2:
        raise InvalidInput("technician_id", "this technician belongs to no branch")
    return steps[1]


def add_adjustment(session: Session, *, actor: Actor, technician_id: int, amount: Decimal, reason: str,
                   month: date, work_record_id: int | None = None) -> Adjustment:
    """Add to or take from a technician's pay in a month of their branch, with the reason, audited.

    Raises:
        NotFound: the technician or record is outside the caller's regions.
        PeriodClosed: that month is closed for the branch.
    """
    if amount == 0:
        raise InvalidInput("amount", "an adjustment of zero changes nothing")
    technician = get_technician(session, technician_id, scope=actor.scope)
    region_id, branch_id = technician.region_id, branch_of(session, technician.region_id)
    if work_record_id is not None:
        record = session.scalar(select(WorkRecord).where(
            WorkRecord.id == work_record_id, WorkRecord.technician_id == technician.id))
        if record is None:
            raise InvalidInput("work_record_id", f"no work record {work_record_id} of technician {technician_id}")
        region_id, branch_id = record.region_id, record.branch_id
    month = month_of(month)
    if is_closed(session, branch_id=branch_id, month=month):
        later = open_period_from(session, branch_id=branch_id, month=month)
        raise PeriodClosed(f"{month:%Y-%m} is closed for this branch; adjust in {later:%Y-%m}",
                           month=f"{month:%Y-%m}", open_month=f"{later:%Y-%m}")
    adjustment = Adjustment(kind=AdjustmentKind.MANUAL, branch_id=branch_id, region_id=region_id, period=month,
                            technician_id=technician.id, technician_name=technician.name,
                            work_record_id=work_record_id, amount=amount, reason=reason, created_by=actor.label)
    session.add(adjustment)
    session.flush()
    return adjustment


def close_period(session: Session, *, actor: Actor, branch_id: int, month: date, now: datetime,
                 tz: str) -> PayPeriod:
    """Freeze a branch's month: its records and adjustments no longer change.

    Raises:
        InvalidInput: not a branch. NotFound: outside the caller's regions.
        PeriodNotOver: the month has not ended yet. PeriodClosed: closed already.
    """
    region = region_in_scope(session, branch_id, actor.scope)
    if region.kind is not RegionKind.BRANCH:
        raise InvalidInput("branch_id", f"region {branch_id} is not a branch")
    month = month_of(month)
    if next_month(month) > local_date(now, tz):
        raise PeriodNotOver(f"{month:%Y-%m} has not ended yet", month=f"{month:%Y-%m}")
    # The unique (branch, month) makes a concurrent second close fail instead of doubling.
    session.execute(select(Region.id).where(Region.id == branch_id).with_for_update())
    if is_closed(session, branch_id=branch_id, month=month):
        raise PeriodClosed(f"{month:%Y-%m} is closed already", month=f"{month:%Y-%m}")
    period = PayPeriod(branch_id=branch_id, month=month, closed_at=now, closed_by=actor.label)
    session.add(period)
    session.flush()
    return period


def list_periods(session: Session, *, actor: Actor) -> list[PayPeriod]:
    return list(session.scalars(select(PayPeriod).where(within(PayPeriod.branch_id, actor.scope))
                                .order_by(PayPeriod.month.desc(), PayPeriod.branch_id)))


# --- reports -------------------------------------------------------------------------

def report_scope(session: Session, *, actor: Actor, start: date, end: date, region_id: int | None,
                 cfg: WorkloadSettings) -> queries.Scope:
    """The lines a caller may read for this span and region.

    Raises: InvalidInput (bad span, unknown region), NotFound (region outside the caller's).
    """
    span = queries.Span.of(start, end, max_days=cfg.max_range_days)
    if region_id is not None:
        region_in_scope(session, region_id, actor.scope)
    return queries.Scope(span=span, regions=actor.scope, region_id=region_id)


def workload_rows(session: Session, *, scope: queries.Scope) -> list[dict[str, object]]:
    """Per technician: tickets, standard and on-site hours, points, pay (records plus adjustments)."""
    return [dict(row._mapping) for row in session.execute(queries.summary(scope))]


def export_workload(session: Session, *, actor: Actor, scope: queries.Scope, fmt: export.ExportFormat, detail: bool,
                    path: Path, tz: str, progress: export.Progress | None = None) -> None:
    """Write the workload sheet of a scope to `path`, streaming its lines; audited (pay data leaving the system)."""
    audit.record(session, action=AuditAction.WORKLOAD_EXPORTED, actor=actor, start=str(scope.span.start),
                 end=str(scope.span.end), region_id=scope.region_id, format=fmt, detail=detail)
    sheet = export.build_sheet(session, scope=scope, tz=tz, detail=detail,
                               flags_as_text=fmt is not export.ExportFormat.JSON,
                               summary=fmt is export.ExportFormat.XLSX or not detail)
    span = scope.span
    export.write(sheet, fmt=fmt, path=path, title=f"工作量 {span.start}..{span.end}",
                 created=datetime.combine(span.end, datetime.min.time()), progress=progress)


def export_size(session: Session, *, scope: queries.Scope) -> int:
    return int(session.execute(queries.detail_count(scope)).scalar_one())
