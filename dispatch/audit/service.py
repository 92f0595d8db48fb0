"""Writing and reading the audit log."""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.audit.models import AuditAction, AuditEvent
from dispatch.kernel.auth import Actor
from dispatch.kernel.middleware import client_address
from dispatch.kernel.pagination import PageParams


def record(session: Session, *, action: AuditAction, actor: Actor | None, label: str | None = None,
           target: tuple[str, int] | None = None, **detail: object) -> None:
    """Add an audit event to the caller's transaction: it is kept exactly when the act is.

    `label` names an unauthenticated actor (the username a failed log-in tried); `detail` is stored as JSON;
    the address is the request's client, none for the CLI and jobs.
    """
    session.add(AuditEvent(
        actor_kind=actor.kind if actor else None, actor_id=actor.id if actor else None,
        actor_label=(actor.label if actor else label or "")[:100],
        action=action, target_type=target[0] if target else None, target_id=target[1] if target else None,
        address=client_address.get(), detail=detail))


def list_events(session: Session, *, page: PageParams, actor_label: str | None, action: AuditAction | None,
                since: datetime | None, until: datetime | None) -> list[AuditEvent]:
    """Newest first, `page.limit + 1` rows (the extra one says another page exists)."""
    wanted = [AuditEvent.id < page.after_id if page.after_id is not None else None,
              AuditEvent.actor_label == actor_label if actor_label is not None else None,
              AuditEvent.action == action if action is not None else None,
              AuditEvent.at >= since if since is not None else None,
              AuditEvent.at < until if until is not None else None]
    query = select(AuditEvent).where(*(condition for condition in wanted if condition is not None))
    return list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(page.limit + 1)))
