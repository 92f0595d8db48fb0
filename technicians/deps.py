from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from dispatch.accounts.service import TokenAuthenticator
from dispatch.kernel.auth import Actor, ActorDep, api_key_scheme, bearer_scheme
from dispatch.kernel.db import Database, SessionDep
from dispatch.kernel.errors import Unauthorized
from dispatch.kernel.problems import raises
from technicians.errors import NotATechnician
from technicians.models import Technician
from technicians.presence import TechnicianRef
from technicians.service import cached_ref, technician_of, technician_ref


@raises(NotATechnician)
def current_technician(actor: ActorDep, session: SessionDep) -> Technician:
    return technician_of(session, actor)


CurrentTechnician = Annotated[Technician, Depends(current_technician)]


@dataclass(frozen=True)
class TechnicianCaller:
    actor: Actor
    ref: TechnicianRef


@raises(Unauthorized, NotATechnician)
async def technician_caller(request: Request, token: Annotated[str | None, Depends(bearer_scheme)],
                            api_key: Annotated[str | None, Depends(api_key_scheme)]) -> TechnicianCaller:
    """The calling technician and their live-index reference, from the per-process caches when warm.

    The phones' hot paths (pings, grabs): a warm cache costs no database
    session and no hop to a worker thread (each sync dependency would take
    one); a cold one resolves once in a thread, like any other request.
    """
    authenticate: TokenAuthenticator = request.app.state.authenticate
    actor = authenticate.cached(token) if token and not api_key else None
    ref = cached_ref(actor.id) if actor is not None else None
    if actor is not None and ref is not None:
        return TechnicianCaller(actor=actor, ref=ref)
    database: Database = request.app.state.db
    return await database.run(_resolve_caller, database, authenticate, token, api_key)


def _resolve_caller(database: Database, authenticate: TokenAuthenticator, token: str | None,
                    api_key: str | None) -> TechnicianCaller:
    with database.session_scope() as session:
        actor = authenticate(session, token, api_key)
        return TechnicianCaller(actor=actor, ref=technician_ref(session, actor))


CallingTechnician = Annotated[TechnicianCaller, Depends(technician_caller)]


async def pinging_technician(caller: CallingTechnician) -> TechnicianRef:
    return caller.ref


PingingTechnician = Annotated[TechnicianRef, Depends(pinging_technician)]
