from typing import Annotated

from fastapi import Depends, Path
from starlette.concurrency import run_in_threadpool

from dispatch.kernel.auth import ActorDep, Role
from dispatch.kernel.db import SessionDep
from dispatch.kernel.inputs import Id
from dispatch.kernel.problems import raises
from dispatch.tickets import permissions, service
from dispatch.tickets.errors import TicketNotFound
from dispatch.tickets.models import Ticket
from dispatch.tickets.permissions import Viewer
from technicians.service import cached_ref


async def viewer(actor: ActorDep, session: SessionDep) -> Viewer:
    """Async: staff, and a technician whose grab scope this process remembers, cost no thread."""
    if actor.role is not Role.TECHNICIAN:
        return Viewer(actor=actor)
    ref = cached_ref(actor.id)
    if ref is not None:
        return Viewer(actor=actor, technician=ref)
    return await run_in_threadpool(permissions.viewer_of, session, actor)


ViewerDep = Annotated[Viewer, Depends(viewer)]


@raises(TicketNotFound)
def ticket_in_scope(ticket_id: Annotated[Id, Path()], viewer: ViewerDep, session: SessionDep) -> Ticket:
    return service.get_ticket(session, ticket_id, viewer=viewer)


TicketInScope = Annotated[Ticket, Depends(ticket_in_scope)]


async def attachable_ticket(ticket: TicketInScope, viewer: ViewerDep) -> Ticket:
    permissions.require_attach(viewer, ticket)
    return ticket


AttachableTicket = Annotated[Ticket, Depends(attachable_ticket)]
