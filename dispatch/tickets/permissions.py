"""Who may see a ticket, and how much of it, and who may add to it: named policies the routers depend on.

PRODUCT.md: staff see the tickets of their regions, subscribers their own
reports, technicians the pool within their grab scope and their own tickets.
A technician reads a pooled ticket without the subscriber's name and phone
(where and what is enough to decide on a grab) until they hold it.
"""

from dataclasses import dataclass

from sqlalchemy.orm import Session

from dispatch.kernel.auth import Actor, Role
from dispatch.kernel.errors import Forbidden
from dispatch.tickets.errors import NotYourTicket
from dispatch.tickets.lifecycle import Action, target_state
from dispatch.tickets.models import Ticket
from technicians.models import Technician
from technicians.presence import TechnicianRef
from technicians.service import technician_of, technician_ref

# Staff who act on tickets; payroll and managers only read them (PRODUCT.md's "who uses it").
ATTACHING_STAFF = frozenset({Role.ADMIN, Role.DISPATCHER, Role.CLERK})
# Who assigns, retypes, reprioritises and marks what goes first.
MANAGERS = frozenset({Role.ADMIN, Role.DISPATCHER})


def require(actor: Actor, roles: frozenset[Role], doing: str) -> None:
    """Raises: Forbidden (the actor's role is not among `roles`)."""
    if actor.role not in roles:
        raise Forbidden(f"a {actor.role} may not {doing}", required=sorted(roles))


def require_manager(actor: Actor, doing: str) -> None:
    """Raises: Forbidden (not a dispatcher or admin)."""
    require(actor, MANAGERS, doing)


@dataclass(frozen=True)
class Viewer:
    """The caller reading tickets; a technician's reads also depend on their technician record (grab scope)."""

    actor: Actor
    technician: TechnicianRef | None = None

    def holds(self, ticket: Ticket) -> bool:
        """The ticket is this technician's: held now, or worked and completed (or invalidated in their hands)."""
        return self.technician is not None and ticket.technician_id == self.technician.id

    def sees_in_full(self, ticket: Ticket) -> bool:
        """Contact and the steps' notes; a technician sees them only on tickets they hold."""
        return self.actor.role is not Role.TECHNICIAN or self.holds(ticket)


def viewer_of(session: Session, actor: Actor) -> Viewer:
    """Raises: NotATechnician (a technician log-in without an active technician record)."""
    if actor.role is Role.TECHNICIAN:
        return Viewer(actor=actor, technician=technician_ref(session, actor))
    return Viewer(actor=actor)


def require_attach(viewer: Viewer, ticket: Ticket) -> None:
    """Files go on a ticket only from those who act on it: its reporter, its technician, acting staff.

    Raises: NotYourTicket (another technician), Forbidden (any other role).
    """
    role = viewer.actor.role
    if role is Role.TECHNICIAN:
        if not viewer.holds(ticket):
            raise NotYourTicket(f"ticket {ticket.number} is not assigned to you")
    elif role is Role.SUBSCRIBER:
        if ticket.subscriber_id != viewer.actor.id:
            raise Forbidden(f"ticket {ticket.number} is not your report")
    elif role not in ATTACHING_STAFF:
        raise Forbidden(f"a {role} may not attach files to tickets",
                        required=sorted([*ATTACHING_STAFF, Role.SUBSCRIBER, Role.TECHNICIAN]))


def require_holder(session: Session, ticket: Ticket, actor: Actor, action: Action) -> Technician:
    """The calling technician, when they hold the ticket and the action is allowed from its state.

    Raises: InvalidTransition, NotATechnician, NotYourTicket.
    """
    # The state is checked first: "cannot complete a pending ticket" says more
    # than "not yours" when nobody holds it.
    target_state(ticket, action)
    technician = technician_of(session, actor)
    if ticket.technician_id != technician.id:
        raise NotYourTicket(f"ticket {ticket.number} is not assigned to you")
    return technician
