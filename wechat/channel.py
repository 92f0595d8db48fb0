"""Template messages: ticket events on the feed become WeChat pushes, through the outbox.

Two hops, each retried on its own: the "wechat.fanout" channel reads a feed
event (ticket.offered, ticket.accepted, ...), finds who should hear of it
(the offered technicians bound to the account; the reporting subscriber) and
writes one outbox row per recipient under the topic "wechat"; the "wechat"
channel sends each row as a template message. A WeChat outage so retries one
recipient's message with the outbox's backoff and never repeats the feed
event; a recipient who unfollowed (43004) or a bad openid (40003) is recorded
as undeliverable at once.
"""

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import structlog
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session
from wechatpy.exceptions import WeChatClientException

from dispatch.accounts.models import Subscriber
from dispatch.kernel.db import session_scope
from dispatch.kernel.queues import queue
from dispatch.kernel.settings import WechatSettings
from dispatch.tickets import feed, notify, outbox
from dispatch.tickets.models import Ticket, TicketType
from technicians.models import Technician
from wechat.client import RECIPIENT_GONE, AccountClient
from wechat.jobs import MEDIA_TOPIC, media_channel

log = structlog.get_logger()

TOPIC = "wechat"
FANOUT = "wechat.fanout"
CHANNELS = (TOPIC, FANOUT, MEDIA_TOPIC)
TECHNICIAN_EVENTS = {"ticket.offered", "ticket.urged", "ticket.assigned"}
SUBSCRIBER_EVENTS = {"ticket.accepted": "accepted", "ticket.reassigned": "accepted",
                     "ticket.arrived": "arrived", "ticket.completed": "completed"}
Push = dict[str, Any]


def register(cfg: WechatSettings, redis: Redis) -> None:
    """Send ticket events as template messages (create_app, worker start-up); none without an app id."""
    if not cfg.enabled:
        for name in CHANNELS:
            notify.remove_channel(name)
        return
    notify.register_channel(FANOUT, fanout_channel(cfg), topics={feed.TOPIC})
    notify.register_channel(TOPIC, template_channel(cfg, redis), topics={TOPIC})
    notify.register_channel(MEDIA_TOPIC, media_channel, topics={MEDIA_TOPIC})


def page_link(cfg: WechatSettings, path: str) -> str:
    """A link that opens `path` signed in: through the account's OAuth (only the openid, silently)."""
    return f"{cfg.public_base_url.rstrip('/')}/wechat/oauth/start?next={quote(path, safe='')}"


