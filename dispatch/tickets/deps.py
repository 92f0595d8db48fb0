from typing import Annotated

from fastapi import Depends, Path

from dispatch.kernel.auth import ActorDep
from dispatch.kernel.db import SessionDep
from dispatch.kernel.inputs import Id
from dispatch.kernel.problems import raises
from dispatch.tickets import service
from dispatch.tickets.errors import TicketNotFound
from dispatch.tickets.models import Ticket


@raises(TicketNotFound)
def ticket_in_scope(ticket_id: Annotated[Id, Path()], actor: ActorDep, session: SessionDep) -> Ticket:
    return service.get_ticket(session, ticket_id, actor=actor)


TicketInScope = Annotated[Ticket, Depends(ticket_in_scope)]
