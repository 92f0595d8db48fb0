"""What a forked job inherits from the worker besides its database pool (tests/dispatch/test_fork.py): Redis
clients that connect anew in it, and copies of the open sets brought up to date just before the fork; and what
must outlive a job gone wrong: the record of a periodic job killed in its process, and the ticker."""

import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection

import pytest
import structlog.testing
from redis import Redis
from rq import Queue, Worker

from dispatch.cli import CopyingWorker
from dispatch.kernel.queues import Periodic, enqueue_tick, periodic_outcomes, queue, requeue_stranded, start_ticker
from dispatch.kernel.redis import connect
from dispatch.kernel.settings import Settings
from geo.latlng import LatLng
from technicians import live, replica
from tests.conftest import TEST_REDIS_URL

DEADLINE_S = 30.0
FORK = multiprocessing.get_context("fork")
BRANCH = 9302
KEYS = live.LiveKeys.of(BRANCH)
INHERITED = "test:inherited-copy"


def open_to_offers(redis: Redis, technician_id: int) -> None:
    live.put_on_duty(redis, KEYS, technician_id, skills=["broadband"], scope_path=f"/1/{BRANCH}/", max_active=3,
                     roster="")
    live.place_at(redis, KEYS, technician_id, point=LatLng(43.93, 116.08), seen_at=int(time.time()))


def _child_client_ids(clients: dict[str, Redis], answers: Connection) -> None:
    answers.send({name: client.client_id() for name, client in clients.items()})


def test_redis_clients_made_before_a_fork_connect_anew_in_the_child(settings: Settings, redis: Redis) -> None:
    open_to_offers(redis, 1)
    replica.preload(connect(settings.redis_url), [BRANCH])  # as the worker does: its follower thread reads
    # The queues' cached client, a notifier channel's (feed.register), the copies' follower's.
    clients = {"queue": queue().connection, "channel": connect(settings.redis_url),
               "follower": replica._servers[live.server_of(redis)]._redis}
    before = {name: clients[name].client_id() for name in ("queue", "channel")}
    fence = redis.client_id()  # Redis numbers connections in order: one made after this is new

    here, there = FORK.Pipe()
    child = FORK.Process(target=_child_client_ids, args=(clients, there))
    child.start()
    assert here.poll(DEADLINE_S), "the child never answered"
    in_child = here.recv()
    child.join(DEADLINE_S)

    assert {name: client_id > fence for name, client_id in in_child.items()} == dict.fromkeys(clients, True)
    assert {name: clients[name].client_id() for name in before} == before, "the parent's connections live on"


def inherited_copy() -> None:
    """A job: the technicians in the copy of the branch it inherited from the worker, before any search."""
    [copy] = [copy for copies in replica._servers.values() for keys, copy in copies.branches.items() if keys == KEYS]
    connect(TEST_REDIS_URL).rpush(INHERITED, *sorted(copy.members))


def test_after_redis_began_anew_the_worker_hands_its_jobs_a_current_copy(settings: Settings, redis: Redis) -> None:
    open_to_offers(redis, 1)
    live_index = connect(settings.redis_url)
    replica.preload(live_index, [BRANCH])
    redis.flushdb()  # a restart without persistence: the open sets are rebuilt, their change log begins anew
    open_to_offers(redis, 2)

    queue = Queue("default", connection=redis)
    job = queue.enqueue(inherited_copy, result_ttl=0)
    # The job alone, as the work loop runs it (the loop's own teardown can wait a minute on rq's pubsub thread).
    CopyingWorker([queue], connection=redis, live_index=live_index, branch_ids=[BRANCH]).execute_job(job, queue)

    assert queue.failed_job_registry.count == 0
    assert redis.lrange(INHERITED, 0, -1) == [b"2"]


def dying_sweep() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would


