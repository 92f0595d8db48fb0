"""The workload sheet's SQL: per-technician totals and the line-by-line detail, over one span of local dates.

A line is a work record (by its local completion date) or an adjustment (by
the month it is paid in: counted when that month's first day is in the span).
"""

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Numeric, Select, String, case, cast, false, func, literal, null, select, union_all
from sqlalchemy.sql.elements import ColumnElement

from dispatch.kernel.errors import InvalidInput
from geo.models import Region
from geo.regions import within
from workload.models import MONEY, Adjustment, WorkRecord

# Typed, so that a technician without adjustments sums to 0.00 like any money.
ZERO = cast(literal(0), MONEY)


@dataclass(frozen=True)
class Span:
    """Local dates, both ends included."""

    start: date
    end: date

    @classmethod
    def of(cls, start: date, end: date, *, max_days: int) -> "Span":
        """Raises: InvalidInput (`from` after `to`, or longer than allowed)."""
        if start > end:
            raise InvalidInput("from", f"from ({start}) is after to ({end})")
        if (end - start).days + 1 > max_days:
            raise InvalidInput("to", f"at most {max_days} days from..to")
        return cls(start, end)

    @property
    def end_exclusive(self) -> date:
        return self.end + timedelta(days=1)


@dataclass(frozen=True)
class Scope:
    """Whose lines: a span, the caller's regions (None: all) and an optional region filter."""

    span: Span
    regions: tuple[int, ...] | None
    region_id: int | None = None

    def records(self) -> list[ColumnElement[bool]]:
        return [WorkRecord.work_date >= self.span.start, WorkRecord.work_date <= self.span.end,
                *self._regions(WorkRecord.region_id)]

    def adjustments(self) -> list[ColumnElement[bool]]:
        return [Adjustment.period >= self.span.start, Adjustment.period <= self.span.end,
                *self._regions(Adjustment.region_id)]

    def _regions(self, column: Any) -> list[ColumnElement[bool]]:
        conditions = [within(column, self.regions)]
        if self.region_id is not None:
            conditions.append(within(column, (self.region_id,)))
        return conditions


def summary(scope: Scope) -> Select[Any]:
    """One row per technician: tickets, hours, points, the records' pay, adjustments and the total."""
    records = select(
        WorkRecord.technician_id.label("technician_id"), WorkRecord.technician_name.label("name"),
        literal(1).label("tickets"), WorkRecord.standard_hours.label("standard_hours"),
        WorkRecord.onsite_hours.label("actual_hours"), WorkRecord.points.label("points"),
        WorkRecord.pay.label("record_pay"), ZERO.label("adjustments"),
    ).where(*scope.records())
    adjustments = select(
        Adjustment.technician_id, Adjustment.technician_name, ZERO, ZERO, ZERO, ZERO, ZERO, Adjustment.amount,
    ).where(*scope.adjustments())
    lines = union_all(records, adjustments).subquery()
    return (select(lines.c.technician_id, func.max(lines.c.name).label("name"),
                   func.sum(lines.c.tickets).label("tickets"), func.sum(lines.c.standard_hours).label("standard_hours"),
                   func.sum(lines.c.actual_hours).label("actual_hours"), func.sum(lines.c.points).label("points"),
                   func.sum(lines.c.record_pay).label("record_pay"),
                   func.sum(lines.c.adjustments).label("adjustments"),
                   (func.sum(lines.c.record_pay) + func.sum(lines.c.adjustments)).label("pay"))
            .group_by(lines.c.technician_id).order_by(lines.c.technician_id))


def detail(scope: Scope, tz: str, *, flags_as_text: bool) -> Select[Any]:
    """Every line, local times to the second without offset (as a sheet shows them), by technician and time.

    `flags_as_text`: night and holiday as 是/否, the way a sheet reads them (else booleans, for BI).
    """

    def local(column: Any) -> ColumnElement[Any]:
        return func.date_trunc("second", func.timezone(tz, column))

    def flag(column: Any) -> ColumnElement[Any]:
        return case((column, "是"), else_="否") if flags_as_text else column

    factor = (WorkRecord.night_factor * WorkRecord.distance_factor * WorkRecord.holiday_factor
              * WorkRecord.satisfaction_factor)
    records = (select(
        WorkRecord.technician_id.label("technician_id"), WorkRecord.technician_name.label("technician_name"),
        literal("工单").label("kind"), WorkRecord.work_date.label("work_date"),
        WorkRecord.ticket_number.label("ticket_number"), Region.name.label("region_name"),
        WorkRecord.type_name.label("type_name"), local(WorkRecord.accepted_at).label("accepted_at"),
        local(WorkRecord.arrived_at).label("arrived_at"), local(WorkRecord.completed_at).label("completed_at"),
        WorkRecord.standard_hours.label("standard_hours"), WorkRecord.onsite_hours.label("onsite_hours"),
        WorkRecord.total_hours.label("total_hours"),
        func.round(cast(WorkRecord.distance_m, Numeric) / 1000, 2).label("distance_km"),
        flag(WorkRecord.night).label("night"), flag(WorkRecord.holiday).label("holiday"),
        WorkRecord.satisfaction.label("satisfaction"), WorkRecord.piece_rate.label("piece_rate"),
        func.round(factor, 4).label("factor"), WorkRecord.points.label("points"), WorkRecord.pay.label("pay"),
        literal("").label("note"), WorkRecord.completed_at.label("sort_at"), WorkRecord.id.label("sort_id"))
        .join(Region, Region.id == WorkRecord.region_id).where(*scope.records()))
    adjustments = (select(
        Adjustment.technician_id, Adjustment.technician_name, literal("调整"), Adjustment.period,
        func.coalesce(WorkRecord.ticket_number, ""), Region.name, literal(""), null(), null(), null(),
        null(), null(), null(), null(), flag(false()), flag(false()), null(), null(), null(), null(),
        Adjustment.amount, cast(Adjustment.reason, String), Adjustment.created_at, Adjustment.id)
        .join(Region, Region.id == Adjustment.region_id)
        .outerjoin(WorkRecord, WorkRecord.id == Adjustment.work_record_id).where(*scope.adjustments()))
    lines = union_all(records, adjustments).subquery()
    return (select(*[c for c in lines.c if not c.name.startswith("sort_")])
            .order_by(lines.c.technician_id, lines.c.sort_at, lines.c.kind, lines.c.sort_id))


def detail_count(scope: Scope) -> Select[Any]:
    """How many lines `detail` yields (for a progress bar)."""
    return select(
        select(func.count()).select_from(WorkRecord).where(*scope.records()).scalar_subquery()
        + select(func.count()).select_from(Adjustment).where(*scope.adjustments()).scalar_subquery())
