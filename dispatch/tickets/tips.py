"""Self-help tips (知识库): markdown per ticket type, rendered safely, and whether they solved the problem.

The subscriber reads the tips of a fault type before reporting; "solved" means
no report, no visit. Statistics count those answers per period and type.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from markdown_it import MarkdownIt
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from dispatch.kernel.auth import Actor, Role
from dispatch.kernel.errors import Forbidden, InvalidInput, NotFound
from dispatch.tickets.models import TicketType, TipOutcome

# Raw HTML in the markdown is shown as text, never injected: an admin's slip
# (or a stolen admin session) must not put script on every subscriber's phone.
# CommonMark's link check already refuses javascript:, vbscript: and data: URLs.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})

OUTCOME_ROLES = frozenset({Role.SUBSCRIBER, Role.CLERK, Role.DISPATCHER, Role.ADMIN, Role.API})


def render(markdown: str) -> str:
    """Tips as HTML that is safe to insert into a page."""
    return _markdown.render(markdown)


def get_tips(session: Session, code: str) -> TicketType:
    """Raises: NotFound (no such active type)."""
    ticket_type = session.get(TicketType, code)
    if ticket_type is None or not ticket_type.active:
        raise NotFound(f"ticket type {code!r} does not exist")
    return ticket_type


def set_tips(session: Session, *, code: str, markdown: str) -> TicketType:
    """Replace a type's tips (admin). Raises: NotFound."""
    ticket_type = get_tips(session, code)
    ticket_type.tips = markdown
    ticket_type.updated_at = func.now()
    session.flush()
    session.refresh(ticket_type, ["updated_at"])
    return ticket_type


def record_outcome(session: Session, *, code: str, solved: bool, actor: Actor) -> TipOutcome:
    """Record whether the tips of this type solved the caller's problem.

    Raises:
        Forbidden: technicians and payroll do not report faults.
        NotFound: no such active type.
    """
    if actor.role not in OUTCOME_ROLES:
        raise Forbidden(f"a {actor.role} does not report faults", required=sorted(OUTCOME_ROLES))
    get_tips(session, code)
    outcome = TipOutcome(type_code=code, solved=solved, reported_by=actor.principal)
    session.add(outcome)
    session.flush()
    session.refresh(outcome, ["at"])
    return outcome


@dataclass(frozen=True)
class OutcomeCount:
    type_code: str
    name: str
    solved: int
    not_solved: int


def count_outcomes(session: Session, *, start: date, end: date, tz: str) -> list[OutcomeCount]:
    """Answers per type from local day `start` through local day `end`, both included.

    Raises: InvalidInput (end before start).
    """
    if end < start:
        raise InvalidInput("to", "the period ends before it starts")
    zone = ZoneInfo(tz)
    since = datetime.combine(start, time(), zone)
    until = datetime.combine(end + timedelta(days=1), time(), zone)
    solved = func.count(case((TipOutcome.solved, 1)))
    rows = session.execute(
        select(TipOutcome.type_code, TicketType.name, solved, func.count() - solved)
        .join(TicketType, TicketType.code == TipOutcome.type_code)
        .where(TipOutcome.at >= since, TipOutcome.at < until)
        .group_by(TipOutcome.type_code, TicketType.name).order_by(TipOutcome.type_code))
    return [OutcomeCount(*row) for row in rows]
