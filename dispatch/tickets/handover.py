"""A ticket changing hands, whoever moves it (a grab, a dispatcher, the system): what follows in the pool,
the offers and the technicians' loads."""

from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from dispatch.kernel.settings import Settings
from dispatch.tickets import load, mirror, offers
from dispatch.tickets.lifecycle import GRABBABLE
from dispatch.tickets.models import Ticket
from geo.latlng import LatLng
from technicians import live
from technicians.models import Technician


def whereabouts(redis: Redis, ticket: Ticket, technician_id: int) -> LatLng | None:
    """Where the technician taking the ticket is now, kept on the event: travel is paid from there."""
    try:
        return live.position(redis, live.LiveKeys.of(ticket.branch_id), technician_id)
    except RedisError:
        return None


def after_handover(session: Session, redis: Redis, ticket: Ticket, *, settings: Settings,
                   taken_by: int | None, also: int | None = None,
                   taken_load: tuple[Technician, load.Load] | None = None) -> None:
    """The ticket changed hands: offers end (or rings resume), the pool and both technicians' loads follow.

    `taken_load`: the new holder's load as the caller already read it (a grab), so not read again.
    """
    mirror.mirror(session, redis, ticket)
    now = datetime.now(UTC)
    if ticket.state in GRABBABLE:
        ticket.next_ring_at = now  # back in the pool: the sweep offers the next ring at once
        session.flush()
    else:
        offers.close_offers(session, ticket, taken_by=taken_by)
    if taken_load is not None:
        load.push(redis, *taken_load)
        taken_by = None
    load.refresh(session, redis, [taken_by, also], now=now, tz=settings.timezone)
