"""Sending a notice: the outbox's channels for topics `notice.<channel>`, each attempt written to the log.

The outbox row carries only the notice's id; the address is read when it is sent (a number changed
meanwhile is used as it is now), and every attempt, whatever came of it, adds a `notice_attempt` row
in a transaction of its own, so the log keeps failures the outbox will retry. A notice already settled
(sent, or given up) is not sent again should its outbox row come round once more.
"""

from datetime import UTC, datetime

from redis import Redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatch.accounts.models import NoticeChannel, User
from dispatch.kernel.db import session_scope
from dispatch.kernel.settings import Settings
from dispatch.notices.adapters import Adapter, Address, Message, adapters
from dispatch.notices.models import Notice, NoticeAttempt, NoticeRoute, NoticeStatus
from dispatch.notices.service import topic
from dispatch.tickets import notify, outbox


def register(settings: Settings, redis: Redis) -> None:
    """Send notices through every channel's adapter (create_app, worker start-up)."""
    for channel, adapter in adapters(settings, redis).items():
        notify.register_channel(topic(channel), sender(adapter), topics={topic(channel)})


def sender(adapter: Adapter, *, max_attempts: int = outbox.MAX_ATTEMPTS) -> notify.Channel:
    def send(_topic: str, payload: dict[str, object]) -> None:
        notice_id = payload["notice_id"]
        assert isinstance(notice_id, int)
        deliver(adapter, notice_id, max_attempts=max_attempts)

    return send


def deliver(adapter: Adapter, notice_id: int, *, max_attempts: int) -> None:
    """Send one queued notice and log the attempt.

    Raises:
        notify.Undeliverable: retrying cannot help (also: the person removed the channel meanwhile).
        Exception: whatever the adapter raised (the outbox retries).
    """
    with session_scope() as session:
        loaded = _load(session, notice_id)
    if loaded is None:
        return  # sent or given up already
    address, message, attempts = loaded
    try:
        if address is None:
            raise notify.Undeliverable("the recipient no longer has this channel set up")
        adapter.send(address, message)
    except notify.Undeliverable as exc:
        _log(notice_id, error=f"undeliverable: {exc}", final=True)
        raise
    except Exception as exc:
        _log(notice_id, error=f"{type(exc).__name__}: {exc}", final=attempts + 1 >= max_attempts)
        raise
    _log(notice_id, error=None, final=True)


def _load(session: Session, notice_id: int) -> tuple[Address | None, Message, int] | None:
    notice = session.get(Notice, notice_id)
    if notice is None or notice.status is not NoticeStatus.QUEUED:
        return None
    message = Message(title=notice.title, markdown=notice.body, link=notice.link, params=notice.params)
    if notice.channel is NoticeChannel.WECHAT:
        openid = session.scalar(select(User.wechat_openid).where(User.id == notice.user_id))
        return (Address(target=openid) if openid else None), message, notice.attempts
    route = session.scalar(select(NoticeRoute).where(NoticeRoute.user_id == notice.user_id,
                                                     NoticeRoute.channel == notice.channel, NoticeRoute.enabled))
    return (Address(target=route.target, secret=route.secret) if route else None), message, notice.attempts


def _log(notice_id: int, *, error: str | None, final: bool) -> None:
    now = datetime.now(UTC)
    with session_scope() as session:
        session.add(NoticeAttempt(notice_id=notice_id, at=now, ok=error is None, error=error))
        values: dict[str, object] = {"attempts": Notice.attempts + 1, "last_error": error}
        if error is None:
            values.update(status=NoticeStatus.SENT, sent_at=now)
        elif final:
            values["status"] = NoticeStatus.UNDELIVERABLE
        session.execute(update(Notice).where(Notice.id == notice_id).values(**values))
