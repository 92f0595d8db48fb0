from typing import Annotated

from fastapi import Depends, Path

from dispatch.kernel.auth import ActorDep
from dispatch.kernel.db import SessionDep
from dispatch.tickets import service
from dispatch.tickets.models import Ticket


def ticket_in_scope(ticket_id: Annotated[int, Path()], actor: ActorDep, session: SessionDep) -> Ticket:
    return service.get_ticket(session, ticket_id, actor=actor)


TicketInScope = Annotated[Ticket, Depends(ticket_in_scope)]
