"""rq queues on their own Redis URL (rq does not run on Redis Cluster; the pool and live index will)."""

import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType

import structlog
from redis import Redis
from redis.exceptions import RedisError
from rq import Callback, Queue, Worker
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from dispatch.kernel.redis import as_text
from dispatch.kernel.settings import get_settings

log = structlog.get_logger()


@lru_cache
def queue(name: str = "default") -> Queue:
    """The process's queue `name`, with short timeouts: a dead Redis must not hang a request."""
    connection = Redis.from_url(get_settings().queue_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    return Queue(name, connection=connection)


def enqueue_tick(queue: Queue, func: Callable[[], object], *, job_id: str, timeout_s: int,
                 reports: bool = True) -> bool:
    """Enqueue a periodic job under a fixed id; False when one is still queued or running (or Redis is down).

    The fixed id with `unique=True` keeps ticks from piling up while no worker
    takes them; result_ttl=0 frees the id as soon as the run ends, and
    failure_ttl=1 a second after a failure (with 60, a failed sweep skipped the
    next four ticks). Each run's outcome is kept (`periodic_outcomes`) and a
    failure logged loudly with its traceback; the next tick is its retry. A run
    that did something logs it at INFO unless the job does not `report` (a
    rebuild's result is everything it rebuilt, every time).
    """
    try:
        queue.enqueue(func, job_id=job_id, unique=True, result_ttl=0, failure_ttl=1, job_timeout=timeout_s,
                      description=f"{job_id} (periodic)", on_success=Callback(_succeeded),
                      on_failure=Callback(_failed), meta={"reports": reports})
    except DuplicateJobError:
        return False
    except (RedisError, OSError) as exc:
        log.warning("tick_failed", job_id=job_id, error=f"{type(exc).__name__}: {exc}")
        return False
    return True


# One hash in the queues' Redis, fields `<job id>:<what>`: runs, failures, last_success_at, last_failure_at,
# last_error.
OUTCOMES_KEY = "fieldpool:periodic"


@dataclass(frozen=True)
class Outcomes:
    """How a periodic job has fared since the queues' Redis began (what /metrics exposes)."""

    job_id: str
    runs: int
    failures: int
    last_success_at: float | None
    last_failure_at: float | None
    last_error: str | None


def _did_something(result: object) -> bool:
    if isinstance(result, dict):
        return any(result.values())
    return bool(result)


def _succeeded(job: Job, connection: Redis, result: object) -> None:
    connection.hset(OUTCOMES_KEY, mapping={f"{job.id}:last_success_at": time.time()})
    connection.hincrby(OUTCOMES_KEY, f"{job.id}:runs", 1)
    if _did_something(result):  # an idle city's ticks say nothing
        outcome = structlog.get_logger()  # at call time: the worker configures logging after import
        (outcome.info if job.meta.get("reports", True) else outcome.debug)("periodic_job_done", job=job.id,
                                                                           result=result)


def _failed(job: Job, connection: Redis, exc_type: type[BaseException], exc: BaseException,
            tb: TracebackType | None) -> None:
    _record_failure(connection, job.id, error=f"{exc_type.__name__}: {exc}",
                    trace="".join(traceback.format_exception(exc_type, exc, tb)))


def tick_died(job: Job, retpid: int, ret_val: int, rusage: object) -> None:
    """rq's handler for a job whose process died without a word (killed, out of memory): a periodic job's
    callbacks never ran in it, so its failure is recorded here, in the worker."""
    if job.description == f"{job.id} (periodic)":
        how = f"signal {os.WTERMSIG(ret_val)}" if os.WIFSIGNALED(ret_val) else f"exit status {os.WEXITSTATUS(ret_val)}"
        _record_failure(job.connection, job.id, error=f"the job's process died ({how})", trace=None)


def _record_failure(connection: Redis, job_id: str, *, error: str, trace: str | None) -> None:
    # Logged first: a Redis that cannot take the record must not hide the failure.
    structlog.get_logger().error("periodic_job_failed", job=job_id, error=error, traceback=trace)
    connection.hset(OUTCOMES_KEY, mapping={f"{job_id}:last_failure_at": time.time(), f"{job_id}:last_error": error})
    connection.hincrby(OUTCOMES_KEY, f"{job_id}:runs", 1)
    connection.hincrby(OUTCOMES_KEY, f"{job_id}:failures", 1)


def periodic_outcomes(connection: Redis) -> list[Outcomes]:
    """Every periodic job's outcomes so far, by job id."""
    raw = {as_text(k): as_text(v) for k, v in connection.hgetall(OUTCOMES_KEY).items()}
    jobs = sorted({key.rpartition(":")[0] for key in raw})

    def number(job_id: str, name: str) -> float | None:
        value = raw.get(f"{job_id}:{name}")
        return float(value) if value is not None else None

    return [Outcomes(job_id=j, runs=int(number(j, "runs") or 0), failures=int(number(j, "failures") or 0),
                     last_success_at=number(j, "last_success_at"), last_failure_at=number(j, "last_failure_at"),
                     last_error=raw.get(f"{j}:last_error")) for j in jobs]


@dataclass(frozen=True)
class Periodic:
    func: Callable[[], object]
    job_id: str
    every_s: float
    timeout_s: int = 120
    # False for a job whose result is a total, not a change (a rebuild): its runs log at DEBUG.
    reports: bool = True


def start_ticker(queue: Queue, jobs: list[Periodic]) -> threading.Event:
    """Enqueue each job every `every_s` seconds from a daemon thread; set the returned event to stop.

    A thread in the worker rather than rq's cron scheduler: that one enqueues
    under fresh ids, so ticks would pile up while no worker runs, and a
    self-rescheduling job would end its chain the first time Redis is down.
    """
    stop = threading.Event()

    def tick() -> None:
        due = {job.job_id: 0.0 for job in jobs}
        server = _server_run(queue.connection)
        while True:
            now_serving = _server_run(queue.connection)
            if now_serving is not None and server is not None and now_serving != server:
                # Redis restarted, empty: every job runs now, as at start, so the live index and the pool are
                # rebuilt at once instead of after their interval (rings meanwhile found nobody and ran out).
                due = dict.fromkeys(due, 0.0)
            server = now_serving or server
            now = time.monotonic()
            for job in jobs:
                if now >= due[job.job_id]:
                    _tick(queue, job)
                    due[job.job_id] = now + job.every_s
            if stop.wait(max(0.1, min(due.values()) - time.monotonic())):
                return

    threading.Thread(target=tick, name="periodic-ticker", daemon=True).start()
    return stop


def reap_abandoned(connection: Redis, queue_names: list[str]) -> list[str]:
    """Fail the jobs left running by a worker of this host that is gone (SIGKILL, OOM); returns their ids.

    rq reaps an abandoned job only once its heartbeat has expired and its
    maintenance next runs, minutes later; until then the job still holds its
    id, and the ticker's unique enqueue of that periodic job is turned away:
    after a worker was killed mid-job, that job stopped until rq noticed.
    Failing it here runs its failure callback like any failed run, and the
    next tick runs it again. Workers of other hosts are left to rq.
    """
    here = socket.gethostname()
    reaped: list[str] = []
    for name in queue_names:
        registry = StartedJobRegistry(name, connection=connection)
        for entry in map(as_text, connection.zrange(registry.key, 0, -1)):
            job_id = entry.rpartition(":")[0]  # entries are <job id>:<execution id>
            job = _started(connection, job_id)  # one not begun is requeue_stranded's
            if job is not None and _gone(connection, job.worker_name, here):
                connection.zadd(registry.key, {entry: 0})  # expired: rq's own cleanup fails it below
                reaped.append(job_id)
        if reaped:
            registry.cleanup()
    return reaped


def requeue_stranded(connection: Redis, queue_names: list[str]) -> list[str]:
    """Put back on their queues the jobs a dead worker had taken off but not yet started; returns their ids.

    rq moves a job to an intermediate list as it dequeues it, enters it in the
    started registry before it forks, and takes it off that list only once the
    forked job has marked it started. A worker killed in between strands it
    there, still queued: rq gives it up only after maintenance runs minutes
    apart, and meanwhile a periodic job's id stays taken (the SLA sweep stopped
    so). While a live worker listens, a job there may be its own, just taken:
    those are left to rq.
    """
    here = socket.gethostname()
    requeued: list[str] = []
    for name in queue_names:
        queue = Queue(name, connection=connection)
        workers = [key.removeprefix(Worker.redis_worker_namespace_prefix)
                   for key in Worker.all_keys(connection=connection, queue=queue)]
        if not all(_gone(connection, worker, here) for worker in workers):
            continue
        entries: dict[str, list[str]] = {}  # job id -> its started registry entries, <job id>:<execution id>
        for entry in map(as_text, connection.zrange(queue.started_job_registry.key, 0, -1)):
            entries.setdefault(entry.rpartition(":")[0], []).append(entry)
        for job_id in map(as_text, connection.lrange(queue.intermediate_queue_key, 0, -1)):
            if job_id in entries and _started(connection, job_id) is not None:
                continue  # it ran: reap_abandoned's
            with connection.pipeline() as pipe:
                pipe.lrem(queue.intermediate_queue_key, 1, job_id)
                if job_id in entries:
                    pipe.zrem(queue.started_job_registry.key, *entries[job_id])
                pipe.lpush(queue.key, job_id)  # at the head, where it was taken from
                pipe.execute()
            requeued.append(job_id)
    return requeued


def _started(connection: Redis, job_id: str) -> Job | None:
    """The job, when it has begun to run."""
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return None
    return job if job.get_status(refresh=False) is JobStatus.STARTED else None


def _gone(connection: Redis, worker_name: str | None, here: str) -> bool:
    if not worker_name:
        return False
    key = f"{Worker.redis_worker_namespace_prefix}{worker_name}"
    found = {as_text(k): as_text(v) for k, v in connection.hgetall(key).items()}
    if not found:
        return True  # its registration expired: long dead
    if found.get("hostname") != here or not found.get("pid"):
        return False
    pid = int(found["pid"])
    if pid == os.getpid():
        return True  # a restarted container gives the new worker the old one's pid
    try:
        os.kill(pid, 0)  # no signal: only whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's process: alive
    return False


def _server_run(connection: Redis) -> str | None:
    """The Redis server's run id (new at every start), None while it does not answer."""
    try:
        return str(connection.info("server")["run_id"])
    except (RedisError, OSError):
        return None


def _tick(queue: Queue, job: Periodic) -> None:
    try:
        enqueue_tick(queue, job.func, job_id=job.job_id, timeout_s=job.timeout_s, reports=job.reports)
    except Exception:
        # Whatever went wrong with this job, the ticker goes on: every job's clock, this one's too, would
        # otherwise stop until a restart.
        structlog.get_logger().exception("tick_failed", job_id=job.job_id)
