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
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from dispatch.tickets.models import Ticket, TicketState, TicketType
from technicians import live
from technicians.models import Technician
from technicians.presence import ref_of

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
    since = period_start(now, tz)
    done = Ticket.completed_at >= since
    rows = session.execute(
        select(Ticket.technician_id,
               func.count().filter(Ticket.state == TicketState.ACCEPTED),
               func.coalesce(func.sum(case((done, TicketType.standard_hours), else_=0)), 0))
        .join(TicketType, TicketType.code == Ticket.type_code)
        .where(Ticket.technician_id.in_(ids)).group_by(Ticket.technician_id))
    loads = {tid: (active, float(hours)) for tid, active, hours in rows}
    try:
        for technician in session.scalars(select(Technician).where(Technician.id.in_(ids))):
            ref = ref_of(session, technician)
            if ref.branch_id is not None:
                active, hours = loads.get(technician.id, (0, 0.0))
                live.set_load(redis, ref.keys, technician.id, active=active, hours=hours)
    except RedisError as exc:
        log.warning("load_refresh_skipped", technician_ids=sorted(ids), error=str(exc))
