"""The outbox and the notifier seam on real PostgreSQL and Redis: nothing sent twice, nothing lost."""

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import JobStatus
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dispatch.kernel import db as kernel_db
from dispatch.kernel.db import Database
from dispatch.kernel.queues import start_ticker
from dispatch.kernel.settings import Settings
from dispatch.tickets import feed, notify, outbox
from dispatch.tickets.models import OutboxMessage

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once


class Recorder:
    """A channel that remembers what it was asked to send (thread-safe)."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.fail_with = fail_with
        self._lock = threading.Lock()

    def __call__(self, topic: str, payload: dict[str, Any]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        with self._lock:
            self.sent.append((topic, payload))

    @property
    def numbers(self) -> list[int]:
        return [payload["n"] for _, payload in self.sent]


@pytest.fixture
def outbox_db(engine: Engine, owner_engine: Engine) -> Iterator[Engine]:
    """Real commits (several connections race); the outbox is emptied before and after."""
    with owner_engine.begin() as conn:
        conn.execute(text("TRUNCATE outbox RESTART IDENTITY"))
    yield engine
    with owner_engine.begin() as conn:
        conn.execute(text("TRUNCATE outbox RESTART IDENTITY"))


@pytest.fixture(autouse=True)
def channels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test registers its own channels and writers; the process-wide registries are restored afterwards."""
    monkeypatch.setattr(notify, "_CHANNELS", {})
    monkeypatch.setattr(notify, "_WRITERS", {})


@pytest.fixture
def job_database(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """Jobs open `session_scope()` on the process's database: point it at the test database."""
    database = Database(settings)
    monkeypatch.setattr(kernel_db, "get_database", lambda: database)
    yield database
    database.dispose()


def emit_committed(engine: Engine, *numbers: int, topic: str = "test") -> list[int]:
    with Session(engine) as session, session.begin():
        for n in numbers:
            outbox.emit(session, topic, {"n": n})
    with Session(engine) as session:
        return list(session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id)))[-len(numbers):]


def drain_committed(engine: Engine, deliver: Any, **options: Any) -> int:
    with Session(engine) as session, session.begin():
        return outbox.drain(session, deliver=deliver, **options)


def message(engine: Engine, message_id: int) -> OutboxMessage:
    with Session(engine) as session:
        row = session.get(OutboxMessage, message_id)
        assert row is not None
        return row


