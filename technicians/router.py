from typing import Annotated, Any

from fastapi import APIRouter, Depends

from dispatch.kernel.auth import Actor, Role, require_role
from dispatch.kernel.db import SessionDep
from dispatch.kernel.errors import Forbidden, InvalidInput, NotFound, OutOfScope
from dispatch.kernel.pagination import Page, PageDep, page_of
from dispatch.kernel.problems import problem_docs
from technicians import service
from technicians.models import Technician
from technicians.schemas import TechnicianCreate, TechnicianRead

router = APIRouter(prefix="/api/v1/technicians", tags=["technicians"])
Manager = Annotated[Actor, Depends(require_role(Role.ADMIN, Role.DISPATCHER))]
Staff = Annotated[Actor, Depends(require_role(Role.ADMIN, Role.DISPATCHER, Role.CLERK, Role.PAYROLL))]


def _read(technician: Technician) -> TechnicianRead:
    return TechnicianRead.model_validate(
        {**{c: getattr(technician, c) for c in TechnicianRead.model_fields if c != "bound"},
         "bound": technician.wechat_openid is not None})


@router.post("", response_model=TechnicianRead, status_code=201,
             responses=problem_docs(Forbidden, OutOfScope, InvalidInput))
def create_technician(body: TechnicianCreate, session: SessionDep, actor: Manager) -> TechnicianRead:
    """Register a technician and their phone log-in in a region of the caller's."""
    technician = service.create_technician(session, actor=actor, **body.model_dump())
    return _read(technician)


@router.get("", response_model=Page[TechnicianRead], responses=problem_docs(Forbidden))
def list_technicians(session: SessionDep, actor: Staff, page: PageDep) -> dict[str, Any]:
    """Technicians of the caller's regions, by id."""
    rows = service.list_technicians(session, scope=actor.scope, limit=page.limit + 1, after_id=page.after_id)
    return page_of([_read(t) for t in rows], page)


@router.get("/{technician_id}", response_model=TechnicianRead, responses=problem_docs(NotFound))
def get_technician(technician_id: int, session: SessionDep, actor: Staff) -> TechnicianRead:
    """One technician of the caller's regions."""
    return _read(service.get_technician(session, technician_id, scope=actor.scope))
