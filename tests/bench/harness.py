"""Live servers for the benchmarks: `fieldpool serve` and `fieldpool worker` as `make run` starts them, or
uvicorn serving a benchmark's own app factory; each yielded only once every API process has started."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from redis import Redis
from rq import Worker

FIELDPOOL = str(Path(sys.executable).with_name("fieldpool"))
STARTED = "Application startup complete"


@dataclass(frozen=True)
class Api:
    base: str
    processes: int  # API processes serving, as `fieldpool serve` chose them


@contextmanager
def api(env: dict[str, str], port: int) -> Iterator[Api]:
    """`fieldpool serve --port P` with no --workers, as `make run` starts it: the command picks its own
    process count (one per core, or WEB_CONCURRENCY); this waits for as many startups as it forked."""
    with _running([FIELDPOOL, "serve", "--port", str(port)], env) as (process, log):
        base = f"http://127.0.0.1:{port}"
        processes = _wait(base, process, log, lambda: _api_processes(process.pid))
        yield Api(base, processes)


@contextmanager
def server(env: dict[str, str], port: int, *, app_factory: str, workers: int) -> Iterator[str]:
    """uvicorn serving `app_factory` (a benchmark's app with routes the API does not ship) in `workers`
    processes."""
    command = [sys.executable, "-m", "uvicorn", "--factory", app_factory, "--port", str(port),
               "--workers", str(workers), "--no-access-log", "--timeout-worker-healthcheck", "60",
               "--timeout-keep-alive", "600"]
    with _running(command, env) as (process, log):
        base = f"http://127.0.0.1:{port}"
        _wait(base, process, log, lambda: workers)
        yield base


@contextmanager
def worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`fieldpool worker` (queue 'default', the scheduler and the periodic jobs), up once rq lists it."""
    with _running([FIELDPOOL, "worker"], env) as (process, log):
        queues = Redis.from_url(env["REDIS_QUEUE_URL"])
        deadline = time.monotonic() + 120
        while not Worker.all(connection=queues):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the bench worker did not start: {Path(log).read_text()}")
            time.sleep(0.2)
        queues.close()
        yield process


@contextmanager
def _running(command: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log")  # noqa: SIM115
    # A session of its own, so that a stop that hangs can kill uvicorn's workers and rq's work horses too.
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        yield process, log.name
    finally:
        if process.poll() is None:
            process.terminate()  # the leader alone: uvicorn stops its workers, rq finishes the job in hand
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


def _wait(base: str, process: subprocess.Popen[bytes], log: str, processes: Callable[[], int]) -> int:
    deadline = time.monotonic() + 120
    while True:
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"bench server did not start: {Path(log).read_text()}")
        try:
            ready = httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            ready = False
        # /readyz answers once one process is up; each process logs its own startup.
        if ready and Path(log).read_text().count(STARTED) >= (expected := processes()):
            return expected
        time.sleep(0.1)


def _api_processes(pid: int) -> int:
    """The API processes: the supervisor's spawned children when it runs several, else the one process.

    By the time /readyz answers, one process has imported the app, so the supervisor has spawned them all.
    """
    spawned = 0
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            spawned += b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue  # gone meanwhile: a worker being replaced is counted with its successor
    return max(spawned, 1)
