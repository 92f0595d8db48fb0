"""What the account does with each message and event a subscriber sends: replies in the domain's words.

Everything here answers within WeChat's 5 s: intake is local (PostGIS, the
gazetteer, the live index); media downloads go to rq.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session
from wechatpy import parse_message
from wechatpy.messages import BaseMessage
from wechatpy.replies import TextReply

from dispatch.accounts.models import Subscriber
from dispatch.accounts.service import actor_of_subscriber, subscriber_by_openid
from dispatch.kernel.errors import DomainError
from dispatch.kernel.settings import Settings
from dispatch.tickets.lifecycle import OPEN_STATES
from dispatch.tickets.models import Source, Ticket, TicketState
from dispatch.tickets.schemas import Contact, Location, TicketCreate
from dispatch.tickets.service import create_ticket
from geo import crs, regions
from geo.latlng import LatLng
from technicians.models import Technician
from wechat import conversation, jobs
from wechat.conversation import Report
from wechat.errors import MalformedDelivery
from wechat.guard import Signed, open_envelope, parse_xml, seal_reply

log = structlog.get_logger()

REPORT_WORDS = frozenset({"报障", "报修", "故障"})
PROGRESS_WORDS = frozenset({"进度", "查询"})
MENU_REPORT, MENU_PROGRESS = "REPORT", "PROGRESS"
TICKET_NUMBER = re.compile(r"\b([A-Z]{1,8}-\d{8}-\d{4,})\b")
MOBILE = re.compile(r"(?<!\d)(1[3-9]\d{9})(?!\d)")
STATE_WORDS = {
    TicketState.PENDING: "等待维修员接单", TicketState.ACCEPTED: "维修员已接单",
    TicketState.AWAITING_FOLLOWUP: "已完工，待回访", TicketState.COMPLETED: "已完成",
    TicketState.TIMED_OUT: "接单超时，调度员正在安排", TicketState.INVALID: "已撤销",
}
WELCOME = ("欢迎关注！家里宽带、电视出了问题，点菜单「报障」即可报修；"
           "也可以直接发几句话描述故障，再发送您的位置（输入框旁 + → 位置）。发「进度」查询报修进度。")
ASK_DESCRIPTION = "请用几句话描述故障（例如：宽带上不了网，光猫红灯闪），也可以发照片或语音。"
ASK_LOCATION = "请发送您的位置（输入框旁 + → 位置），我们按位置就近派维修员。"
ASK_PHONE = "请留下您的手机号，方便维修员联系您。"
SORRY = "抱歉，报修暂时无法受理，我们已记下您的情况，请稍后再试或拨打客服热线。"
OUTSIDE = ("抱歉，您所在的位置不在我们的服务网格内。报修仍会转给调度员人工处理，请保持电话畅通。")


@dataclass(frozen=True)
class Context:
    """What handling one delivery needs: the request's unit of work, Redis and the settings."""

    session: Session
    redis: Redis
    settings: Settings


def receive(ctx: Context, body: bytes, signed: Signed) -> str:
    """The answer to one signed delivery: a (sealed) reply, or "success" when there is nothing to say.

    Raises:
        MalformedDelivery, BadSignature: see guard.
    """
    cfg = ctx.settings.wechat
    xml = open_envelope(body, signed, cfg)
    fields = parse_xml(xml)
    openid = fields.get("FromUserName")
    if not isinstance(openid, str) or not openid or not isinstance(fields.get("MsgType"), str):
        raise MalformedDelivery("the message names no sender or type")
    delivery_id = _delivery_id(fields)
    if not conversation.first_delivery(ctx.redis, delivery_id):
        log.info("wechat_duplicate_delivery", delivery_id=delivery_id)
        return "success"
    message = parse_message(xml)
    try:
        reply = respond(ctx, message)
    except Exception:
        conversation.forget_delivery(ctx.redis, delivery_id)  # WeChat's retry gets a real try
        raise
    if reply is None:
        return "success"
    return seal_reply(TextReply(message=message, content=reply).render(), signed, cfg)


def _delivery_id(fields: dict[str, Any]) -> str:
    # Messages carry a MsgId; events are told apart by sender and creation time (WeChat's own advice).
    msg_id = fields.get("MsgId")
    if isinstance(msg_id, str) and msg_id:
        return f"msg:{msg_id}"
    return f"event:{fields['FromUserName']}:{fields.get('CreateTime')}:{fields.get('Event')}"


def respond(ctx: Context, message: BaseMessage) -> str | None:
    """The text reply to one message or event, None for silence."""
    kind = message.type if message.type != "event" else f"event:{message.event}"
    handler = _HANDLERS.get(kind)
    if handler is None:
        log.info("wechat_unhandled", kind=kind, openid=message.source)
        return None
    return handler(ctx, message)


