"""Who gets what: staff notices composed in the caller's transaction, one outbox row per notice.

A notice is written with its outbox row in the transaction that decides it (the SLA sweep's, a test
request's), so it exists exactly when the decision does: two sweepers never write one twice (the sweep
claims its tickets with SKIP LOCKED) and a crash loses none. The outbox sends it later, with retries.

Quiet hours (local clock) hold warnings until they end and make a person unreachable for escalation
steps (the chain then moves on at once); a digest gathers one person's warnings into one message per
N minutes, so a storm does not send 300 SMS. Each person has a daily SMS cap.
"""

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dispatch.accounts.models import NoticeChannel, User
from dispatch.kernel.auth import STAFF_ROLES, Actor
from dispatch.kernel.errors import Forbidden, InvalidInput
from dispatch.kernel.queues import queue
from dispatch.kernel.settings import Settings
from dispatch.notices.adapters import Message
from dispatch.notices.errors import NothingToSend
from dispatch.notices.models import Notice, NoticeKind, NoticePreference, NoticeRoute, NoticeStatus
from dispatch.tickets import notify, outbox
from dispatch.tickets.models import Ticket, TicketType
from dispatch.tickets.sla import Reached, Rung, SlaKind
from geo.models import Region

C = NoticeChannel
STATE_NAMES = {"pending": "待接单", "accepted": "已接单", "awaiting_followup": "待回访", "completed": "已完成",
               "timed_out": "超时", "invalid": "无效", "grouped": "已归并"}
