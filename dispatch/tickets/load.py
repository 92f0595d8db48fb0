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
from technicians import live
from technicians.models import Technician
from technicians.presence import ref_of
from workload.service import hours_by_technician

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
    active: dict[int | None, int] = {technician_id: count for technician_id, count in session.execute(
        select(Ticket.technician_id, func.count())
        .where(Ticket.technician_id.in_(ids), Ticket.state == TicketState.ACCEPTED).group_by(Ticket.technician_id))}
    # The period's labor hours are what its work records credit: a reassigned ticket counts for
    # whoever completed it, at the standard hours of the rate it was paid at.
    hours = hours_by_technician(session, ids, since=period_start(now, tz).date())
    try:
        for technician in session.scalars(select(Technician).where(Technician.id.in_(ids))):
            ref = ref_of(session, technician)
            if ref.branch_id is not None:
                live.set_load(redis, ref.keys, technician.id, active=active.get(technician.id, 0),
                              hours=float(hours.get(technician.id, 0)))
    except RedisError as exc:
        log.warning("load_refresh_skipped", technician_ids=sorted(ids), error=str(exc))