def fanout_channel(cfg: WechatSettings) -> notify.Channel:
    def fan_out(topic: str, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind not in TECHNICIAN_EVENTS and kind not in SUBSCRIBER_EVENTS:
            return
        with session_scope() as session:
            pushes = pushes_for(session, cfg, event)
            for push in pushes:
                outbox.emit(session, TOPIC, push)
            if pushes:
                notify.after_commit_drain(session, queue())

    return fan_out


def pushes_for(session: Session, cfg: WechatSettings, event: dict[str, Any]) -> list[Push]:
    """The template messages one feed event calls for, one per recipient bound to the account."""
    row = session.execute(select(Ticket, TicketType.name).join(TicketType, TicketType.code == Ticket.type_code)
                          .where(Ticket.id == event["ticket_id"])).first()
    if row is None:
        return []
    ticket, type_name = row
    if event["type"] == "ticket.offered":
        return _offers(session, cfg, ticket, type_name, event)
    if event["type"] == "ticket.urged":
        return _urged(session, cfg, ticket, type_name, event)
    if event["type"] == "ticket.assigned":
        return [*_system_assigned(session, cfg, ticket, type_name, event),
                *_to_subscriber(session, cfg, ticket, type_name, "accepted")]
    return _to_subscriber(session, cfg, ticket, type_name, SUBSCRIBER_EVENTS[event["type"]])


def _data(**fields: str) -> dict[str, dict[str, str]]:
    return {name: {"value": value} for name, value in fields.items()}


def _offers(session: Session, cfg: WechatSettings, ticket: Ticket, type_name: str,
            event: dict[str, Any]) -> list[Push]:
    distances = event.get("distances_m") or {}
    bound = _bound(session, event.get("technician_ids") or [])
    return [{"openid": openid, "kind": "offer", "ticket_id": ticket.id,
             "url": page_link(cfg, f"/m/tech?ticket={ticket.id}"),
             "data": _data(first="附近有新工单，先抢先得", keyword1=type_name,
                           keyword2=f"{distances.get(str(technician_id), '?')} 米",
                           keyword3=ticket.address or "", keyword4=ticket.number, remark="点击查看并抢单")}
            for technician_id, openid in bound]


def _bound(session: Session, technician_ids: list[int]) -> list[tuple[int, str]]:
    """The technicians among these who bound WeChat, with their openids."""
    return [(technician_id, openid) for technician_id, openid in session.execute(
        select(Technician.id, Technician.wechat_openid).where(
            Technician.id.in_(technician_ids), Technician.wechat_openid.is_not(None), Technician.active))
        if openid is not None]


def _system_assigned(session: Session, cfg: WechatSettings, ticket: Ticket, type_name: str,
                     event: dict[str, Any]) -> list[Push]:
    """The system gave the ticket to its technician (a branch's assign or hybrid mode): told with the offer's
    template, since it names the same things."""
    return [{"openid": openid, "kind": "offer", "ticket_id": ticket.id,
             "url": page_link(cfg, f"/m/tech?ticket={ticket.id}"),
             "data": _data(first="系统已为您派单", keyword1=type_name, keyword2="",
                           keyword3=ticket.address or "", keyword4=ticket.number,
                           remark="请尽快前往；不便前往请在页面拒单并说明原因")}
            for _, openid in _bound(session, event.get("technician_ids") or [])]


def _urged(session: Session, cfg: WechatSettings, ticket: Ticket, type_name: str,
           event: dict[str, Any]) -> list[Push]:
    return [{"openid": openid, "kind": "urged", "ticket_id": ticket.id,
             "url": page_link(cfg, f"/m/tech?ticket={ticket.id}"),
             "data": _data(first=f"用户催办（第 {event.get('urge_count', 1)} 次）", keyword1=type_name,
                           keyword2=ticket.number, keyword3=ticket.address or "",
                           remark=event.get("note") or "请尽快处理")}
            for _, openid in _bound(session, event.get("technician_ids") or [])]


def _to_subscriber(session: Session, cfg: WechatSettings, ticket: Ticket, type_name: str, kind: str) -> list[Push]:
    openid = session.scalar(select(Subscriber.openid).where(Subscriber.id == ticket.subscriber_id)) \
        if ticket.subscriber_id is not None else None
    if openid is None:
        return []  # reported by phone or at the counter: nobody to push to
    name, phone = session.execute(select(Technician.name, Technician.phone)
                                  .where(Technician.id == ticket.technician_id)).first() or ("", "")
    fields = {
        "accepted": _data(first="维修员已接单", keyword1=ticket.number, keyword2=name, keyword3=phone,
                          remark="维修员会尽快与您联系"),
        "arrived": _data(first="维修员已到达", keyword1=ticket.number, keyword2=name, keyword3=phone,
                         remark=type_name),
        "completed": _data(first="维修已完成，请为本次服务评价", keyword1=ticket.number, keyword2=name,
                           keyword3=type_name, remark="点击评价"),
    }[kind]
    path = f"/m/report?ticket={ticket.id}&rate=1" if kind == "completed" else f"/m/report?ticket={ticket.id}"
    return [{"openid": openid, "kind": kind, "ticket_id": ticket.id, "url": page_link(cfg, path), "data": fields}]


def template_channel(cfg: WechatSettings, redis: Redis) -> notify.Channel:
    client = AccountClient(cfg, redis)

    def send(topic: str, push: Push) -> None:
        send_template(client, cfg, push)

    return send


def send_template(client: AccountClient, cfg: WechatSettings, push: Push) -> None:
    """Send one template message.

    Raises:
        notify.Undeliverable: the recipient cannot receive it (not following, bad openid).
        WeChatClientException, requests.RequestException: anything else (the outbox retries).
    """
    template_id: str = getattr(cfg, f"template_{push['kind']}", "")
    if not template_id:
        log.warning("wechat_template_unset", kind=push["kind"], ticket_id=push.get("ticket_id"))
        return
    send: Callable[[], Any] = lambda: client.message.send_template(  # noqa: E731
        push["openid"], template_id, push["data"], url=push.get("url"))
    try:
        client.call(send)
    except WeChatClientException as exc:
        if exc.errcode in RECIPIENT_GONE:
            raise notify.Undeliverable(f"WeChat {exc.errcode} {exc.errmsg} for {push['openid']}") from exc
        raise