SLA_NAMES = {SlaKind.RESPONSE: "响应", SlaKind.RESOLUTION: "处理"}
# Mainland mobile numbers (the SMS providers here send nowhere else), with or without +86.
MOBILE = re.compile(r"^(?:\+?86)?(1[3-9][0-9]{9})$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
ROBOT_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{8,128}$")
# Where each robot's token sits in the webhook URL its owner copies from the app.
URL_TOKEN = {C.DINGTALK: "access_token", C.WECOM: "key"}


def topic(channel: NoticeChannel) -> str:
    """The outbox topic a channel's notices are sent under (one row per notice)."""
    return f"notice.{channel}"


# --- preferences ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RouteSpec:
    channel: NoticeChannel
    target: str = ""
    secret: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class Preferences:
    user: User
    routes: list[NoticeRoute]
    quiet_start: time | None
    quiet_end: time | None
    digest_min: int | None


def require_staff(actor: Actor) -> None:
    """Raises: Forbidden: not a console user."""
    if actor.role not in STAFF_ROLES:
        raise Forbidden("staff notices are for console users", required=sorted(STAFF_ROLES))


def preferences(session: Session, *, actor: Actor) -> Preferences:
    """The caller's channels, quiet hours and digest.

    Raises:
        Forbidden: not a staff user.
    """
    require_staff(actor)
    user = session.get_one(User, actor.id)
    pref = session.get(NoticePreference, actor.id)
    routes = list(session.scalars(select(NoticeRoute).where(NoticeRoute.user_id == actor.id).order_by(NoticeRoute.id)))
    return Preferences(user=user, routes=routes, quiet_start=pref.quiet_start if pref else None,
                       quiet_end=pref.quiet_end if pref else None, digest_min=pref.digest_min if pref else None)


def set_preferences(session: Session, *, actor: Actor, routes: Sequence[RouteSpec], quiet_start: time | None,
                    quiet_end: time | None, digest_min: int | None) -> Preferences:
    """Replace the caller's channels, quiet hours and digest. A channel given without its secret keeps the one
    stored for the same target.

    Raises:
        Forbidden: not a staff user.
        InvalidInput: a channel twice, a target that is not a mobile number / address / robot token,
            WeChat without a bound WeChat, quiet hours with one end only.
    """
    require_staff(actor)
    user = session.get_one(User, actor.id)
    if (quiet_start is None) != (quiet_end is None) or (quiet_start is not None and quiet_start == quiet_end):
        raise InvalidInput("quiet_hours", "give a start and a different end, or null")
    old = {r.channel: r for r in session.scalars(select(NoticeRoute).where(NoticeRoute.user_id == actor.id))}
    seen: set[NoticeChannel] = set()
    for i, spec in enumerate(routes):
        if spec.channel in seen:
            raise InvalidInput(f"channels.{i}.channel", f"{spec.channel} is given twice")
        seen.add(spec.channel)
        target = _target(spec, user, field=f"channels.{i}.target")
        route = old.pop(spec.channel, None) or NoticeRoute(user_id=user.id, channel=spec.channel)
        secret = spec.secret if spec.secret is not None else (route.secret if route.target == target else None)
        route.target, route.secret, route.enabled = target, secret or None, spec.enabled
        session.add(route)
    for route in old.values():
        session.delete(route)
    pref = session.get(NoticePreference, user.id) or NoticePreference(user_id=user.id)
    pref.quiet_start, pref.quiet_end, pref.digest_min = quiet_start, quiet_end, digest_min
    session.add(pref)
    session.flush()
    return preferences(session, actor=actor)


def _target(spec: RouteSpec, user: User, *, field: str) -> str:
    value = spec.target.strip()
    if spec.channel is C.WECHAT:
        if user.wechat_openid is None:
            raise InvalidInput(field, "bind your WeChat first (a binding link from POST /api/v1/wechat/bindings)")
        return ""
    if spec.channel is C.SMS:
        match = MOBILE.match(value.replace(" ", "").replace("-", ""))
        if match is None:
            raise InvalidInput(field, "must be a mainland mobile number such as 13800138000")
        return match.group(1)
    if spec.channel is C.EMAIL:
        if EMAIL.match(value) is None or len(value) > 320:
            raise InvalidInput(field, "must be an e-mail address")
        return value
    token = _robot_token(spec.channel, value)
    if token is None or ROBOT_TOKEN.match(token) is None:
        raise InvalidInput(field, f"must be the {spec.channel} robot's webhook URL or its token")
    return token


def _robot_token(channel: NoticeChannel, value: str) -> str | None:
    if not value.startswith(("https://", "http://")):
        return value
    url = urlsplit(value)
    if channel is C.FEISHU:
        return url.path.rstrip("/").rsplit("/", 1)[-1] if "/hook/" in url.path else None
    tokens = parse_qs(url.query).get(URL_TOKEN[channel])
    return tokens[0] if tokens else None


# --- quiet hours ---------------------------------------------------------------------------------------

def quiet_until(pref: NoticePreference | None, now: datetime, tz: ZoneInfo) -> datetime | None:
    """When the person's quiet hours end, if `now` lies in them (None: not quiet now)."""
    if pref is None or pref.quiet_start is None or pref.quiet_end is None:
        return None
    local = now.astimezone(tz)
    clock, start, end = local.time(), pref.quiet_start, pref.quiet_end
    quiet = start <= clock < end if start < end else (clock >= start or clock < end)
    if not quiet:
        return None
    ends = datetime.combine(local.date(), end, tzinfo=tz)
    return ends if ends > local else ends + timedelta(days=1)


# --- composing ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class About:
    """A ticket as its notices describe it."""

    ticket_id: int
    number: str
    type_name: str
    grid: str
    state: str
    due: str
    link: str

    def lines(self) -> str:
        return (f"- 工单：{self.number}\n- 类型：{self.type_name}\n- 网格：{self.grid}\n- 状态：{self.state}\n"
                f"- 时限：{self.due}\n\n[在控制台查看]({self.link})")

    def params(self) -> dict[str, str]:
        return {"number": self.number, "type": self.type_name, "grid": self.grid, "state": self.state,
                "due": self.due, "title": f"{self.number} {self.type_name}"[:35]}


def about(session: Session, ticket: Ticket, settings: Settings, *, kind: SlaKind | None) -> About:
    type_name = session.scalar(select(TicketType.name).where(TicketType.code == ticket.type_code)) or ticket.type_code
    grid = session.scalar(select(Region.name).where(Region.id == ticket.region_id)) or ""
    due_at = ticket.response_due_at if (kind or _kind_of(ticket)) is SlaKind.RESPONSE else ticket.resolution_due_at
    due = due_at.astimezone(ZoneInfo(settings.timezone)).strftime("%m-%d %H:%M")
    return About(ticket_id=ticket.id, number=ticket.number, type_name=type_name, grid=grid,
                 state=STATE_NAMES.get(str(ticket.state), str(ticket.state)), due=due,
                 link=f"{settings.notices.console_url}?ticket={ticket.id}")


def _kind_of(ticket: Ticket) -> SlaKind:
    return SlaKind.RESPONSE if str(ticket.state) in {"pending", "timed_out"} else SlaKind.RESOLUTION


def _queue(session: Session, notice: Notice) -> None:
    session.add(notice)
    session.flush()  # its id goes in the outbox row
    outbox.emit(session, topic(notice.channel), {"notice_id": notice.id})


def _sms_capped(session: Session, user_id: int, *, now: datetime, settings: Settings) -> bool:
    # One lock per person and day: two sweepers counting at once would both see room for one more.
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext("notice-sms"), user_id)))
    tz = ZoneInfo(settings.timezone)
    midnight = datetime.combine(now.astimezone(tz).date(), time(0), tzinfo=tz)
    sent = session.scalar(select(func.count()).select_from(Notice).where(
        Notice.user_id == user_id, Notice.channel == C.SMS, Notice.created_at >= midnight,
        Notice.status.in_([NoticeStatus.QUEUED, NoticeStatus.SENT])))
    return (sent or 0) >= settings.notices.sms_daily_cap


