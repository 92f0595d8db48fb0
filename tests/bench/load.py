"""The door's load tool: keep-alive HTTP clients on asyncio, a client process per core, every answer counted.

aiohttp rather than httpx's async client: on this machine the load competes with the server for its
cores, and aiohttp spends about a twentieth of the CPU per request (74 µs against 1.7-1.9 ms, measured
against a bare ASGI app). Each client is one connection (a connector of one), opened before the start
line; every process waits at one barrier, so a row's clock starts with all of them warm.
"""

import asyncio
import json
import math
import multiprocessing
import os
import queue
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from typing import Any

import aiohttp

CLIENTS = 64
PROCESSES = len(os.sched_getaffinity(0))  # one per core: the load generator shares the machine with the server
SLOW_S = 5.0  # a request slower than this is counted, whatever its answer
TIMEOUT_S = 60.0  # beyond this a request counts as unanswered (status 0)


@dataclass(frozen=True)
class Call:
    kind: str  # the row (or, in the soak, the kind of traffic) it is counted under
    method: str
    path: str
    headers: Mapping[str, str]
    json: Any = None


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer (a transport error or the timeout)
    code: str  # the problem's `code` for 4xx/5xx, the exception's name for no answer, else ""
    body: Any = None  # the JSON, when asked for


Send = Callable[..., Awaitable[Answer]]  # send(call, read=False)
# One client's whole part of a run: its number (0..CLIENTS-1) and a way to send.
Script = Callable[[int, Send], Awaitable[None]]
# What a client process sends back: when its clients started and ended, and per kind latencies and answers.
Part = tuple[float, float, dict[str, tuple[list[float], Counter[tuple[int, str]]]]]


@dataclass
class Tally:
    """What one kind of request did: latencies and every (status, code) it got."""

    kind: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    answers: Counter[tuple[int, str]] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

    @property
    def server_errors(self) -> int:
        return sum(n for (status, _), n in self.answers.items() if status >= 500)

    @property
    def slow(self) -> int:
        return sum(t > SLOW_S for t in self.latencies)

    @property
    def other(self) -> int:
        """Answers neither 2xx nor 4xx nor 5xx: redirects, informational, and no answer at all."""
        return sum(n for (status, _), n in self.answers.items() if not (200 <= status < 300 or status >= 400))

    def count(self, status: int, code: str = "") -> int:
        return self.answers[(status, code)]

    def described(self) -> str:
        return ", ".join(f"{status}{' ' + code if code else ''} x{n}"
                         for (status, code), n in sorted(self.answers.items()))


def fixed(plan: Callable[[int], Call], count: int, seconds: float | None = None) -> Script:
    """Up to `count` requests in all, request g (0, 1, ...) sent by client g % CLIENTS in turn; with
    `seconds`, a client sends no more once that long has passed since the start line."""
    async def script(client: int, send: Send) -> None:
        end = time.monotonic() + (seconds if seconds is not None else math.inf)
        for g in range(client, count, CLIENTS):
            if time.monotonic() >= end:
                return
            await send(plan(g))
    return script


def run(base: str, script: Script, *, during: Callable[[], None] | None = None) -> dict[str, Tally]:
    """Run `script` in all CLIENTS clients, spread over PROCESSES processes; a Tally per kind of call.

    A row's seconds run from the start line to the last client's end. `during` is called every few
    seconds while the clients run (the door watches the worker's failed jobs with it).
    """
    context = multiprocessing.get_context("fork")  # the script is a closure: forked, not pickled
    start = context.Barrier(PROCESSES + 1)
    results = context.Queue()
    processes = [context.Process(target=_client_process, args=(base, range(p, CLIENTS, PROCESSES), script, start,
                                                               results))
                 for p in range(PROCESSES)]
    for process in processes:
        process.start()
    try:
        start.wait(timeout=120)
        parts: list[Part] = []
        while len(parts) < len(processes):
            if during is not None:
                during()
            try:
                parts.append(results.get(timeout=5))
            except queue.Empty:  # nobody is done yet: a dead client process ends the run
                if any(p.exitcode not in (None, 0) for p in processes):
                    raise RuntimeError("a load client process died") from None
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    began = min(p[0] for p in parts)
    ended = max(p[1] for p in parts)
    tallies: dict[str, Tally] = {}
    for _, _, kinds in parts:
        for kind, (latencies, answers) in kinds.items():
            tally = tallies.setdefault(kind, Tally(kind, ended - began))
            tally.latencies += latencies
            tally.answers.update(answers)
    return tallies


def _client_process(base: str, clients: Iterable[int], script: Script, start: Barrier,
                    results: "multiprocessing.Queue[Any]") -> None:
    results.put(asyncio.run(_clients(base, list(clients), script, start)))


async def _clients(base: str, clients: list[int], script: Script, start: Barrier) -> Part:
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    sessions = {c: aiohttp.ClientSession(base, timeout=timeout, connector=aiohttp.TCPConnector(limit=1))
                for c in clients}
    kinds: dict[str, tuple[list[float], Counter[tuple[int, str]]]] = {}

    def sender(session: aiohttp.ClientSession) -> Send:
        async def send(call: Call, read: bool = False) -> Answer:
            began = time.perf_counter()
            answer = await _send(session, call, read)
            latencies, answers = kinds.setdefault(call.kind, ([], Counter()))
            latencies.append(time.perf_counter() - began)
            answers[(answer.status, answer.code)] += 1
            return answer
        return send

    try:
        for session in sessions.values():  # open every connection before the start line
            async with session.get("/healthz") as reply:
                await reply.read()
        await asyncio.get_running_loop().run_in_executor(None, start.wait, 120)
        began = time.monotonic()
        await asyncio.gather(*(script(c, sender(sessions[c])) for c in clients))
        ended = time.monotonic()
    finally:
        for session in sessions.values():
            await session.close()
    return began, ended, kinds


async def _send(session: aiohttp.ClientSession, call: Call, read: bool) -> Answer:
    try:
        async with session.request(call.method, call.path, headers=call.headers, json=call.json) as reply:
            raw = await reply.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Answer(0, type(exc).__name__)
    if reply.status >= 400:
        return Answer(reply.status, _problem_code(raw))
    return Answer(reply.status, "", json.loads(raw) if read else None)


def _problem_code(raw: bytes) -> str:
    try:
        problem = json.loads(raw)
    except ValueError:
        return "(not JSON)"
    return str(problem.get("code") or "(no code)") if isinstance(problem, dict) else "(no code)"
