"""Webhooks other systems register, and each delivery of an event to one of them."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, SmallInteger, String, Text, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.kernel.db import Base, str_enum


class Webhook(Base):
    """A URL that hears the events of its regions, signed with its secret.

    The secret is kept as it is (each delivery is signed with it), unlike an API key's, of which only a hash
    is kept; it is shown once, when the webhook is made.
    """

    __tablename__ = "webhook"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    region_ids: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    secret: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Failures in a row, since when it has been failing, and when it may be tried again: a receiver that
    # fails is backed off as a whole, so a dead one is probed, not flooded, and its events keep their order.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # given up: retried for WEBHOOKS__RETRY_FOR_S, or refused for good


class WebhookDelivery(Base):
    """One event for one webhook: the exact body sent on every attempt (each attempt signs it anew)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        # The fan-out may run twice for one event (the outbox delivers at least once): one delivery per event.
        Index("uq_webhook_delivery_event", "webhook_id", "event_id", unique=True,
              postgresql_where="redelivery_of IS NULL"),
        Index("ix_webhook_delivery_pending", "id", postgresql_where="state = 'pending'"),
        # An event waits while an earlier one of its ticket is still pending for the same webhook.
        Index("ix_webhook_delivery_pending_ticket", "webhook_id", "ticket_id", "id",
              postgresql_where="state = 'pending' AND redelivery_of IS NULL"),
        Index("ix_webhook_delivery_webhook_id", "webhook_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhook.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(40))
    ticket_id: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[DeliveryState] = mapped_column(str_enum(DeliveryState, 16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(SmallInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A resend asked for by an admin: a new delivery of the same event, outside its ticket's order.
    redelivery_of: Mapped[int | None] = mapped_column(BigInteger)