def _send(session: Session, *, user_id: int, ticket_id: int | None, kind: NoticeKind, channel: NoticeChannel,
          message: Message, now: datetime, settings: Settings, held: bool = False) -> Notice:
    """Write one notice: queued with its outbox row, held for a digest, or undeliverable past the SMS cap."""
    notice = Notice(user_id=user_id, ticket_id=ticket_id, kind=kind, channel=channel, title=message.title[:200],
                    body=message.markdown, link=message.link, params=dict(message.params or {}),
                    status=NoticeStatus.QUEUED, created_at=now, attempts=0)
    if held:
        notice.status = NoticeStatus.HELD
        session.add(notice)
    elif channel is C.SMS and _sms_capped(session, user_id, now=now, settings=settings):
        notice.status, notice.last_error = NoticeStatus.UNDELIVERABLE, "daily SMS cap reached"
        session.add(notice)
    else:
        _queue(session, notice)
    session.flush()
    return notice


def _routes(session: Session, user_ids: Sequence[int], channels: Sequence[NoticeChannel]) -> dict[int, list[C]]:
    rows = session.execute(
        select(NoticeRoute.user_id, NoticeRoute.channel).join(User, User.id == NoticeRoute.user_id)
        .where(NoticeRoute.user_id.in_(user_ids), NoticeRoute.enabled, NoticeRoute.channel.in_(channels),
               User.active, (NoticeRoute.channel != C.WECHAT) | User.wechat_openid.is_not(None))
        .order_by(NoticeRoute.user_id, NoticeRoute.id)).all()
    found: dict[int, list[C]] = defaultdict(list)
    for user_id, channel in rows:
        found[user_id].append(channel)
    return found