def later(seconds: float) -> datetime:
    """A moment in the future: how the tests let a backoff pass without sleeping."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


# --- emit and drain ---------------------------------------------------------------------

def test_emit_in_a_transaction_that_rolls_back_leaves_nothing(outbox_db: Engine) -> None:
    with pytest.raises(RuntimeError), Session(outbox_db) as session, session.begin():
        outbox.emit(session, "test", {"n": 1})
        session.flush()  # the row exists inside the transaction...
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
        raise RuntimeError("the state change failed")
    with Session(outbox_db) as session:  # ...and not after it
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_emit_commit_and_drain_deliver_each_message_once_in_order(outbox_db: Engine) -> None:
    recorder = Recorder()
    ids = emit_committed(outbox_db, 1, 2, 3)

    assert drain_committed(outbox_db, recorder) == 3
    assert drain_committed(outbox_db, recorder) == 0

    assert recorder.numbers == [1, 2, 3]
    assert all(message(outbox_db, i).sent_at is not None for i in ids)


def test_drain_leaves_messages_for_the_next_batch_beyond_its_limit(outbox_db: Engine) -> None:
    recorder = Recorder()
    emit_committed(outbox_db, *range(5))

    assert drain_committed(outbox_db, recorder, limit=2) == 2
    assert drain_committed(outbox_db, recorder, limit=10) == 3
    assert recorder.numbers == [0, 1, 2, 3, 4]


def test_a_drain_skips_rows_another_drain_holds_and_takes_the_rest(outbox_db: Engine) -> None:
    emit_committed(outbox_db, *range(10))
    first, second = Recorder(), Recorder()
    second_done = threading.Event()
    first_holds_its_rows = threading.Event()

    def slow_deliver(topic: str, payload: dict[str, Any]) -> None:
        if not first_holds_its_rows.is_set():
            first_holds_its_rows.set()
            # Without SKIP LOCKED the second drain would wait on our rows and this would time out.
            assert second_done.wait(timeout=15), "the second drain waited for the first one's rows"
        first(topic, payload)

    with ThreadPoolExecutor(max_workers=1) as pool:
        holding = pool.submit(drain_committed, outbox_db, slow_deliver, limit=5)
        assert first_holds_its_rows.wait(timeout=15)
        assert drain_committed(outbox_db, second) == 5
        second_done.set()
        assert holding.result(timeout=15) == 5

    assert first.numbers == [0, 1, 2, 3, 4]
    assert second.numbers == [5, 6, 7, 8, 9]


def test_racing_drains_deliver_every_message_exactly_once(outbox_db: Engine) -> None:
    emit_committed(outbox_db, *range(300))
    recorder = Recorder()
    racers = 4
    barrier = threading.Barrier(racers)

    def drain_until_empty() -> int:
        barrier.wait(timeout=15)
        total = 0
        while (sent := drain_committed(outbox_db, recorder, limit=25)) > 0:
            total += sent
        return total

    with ThreadPoolExecutor(max_workers=racers) as pool:
        totals = [f.result(timeout=60) for f in [pool.submit(drain_until_empty) for _ in range(racers)]]

    assert sum(totals) == 300
    assert sorted(recorder.numbers) == list(range(300))  # each exactly once
    with Session(outbox_db) as session:
        assert session.scalar(select(func.count()).where(OutboxMessage.sent_at.is_(None))) == 0


# --- failures ---------------------------------------------------------------------------

def test_a_failing_channel_keeps_the_message_with_its_error_and_a_later_try(outbox_db: Engine) -> None:
    [message_id] = emit_committed(outbox_db, 1)
    before = datetime.now(UTC)

    assert drain_committed(outbox_db, Recorder(fail_with=ConnectionError("wechat is down"))) == 0

    row = message(outbox_db, message_id)
    assert row.sent_at is None
    assert row.attempts == 1
    assert row.last_error == "ConnectionError: wechat is down"
    assert row.available_at >= before + outbox.backoff(1)
    recorder = Recorder()
    assert drain_committed(outbox_db, recorder) == 0  # not retried before its time
    assert drain_committed(outbox_db, recorder, now=later(outbox.backoff(1).total_seconds() + 1)) == 1
    assert recorder.numbers == [1]
    assert message(outbox_db, message_id).sent_at is not None


def test_backoff_doubles_and_is_capped_at_ten_minutes() -> None:
    assert [outbox.backoff(n).total_seconds() for n in (1, 2, 3, 9, 10, 50)] == [2, 4, 8, 512, 600, 600]


def test_a_message_that_keeps_failing_is_given_up_and_marked_not_retried_forever(outbox_db: Engine) -> None:
    [message_id] = emit_committed(outbox_db, 1)
    broken = Recorder(fail_with=ValueError("template rejected"))

    assert drain_committed(outbox_db, broken, max_attempts=3) == 0
    assert drain_committed(outbox_db, broken, max_attempts=3, now=later(10)) == 0
    assert drain_committed(outbox_db, broken, max_attempts=3, now=later(100)) == 0

    row = message(outbox_db, message_id)
    assert (row.attempts, row.sent_at) == (3, None)
    assert row.last_error is not None
    assert row.last_error.startswith(f"{outbox.GAVE_UP} after 3 attempts: ValueError: template rejected")
    recorder = Recorder()
    assert drain_committed(outbox_db, recorder, max_attempts=3, now=later(10_000)) == 0
    assert recorder.sent == []


def test_an_undeliverable_message_is_given_up_at_once_and_the_rest_of_its_topic_still_goes(
        outbox_db: Engine) -> None:
    gone, fine = emit_committed(outbox_db, 1, 2, topic="wechat")
    delivered = Recorder()

    def deliver(topic: str, payload: dict[str, Any]) -> None:
        if payload["n"] == 1:
            raise notify.Undeliverable("43004 require subscribe")
        delivered(topic, payload)

    assert drain_committed(outbox_db, deliver) == 1
    assert delivered.numbers == [2] and message(outbox_db, fine).sent_at is not None
    row = message(outbox_db, gone)
    assert (row.sent_at, row.attempts) == (None, outbox.MAX_ATTEMPTS)
    assert row.last_error == f"{outbox.GAVE_UP}: undeliverable: 43004 require subscribe"
    assert drain_committed(outbox_db, deliver, now=later(10_000)) == 0


def test_after_a_channel_fails_its_other_messages_wait_and_other_topics_still_go(outbox_db: Engine) -> None:
    wechat_1, wechat_2 = emit_committed(outbox_db, 1, 2, topic="wechat")
    [feed_id] = emit_committed(outbox_db, 3, topic="feed")
    live = Recorder()
    notify.register_channel("wechat", Recorder(fail_with=TimeoutError("api.weixin.qq.com")))
    notify.register_channel("feed", live)

    assert drain_committed(outbox_db, notify.deliver) == 1

    assert live.numbers == [3]
    assert message(outbox_db, wechat_1).attempts == 1
    untouched = message(outbox_db, wechat_2)  # not tried: its channel had just failed
    assert (untouched.attempts, untouched.last_error, untouched.sent_at) == (0, None, None)
    assert message(outbox_db, feed_id).sent_at is not None


def test_a_topic_without_a_channel_is_kept_and_retried(outbox_db: Engine) -> None:
    [message_id] = emit_committed(outbox_db, 1, topic="sms")

    assert drain_committed(outbox_db, notify.deliver) == 0

    row = message(outbox_db, message_id)
    assert row.attempts == 1
    assert row.last_error == "NoChannel: no notification channel for topic 'sms'"


def test_a_failing_writer_undoes_only_its_own_rows_and_its_message_is_retried(outbox_db: Engine) -> None:
    recorder = Recorder()
    notify.register_channel("test", recorder)
    failed: list[int] = []

    def writer(session: Session, topic: str, payload: dict[str, Any]) -> None:
        outbox.emit(session, "written", {"by": payload["n"]})
        session.flush()
        if payload["n"] == 2 and not failed:
            failed.append(2)
            raise RuntimeError("the rows could not be written")

    notify.register_writer("rows", writer, topics={"test"})
    first, second, _ = emit_committed(outbox_db, 1, 2, 3)

    assert drain_committed(outbox_db, notify.deliver) == 1
    assert message(outbox_db, first).sent_at is not None
    assert message(outbox_db, second).last_error == "RuntimeError: the rows could not be written"
    assert drain_committed(outbox_db, notify.deliver, now=later(outbox.BACKOFF_CAP_S)) == 2

    with Session(outbox_db) as session:
        written = session.scalars(select(OutboxMessage.payload).where(OutboxMessage.topic == "written")
                                  .order_by(OutboxMessage.id)).all()
    assert [w["by"] for w in written] == [1, 2, 3]  # message 2's first rows went with its savepoint
    assert recorder.numbers == [1, 2, 2, 3]  # at least once: its channel sent it before the writer failed


def test_a_writer_writes_only_for_the_messages_it_hears_and_is_asked_once_per_drain(outbox_db: Engine) -> None:
    notify.register_channel("test", Recorder())
    asked: list[int] = []
    written: list[int] = []

    def odd_ones(session: Session) -> Callable[[dict[str, Any]], bool]:
        asked.append(1)
        return lambda payload: payload["n"] % 2 == 1

    def writer(session: Session, topic: str, payload: dict[str, Any]) -> None:
        session.execute(text("SELECT 1"))  # in the message's savepoint
        written.append(payload["n"])

    notify.register_writer("odd", writer, topics={"test"}, interest=odd_ones)
    emit_committed(outbox_db, 1, 2, 3, 4, 5)
    savepoints: list[str] = []

    def seen(conn: Any, name: str) -> None:
        savepoints.append(name)

    event.listen(outbox_db, "savepoint", seen)
    try:
        assert drain_committed(outbox_db, notify.deliver) == 5
    finally:
        event.remove(outbox_db, "savepoint", seen)
    assert written == [1, 3, 5] and asked == [1]
    assert len(savepoints) == 3  # none for the messages nobody hears
    assert drain_committed(outbox_db, notify.deliver) == 0 and asked == [1]  # nothing left: not even asked


def test_redis_down_during_delivery_loses_nothing(outbox_db: Engine, redis: Redis) -> None:
    event = feed.make_event("ticket.offered", ticket_id=7, branch_id=2, technician_ids=[11])
    with Session(outbox_db) as session, session.begin():
        outbox.emit(session, feed.TOPIC, event)
    dead = Redis.from_url(DEAD_REDIS, socket_connect_timeout=1, socket_timeout=1)
    notify.register_channel(feed.TOPIC, feed.channel(dead))

    assert drain_committed(outbox_db, notify.deliver) == 0
    assert redis.exists(feed.branch_key(2)) == 0

    feed.register(redis)  # Redis is back
    assert drain_committed(outbox_db, notify.deliver, now=later(outbox.BACKOFF_CAP_S)) == 1
    [(_, fields)] = redis.xrange(feed.tech_key(11))
    assert fields[b"type"] == b"ticket.offered"
    assert len(redis.xrange(feed.branch_key(2))) == 1
    assert drain_committed(outbox_db, notify.deliver, now=later(outbox.BACKOFF_CAP_S)) == 0  # sent once
    dead.close()


# --- draining right after commit ----------------------------------------------------------

def test_the_drain_is_enqueued_after_commit_and_delivers(outbox_db: Engine, redis: Redis,
                                                          job_database: Database) -> None:
    queue = Queue(outbox.DRAIN_QUEUE, connection=redis)
    recorder = Recorder()
    notify.register_channel("test", recorder)

    with Session(outbox_db) as session, session.begin():
        outbox.emit(session, "test", {"n": 1})
        notify.after_commit_drain(session, queue)
        notify.after_commit_drain(session, queue)  # once per transaction, however often asked
        session.flush()
        assert queue.count == 0  # not before the commit: the job could find no row yet
    assert queue.count == 1
    [job] = queue.get_jobs()
    assert job.func_name == notify.DRAIN_JOB

    SimpleWorker([queue], connection=redis).work(burst=True)

    assert recorder.numbers == [1]
    assert queue.count == 0


def test_a_burst_of_commits_queues_one_drain_that_delivers_them_all(outbox_db: Engine, redis: Redis,
                                                                   job_database: Database) -> None:
    queue = Queue(outbox.DRAIN_QUEUE, connection=redis)
    recorder = Recorder()
    notify.register_channel("test", recorder)

    for n in range(1, 31):  # thirty reports in a row: thirty forks of the worker, before
        with Session(outbox_db) as session, session.begin():
            outbox.emit(session, "test", {"n": n})
            notify.after_commit_drain(session, queue)
    assert queue.count == 1

    SimpleWorker([queue], connection=redis).work(burst=True)

    assert recorder.numbers == list(range(1, 31))
    with Session(outbox_db) as session, session.begin():  # the drain's id is free again once it ran
        outbox.emit(session, "test", {"n": 31})
        notify.after_commit_drain(session, queue)
    assert queue.count == 1


def _eventually(done: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.01)


def test_an_api_process_enqueues_the_drain_from_its_waker_thread(outbox_db: Engine, redis: Redis,
                                                                 job_database: Database) -> None:
    queue = Queue(outbox.DRAIN_QUEUE, connection=redis)
    recorder = Recorder()
    notify.register_channel("test", recorder)
    enqueuers: set[str] = set()
    enqueue = Queue.enqueue

    def watched(self: Queue, *args: Any, **kwargs: Any) -> Any:
        enqueuers.add(threading.current_thread().name)
        return enqueue(self, *args, **kwargs)

    waker = notify.DrainWaker(queue).start()
    try:
        Queue.enqueue = watched  # type: ignore[method-assign]
        for n in range(1, 31):
            with Session(outbox_db) as session, session.begin():
                outbox.emit(session, "test", {"n": n})
                notify.after_commit_drain(session, queue)
        _eventually(lambda: queue.count == 1, "one drain queued for the burst")
    finally:
        Queue.enqueue = enqueue  # type: ignore[method-assign]
        waker.stop()
    assert enqueuers == {"outbox-drain-waker"}  # never the committing thread

    SimpleWorker([queue], connection=redis).work(burst=True)
    assert recorder.numbers == list(range(1, 31))


def test_a_commit_during_a_running_drain_is_drained_when_that_one_ends(outbox_db: Engine, redis: Redis) -> None:
    queue = Queue(outbox.DRAIN_QUEUE, connection=redis)
    running = queue.enqueue(notify.DRAIN_JOB, job_id=notify.DRAIN_NOW_JOB_ID)
    queue.remove(running)  # taken by a worker: no longer queued, still holding the id
    running.set_status(JobStatus.STARTED)
    waker = notify.DrainWaker(queue).start()
    try:
        with Session(outbox_db) as session, session.begin():
            outbox.emit(session, "test", {"n": 1})
            notify.after_commit_drain(session, queue)
        time.sleep(3 * notify.BUSY_RETRY_S)  # the waker keeps asking while the drain runs
        assert queue.count == 0
        running.delete()  # the drain ended (result_ttl=0)
        _eventually(lambda: queue.count == 1, "a new drain queued once the running one ended")
    finally:
        waker.stop()


def test_no_drain_is_enqueued_when_the_transaction_rolls_back(outbox_db: Engine, redis: Redis) -> None:
    queue = Queue(outbox.DRAIN_QUEUE, connection=redis)
    with Session(outbox_db) as session:
        session.begin()
        outbox.emit(session, "test", {"n": 1})
        notify.after_commit_drain(session, queue)
        session.rollback()
        with session.begin():  # the same session commits something else afterwards
            session.execute(text("SELECT 1"))

    assert queue.count == 0
    with Session(outbox_db) as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_a_rolled_back_savepoint_keeps_the_outer_transactions_drain(outbox_db: Engine, redis: Redis) -> None:
    queue = Queue(outbox.DRAIN_QUEUE, connection=redis)
    with Session(outbox_db) as session, session.begin():
        outbox.emit(session, "test", {"n": 1})
        notify.after_commit_drain(session, queue)
        savepoint = session.begin_nested()
        session.execute(text("SELECT 1"))
        savepoint.rollback()

    assert queue.count == 1


def test_dead_redis_at_enqueue_time_does_not_fail_the_commit(outbox_db: Engine) -> None:
    dead = Redis.from_url(DEAD_REDIS, socket_connect_timeout=1, socket_timeout=1)
    queue = Queue(outbox.DRAIN_QUEUE, connection=dead)

    with Session(outbox_db) as session, session.begin():
        outbox.emit(session, "test", {"n": 1})
        notify.after_commit_drain(session, queue)

    recorder = Recorder()  # the periodic drain finds the committed message later
    assert drain_committed(outbox_db, recorder) == 1
    assert recorder.numbers == [1]
    dead.close()


# --- the worker's periodic drain --------------------------------------------------------

def test_periodic_ticks_never_queue_more_than_one_drain(outbox_db: Engine, redis: Redis,
                                                        job_database: Database) -> None:
    queue = Queue(outbox.DRAIN_QUEUE, connection=redis)
    recorder = Recorder()
    notify.register_channel("test", recorder)
    emit_committed(outbox_db, 1)

    assert outbox.enqueue_drain_tick(queue) is True
    assert outbox.enqueue_drain_tick(queue) is False  # the first is still queued
    assert queue.job_ids == [outbox.TICK_JOB_ID]

    SimpleWorker([queue], connection=redis).work(burst=True)

    assert recorder.numbers == [1]
    assert outbox.enqueue_drain_tick(queue) is True  # the finished tick freed its id
    assert outbox.enqueue_drain_tick(Queue(outbox.DRAIN_QUEUE, connection=Redis.from_url(DEAD_REDIS))) is False


def test_the_ticker_thread_enqueues_at_once_and_stops(redis: Redis) -> None:
    queue = Queue(outbox.DRAIN_QUEUE, connection=redis)
    stop = start_ticker(queue, [outbox.drain_tick(every_s=3600)])
    try:
        deadline = time.monotonic() + 10
        while queue.job_ids != [outbox.TICK_JOB_ID]:  # polling with a deadline: the tick runs in its own thread
            assert time.monotonic() < deadline, "no tick was enqueued"
            time.sleep(0.01)
    finally:
        stop.set()


def test_the_drain_job_sends_feed_events_through_the_redis_of_the_settings(
        outbox_db: Engine, redis: Redis, settings: Settings, job_database: Database,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker whose start-up registered nothing still has the feed channel.
    monkeypatch.setattr(outbox, "get_settings", lambda: settings)
    outbox._feed_redis.cache_clear()
    with Session(outbox_db) as session, session.begin():
        outbox.emit(session, feed.TOPIC, feed.make_event("ticket.created", ticket_id=5, branch_id=3))
    try:
        assert outbox.drain_outbox_job() == 1
    finally:
        outbox._feed_redis().close()
        outbox._feed_redis.cache_clear()
    [(_, fields)] = redis.xrange(feed.branch_key(3))
    assert fields[b"type"] == b"ticket.created"
