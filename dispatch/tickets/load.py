"""Each technician's load as the nearest search sees it: active tickets and work done this period.

The live index keeps these as values so that the technicians layer never
reads tickets; this module recomputes them whenever a ticket changes hands.
"""

from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

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


def refresh(session: Session, redis: Redis, technician_ids: Iterable[int | None], *, now: datetime,
            tz: str) -> None:
    """Push the current load of these technicians into the live index (best effort: it is a cache)."""
    ids = {t for t in technician_ids if t is not None}
    if not ids:
        return
    active = (select(func.count()).where(Ticket.technician_id == Technician.id, Ticket.state == TicketState.ACCEPTED)
              .scalar_subquery())
    # The period's labor hours are what its work records credit: a reassigned ticket counts for
    # whoever completed it, at the standard hours of the rate it was paid at. One statement for all
    # of it: every ticket that changes hands runs this.
    rows = session.execute(
        select(Technician, Region.path, active, hours_since(Technician.id, period_start(now, tz).date()))
        .join(Region, Region.id == Technician.region_id).where(Technician.id.in_(ids))).all()
    try:
        for technician, path, count, hours in rows:
            ref = ref_at(technician, path)
            if ref.branch_id is not None:
                live.set_load(redis, ref.keys, technician.id, active=count, hours=float(hours))
    except RedisError as exc:
        log.warning("load_refresh_skipped", technician_ids=sorted(ids), error=str(exc))
