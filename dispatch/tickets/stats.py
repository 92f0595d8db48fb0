"""Ticket statistics over a period of local dates, computed in SQL: counts, speed, SLA, timeouts, satisfaction.

A ticket belongs to the period it was reported in. Time to accept runs from
the report to the first grab or assignment (a later hand-back does not reset
it); time to complete from the report to the technician's completion. A
ticket counts towards an SLA once it was met or missed: taken or completed,
or still open past its due time.

Over time (`ticket_series`), for the console's charts: the same figures per local day of the period, or per
hour of the local day (0-23) summed over the period, with every bucket present (none reported: 0 tickets).

By H3 cell (`cell_stats`), for the console's heat map: the period's reports and their time to accept
where they were reported, beside the open tickets and the on-duty technicians where they are now.
"""

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any

from redis import Redis
from sqlalchemy import Float, Numeric, Select, and_, cast, exists, func, literal, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from dispatch.kernel.auth import Actor
from dispatch.tickets import queries
from dispatch.tickets.lifecycle import OPEN_STATES, Action
from dispatch.tickets.models import Ticket, TicketDecline, TicketEvent, TicketState
from dispatch.tickets.permissions import Viewer
from geo import hexgrid, regions
from geo.latlng import LatLng
from geo.models import Region
from technicians import presence
from technicians.models import Technician, TrackPoint
from workload.queries import Span

TAKING = (Action.GRAB, Action.ASSIGN, Action.SYSTEM_ASSIGN)
# From about 10 km edges (a county) to about 200 m (a few streets, the resolution tickets are stored at).
CELL_RES = range(5, 10)
SECONDS_PER_MINUTE = 60.0


@dataclass(frozen=True)
class Period:
    span: Span
    tz: str
    region_id: int | None


def local_midnight(day: Any, tz: str) -> ColumnElement[datetime]:
    # timezone(zone, timestamp without time zone) reads the wall clock in that zone: the period's
    # edges are local midnights, whatever the server's zone.
    return func.timezone(tz, literal(datetime.combine(day, time.min)))


def _base(actor: Actor, period: Period) -> Any:
    """One row per ticket of the period in the caller's scope, with its first acceptance and timeout flag."""
    # Correlated on the ticket_event.ticket_id index: only the period's tickets' events are read.
    accepted_at = (select(func.min(TicketEvent.at))
                   .where(TicketEvent.ticket_id == Ticket.id, TicketEvent.action.in_(TAKING)).scalar_subquery())
    timed_out = exists().where(TicketEvent.ticket_id == Ticket.id, or_(
        TicketEvent.action == Action.TIME_OUT, TicketEvent.to_state == TicketState.TIMED_OUT))
    query = (select(Ticket.id, Ticket.state, Ticket.type_code, Ticket.region_id, Ticket.technician_id,
                    Ticket.created_at, Ticket.completed_at, Ticket.response_due_at, Ticket.resolution_due_at,
                    Ticket.satisfaction, Ticket.urge_count, accepted_at.label("accepted_at"),
                    timed_out.label("timed_out"),
                    func.ST_Y(Ticket.location).label("lat"), func.ST_X(Ticket.location).label("lng"))
             .where(queries.visible_to(Viewer(actor=actor)),  # staff only: no technician's pool
                    Ticket.created_at >= local_midnight(period.span.start, period.tz),
                    Ticket.created_at < local_midnight(period.span.end_exclusive, period.tz)))
    if period.region_id is not None:
        query = query.where(regions.within(Ticket.region_id, (period.region_id,)))
    return query.cte("period_ticket")


def _minutes(later: Any, earlier: Any) -> ColumnElement[Any]:
    return func.extract("epoch", later - earlier) / SECONDS_PER_MINUTE


def _share(hit: ColumnElement[bool], among: ColumnElement[bool]) -> ColumnElement[Any]:
    """The share of `among` rows where `hit` holds; NULL when none qualify."""
    counted = func.count().filter(among)
    return cast(func.count().filter(and_(among, hit)), Float) / func.nullif(counted, 0)


def _metrics(t: Any) -> list[ColumnElement[Any]]:
    accept = _minutes(t.c.accepted_at, t.c.created_at)
    complete = _minutes(t.c.completed_at, t.c.created_at)
    now = func.now()
    return [
        func.count().label("tickets"),
        func.percentile_cont(0.5).within_group(accept).label("accept_median_min"),
        func.percentile_cont(0.9).within_group(accept).label("accept_p90_min"),
        func.percentile_cont(0.5).within_group(complete).label("complete_median_min"),
        func.percentile_cont(0.9).within_group(complete).label("complete_p90_min"),
        _share(t.c.accepted_at <= t.c.response_due_at,
               or_(t.c.accepted_at.isnot(None),
                   and_(t.c.response_due_at < now, t.c.state != TicketState.INVALID))
               ).label("response_sla_attainment"),
        _share(t.c.completed_at <= t.c.resolution_due_at,
               or_(t.c.completed_at.isnot(None),
                   and_(t.c.resolution_due_at < now, t.c.state != TicketState.INVALID))
               ).label("resolution_sla_attainment"),
        _share(t.c.timed_out, literal(True)).label("timeout_rate"),
        _share(t.c.state == TicketState.INVALID, literal(True)).label("invalid_rate"),
        cast(func.avg(t.c.satisfaction), Float).label("satisfaction_avg"),
        func.count(t.c.satisfaction).label("satisfaction_count"),
        func.coalesce(func.sum(t.c.urge_count), 0).label("urges"),
        _share(t.c.urge_count > 0, literal(True)).label("urged_rate"),
    ]


