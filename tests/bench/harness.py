"""The benchmark harness: a real server process, load from client processes, one table.

Every figure is measured in the same run as its floor (a no-op endpoint of
the same app), so the ratio survives a noisy shared machine.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

# One request: given a client and a sequence number, send it and return the status.
Request = Callable[[httpx.Client, int], int]


@dataclass(frozen=True)
class Figure:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


@contextmanager
def server(env: dict[str, str], port: int, *, app_factory: str | None = None, workers: int = 1) -> Iterator[str]:
    """`fieldpool serve` in its own process, as `make run` starts it; or uvicorn serving `app_factory`
    (a benchmark's app with routes the API does not ship) in `workers` processes, all up before it yields."""
    if app_factory is None:
        command = [sys.executable, "-m", "dispatch.cli", "serve", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "uvicorn", "--factory", app_factory, "--port", str(port),
                   "--workers", str(workers), "--no-access-log", "--timeout-worker-healthcheck", "60",
                   "--timeout-keep-alive", "600"]
    log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log")  # noqa: SIM115
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _serving(base, log.name, workers):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"bench server did not start: {Path(log.name).read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _serving(base: str, log: str, workers: int) -> bool:
    try:
        ready = httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
    return ready and (workers == 1 or Path(log).read_text().count("Application startup complete") >= workers)


def _client_process(base: str, headers: dict[str, str], request: Request, start: int, count: int,
                    threads: int, thread_headers: list[dict[str, str]] | None = None,
                    first_slot: int = 0) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0

    def worker(offset: int) -> tuple[list[float], int]:
        mine, failed = [], 0
        # Each client thread of the run gets its own slot: its own caller when `thread_headers` is given.
        own = thread_headers[(first_slot + offset - start) % len(thread_headers)] if thread_headers else {}
        with httpx.Client(base_url=base, headers={**headers, **own}, timeout=30) as client:
            for i in range(offset, start + count, threads):
                began = time.perf_counter()
                status = request(client, i)
                mine.append(time.perf_counter() - began)
                failed += status >= 400
        return mine, failed

    with ThreadPoolExecutor(threads) as pool:
        for mine, failed in pool.map(worker, range(start, start + threads)):
            latencies += mine
            errors += failed
    return latencies, errors


def measure(name: str, base: str, headers: dict[str, str], request: Request, *, count: int, offset: int = 0,
            processes: int = 2, threads: int = 8, thread_headers: list[dict[str, str]] | None = None) -> Figure:
    """Send `count` requests from `processes` × `threads` keep-alive clients.

    With `thread_headers`, client thread number n (of all processes) adds `thread_headers[n]` to its
    headers: each thread can be a different caller (a technician pinging as themself).
    """
    share = count // processes
    began = time.perf_counter()
    with ProcessPoolExecutor(processes) as pool:
        parts = list(pool.map(_client_process, [base] * processes, [headers] * processes, [request] * processes,
                              [offset + p * share for p in range(processes)], [share] * processes,
                              [threads] * processes, [thread_headers] * processes,
                              [p * threads for p in range(processes)]))
    seconds = time.perf_counter() - began
    latencies = sorted(t for part, _ in parts for t in part)
    errors = sum(e for _, e in parts)
    return Figure(name, len(latencies), seconds, statistics.median(latencies) * 1000,
                  latencies[int(len(latencies) * 0.95)] * 1000, errors)


def table(figures: list[Figure], floor: Figure) -> str:
    rows = [f"{'benchmark':<34} {'requests':>8} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'errors':>6} {'vs floor':>8}"]
    for f in figures:
        rows.append(f"{f.name:<34} {f.requests:>8} {f.rate:>9.1f} {f.p50_ms:>8.1f} {f.p95_ms:>8.1f} "
                    f"{f.errors:>6} {f.rate / floor.rate:>8.2f}")
    return "\n".join(rows)
