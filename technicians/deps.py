from typing import Annotated

from fastapi import Depends

from dispatch.kernel.auth import ActorDep
from dispatch.kernel.db import SessionDep
from technicians.models import Technician
from technicians.service import technician_of


def current_technician(actor: ActorDep, session: SessionDep) -> Technician:
    return technician_of(session, actor)


CurrentTechnician = Annotated[Technician, Depends(current_technician)]
