"""The transactional outbox: notifications decided in a transaction, sent after it commits.

`emit` writes a row in the caller's transaction, so a notification exists
exactly when the state change does. Jobs drain the table: right after the
commit (`notify.after_commit_drain`) and every few seconds from the worker,
so a message whose first attempt met a dead Redis goes out later; it is never
lost. Delivery is at least once: a drain that dies after sending but before
its commit sends again.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import structlog
from redis import Redis
from rq import Queue
from sqlalchemy import Insert, bindparam, insert, select, update
from sqlalchemy.orm import Session

from dispatch.kernel.db import session_scope
from dispatch.kernel.queues import Periodic, enqueue_tick
from dispatch.kernel.redis import connect
from dispatch.kernel.settings import get_settings
from dispatch.tickets import feed, notify
from dispatch.tickets.models import OutboxMessage

Deliver = Callable[[str, dict[str, Any]], None]

MAX_ATTEMPTS = 12  # 2 s, 4 s, ... then 10 min apart: about 37 min of retries before giving up
BACKOFF_CAP_S = 600
GAVE_UP = "gave up"  # prefix of last_error on a message no longer retried
BATCH = 500
MAX_BATCHES_PER_JOB = 20  # a job under constant inflow ends; the next one continues
DRAIN_QUEUE = "default"
DRAIN_EVERY_S = 5.0
TICK_JOB_ID = "outbox-drain-tick"

log = structlog.get_logger()


def insert_message() -> Insert:
    """The INSERT of one row, its values bound as `message` names them: for a caller that sends it as part of
    a statement of its own (a ticket's event and its feed message in one round trip)."""
    return insert(OutboxMessage).values(topic=bindparam("outbox_topic"), payload=bindparam("outbox_payload"),
                                        attempts=0)


def message(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The parameters of `insert_message`."""
    return {"outbox_topic": topic, "outbox_payload": payload}


# On the connection, not through the session: every state change writes one, and the ORM's unit of work cost a
# grab or an intake more than the statement itself.
_INSERT = insert_message()


def emit(session: Session, topic: str, payload: dict[str, Any]) -> None:
    """Queue a notification in the caller's transaction; it is sent only if that transaction commits."""
    session.connection().execute(_INSERT, message(topic, payload))


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failed ones: 2^attempts seconds, at most 10 minutes."""
    return timedelta(seconds=min(2 ** min(attempts, 30), BACKOFF_CAP_S))


def drain(session: Session, *, deliver: Deliver, limit: int = BATCH, max_attempts: int = MAX_ATTEMPTS,
          now: datetime | None = None) -> int:
    """Deliver due unsent messages in id order; returns how many were sent.

    Claims rows with FOR UPDATE SKIP LOCKED, so concurrent drains split the
    work and each row is delivered by one of them; the locks are held until
    the caller's transaction ends, which also records the outcome. A failed
    delivery counts an attempt, stores the error and backs off; after
    `max_attempts` the row stays unsent with last_error starting "gave up".
    """
    return _drain(session, deliver=deliver, limit=limit, max_attempts=max_attempts, now=now)[1]


def _drain(session: Session, *, deliver: Deliver, limit: int, max_attempts: int,
           now: datetime | None) -> tuple[int, int]:
    now = now or datetime.now(UTC)
    rows = session.execute(
        select(OutboxMessage.id, OutboxMessage.topic, OutboxMessage.payload, OutboxMessage.attempts)
        .where(OutboxMessage.sent_at.is_(None), OutboxMessage.available_at <= now,
               OutboxMessage.attempts < max_attempts)
        .order_by(OutboxMessage.id).limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return 0, 0
    writers = notify.writers_for(session)
    sent: list[int] = []
    failed_topics: set[str] = set()
    for message_id, topic, payload, attempts in rows:
        if topic in failed_topics:
            # Its channel just failed: trying the rest now would only pile up attempts
            # (and connect timeouts). Left as they are, they are due at the next drain.
            continue
        try:
            deliver(topic, payload)
            wanted = writers(topic, payload)
            if wanted:
                # A savepoint: a writer that fails undoes its own rows only, and the message is retried.
                with session.begin_nested():
                    for write in wanted:
                        write(session, topic, payload)
        except notify.Undeliverable as exc:
            _give_up(session, message_id, topic=topic, max_attempts=max_attempts, error=f"undeliverable: {exc}")
        except Exception as exc:
            failed_topics.add(topic)
            _record_failure(session, message_id, topic=topic, attempts=attempts + 1, max_attempts=max_attempts,
                            error=f"{type(exc).__name__}: {exc}", now=now)
        else:
            sent.append(message_id)
    if sent:
        session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(sent)).values(sent_at=now)
                        .execution_options(synchronize_session=False))
    return len(rows), len(sent)


def _give_up(session: Session, message_id: int, *, topic: str, max_attempts: int, error: str) -> None:
    # Attempts jump to the maximum: the drain's query then never picks the row again.
    log.error("outbox_gave_up", message_id=message_id, topic=topic, error=error)
    session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id)
                    .values(attempts=max_attempts, last_error=f"{GAVE_UP}: {error}"[:2000])
                    .execution_options(synchronize_session=False))


def _record_failure(session: Session, message_id: int, *, topic: str, attempts: int, max_attempts: int,
                    error: str, now: datetime) -> None:
    values: dict[str, Any] = {"attempts": attempts, "last_error": error[:2000]}
    if attempts >= max_attempts:
        values["last_error"] = f"{GAVE_UP} after {attempts} attempts: {error}"[:2000]
        log.error("outbox_gave_up", message_id=message_id, topic=topic, attempts=attempts, error=error)
    else:
        values["available_at"] = now + backoff(attempts)
        log.warning("outbox_delivery_failed", message_id=message_id, topic=topic, attempts=attempts, error=error)
    session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id).values(**values)
                    .execution_options(synchronize_session=False))


# --- jobs -------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _feed_redis() -> Redis:
    return connect(get_settings().redis_url)


def drain_outbox_job() -> int:
    """rq job: drain the outbox in batches, each its own transaction; returns how many were sent.

    Safe to run concurrently and twice: rows are claimed with SKIP LOCKED and
    marked sent in the claiming transaction.
    """
    if not notify.has_channel(feed.TOPIC):  # a worker started without create_app's wiring
        feed.register(_feed_redis())
    total = 0
    for _ in range(MAX_BATCHES_PER_JOB):
        with session_scope() as session:
            claimed, sent = _drain(session, deliver=notify.deliver, limit=BATCH, max_attempts=MAX_ATTEMPTS,
                                   now=None)
        total += sent
        if claimed < BATCH:
            break
    return total


def enqueue_drain_tick(queue: Queue) -> bool:
    """Enqueue the periodic drain under its fixed job id; False when one is still queued or running."""
    return enqueue_tick(queue, drain_outbox_job, job_id=TICK_JOB_ID, timeout_s=notify.DRAIN_JOB_TIMEOUT_S)


def drain_tick(every_s: float = DRAIN_EVERY_S) -> Periodic:
    """The drain as a periodic job of the worker's ticker."""
    return Periodic(drain_outbox_job, TICK_JOB_ID, every_s, notify.DRAIN_JOB_TIMEOUT_S)
