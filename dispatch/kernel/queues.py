"""rq queues on their own Redis URL (rq does not run on Redis Cluster; the pool and live index will)."""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import structlog
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import DuplicateJobError

from dispatch.kernel.settings import get_settings

log = structlog.get_logger()


@lru_cache
def queue(name: str = "default") -> Queue:
    """The process's queue `name`, with short timeouts: a dead Redis must not hang a request."""
    connection = Redis.from_url(get_settings().queue_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    return Queue(name, connection=connection)


def enqueue_tick(queue: Queue, func: Callable[[], object], *, job_id: str, timeout_s: int) -> bool:
    """Enqueue a periodic job under a fixed id; False when one is still queued or running (or Redis is down).

    The fixed id with `unique=True` keeps ticks from piling up while no worker
    takes them; result_ttl=0 frees the id as soon as the run ends.
    """
    try:
        queue.enqueue(func, job_id=job_id, unique=True, result_ttl=0, failure_ttl=60, job_timeout=timeout_s,
                      description=f"{job_id} (periodic)")
    except DuplicateJobError:
        return False
    except (RedisError, OSError) as exc:
        log.warning("tick_failed", job_id=job_id, error=f"{type(exc).__name__}: {exc}")
        return False
    return True


@dataclass(frozen=True)
class Periodic:
    func: Callable[[], object]
    job_id: str
    every_s: float
    timeout_s: int = 120


def start_ticker(queue: Queue, jobs: list[Periodic]) -> threading.Event:
    """Enqueue each job every `every_s` seconds from a daemon thread; set the returned event to stop.

    A thread in the worker rather than rq's cron scheduler: that one enqueues
    under fresh ids, so ticks would pile up while no worker runs, and a
    self-rescheduling job would end its chain the first time Redis is down.
    """
    stop = threading.Event()

    def tick() -> None:
        due = {job.job_id: 0.0 for job in jobs}
        while True:
            now = time.monotonic()
            for job in jobs:
                if now >= due[job.job_id]:
                    enqueue_tick(queue, job.func, job_id=job.job_id, timeout_s=job.timeout_s)
                    due[job.job_id] = now + job.every_s
            if stop.wait(max(0.1, min(due.values()) - time.monotonic())):
                return

    threading.Thread(target=tick, name="periodic-ticker", daemon=True).start()
    return stop