def _subscribed(ctx: Context, message: BaseMessage) -> str:
    subscriber_by_openid(ctx.session, openid=message.source)
    return WELCOME


def _unsubscribed(ctx: Context, message: BaseMessage) -> None:
    # The subscriber and their tickets stay: they may come back. Pushes to them now fail with 43004.
    conversation.end(ctx.redis, message.source)
    log.info("wechat_unsubscribed", openid=message.source)


def _clicked(ctx: Context, message: BaseMessage) -> str | None:
    if message.key == MENU_REPORT:
        return _start_report(ctx, message.source)
    if message.key == MENU_PROGRESS:
        return progress(ctx.session, subscriber_by_openid(ctx.session, openid=message.source), None)
    return None


def _viewed(ctx: Context, message: BaseMessage) -> None:
    log.info("wechat_menu_view", openid=message.source, url=message.url)


def _start_report(ctx: Context, openid: str) -> str:
    subscriber_by_openid(ctx.session, openid=openid)
    conversation.save(ctx.redis, openid, conversation.load(ctx.redis, openid) or Report(), ctx.settings.wechat)
    located = conversation.recent_position(ctx.redis, openid) is not None
    return "好的，开始报修。" + ASK_DESCRIPTION + ("" if located else ASK_LOCATION)


def _texted(ctx: Context, message: BaseMessage) -> str:
    text = (message.content or "").strip()
    subscriber = subscriber_by_openid(ctx.session, openid=message.source)
    if text in REPORT_WORDS:
        return _start_report(ctx, message.source)
    number = TICKET_NUMBER.search(text.upper())
    if text in PROGRESS_WORDS or number:
        return progress(ctx.session, subscriber, number.group(1) if number else None)
    report = conversation.load(ctx.redis, message.source) or Report()
    phone = MOBILE.search(text)
    if phone:
        report.phone = phone.group(1)
        text = MOBILE.sub("", text).strip(" ,，。:：")
    if text:
        report.description = f"{report.description}\n{text}".strip()[:4000]
    return _advance(ctx, subscriber, report, message.id)


def _located(ctx: Context, message: BaseMessage) -> str:
    point = _point(message, "location_x", "location_y")
    conversation.keep_position(ctx.redis, message.source, point, ctx.settings.wechat)
    subscriber = subscriber_by_openid(ctx.session, openid=message.source)
    report = conversation.load(ctx.redis, message.source) or Report()
    if not report.description and not report.media:
        conversation.save(ctx.redis, message.source, report, ctx.settings.wechat)
        if _outside(ctx.session, point):
            log.warning("wechat_location_outside_area", openid=message.source, lat=point.lat, lng=point.lng)
            return OUTSIDE + ASK_DESCRIPTION
        return f"已收到您的位置{_label(message.label)}。" + ASK_DESCRIPTION
    return _advance(ctx, subscriber, report, message.id)


def _point(message: BaseMessage, lat_field: str, lng_field: str) -> LatLng:
    """The message's position (GCJ-02), refused as malformed unless two numbers in range."""
    try:
        lat, lng = float(getattr(message, lat_field)), float(getattr(message, lng_field))
    except (TypeError, ValueError):
        raise MalformedDelivery("the location is not a pair of numbers") from None
    if not (abs(lat) <= 90 and abs(lng) <= 180):  # also false for NaN
        raise MalformedDelivery("the location is out of range")
    return LatLng(lat, lng)


def _location_reported(ctx: Context, message: BaseMessage) -> None:
    # WeChat sends this on entering the account when location reporting is on: remembered, not answered.
    conversation.keep_position(ctx.redis, message.source, _point(message, "latitude", "longitude"),
                               ctx.settings.wechat)


def _media_sent(ctx: Context, message: BaseMessage) -> str:
    subscriber = subscriber_by_openid(ctx.session, openid=message.source)
    kind = "image" if message.type == "image" else "voice"
    open_ticket = _open_tickets(ctx.session, subscriber.id, limit=1)
    if open_ticket:
        jobs.enqueue_media(ctx.session, open_ticket[0].id, subscriber.id, message.media_id)
        return f"已收到，{'照片' if kind == 'image' else '语音'}会附在报修单 {open_ticket[0].number} 上。"
    report = conversation.load(ctx.redis, message.source) or Report()
    report.media.append((message.media_id, kind))
    if kind == "voice" and message.recognition:  # WeChat's speech recognition, when the account has it on
        report.description = f"{report.description}\n{message.recognition}".strip()
    return _advance(ctx, subscriber, report, message.id)


