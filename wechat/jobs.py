"""rq jobs of the WeChat layer: media a subscriber sent, fetched from WeChat and attached to their ticket."""

import hashlib
import io

import structlog
from redis import Redis
from rq import Retry
from sqlalchemy import select
from sqlalchemy.orm import Session
from wechatpy.exceptions import WeChatClientException

from dispatch.accounts.models import Subscriber
from dispatch.accounts.service import actor_of_subscriber
from dispatch.kernel.db import session_scope
from dispatch.kernel.queues import queue
from dispatch.kernel.redis import connect
from dispatch.kernel.settings import get_settings
from dispatch.tickets import attachments, notify, outbox
from dispatch.tickets.errors import AttachmentBudgetSpent, TooLarge, UnsupportedMedia
from dispatch.tickets.models import Attachment, Ticket
from wechat.client import AccountClient

log = structlog.get_logger()

MEDIA_TOPIC = "wechat.media"
MEDIA_GONE = frozenset({40007})  # invalid media_id: WeChat keeps temporary media three days
MEDIA_RETRY = Retry(max=4, interval=[10, 60, 300, 1800])


def enqueue_media(session: Session, ticket_id: int, subscriber_id: int, media_id: str) -> None:
    """Fetch a photo or voice message for a ticket once this transaction commits (the ticket may be new in it).

    Through the outbox: the job must not run before the ticket it attaches to is committed.
    """
    outbox.emit(session, MEDIA_TOPIC, {"ticket_id": ticket_id, "subscriber_id": subscriber_id,
                                       "media_id": media_id})
    notify.after_commit_drain(session, queue())


def media_channel(topic: str, payload: dict[str, object]) -> None:
    """The notifier channel for MEDIA_TOPIC: hands the download to rq, which retries with backoff."""
    queue().enqueue(fetch_media, payload["ticket_id"], payload["subscriber_id"], payload["media_id"],
                    retry=MEDIA_RETRY, job_timeout=120, result_ttl=0,
                    description=f"WeChat media {payload['media_id']} for ticket {payload['ticket_id']}")


def fetch_media(ticket_id: int, subscriber_id: int, media_id: str) -> int | None:
    """rq job: download one temporary media file and attach it to the ticket; returns the attachment id.

    Safe to run twice: a file already attached (same SHA-256) is not stored again.
    """
    settings = get_settings()
    redis: Redis = connect(settings.redis_url)
    client = AccountClient(settings.wechat, redis)
    try:
        content: bytes = client.call(lambda: client.media.download(media_id)).content
    except WeChatClientException as exc:
        if exc.errcode in MEDIA_GONE:
            log.warning("wechat_media_gone", media_id=media_id, ticket_id=ticket_id, errcode=exc.errcode)
            return None
        raise
    finally:
        redis.close()
    digest = hashlib.sha256(content).hexdigest()
    with session_scope() as session:
        ticket, subscriber = session.get(Ticket, ticket_id), session.get(Subscriber, subscriber_id)
        if ticket is None or subscriber is None:
            return None
        done = session.scalar(select(Attachment.id).where(Attachment.ticket_id == ticket_id,
                                                          Attachment.sha256 == digest))
        if done is not None:
            return done
        try:
            attachment = attachments.store(session, ticket=ticket, actor=actor_of_subscriber(subscriber),
                                           upload=io.BytesIO(content), media_dir=settings.media_dir,
                                           caps=attachments.Caps.of(settings))
        except (UnsupportedMedia, TooLarge, AttachmentBudgetSpent) as exc:
            log.warning("wechat_media_refused", media_id=media_id, ticket_id=ticket_id, reason=exc.detail)
            return None
        return attachment.id
