"""The audit log: who did what, when and from where."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.kernel.db import Base, str_enum


class AuditAction(StrEnum):
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"  # detail.reason: wrong_password, locked, deactivated
    USER_LOCKED = "user.locked"
    USER_UNLOCKED = "user.unlocked"
    USER_CREATED = "user.created"
    USER_CHANGED = "user.changed"  # detail: each changed field as [before, after] (role changes among them)
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    TICKET_ASSIGNED = "ticket.assigned"  # force-assign or reassign by a dispatcher
    TICKET_INVALIDATED = "ticket.invalidated"
    TICKET_PRIORITIZED = "ticket.prioritized"  # detail: from, to, reason
    TICKET_TYPE_CHANGED = "ticket_type.changed"  # detail: code, each changed field as [before, after]
    TECHNICIAN_CHANGED = "technician.changed"  # detail: each changed field as [before, after]
    SUBSCRIBER_MARKED = "subscriber.marked"  # detail: importance, before and after
    SITE_MARKED = "site.marked"  # an important site added or removed
    WORKLOAD_EXPORTED = "workload.exported"
    TICKETS_EXPORTED = "tickets.exported"
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_DELETED = "webhook.deleted"
    WEBHOOK_ENABLED = "webhook.enabled"
    WEBHOOK_DISABLED = "webhook.disabled"  # by the sender after repeated failures: no actor, detail.reason
    WEBHOOK_REDELIVERED = "webhook.redelivered"
    DISPATCH_MODE_CHANGED = "dispatch_mode.changed"  # detail: from, to, hybrid_after_s


class AuditEvent(Base):
    """One security-relevant act, written in the transaction of the act itself (so it exists iff the act does)."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_actor_label_id", "actor_label", "id"),
                      Index("ix_audit_event_action_id", "action", "id"))

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    # A failed log-in has no authenticated actor: the label is then the username that was tried.
    actor_kind: Mapped[str | None] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_label: Mapped[str] = mapped_column(String(100))
    action: Mapped[AuditAction] = mapped_column(str_enum(AuditAction, 40))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column(Integer)
    address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
