"""Staff notices: one's own channels and quiet hours, a test message, and the notices sent about a ticket."""

from datetime import UTC, datetime

from fastapi import APIRouter

from dispatch.kernel.auth import ActorDep
from dispatch.kernel.db import SessionDep
from dispatch.kernel.errors import Forbidden, InvalidInput
from dispatch.kernel.problems import problem_docs
from dispatch.kernel.settings import SettingsDep
from dispatch.notices import service
from dispatch.notices.errors import NothingToSend
from dispatch.notices.schemas import (
    NoticeList,
    NoticeRead,
    NotificationsBody,
    NotificationsRead,
    QuietHours,
    RouteRead,
    TestBody,
    TicketNoticeList,
    TicketNoticeRead,
)
from dispatch.tickets.deps import TicketInScope

router = APIRouter(prefix="/api/v1", tags=["notices"])


def _read(prefs: service.Preferences) -> NotificationsRead:
    quiet = (QuietHours(start=prefs.quiet_start, end=prefs.quiet_end)
             if prefs.quiet_start is not None and prefs.quiet_end is not None else None)
    return NotificationsRead(
        channels=[RouteRead(channel=r.channel, target=r.target, has_secret=bool(r.secret), enabled=r.enabled)
                  for r in prefs.routes],
        quiet_hours=quiet, digest_min=prefs.digest_min, wechat_bound=prefs.user.wechat_openid is not None)


@router.get("/me/notifications", response_model=NotificationsRead, responses=problem_docs(Forbidden))
def my_notifications(actor: ActorDep, session: SessionDep) -> NotificationsRead:
    """Your staff notice channels, quiet hours and warning digest (staff)."""
    return _read(service.preferences(session, actor=actor))


@router.put("/me/notifications", response_model=NotificationsRead, responses=problem_docs(Forbidden, InvalidInput))
def set_my_notifications(body: NotificationsBody, actor: ActorDep, session: SessionDep) -> NotificationsRead:
    """Replace your channels, quiet hours and digest (staff); phone numbers and addresses are checked."""
    quiet = body.quiet_hours
    return _read(service.set_preferences(
        session, actor=actor, digest_min=body.digest_min,
        quiet_start=quiet.start if quiet else None, quiet_end=quiet.end if quiet else None,
        routes=[service.RouteSpec(channel=r.channel, target=r.target, secret=r.secret, enabled=r.enabled)
                for r in body.channels]))


@router.post("/me/notifications/test", status_code=201, response_model=NoticeList,
             responses=problem_docs(Forbidden, NothingToSend))
def send_me_a_test(body: TestBody, actor: ActorDep, session: SessionDep, settings: SettingsDep) -> NoticeList:
    """Send yourself a test message through one channel or every enabled one; each is a notice you can follow."""
    notices = service.send_test(session, actor=actor, channel=body.channel, settings=settings,
                                now=datetime.now(UTC))
    return NoticeList(items=[NoticeRead.model_validate(n, from_attributes=True) for n in notices])


@router.get("/tickets/{ticket_id}/notices", response_model=TicketNoticeList, tags=["tickets"],
            responses=problem_docs(Forbidden))
def ticket_notices(ticket: TicketInScope, actor: ActorDep, session: SessionDep) -> TicketNoticeList:
    """The staff notices sent about a ticket: who, which channel, when, delivered or not (staff in scope)."""
    service.require_staff(actor)
    return TicketNoticeList(items=[
        TicketNoticeRead(**NoticeRead.model_validate(row.notice, from_attributes=True).model_dump(),
                         username=row.username, name=row.name)
        for row in service.list_for_ticket(session, ticket_id=ticket.id)])
