"""Periodic jobs through a real rq worker on the test Redis."""

from redis import Redis
from rq import Queue, SimpleWorker

from dispatch.kernel.queues import enqueue_tick
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
