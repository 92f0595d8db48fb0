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

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import structlog
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.job import Job, JobStatus
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


Writer = Callable[[Session, str, dict[str, Any]], None]
# Asked once per drain, in its transaction: which messages the writer has anything to write for. Webhooks with
# none enabled for an event cost each message a savepoint and a statement that wrote nothing (two feed events
# per report, a millisecond of the worker's time).
Interest = Callable[[Session], Callable[[dict[str, Any]], bool]]


@dataclass(frozen=True)
class _Writer:
    fn: Writer
    topics: frozenset[str]
    interest: Interest | None


_WRITERS: dict[str, _Writer] = {}


def register_writer(name: str, fn: Writer, *, topics: Iterable[str], interest: Interest | None = None) -> None:
    """Have `fn(session, topic, payload)` write what a message calls for (rows another job sends, such as
    webhook deliveries) in the drain's own transaction, right after the message's channels sent it: written
    exactly when the message is marked sent, without a transaction of its own per message. With `interest`,
    only for the messages it says the writer hears."""
    _WRITERS[name] = _Writer(fn, frozenset(topics), interest)


def writers_for(session: Session) -> Callable[[str, dict[str, Any]], list[Writer]]:
    """For one drain: the writers that have something to write for a message (topic, payload)."""
    hearing = [(w.fn, w.topics, w.interest(session) if w.interest is not None else None)
               for w in list(_WRITERS.values())]

    def wanted(topic: str, payload: dict[str, Any]) -> list[Writer]:
        return [fn for fn, topics, hears in hearing if topic in topics and (hears is None or hears(payload))]

    return wanted


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
    """Have the outbox drained on `queue` right after this session's transaction commits.

    Nothing is asked for when the transaction rolls back. In a process that
    runs a `DrainWaker` for the queue (an API process) the commit only wakes
    it; elsewhere (a job, the CLI) the drain is enqueued in place. If Redis is
    down the failure is logged and swallowed: the rows are committed, and the
    worker's periodic drain sends them later. Calling it several times in one
    transaction asks once per queue.
    """
    waker = _WAKERS.get(queue.key)
    if waker is not None and waker.pid == os.getpid():
        after_commit(session, f"notify.drain:{queue.key}", waker.wake)
    else:
        after_commit(session, f"notify.drain:{queue.key}", lambda: _enqueue_drain(queue))


class Enqueued(Enum):
    NOW = "now"  # a drain is queued that will take every row committed so far
    BUSY = "busy"  # a drain runs and may have made its last claim already
    FAILED = "failed"  # Redis is unreachable: the periodic drain sends the rows


def _enqueue_drain(queue: Queue) -> Enqueued:
    # One drain at a time under a fixed id: a burst of 100 reports a second
    # enqueued (and the worker forked) 100 drains a second, each finding the
    # rows the first had sent. A drain that is queued takes these rows too (it
    # claims batches until one comes back short).
    try:
        queue.enqueue(DRAIN_JOB, job_id=DRAIN_NOW_JOB_ID, unique=True, result_ttl=0, failure_ttl=60,
                      job_timeout=DRAIN_JOB_TIMEOUT_S, description="outbox drain after commit")
    except DuplicateJobError:
        queued = Job(DRAIN_NOW_JOB_ID, connection=queue.connection).get_status(refresh=True) is JobStatus.QUEUED
        return Enqueued.NOW if queued else Enqueued.BUSY
    except (RedisError, OSError) as exc:
        log.warning("outbox_drain_enqueue_failed", queue=queue.name, error=f"{type(exc).__name__}: {exc}")
        return Enqueued.FAILED
    return Enqueued.NOW


# While a drain runs, a woken waker asks again this often until one is queued.
BUSY_RETRY_S = 0.05
_WAKERS: dict[str, "DrainWaker"] = {}


class DrainWaker:
    """Enqueues the outbox drain from a thread of its own, so that a commit only sets a flag.

    rq's enqueue is several Redis round trips: on the request path of every
    report and grab it cost more than the report's own statements. The
    thread coalesces a burst of commits into one enqueue; a commit that lands
    while a drain runs (past its last claim, perhaps) is enqueued again once
    that drain ends, so its rows go out at once and not at the next periodic
    drain.
    """

    def __init__(self, queue: Queue) -> None:
        self.pid = os.getpid()  # a forked child has no such thread: it enqueues in place
        self._queue = queue
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-drain-waker", daemon=True)

    def start(self) -> "DrainWaker":
        _WAKERS[self._queue.key] = self
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wanted.set()

    def stop(self) -> None:
        """Enqueue what was asked for, then end the thread."""
        if _WAKERS.get(self._queue.key) is self:
            del _WAKERS[self._queue.key]
        self._stopping.set()
        self._wanted.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            while _enqueue_drain(self._queue) is Enqueued.BUSY and not self._stopping.wait(BUSY_RETRY_S):
                pass
            if self._stopping.is_set():
                return
