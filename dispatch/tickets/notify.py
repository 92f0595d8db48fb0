"""The notifier seam: channels (live feed, later WeChat template messages) behind one `deliver`.

A channel is a callable `fn(topic, payload)` that sends one message and raises
when it could not; the outbox then keeps the message and retries it. Channels
are registered by the composition root (`create_app`) and by the worker at
start-up, so a higher layer (wechat) plugs in without dispatch.tickets
importing it.

Routing is by topic: a channel receives the topics it was registered for
(by default the topic named like the channel, e.g. channel "feed" gets topic
"feed"). One outbox row per (topic, message) keeps retries per channel: a
WeChat outage never makes the live feed repeat an event.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import DuplicateJobError
from sqlalchemy.orm import Session

from dispatch.kernel.db import after_commit

Channel = Callable[[str, dict[str, Any]], None]

# By dotted name: the job lives in outbox.py, which delivers through this module.
DRAIN_JOB = "dispatch.tickets.outbox.drain_outbox_job"
DRAIN_JOB_TIMEOUT_S = 300
DRAIN_NOW_JOB_ID = "outbox-drain-now"

log = structlog.get_logger()


class NoChannel(LookupError):
    """No channel is registered for a topic: the message stays in the outbox (and is retried)."""


class Undeliverable(Exception):
    """A channel's verdict that retrying cannot help (the recipient unfollowed, a bad address).

    The outbox records it as given up at once instead of retrying for half an hour.
    """


@dataclass(frozen=True)
class _Registration:
    fn: Channel
    topics: frozenset[str]


_CHANNELS: dict[str, _Registration] = {}


def register_channel(name: str, fn: Channel, *, topics: Iterable[str] | None = None) -> None:
    """Send the given topics (default: the topic called `name`) through `fn`; replaces a channel of that name."""
    _CHANNELS[name] = _Registration(fn=fn, topics=frozenset(topics) if topics is not None else frozenset({name}))


def remove_channel(name: str) -> None:
    """Stop sending through `name` (an app created without that channel's configuration)."""
    _CHANNELS.pop(name, None)


def has_channel(name: str) -> bool:
    return name in _CHANNELS


def deliver(topic: str, payload: dict[str, Any]) -> None:
    """Send one message through every channel registered for its topic.

    Raises:
        NoChannel: nothing is registered for the topic.
        Exception: whatever a channel raised (the outbox records it and retries).
    """
    targets = [reg.fn for reg in list(_CHANNELS.values()) if topic in reg.topics]
    if not targets:
        raise NoChannel(f"no notification channel for topic {topic!r}")
    for fn in targets:
        fn(topic, payload)


def after_commit_drain(session: Session, queue: Queue) -> None:
    """Enqueue the outbox drain on `queue` right after this session's transaction commits.

    Nothing is enqueued when the transaction rolls back. If Redis is down at
    that moment the failure is logged and swallowed: the rows are committed,
    and the worker's periodic drain sends them later. Calling it several times
    in one transaction enqueues one drain per queue.
    """
    after_commit(session, f"notify.drain:{queue.key}", lambda: _enqueue_drain(queue))


def _enqueue_drain(queue: Queue) -> None:
    # One drain at a time under a fixed id: a burst of 100 reports a second
    # enqueued (and the worker forked) 100 drains a second, each finding the
    # rows the first had sent. A drain that is queued or running takes these
    # rows too (it claims batches until one comes back short); a commit landing
    # after its last claim waits for the periodic drain.
    try:
        queue.enqueue(DRAIN_JOB, job_id=DRAIN_NOW_JOB_ID, unique=True, result_ttl=0, failure_ttl=60,
                      job_timeout=DRAIN_JOB_TIMEOUT_S, description="outbox drain after commit")
    except DuplicateJobError:
        return
    except (RedisError, OSError) as exc:
        log.warning("outbox_drain_enqueue_failed", queue=queue.name, error=f"{type(exc).__name__}: {exc}")