def _advance(ctx: Context, subscriber: Subscriber, report: Report, msg_id: int | None) -> str:
    """Report now if intake has all it needs, else keep what was told and ask for the rest."""
    openid = subscriber.openid or ""
    position = conversation.recent_position(ctx.redis, openid)
    phone = report.phone or subscriber.phone
    missing = [ask for ask, have in ((ASK_DESCRIPTION, report.description or report.media),
                                     (ASK_LOCATION, position), (ASK_PHONE, phone)) if not have]
    if missing or position is None or phone is None:
        conversation.save(ctx.redis, openid, report, ctx.settings.wechat)
        return "已记下。" + "".join(missing)
    try:
        # A savepoint: a refused intake (a misconfigured type, say) leaves nothing half-written.
        with ctx.session.begin_nested():
            reply = _report(ctx, subscriber, report, position=position, phone=phone, msg_id=msg_id)
    except DomainError as exc:
        log.error("wechat_report_refused", openid=openid, code=exc.code, detail=exc.detail)
        conversation.save(ctx.redis, openid, report, ctx.settings.wechat)
        return SORRY
    conversation.end(ctx.redis, openid)
    return reply


def _report(ctx: Context, subscriber: Subscriber, report: Report, *, position: LatLng, phone: str,
            msg_id: int | None) -> str:
    _remember_phone(ctx.session, subscriber, phone)
    body = TicketCreate(
        type_code=ctx.settings.wechat.report_type_code,
        description=report.description or "（通过微信发送了照片或语音）",
        location=Location(lat=position.lat, lng=position.lng, crs=crs.Crs.GCJ02),
        contact=Contact(name=subscriber.name or "微信用户", phone=phone), source=Source.WECHAT)
    intake = create_ticket(ctx.session, ctx.redis, actor=actor_of_subscriber(subscriber), body=body,
                           settings=ctx.settings, idempotency_key=f"wechat:{msg_id}" if msg_id else None)
    ticket = intake.ticket
    for media_id, _kind in report.media:
        jobs.enqueue_media(ctx.session, ticket.id, subscriber.id, media_id)
    log.info("wechat_report", ticket_id=ticket.id, number=ticket.number, merged=intake.merged,
             outside_area=ticket.outside_area)
    if intake.merged:
        return f"您已有进行中的报修单 {ticket.number}，本次内容已补充到该单。"
    if ticket.outside_area:
        return f"{OUTSIDE}报修单号 {ticket.number}。"
    return f"报修成功，单号 {ticket.number}。附近的维修员正在接单，接单后会把维修员姓名和电话发给您。"


def _remember_phone(session: Session, subscriber: Subscriber, phone: str) -> None:
    # The phone is unique among subscribers: one who phoned in before keeps it; this report still carries it.
    if subscriber.phone is None and session.scalar(select(Subscriber.id).where(Subscriber.phone == phone)) is None:
        subscriber.phone = phone
        session.flush()


def _outside(session: Session, gcj02: LatLng) -> bool:
    return regions.place(session, crs.to_wgs84(gcj02, crs.Crs.GCJ02)).outside_area


def _label(label: str | None) -> str:
    return f"（{label}）" if label else ""


def _open_tickets(session: Session, subscriber_id: int, *, limit: int) -> list[Ticket]:
    return list(session.scalars(select(Ticket).where(
        Ticket.subscriber_id == subscriber_id, Ticket.state.in_(OPEN_STATES)).order_by(Ticket.id.desc()).limit(limit)))


def progress(session: Session, subscriber: Subscriber, number: str | None) -> str:
    """Where the subscriber's tickets stand: the one numbered, else the open ones (newest first)."""
    if number:
        tickets = list(session.scalars(select(Ticket).where(Ticket.subscriber_id == subscriber.id,
                                                            Ticket.number == number)))
    else:
        tickets = _open_tickets(session, subscriber.id, limit=3)
    if not tickets:
        return f"没有找到报修单 {number}。" if number else "您目前没有进行中的报修单。发「报障」即可报修。"
    return "\n".join(_progress_line(session, ticket) for ticket in tickets)


def _progress_line(session: Session, ticket: Ticket) -> str:
    line = f"{ticket.number}：{STATE_WORDS[ticket.state]}"
    if ticket.technician_id is not None and ticket.state is TicketState.ACCEPTED:
        name, phone = session.execute(select(Technician.name, Technician.phone)
                                      .where(Technician.id == ticket.technician_id)).one()
        line += f"，维修员 {name}，电话 {phone}"
    return line


Handler = Callable[[Context, BaseMessage], str | None]
_HANDLERS: dict[str, Handler] = {
    "text": _texted, "location": _located, "image": _media_sent, "voice": _media_sent,
    "event:subscribe": _subscribed, "event:subscribe_scan": _subscribed, "event:unsubscribe": _unsubscribed,
    "event:location": _location_reported, "event:click": _clicked, "event:view": _viewed,
}
