"""Users of the console and phones, subscribers, and API keys of other systems."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ARRAY, Boolean, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.kernel.auth import Role
from dispatch.kernel.db import Base, str_enum


class User(Base):
    __tablename__ = "user_account"  # "user" is reserved in PostgreSQL

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(str_enum(Role, 16))
    region_ids: Mapped[list[int]] = mapped_column(ARRAY(Integer), default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Set after too many failed log-ins; only an admin's unlock clears it.
    locked_at: Mapped[datetime | None]
    # Bound through a one-time link (as technicians are): staff notices may then go as template messages.
    wechat_openid: Mapped[str | None] = mapped_column(String(64), unique=True)


class NoticeChannel(StrEnum):
    """How a staff notice reaches a person (dispatch/notices): escalation steps name some of these."""

    WECOM = "wecom"  # 企业微信 group robot webhook
    DINGTALK = "dingtalk"  # 钉钉 custom robot webhook
    FEISHU = "feishu"  # 飞书 / Lark bot webhook
    SMS = "sms"
    EMAIL = "email"
    WECHAT = "wechat"  # template message to the user's bound WeChat


class Importance(StrEnum):
    """Why a subscriber's or a site's reports go before others (seed 001: enterprise lines, hospitals)."""

    VIP = "vip"
    ENTERPRISE = "enterprise"
    HOSPITAL = "hospital"


class Subscriber(Base):
    """A person who reports faults: known by WeChat openid, by phone, or both."""

    __tablename__ = "subscriber"

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    phone: Mapped[str | None] = mapped_column(String(32), unique=True)
    name: Mapped[str | None] = mapped_column(String(100))
    # Raises every report of theirs to the priority the settings give it (PRIORITY__RAISE).
    importance: Mapped[Importance | None] = mapped_column(str_enum(Importance, 16))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ApiKey(Base):
    """A credential for another system (hotline, CRM); only a hash of the secret is kept."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    region_ids: Mapped[list[int]] = mapped_column(ARRAY(Integer), default=list)
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]
