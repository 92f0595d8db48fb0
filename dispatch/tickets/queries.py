"""Who may see which tickets, as SQL conditions (filtering happens in the query, never after)."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from dispatch.kernel.auth import Actor, Role
from dispatch.tickets.models import Ticket, TicketState
from geo import regions
from technicians.models import Technician


class SlaStatus(StrEnum):
    BREACHED = "breached"  # timed out, or accepted past its resolution SLA: red on the console
    WARNED = "warned"  # warned and not breached yet: due soon


def sla_status(status: SlaStatus) -> ColumnElement[bool]:
    """Open tickets in the given SLA status, as the console lists them."""
    pending, accepted = Ticket.state == TicketState.PENDING, Ticket.state == TicketState.ACCEPTED
    if status is SlaStatus.BREACHED:
        return or_(Ticket.state == TicketState.TIMED_OUT, and_(accepted, Ticket.sla_breached_at.is_not(None)))
    return or_(and_(pending, Ticket.response_warned_at.is_not(None)),
               and_(accepted, Ticket.sla_breached_at.is_(None), Ticket.resolution_warned_at.is_not(None)))


def visible_to(actor: Actor) -> ColumnElement[bool]:
    """Staff and API keys see their regions; technicians their grab scope and own tickets;
    subscribers only their own reports."""
    if actor.role is Role.SUBSCRIBER:
        return Ticket.subscriber_id == actor.id
    in_regions = regions.within(Ticket.region_id, actor.scope)
    if actor.role is Role.TECHNICIAN:
        mine = Ticket.technician_id.in_(select(Technician.id).where(Technician.user_id == actor.id))
        return or_(in_regions, mine)
    return in_regions


def ticket_list(actor: Actor, *, state: TicketState | None, type_code: str | None, region_id: int | None,
                technician_id: int | None, created_from: datetime | None, created_to: datetime | None,
                after_id: int | None, limit: int, sla: SlaStatus | None = None) -> Select[Ticket]:
    """Newest first; keyset on id so a page never shifts while tickets arrive."""
    query = select(Ticket).where(visible_to(actor))
    if state is not None:
        query = query.where(Ticket.state == state)
    if sla is not None:
        query = query.where(sla_status(sla))
    if type_code is not None:
        query = query.where(Ticket.type_code == type_code)
    if region_id is not None:
        query = query.where(regions.within(Ticket.region_id, (region_id,)))
    if technician_id is not None:
        query = query.where(Ticket.technician_id == technician_id)
    if created_from is not None:
        query = query.where(Ticket.created_at >= created_from)
    if created_to is not None:
        query = query.where(Ticket.created_at < created_to)
    if after_id is not None:
        query = query.where(Ticket.id < after_id)
    return query.order_by(Ticket.id.desc()).limit(limit)
