"""Each technician's load as the nearest search sees it: active tickets and work done this period.

The live index keeps these as values so that the technicians layer never
reads tickets; this module recomputes them whenever a ticket changes hands.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import BindParameter, ColumnElement, ScalarSelect, bindparam, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from dispatch.tickets.models import Ticket, TicketState
from geo.models import Region
from technicians import live
from technicians.models import Technician
from technicians.presence import ref_at
from workload.service import hours_since

log = structlog.get_logger()


def period_start(now: datetime, tz: str) -> datetime:
    """The start of the pay period (the local calendar month) containing `now`."""
    local = now.astimezone(ZoneInfo(tz))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Load:
    """A technician's active tickets and hours this period, with their region's path (which branch's live
    index holds them)."""

    active: int
    hours: float
    region_path: str


def load_columns(technician_id: ColumnElement[int] | InstrumentedAttribute[int], *,
                 since: date | BindParameter[date]) -> tuple[ScalarSelect[int], ScalarSelect[Decimal]]:
    """A technician's active count and the labor hours from `since` (the period's start), as subqueries: a caller
    reads them in the statement it sends anyway.

    The period's labor hours are what its work records credit: a reassigned ticket counts for whoever
    completed it, at the standard hours of the rate it was paid at.
    """
    active = (select(func.count()).where(Ticket.technician_id == technician_id, Ticket.state == TicketState.ACCEPTED)
              .scalar_subquery())
    return active, hours_since(technician_id, since)


# What taking one more ticket reads of the taker, beside what the caller reads anyway, built once: grabs and the
# system's assignments read it on every ticket that changes hands. Bound by `taker`.
TAKER_LOAD: tuple[ScalarSelect[int], ScalarSelect[Decimal], ScalarSelect[str]] = (
    *load_columns(bindparam("taker_id"), since=bindparam("taker_since")),
    select(Region.path).where(Region.id == bindparam("taker_region_id")).scalar_subquery())


def taker(technician: Technician, *, now: datetime, tz: str) -> dict[str, Any]:
    """The parameters of `TAKER_LOAD` for this technician now."""
    return {"taker_id": technician.id, "taker_since": period_start(now, tz).date(),
            "taker_region_id": technician.region_id}


def after_one_more(held: int, worked: Decimal, region_path: str) -> Load:
    """The load once the ticket being taken counts: `held` and `worked` as `TAKER_LOAD` read them."""
    return Load(active=held + 1, hours=float(worked), region_path=region_path)


def refresh(session: Session, redis: Redis, technician_ids: Iterable[int | None], *, now: datetime,
            tz: str) -> None:
    """Push the current load of these technicians into the live index (best effort: it is a cache)."""
    ids = {t for t in technician_ids if t is not None}
    if not ids:
        return
    # One statement for all of it: every ticket that changes hands runs this.
    rows = session.execute(
        select(Technician, Region.path, *load_columns(Technician.id, since=period_start(now, tz).date()))
        .join(Region, Region.id == Technician.region_id).where(Technician.id.in_(ids))).all()
    for technician, path, count, hours in rows:
        push(redis, technician, Load(active=count, hours=float(hours), region_path=path))


def push(redis: Redis, technician: Technician, load: Load) -> None:
    """Put a load already read into the live index (best effort: it is a cache)."""
    ref = ref_at(technician, load.region_path)
    if ref.branch_id is None:
        return
    try:
        live.set_load(redis, ref.keys, technician.id, active=load.active, hours=load.hours)
    except RedisError as exc:
        log.warning("load_refresh_skipped", technician_ids=[technician.id], error=str(exc))
