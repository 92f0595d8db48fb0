"""Who may see which tickets, as SQL conditions (filtering happens in the query, never after)."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Select, and_, false, or_, select
from sqlalchemy.sql.elements import ColumnElement

from dispatch.kernel.auth import Role
from dispatch.tickets.lifecycle import GRABBABLE
from dispatch.tickets.models import Priority, Ticket, TicketState
from dispatch.tickets.permissions import Viewer
from geo import regions
from geo.models import Region
from technicians.presence import TechnicianRef


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


def in_pool_of(technician: TechnicianRef) -> ColumnElement[bool]:
    """Grabbable tickets in the technician's grab scope: what the pool lists to them and may offer them."""
    if technician.branch_id is None:
        return false()  # bound to the whole company: dispatchers assign them, no branch pool is theirs
    return and_(Ticket.state.in_(GRABBABLE), Ticket.branch_id == technician.branch_id,
                Ticket.region_id.in_(select(Region.id).where(Region.path.startswith(technician.scope_path))))


def visible_to(viewer: Viewer) -> ColumnElement[bool]:
    """Staff and API keys see their regions; technicians their pool and their own tickets (anything else,
    another's work in progress included, is not found); subscribers only their own reports."""
    actor = viewer.actor
    if actor.role is Role.SUBSCRIBER:
        return Ticket.subscriber_id == actor.id
    if actor.role is Role.TECHNICIAN:
        if viewer.technician is None:
            return false()
        return or_(Ticket.technician_id == viewer.technician.id, in_pool_of(viewer.technician))
    return regions.within(Ticket.region_id, actor.scope)


class TicketOrder(StrEnum):
    NEWEST = "newest"
    PRIORITY = "priority"  # P1 first, newest first within a level


def priority_rank(level: Priority) -> int:
    """A priority's place in the priority order: 1 for P1 .. 4 for P4."""
    return int(level.value[1:])


def ticket_list(viewer: Viewer, *, state: TicketState | None, type_code: str | None, region_id: int | None,
                technician_id: int | None, created_from: datetime | None, created_to: datetime | None,
                after_id: int | None, limit: int, sla: SlaStatus | None = None, priority: Priority | None = None,
                order: TicketOrder = TicketOrder.NEWEST, after_rank: int | None = None) -> Select[Ticket]:
    """Newest first, or by priority then newest; keyset on (rank,) id so a page never shifts while tickets
    arrive."""
    query = select(Ticket).where(visible_to(viewer))
    if state is not None:
        query = query.where(Ticket.state == state)
    if priority is not None:
        query = query.where(Ticket.priority == priority)
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
    if order is TicketOrder.PRIORITY:
        if after_id is not None:
            last = Priority(f"P{after_rank}")
            query = query.where((Ticket.priority > last) | ((Ticket.priority == last) & (Ticket.id < after_id)))
        return query.order_by(Ticket.priority, Ticket.id.desc()).limit(limit)
    if after_id is not None:
        query = query.where(Ticket.id < after_id)
    return query.order_by(Ticket.id.desc()).limit(limit)
