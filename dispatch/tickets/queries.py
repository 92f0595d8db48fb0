"""Who may see which tickets, as SQL conditions (filtering happens in the query, never after)."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Select, and_, case, false, func, or_, select, tuple_
from sqlalchemy.sql.elements import ColumnElement

from dispatch.kernel.auth import Role
from dispatch.kernel.pagination import PageParams
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
    DUE = "due"  # P1 first, the least time left within a level: the dispatcher's order


def priority_rank(level: Priority) -> int:
    """A priority's place in the priority order: 1 for P1 .. 4 for P4."""
    return int(level.value[1:])


# The deadline a ticket races: the response SLA until someone holds it, then the resolution SLA.
due_at = case((Ticket.state.in_((TicketState.PENDING, TicketState.TIMED_OUT)), Ticket.response_due_at),
              else_=Ticket.resolution_due_at)


def due_of(state: TicketState, *, response_due_at: datetime, resolution_due_at: datetime) -> datetime:
    """`due_at` of one ticket read, for its cursor."""
    return response_due_at if state in (TicketState.PENDING, TicketState.TIMED_OUT) else resolution_due_at


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def matching(viewer: Viewer, term: str) -> ColumnElement[bool]:
    """Number, address or the subscriber's phone containing the term (trigram indexes serve each).

    A technician's search skips the phone: the pool hides who reported, so it must not answer who did."""
    pattern = _like(term)
    found = [Ticket.number.ilike(pattern), Ticket.address.ilike(pattern)]
    if viewer.actor.role is not Role.TECHNICIAN:
        found.append(Ticket.contact_phone.like(pattern))
    # Matched first, then scoped: left to itself the planner walks the branch's every ticket through the
    # region index and tests each (0.7 s for 130 000), where the trigram indexes find a few at once (30-90 ms).
    matches = select(Ticket.id).where(or_(*found)).cte("matches").prefix_with("MATERIALIZED")
    return Ticket.id.in_(select(matches.c.id))


@dataclass(frozen=True)
class TicketFilter:
    """What a list of tickets is narrowed to; every field optional."""

    state: TicketState | None = None
    type_code: str | None = None
    region_id: int | None = None
    technician_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    sla: SlaStatus | None = None
    priority: Priority | None = None
    q: str | None = None

    def where(self, viewer: Viewer) -> list[ColumnElement[bool]]:
        conditions = [visible_to(viewer)]
        if self.state is not None:
            conditions.append(Ticket.state == self.state)
        if self.priority is not None:
            conditions.append(Ticket.priority == self.priority)
        if self.sla is not None:
            conditions.append(sla_status(self.sla))
        if self.type_code is not None:
            conditions.append(Ticket.type_code == self.type_code)
        if self.region_id is not None:
            conditions.append(regions.within(Ticket.region_id, (self.region_id,)))
        if self.technician_id is not None:
            conditions.append(Ticket.technician_id == self.technician_id)
        if self.created_from is not None:
            conditions.append(Ticket.created_at >= self.created_from)
        if self.created_to is not None:
            conditions.append(Ticket.created_at < self.created_to)
        if self.q:
            conditions.append(matching(viewer, self.q))
        return conditions


def ticket_count(viewer: Viewer, found: TicketFilter) -> Select[int]:
    """How many tickets the filter matches, in all pages."""
    return select(func.count()).select_from(Ticket).where(*found.where(viewer))


def ticket_list(viewer: Viewer, found: TicketFilter, *, page: PageParams,
                order: TicketOrder = TicketOrder.NEWEST) -> Select[Ticket]:
    """Newest first, by priority then newest, or by priority then time left; keyset on (rank, due,) id so a page
    never shifts while tickets arrive. Fetches `limit + 1` rows: the extra one says another page exists."""
    query = select(Ticket).where(*found.where(viewer))
    after_id = page.after_id
    if order is TicketOrder.DUE:
        if after_id is not None and page.after_at is not None:
            last = Priority(f"P{page.after_rank}")
            query = query.where(tuple_(Ticket.priority, due_at, Ticket.id) > tuple_(last, page.after_at, after_id))
        return query.order_by(Ticket.priority, due_at, Ticket.id).limit(page.limit + 1)
    if order is TicketOrder.PRIORITY:
        if after_id is not None:
            last = Priority(f"P{page.after_rank}")
            query = query.where((Ticket.priority > last) | ((Ticket.priority == last) & (Ticket.id < after_id)))
        return query.order_by(Ticket.priority, Ticket.id.desc()).limit(page.limit + 1)
    if after_id is not None:
        query = query.where(Ticket.id < after_id)
    return query.order_by(Ticket.id.desc()).limit(page.limit + 1)
