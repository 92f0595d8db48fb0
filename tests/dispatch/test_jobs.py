"""Periodic jobs through a real rq worker on the test Redis."""

import time

from redis import Redis
from rq import Queue, SimpleWorker
from structlog.testing import capture_logs

from dispatch.kernel.queues import enqueue_tick, periodic_outcomes
from dispatch.kernel.settings import Settings
from dispatch.tickets import jobs


def test_a_tick_is_not_enqueued_twice_while_one_waits(redis: Redis, settings: Settings) -> None:
    queue = Queue("default", connection=redis)
    assert enqueue_tick(queue, jobs.sweep_rings, job_id="sweep-rings", timeout_s=60)
    assert not enqueue_tick(queue, jobs.sweep_rings, job_id="sweep-rings", timeout_s=60)
    assert queue.count == 1


def test_periodic_jobs_run_in_a_worker_and_free_their_id(redis: Redis, settings: Settings, committed_db) -> None:
    queue = Queue("default", connection=redis)
    for job in jobs.periodic(settings):
        assert enqueue_tick(queue, job.func, job_id=job.job_id, timeout_s=60)
    SimpleWorker([queue], connection=redis).work(burst=True)
    assert queue.failed_job_registry.count == 0
    # Finished: the fixed ids are free for the next tick.
    assert all(enqueue_tick(queue, job.func, job_id=job.job_id, timeout_s=60) for job in jobs.periodic(settings))


class DatabaseAway(Exception):
    pass


def failing_tick() -> None:
    raise DatabaseAway("connection refused")


def test_a_failed_tick_is_counted_logged_and_runs_again_at_the_next(redis: Redis) -> None:
    queue = Queue("default", connection=redis)
    with capture_logs() as logged:
        for _ in range(2):  # the next tick is the retry: the id comes free a second after a failure
            deadline = time.monotonic() + 10
            while not enqueue_tick(queue, failing_tick, job_id="failing-tick", timeout_s=60):
                assert time.monotonic() < deadline, "a failed tick kept its id: no retry"
                time.sleep(0.1)
            SimpleWorker([queue], connection=redis).work(burst=True)

    [outcome] = periodic_outcomes(redis)
    assert (outcome.job_id, outcome.runs, outcome.failures) == ("failing-tick", 2, 2)
    assert outcome.last_error == "DatabaseAway: connection refused"
    assert outcome.last_success_at is None and outcome.last_failure_at is not None
    failures = [entry for entry in logged if entry["event"] == "periodic_job_failed"]
    assert [(f["log_level"], f["job"]) for f in failures] == [("error", "failing-tick")] * 2
    assert "DatabaseAway" in failures[0]["traceback"]


def test_a_tick_that_did_nothing_says_nothing(redis: Redis, settings: Settings, committed_db) -> None:
    queue = Queue("default", connection=redis)
    assert enqueue_tick(queue, jobs.expire_live_index, job_id="expire-live-index", timeout_s=60)
    with capture_logs() as logged:
        SimpleWorker([queue], connection=redis).work(burst=True)

    [outcome] = periodic_outcomes(redis)
    assert (outcome.runs, outcome.failures) == (1, 0)
    assert [entry for entry in logged if entry["event"] == "periodic_job_done"] == []
