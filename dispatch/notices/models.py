"""Staff notices: the channels each person is reached by, their quiet hours, every notice and every attempt."""

from datetime import datetime, time
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.accounts.models import NoticeChannel
from dispatch.kernel.db import Base, str_enum


class NoticeKind(StrEnum):
    ESCALATION = "escalation"
    WARNING = "warning"
    DIGEST = "digest"  # held warnings of one person, sent as one message
    TEST = "test"  # "send me a test message"


class NoticeStatus(StrEnum):
    QUEUED = "queued"  # an outbox row will send it
    HELD = "held"  # a warning waiting for its digest or the end of quiet hours
    DIGESTED = "digested"  # went out inside a digest (digest_id)
    SENT = "sent"
    UNDELIVERABLE = "undeliverable"  # the provider refused for good, retries ran out, or the SMS cap was reached


class NoticeRoute(Base):
    """One way a person is reached: a robot webhook's token (and signing secret), a phone, an address."""

    __tablename__ = "notice_route"
    __table_args__ = (UniqueConstraint("user_id", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    channel: Mapped[NoticeChannel] = mapped_column(str_enum(NoticeChannel, 16))
    # The robot's access token / key / hook id, a mobile number or an e-mail address; empty for WeChat
    # (the user's bound openid is used).
    target: Mapped[str] = mapped_column(String(320), default="")
    secret: Mapped[str | None] = mapped_column(String(200))  # DingTalk's and Feishu's signing secret
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class NoticePreference(Base):
    """Quiet hours (local clock; may run past midnight) and the warning digest of one person."""

    __tablename__ = "notice_preference"

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True)
    quiet_start: Mapped[time | None] = mapped_column(Time)
    quiet_end: Mapped[time | None] = mapped_column(Time)
    # Warnings are gathered into one message per this many minutes; NULL: each goes out at once.
    digest_min: Mapped[int | None] = mapped_column(Integer)


class Notice(Base):
    """One message to one person through one channel; its outbox row sends it (one row per notice)."""

    __tablename__ = "notice"
    __table_args__ = (
        Index("ix_notice_user_channel_created", "user_id", "channel", "created_at"),
        Index("ix_notice_held", "user_id", postgresql_where="status = 'held'"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    kind: Mapped[NoticeKind] = mapped_column(str_enum(NoticeKind, 16))
    channel: Mapped[NoticeChannel] = mapped_column(str_enum(NoticeChannel, 16))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)  # markdown: robots render it, SMS and mail derive from it
    link: Mapped[str | None] = mapped_column(String(500))
    # Short values for templated channels (SMS, WeChat): number, type, grid, state, due, title.
    params: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    status: Mapped[NoticeStatus] = mapped_column(str_enum(NoticeStatus, 16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("notice.id"))


class NoticeAttempt(Base):
    """The delivery log: one row per attempt to send a notice, whatever came of it."""

    __tablename__ = "notice_attempt"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notice.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