class Reacher:
    """The SLA sweep's `Reach`: escalation steps and warnings become staff notices."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)

    def escalation(self, session: Session, ticket: Ticket, rung: Rung, users: Sequence[User], *,
                   now: datetime) -> list[Reached]:
        subject = about(session, ticket, self.settings, kind=None)
        message = Message(title=f"【升级{rung.level}】{subject.number} {subject.type_name} 已超时：{rung.title}",
                          markdown=subject.lines(), link=subject.link, params=subject.params())
        routes = _routes(session, [u.id for u in users], rung.channels)
        prefs = _prefs(session, routes)
        reached = []
        for user_id, channels in routes.items():
            if quiet_until(prefs.get(user_id), now, self.tz) is not None:
                continue  # asked not to be woken: the step counts them out
            notices = [_send(session, user_id=user_id, ticket_id=ticket.id, kind=NoticeKind.ESCALATION,
                             channel=channel, message=message, now=now, settings=self.settings)
                       for channel in channels]
            sent = tuple(n.channel for n in notices if n.status is NoticeStatus.QUEUED)
            if sent:
                reached.append(Reached(user_id=user_id, channels=sent))
        return reached

    def warning(self, session: Session, ticket: Ticket, rung: Rung, users: Sequence[User], *, kind: SlaKind,
                now: datetime) -> None:
        subject = about(session, ticket, self.settings, kind=kind)
        message = Message(title=f"【预警】{subject.number} {subject.type_name} {SLA_NAMES[kind]}时限将到",
                          markdown=subject.lines(), link=subject.link, params=subject.params())
        routes = _routes(session, [u.id for u in users], rung.channels)
        prefs = _prefs(session, routes)
        for user_id, channels in routes.items():
            pref = prefs.get(user_id)
            held = bool(pref and pref.digest_min) or quiet_until(pref, now, self.tz) is not None
            for channel in channels:
                _send(session, user_id=user_id, ticket_id=ticket.id, kind=NoticeKind.WARNING, channel=channel,
                      message=message, now=now, settings=self.settings, held=held)


def _prefs(session: Session, routes: dict[int, list[C]]) -> dict[int, NoticePreference]:
    if not routes:
        return {}
    return {p.user_id: p for p in session.scalars(select(NoticePreference)
                                                   .where(NoticePreference.user_id.in_(list(routes))))}


def flush_digests(session: Session, *, settings: Settings, now: datetime) -> int:
    """Send each person's held warnings as one message per channel, once their digest is due and their quiet
    hours are over; returns how many digests were queued.

    Held rows are claimed with SKIP LOCKED: two workers never send one warning in two digests.
    """
    tz = ZoneInfo(settings.timezone)
    held = session.scalars(select(Notice).where(Notice.status == NoticeStatus.HELD)
                           .order_by(Notice.user_id, Notice.id).with_for_update(skip_locked=True)).all()
    by_user: dict[int, list[Notice]] = defaultdict(list)
    for notice in held:
        by_user[notice.user_id].append(notice)
    prefs = _prefs(session, {user_id: [] for user_id in by_user})
    queued = 0
    for user_id, notices in by_user.items():
        pref = prefs.get(user_id)
        if quiet_until(pref, now, tz) is not None:
            continue
        if pref and pref.digest_min and min(n.created_at for n in notices) > now - timedelta(minutes=pref.digest_min):
            continue
        by_channel: dict[NoticeChannel, list[Notice]] = defaultdict(list)
        for notice in notices:
            by_channel[notice.channel].append(notice)
        for channel, items in by_channel.items():
            lines = "\n".join(f"- {n.title}" + (f" [查看]({n.link})" if n.link else "") for n in items)
            message = Message(title=f"【汇总】{len(items)} 条时限预警", markdown=lines,
                              link=settings.notices.console_url, params={"title": f"{len(items)} 条时限预警"})
            digest = _send(session, user_id=user_id, ticket_id=None, kind=NoticeKind.DIGEST, channel=channel,
                           message=message, now=now, settings=settings)
            session.execute(update(Notice).where(Notice.id.in_([n.id for n in items]))
                            .values(status=NoticeStatus.DIGESTED, digest_id=digest.id)
                            .execution_options(synchronize_session=False))
            queued += digest.status is NoticeStatus.QUEUED
    if queued:
        notify.after_commit_drain(session, queue())
    session.flush()
    return queued


def send_test(session: Session, *, actor: Actor, channel: NoticeChannel | None, settings: Settings,
              now: datetime) -> list[Notice]:
    """A test message to the caller through one channel or every enabled one (quiet hours do not apply).

    Raises:
        Forbidden: not a staff user.
        NothingToSend: no such channel set up and enabled.
    """
    require_staff(actor)
    channels = [channel] if channel is not None else list(C)
    routes = _routes(session, [actor.id], channels).get(actor.id, [])
    if not routes:
        raise NothingToSend("set up and enable a channel first (PUT /api/v1/me/notifications)")
    message = Message(title="【测试】Fieldpool 通知", markdown=f"这是一条测试消息，发送于 "
                      f"{now.astimezone(ZoneInfo(settings.timezone)):%Y-%m-%d %H:%M}。\n\n[打开控制台]"
                      f"({settings.notices.console_url})", link=settings.notices.console_url,
                      params={"title": "测试消息"})
    notices = [_send(session, user_id=actor.id, ticket_id=None, kind=NoticeKind.TEST, channel=c, message=message,
                     now=now, settings=settings) for c in routes]
    notify.after_commit_drain(session, queue())
    return notices


@dataclass(frozen=True)
class NoticeRow:
    notice: Notice
    username: str
    name: str


def list_for_ticket(session: Session, *, ticket_id: int) -> list[NoticeRow]:
    """Every notice sent (or held, or refused) about a ticket, oldest first, with its recipient."""
    rows = session.execute(select(Notice, User.username, User.name).join(User, User.id == Notice.user_id)
                           .where(Notice.ticket_id == ticket_id).order_by(Notice.id)).all()
    return [NoticeRow(notice=n, username=u, name=name) for n, u, name in rows]