def _grouped(t: Any, *keys: Any) -> Select[Any]:
    return select(*keys, *_metrics(t)).group_by(*keys).order_by(*keys)


def ticket_stats(session: Session, *, actor: Actor, period: Period) -> dict[str, Any]:
    """Everything the console's statistics page shows for a period, overall and per type, grid and technician."""
    if period.region_id is not None:
        regions.region_in_scope(session, period.region_id, actor.scope)
    t = _base(actor, period)
    totals = session.execute(select(*_metrics(t))).one()._asdict()
    by_state: dict[str, int] = {str(state): count for state, count in
                                session.execute(select(t.c.state, func.count()).group_by(t.c.state))}
    by_type = session.execute(_grouped(t, t.c.type_code))
    by_region = session.execute(
        _grouped(t, t.c.region_id, Region.name).join_from(t, Region, Region.id == t.c.region_id))
    by_technician = session.execute(
        _grouped(t, t.c.technician_id, Technician.name).join_from(t, Technician, Technician.id == t.c.technician_id))
    return {
        "start": period.span.start, "end": period.span.end, "region_id": period.region_id, "timezone": period.tz,
        **totals, "by_state": by_state,
        "by_type": [row._asdict() for row in by_type], "by_region": [row._asdict() for row in by_region],
        "by_technician": [row._asdict() for row in by_technician],
        "declines": _declines(session, actor=actor, period=period),
    }


class Bucket(StrEnum):
    DAY = "day"
    HOUR = "hour"


HOURS_PER_DAY = 24


def _bucket_keys(bucket: Bucket, period: Period) -> list[str]:
    if bucket is Bucket.HOUR:
        return [f"{hour:02d}" for hour in range(HOURS_PER_DAY)]
    days = (period.span.end - period.span.start).days + 1
    return [(period.span.start + timedelta(days=n)).isoformat() for n in range(days)]


def _bucket_of(bucket: Bucket, created_at: Any, tz: str) -> ColumnElement[Any]:
    local = func.timezone(tz, created_at)  # timestamptz to the wall clock in tz: days and hours are local
    if bucket is Bucket.HOUR:
        return func.to_char(local, "HH24")
    return func.to_char(local, "YYYY-MM-DD")


def ticket_series(session: Session, *, actor: Actor, period: Period, bucket: Bucket) -> list[dict[str, Any]]:
    """The statistics of each bucket of the period (local days, or hours of the local day), oldest first,
    every bucket present: a day or hour with no report has 0 tickets and no times.

    Raises:
        NotFound: region_id is not one of the caller's regions.
    """
    if period.region_id is not None:
        regions.region_in_scope(session, period.region_id, actor.scope)
    t = _base(actor, period)
    key = _bucket_of(bucket, t.c.created_at, period.tz).label("bucket")
    found = {row.bucket: row._asdict() for row in session.execute(_grouped(t, key))}
    # A bucket nobody reported in: counts 0, times and shares unknown (null), as /stats says of an empty period.
    empty = {column.name: None for column in _metrics(t)} | {"tickets": 0, "satisfaction_count": 0, "urges": 0}
    return [found.get(name) or {**empty, "bucket": name} for name in _bucket_keys(bucket, period)]
def _declines(session: Session, *, actor: Actor, period: Period) -> dict[str, Any]:
    """System assignments declined in the period (by when they were declined) on tickets in the caller's scope:
    counts by reason code, overall, per branch and per technician."""
    query = (select(TicketDecline.reason_code, TicketDecline.branch_id, Region.name, TicketDecline.technician_id,
                    Technician.name, func.count())
             .join(Ticket, Ticket.id == TicketDecline.ticket_id)
             .join(Region, Region.id == TicketDecline.branch_id)
             .join(Technician, Technician.id == TicketDecline.technician_id)
             .where(queries.visible_to(Viewer(actor=actor)),
                    TicketDecline.at >= local_midnight(period.span.start, period.tz),
                    TicketDecline.at < local_midnight(period.span.end_exclusive, period.tz))
             .group_by(TicketDecline.reason_code, TicketDecline.branch_id, Region.name, TicketDecline.technician_id,
                       Technician.name))
    if period.region_id is not None:
        query = query.where(regions.within(Ticket.region_id, (period.region_id,)))
    total: Counter[str] = Counter()
    branches: dict[tuple[int, str], Counter[str]] = defaultdict(Counter)
    technicians: dict[tuple[int, str], Counter[str]] = defaultdict(Counter)
    for reason, branch_id, branch, technician_id, technician, count in session.execute(query):
        total[reason] += count
        branches[(branch_id, branch)][reason] += count
        technicians[(technician_id, technician)][reason] += count
    return {**_decline_counts(total),
            "by_branch": [{"branch_id": i, "name": name, **_decline_counts(counts)}
                          for (i, name), counts in sorted(branches.items())],
            "by_technician": [{"technician_id": i, "name": name, **_decline_counts(counts)}
                              for (i, name), counts in sorted(technicians.items())]}