def test_a_periodic_job_whose_process_is_killed_is_counted_as_failed(settings: Settings, redis: Redis) -> None:
    queue = Queue("default", connection=redis)
    assert enqueue_tick(queue, dying_sweep, job_id="dying-sweep", timeout_s=60)
    worker = CopyingWorker([queue], connection=redis, live_index=connect(settings.redis_url), branch_ids=[])
    worker.execute_job(queue.fetch_job("dying-sweep"), queue)

    [outcome] = periodic_outcomes(redis)
    assert (outcome.job_id, outcome.runs, outcome.failures) == ("dying-sweep", 1, 1)
    assert outcome.last_error == f"the job's process died (signal {int(signal.SIGKILL)})"


def fine_sweep() -> None:
    return None


def test_a_tick_that_cannot_be_enqueued_stops_no_other(redis: Redis) -> None:
    queue = Queue("default", connection=redis)
    with structlog.testing.capture_logs() as logs:
        # rq refuses the id: enqueueing it raises at every tick.
        stop = start_ticker(queue, [Periodic(fine_sweep, "misnamed sweep!", 0.01),
                                    Periodic(fine_sweep, "fine-sweep", 0.01)])
        try:
            for _ in range(3):  # enqueued, taken away, enqueued again by a later tick
                deadline = time.monotonic() + DEADLINE_S
                while queue.count == 0:
                    assert time.monotonic() < deadline, "the ticker stopped"
                    time.sleep(0.01)
                queue.fetch_job("fine-sweep").delete()
        finally:
            stop.set()
    refused = [entry for entry in logs if entry["event"] == "tick_failed"]
    assert len(refused) >= 3 and {(e["log_level"], e["job_id"]) for e in refused} == {("error", "misnamed sweep!")}


def _take(name: str, taken: Connection | None = None, forking: bool = False) -> None:
    """A worker taking a job: dequeued by rq (onto its intermediate list) and, when `forking`, entered in the
    started registry as rq does just before it forks the job's process; not yet started. Killed at once when
    nobody waits on `taken`, else alive until told to go."""
    connection = Redis.from_url(TEST_REDIS_URL)
    queue = Queue("default", connection=connection)
    worker = Worker([queue], connection=connection, name=name)
    worker.register_birth()
    dequeued = Queue.dequeue_any([queue], None, connection=connection)
    assert dequeued is not None
    if forking:
        worker.prepare_execution(dequeued[0])
    if taken is None:
        os.kill(os.getpid(), signal.SIGKILL)
    taken.send(True)
    taken.recv()


@pytest.mark.parametrize("forking", [False, True], ids=["as it took the job", "as it forked the job's process"])
def test_a_job_its_dead_worker_took_but_never_started_runs_again_at_once(
        settings: Settings, redis: Redis, forking: bool) -> None:
    queue = Queue("default", connection=redis)
    assert enqueue_tick(queue, fine_sweep, job_id="fine-sweep", timeout_s=60)
    dying = FORK.Process(target=_take, args=("dying-worker", None, forking))
    dying.start()
    dying.join(DEADLINE_S)
    assert dying.exitcode == -signal.SIGKILL and queue.count == 0
    assert not enqueue_tick(queue, fine_sweep, job_id="fine-sweep", timeout_s=60), "its id is still taken"

    assert requeue_stranded(redis, ["default"]) == ["fine-sweep"]

    worker = CopyingWorker([queue], connection=redis, live_index=connect(settings.redis_url), branch_ids=[])
    worker.execute_job(queue.fetch_job("fine-sweep"), queue)
    [outcome] = periodic_outcomes(redis)
    assert (outcome.job_id, outcome.runs, outcome.failures) == ("fine-sweep", 1, 0)
    assert enqueue_tick(queue, fine_sweep, job_id="fine-sweep", timeout_s=60), "the next tick was turned away"


def test_a_job_a_live_worker_has_just_taken_is_left_to_it(redis: Redis) -> None:
    queue = Queue("default", connection=redis)
    assert enqueue_tick(queue, fine_sweep, job_id="fine-sweep", timeout_s=60)
    here, there = FORK.Pipe()
    taking = FORK.Process(target=_take, args=("live-worker", there))
    taking.start()
    try:
        assert here.poll(DEADLINE_S) and here.recv(), "the worker never took the job"
        assert requeue_stranded(redis, ["default"]) == []
        assert queue.count == 0
    finally:
        here.send(True)
        taking.join(DEADLINE_S)
