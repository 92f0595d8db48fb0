from typing import Annotated

from fastapi import Depends

from dispatch.kernel.auth import ActorDep
from dispatch.kernel.db import SessionDep
from technicians.models import Technician
from technicians.presence import TechnicianRef
from technicians.service import technician_of, technician_ref


def current_technician(actor: ActorDep, session: SessionDep) -> Technician:
    return technician_of(session, actor)


CurrentTechnician = Annotated[Technician, Depends(current_technician)]


def current_ref(actor: ActorDep, session: SessionDep) -> TechnicianRef:
    return technician_ref(session, actor)


CurrentTechnicianRef = Annotated[TechnicianRef, Depends(current_ref)]