def _decline_counts(counts: Counter[str]) -> dict[str, Any]:
    return {"total": sum(counts.values()), "by_reason": {str(reason): n for reason, n in sorted(counts.items())}}


@dataclass(frozen=True)
class CellStats:
    cell: str
    centre: LatLng
    boundary: list[LatLng]
    reports: int
    open: int
    on_duty: int
    present: int
    accept_median_min: float | None


def cell_stats(session: Session, redis: Redis, *, actor: Actor, period: Period, res: int,
               hour: int | None = None) -> list[CellStats]:
    """Per H3 cell at `res` (the cell each point lies in), in the caller's regions: the period's reports (those
    of one local hour of each day when `hour` is given) and their median time to accept, the tickets open now
    and the on-duty technicians where the live index has them; only cells where one of these is not zero, by
    cell id.

    Raises:
        NotFound: region_id is not one of the caller's regions.
    """
    scope = actor.scope
    if period.region_id is not None:
        regions.region_in_scope(session, period.region_id, actor.scope)
        scope = (period.region_id,)
    t = _base(actor, period)
    reports: Counter[str] = Counter()
    accept: defaultdict[str, list[float]] = defaultdict(list)
    reported = select(t.c.lat, t.c.lng, _minutes(t.c.accepted_at, t.c.created_at))
    if hour is not None:
        reported = reported.where(func.extract("hour", func.timezone(period.tz, t.c.created_at)) == hour)
    for lat, lng, minutes in session.execute(reported):
        cell = hexgrid.cell_of(LatLng(lat, lng), res)
        reports[cell] += 1
        if minutes is not None:
            accept[cell].append(float(minutes))
    open_now = Counter(hexgrid.cell_of(LatLng(lat, lng), res) for lat, lng in session.execute(
        select(func.ST_Y(Ticket.location), func.ST_X(Ticket.location))
        .where(regions.within(Ticket.region_id, scope), Ticket.state.in_(OPEN_STATES))))
    on_duty = Counter(hexgrid.cell_of(t.point, res) for t in presence.on_duty(session, redis, scope=scope))
    present = _present(session, scope=scope, period=period, hour=hour, res=res)
    return [CellStats(cell=cell, centre=hexgrid.cell_center(cell), boundary=hexgrid.cell_boundary(cell),
                      reports=reports[cell], open=open_now[cell], on_duty=on_duty[cell], present=len(present[cell]),
                      accept_median_min=statistics.median(accept[cell]) if accept[cell] else None)
            for cell in sorted(reports.keys() | open_now.keys() | on_duty.keys() | present.keys())]


# Track samples rounded to this many decimal degrees (about 100 m) before they are placed in cells: a technician
# waiting on site leaves hundreds of samples, one place.
TRACK_ROUNDING = 3


def _present(session: Session, *, scope: tuple[int, ...] | None, period: Period, hour: int | None,
             res: int) -> defaultdict[str, set[int]]:
    """The technicians in scope whose sampled track lay in each cell during the period (that local hour of each
    day when `hour` is given): the supply of the time the heat map's slider shows, where "on duty" is now."""
    lat = func.round(cast(func.ST_Y(TrackPoint.location), Numeric), TRACK_ROUNDING)
    lng = func.round(cast(func.ST_X(TrackPoint.location), Numeric), TRACK_ROUNDING)
    samples = (select(TrackPoint.technician_id, lat, lng).distinct()
               .join(Technician, Technician.id == TrackPoint.technician_id)
               .where(regions.within(Technician.region_id, scope),
                      TrackPoint.at >= local_midnight(period.span.start, period.tz),
                      TrackPoint.at < local_midnight(period.span.end_exclusive, period.tz)))
    if hour is not None:
        samples = samples.where(func.extract("hour", func.timezone(period.tz, TrackPoint.at)) == hour)
    present: defaultdict[str, set[int]] = defaultdict(set)
    for technician_id, at_lat, at_lng in session.execute(samples):
        present[hexgrid.cell_of(LatLng(float(at_lat), float(at_lng)), res)].add(technician_id)
    return present
