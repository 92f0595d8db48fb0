from typing import Annotated

from fastapi import APIRouter, Depends, Query

from dispatch.audit import service
from dispatch.audit.models import AuditAction
from dispatch.audit.schemas import AuditEventRead
from dispatch.kernel.auth import Actor, Role, require_role
from dispatch.kernel.db import SessionDep
from dispatch.kernel.errors import Forbidden, InvalidInput
from dispatch.kernel.inputs import Moment, Text
from dispatch.kernel.pagination import Page, PageDep, page_of
from dispatch.kernel.problems import problem_docs

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
Admin = Annotated[Actor, Depends(require_role(Role.ADMIN))]


@router.get("", response_model=Page[AuditEventRead], responses=problem_docs(Forbidden, InvalidInput))
def list_audit_events(session: SessionDep, admin: Admin, page: PageDep,
                      actor: Annotated[Text | None, Query(description="who: a username, or api:<key name>")] = None,
                      action: AuditAction | None = None,
                      since: Annotated[Moment | None, Query(alias="from", description="at or after")] = None,
                      until: Annotated[Moment | None, Query(alias="to", description="before")] = None,
                      ) -> dict[str, object]:
    """Who did what, when and from where, newest first (admin only): log-ins, locks, user and API key
    changes, force-assigns, invalidations, exports."""
    rows = service.list_events(session, page=page, actor_label=actor, action=action, since=since, until=until)
    return page_of(rows, page)
