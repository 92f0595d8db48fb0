from datetime import datetime

from pydantic import BaseModel, Field

from dispatch.accounts.models import NoticeChannel
from dispatch.kernel.inputs import ClockTime, Flag, Integer, Text
from dispatch.notices.models import NoticeKind, NoticeStatus


class RouteBody(BaseModel):
    channel: NoticeChannel
    target: Text = Field(default="", max_length=320, description=(
        "dingtalk / wecom / feishu: the robot's webhook URL or its token; sms: a mainland mobile number; "
        "email: an address; wechat: nothing (your bound WeChat is used)."))
    secret: Text | None = Field(default=None, max_length=200, description=(
        "DingTalk's 加签 secret (SEC...) or Feishu's signature secret; omitted: the stored one is kept."))
    enabled: Flag = True


class RouteRead(BaseModel):
    channel: NoticeChannel
    target: str
    has_secret: bool
    enabled: bool


class QuietHours(BaseModel):
    start: ClockTime = Field(description="Local time, e.g. 22:00; may lie after `end` (the night).")
    end: ClockTime


class NotificationsBody(BaseModel):
    channels: list[RouteBody] = Field(default_factory=list, max_length=len(NoticeChannel))
    quiet_hours: QuietHours | None = Field(default=None, description=(
        "Warnings wait until they end; escalation steps count you out meanwhile (the chain moves on)."))
    digest_min: Integer | None = Field(default=None, ge=5, le=24 * 60, description=(
        "Gather SLA warnings into one message per this many minutes; null: each at once."))


class NotificationsRead(BaseModel):
    channels: list[RouteRead]
    quiet_hours: QuietHours | None
    digest_min: int | None
    wechat_bound: bool


class TestBody(BaseModel):
    channel: NoticeChannel | None = Field(default=None, description="One channel; null: every enabled one.")


class NoticeRead(BaseModel):
    id: int
    user_id: int
    kind: NoticeKind
    channel: NoticeChannel
    title: str
    status: NoticeStatus
    created_at: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str | None


class NoticeList(BaseModel):
    items: list[NoticeRead]


class TicketNoticeRead(NoticeRead):
    username: str
    name: str


class TicketNoticeList(BaseModel):
    items: list[TicketNoticeRead]
