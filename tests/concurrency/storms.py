"""Machinery for grab storms against a real multi-process server.

A crowd of technicians is minted in SQL with JWTs signed by the test secret
(a thousand argon2 log-ins would take minutes and spread the racers out).
The API runs in N uvicorn worker processes (as `fieldpool serve --workers N`), so several
processes, each with its own caches and connection pools, race for real.
Storms are driven from one asyncio loop with a connection per racer, every
racer released by one event once all connections are open.
"""

import asyncio
import os
import random
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from redis import Redis
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dispatch.kernel.auth import issue_token
from dispatch.tickets import mirror
from tests.conftest import TEST_APP_DATABASE_URL, truncate_transient

ROOT = Path(__file__).resolve().parents[2]
FIELDPOOL = str(ROOT / ".venv/bin/fieldpool")
XL_BRANCH = 2  # 锡林浩特分公司: the demo city's branch, /1/2/
XL_POINT = {"lat": 43.935, "lng": 116.08}
CROWD = "storm-"  # usernames of minted technicians, removed after each test
DEADLINE_S = 60.0
KEEP_ALIVE_S = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(done: Callable[[], bool], *, what: str, timeout_s: float = DEADLINE_S) -> None:
    """Poll `done` until it holds; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --- the crowd ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    technician_id: int
    username: str
    headers: dict[str, str]


def bearer(user_id: int, secret: str) -> dict[str, str]:
    token = issue_token(f"user:{user_id}", secret=secret, ttl=timedelta(hours=1))
    return {"Authorization": f"Bearer {token}"}


class Crowd:
    """Technicians of the Xilinhot branch minted in bulk: scope /1/2/, standing at the demo point."""

    def __init__(self, engine: Engine, secret: str, *, owner: Engine) -> None:
        self.engine, self.owner = engine, owner
        self.secret = secret
        self._enlisted = 0

    def enlist(self, count: int, *, max_active: Callable[[int], int] = lambda n: 1) -> list[Member]:
        first = self._enlisted
        self._enlisted += count
        names = [f"{CROWD}{first + n:05d}" for n in range(count)]
        with self.engine.begin() as conn:
            user_ids = conn.execute(text(
                "INSERT INTO user_account (username, name, password_hash, role, region_ids, active) "
                "SELECT u, u, '!', 'technician', ARRAY[:branch], true FROM unnest(CAST(:names AS text[])) u "
                "RETURNING id, username"), {"names": names, "branch": XL_BRANCH}).all()
            by_name = {username: user_id for user_id, username in user_ids}
            rows = conn.execute(text(
                "INSERT INTO technician (user_id, name, phone, skills, region_id, max_active, active, on_duty, "
                "  last_location) "
                "SELECT u, 'storm', '13900000000', ARRAY['broadband'], :branch, m, true, false, "
                "  ST_SetSRID(ST_MakePoint(:lng, :lat), 4326) "
                "FROM unnest(CAST(:users AS int[]), CAST(:limits AS int[])) AS x(u, m) RETURNING id, user_id"),
                {"users": [by_name[n] for n in names], "limits": [max_active(first + n) for n in range(count)],
                 "branch": XL_BRANCH, **XL_POINT}).all()
        technician_of = {user_id: technician_id for technician_id, user_id in rows}
        return [Member(technician_of[by_name[n]], n, bearer(by_name[n], self.secret)) for n in names]

    def disband(self) -> None:
        # Tickets and events refer to the crowd: they go first.
        truncate_transient(self.owner)
        with self.engine.begin() as conn:
            conn.execute(text("DELETE FROM technician t USING user_account u "
                              "WHERE u.id = t.user_id AND u.username LIKE :crowd"), {"crowd": f"{CROWD}%"})
            conn.execute(text("DELETE FROM user_account WHERE username LIKE :crowd"), {"crowd": f"{CROWD}%"})

    def staff(self, username: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            user_id = conn.execute(text("SELECT id FROM user_account WHERE username = :u"),
                                   {"u": username}).scalar_one()
        return bearer(user_id, self.secret)


# --- the server and its Redis ---------------------------------------------------------------------

@dataclass
class ApiServer:
    """The API in `workers` processes on a free loopback port, against the test database.

    Started with `fieldpool serve`, idle connections kept for the whole test (a
    storm's client reusing a connection the server is closing that moment fails
    the request with no answer, which says nothing about grabs).
    """

    redis_url: str
    secret: str
    log: Path
    workers: int = 3
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    database_url: str = TEST_APP_DATABASE_URL
    env: dict[str, str] = field(default_factory=dict)
    killed: int = 0  # API processes this test killed itself: `serve` restarts them

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
               "REDIS_QUEUE_URL": self.redis_url, "SECRET_KEY": self.secret, "LOG_LEVEL": "WARNING",
               "LOG_JSON": "false", "DB_POOL_SIZE": "4",
               # Storms test who wins, not who may tap: the crowd taps like scripts, minted off duty.
               "POOL__GRAB_TAPS": "1000000", "POOL__GRAB_ANYWHERE_BRANCH_IDS": f"[{XL_BRANCH}]", **self.env}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [FIELDPOOL, "serve", "--port", str(self.port), "--workers", str(self.workers),
                 "--keep-alive", str(KEEP_ALIVE_S)],
                env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._all_workers_serving, what=f"{self.workers} API processes on port {self.port}", timeout_s=90)

    def _all_workers_serving(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the API exited with {self.process.returncode}: {self.log.read_text()}")
        return self.log.read_text().count("Application startup complete") >= self.workers

    def api_processes(self) -> list[int]:
        """The pids of the processes `serve` supervises."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        # Spawned processes (the resource tracker is one too, not an API process).
        return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]

    def kill_one(self) -> int:
        """SIGKILL one API process, as the kernel's OOM killer would; returns its pid."""
        pid = self.api_processes()[0]
        os.kill(pid, signal.SIGKILL)
        self.killed += 1
        return pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        restarted = self.log.read_text().count("died")
        assert restarted == self.killed, f"{restarted} API processes died during the test:\n{self.log.read_text()}"


@dataclass
class PrivateRedis:
    """A redis-server of this test's own, which it may kill -9 and start again (never the shared one)."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL)
        wait_until(self._answers, what=f"redis-server on port {self.port}", timeout_s=10)

    def _answers(self) -> bool:
        try:
            with Redis(port=self.port, socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except Exception:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL: no shutdown, no save, every key gone
            self.process.wait()


# --- commands and reads -----------------------------------------------------------------------

def fieldpool(*args: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it, against the test database and the given Redis."""
    env = {**os.environ, "DATABASE_URL": TEST_APP_DATABASE_URL, "REDIS_URL": redis_url, "REDIS_QUEUE_URL": redis_url,
           "LOG_LEVEL": "WARNING"}
    return subprocess.run([FIELDPOOL, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def build_pool(engine: Engine, redis_url: str) -> None:
    with Session(engine) as session, Redis.from_url(redis_url) as redis:
        mirror.rebuild(session, redis)


def report(api: httpx.Client, dispatcher: dict[str, str], count: int) -> list[int]:
    ids = []
    for n in range(count):
        body = {"type_code": "broadband_fault", "description": "断网了", "location": XL_POINT,
                "contact": {"name": "张三", "phone": f"1381{os.getpid() % 1000:03d}{n:04d}"}}
        reply = api.post("/api/v1/tickets", json=body, headers=dispatcher)
        assert reply.status_code == 201, reply.text
        ids.append(int(reply.json()["id"]))
    return ids


def owners(engine: Engine, ticket_ids: Sequence[int]) -> dict[int, tuple[str, int | None]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, state, technician_id FROM ticket WHERE id = ANY(:ids)"),
                            {"ids": list(ticket_ids)}).all()
    return {ticket_id: (state, technician_id) for ticket_id, state, technician_id in rows}


def events(engine: Engine, ticket_ids: Sequence[int], *actions: str) -> dict[int, list[tuple[str, str, int | None]]]:
    """(action, actor, technician) of each ticket's events of these kinds, in order."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT ticket_id, action, actor, technician_id FROM ticket_event "
            "WHERE ticket_id = ANY(:ids) AND action = ANY(:actions) ORDER BY id"),
            {"ids": list(ticket_ids), "actions": list(actions)}).all()
    found: dict[int, list[tuple[str, str, int | None]]] = {t: [] for t in ticket_ids}
    for ticket_id, action, actor, technician_id in rows:
        found[ticket_id].append((action, actor, technician_id))
    return found


# --- driving a storm --------------------------------------------------------------------------

Outcome = tuple[int, str]  # status and problem code ("" for a success)


def outcome_of(reply: httpx.Response) -> Outcome:
    if reply.status_code < 400:
        return reply.status_code, ""
    try:
        return reply.status_code, str(reply.json().get("code", ""))
    except ValueError:
        return reply.status_code, reply.text[:80]


async def open_client(base_url: str, connections: int) -> httpx.AsyncClient:
    """A client with `connections` keep-alive connections already open: racers start on warm sockets."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=DEADLINE_S)
    warm = await asyncio.gather(*(client.get("/healthz") for _ in range(connections)))
    assert {r.status_code for r in warm} == {200}
    return client


async def release_together(client: httpx.AsyncClient,
                           calls: Sequence[Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]]
                           ) -> list[httpx.Response]:
    """Every call waits at one start line, then all go at once."""
    start = asyncio.Event()

    async def run(call: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]) -> httpx.Response:
        await start.wait()
        return await call(client)

    tasks = [asyncio.ensure_future(run(call)) for call in calls]
    start.set()
    return list(await asyncio.gather(*tasks))


@dataclass
class StormLog:
    won: dict[int, list[int]] = field(default_factory=dict)  # ticket -> technicians told they won
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    attempts: int = 0

    @property
    def wins(self) -> int:
        return sum(len(w) for w in self.won.values())


async def storm(client: httpx.AsyncClient, members: Sequence[Member], ticket_ids: Sequence[int], *,
                seed: int, on_win: Callable[[StormLog], Awaitable[None]] | None = None) -> StormLog:
    """Every member grabs random tickets until none is left to try or they reach their limit.

    A member drops a ticket once told it is taken, and so does everyone (the
    pool listing would no longer show it); a member told anything unexpected
    drops it alone. Bounded: each member tries each ticket at most once.
    """
    log = StormLog()
    taken: set[int] = set()
    start = asyncio.Event()

    async def technician(n: int, member: Member) -> None:
        rng = random.Random(seed * 100_003 + n)
        untried = list(ticket_ids)
        await start.wait()
        while untried:
            ticket_id = untried.pop(rng.randrange(len(untried)))
            if ticket_id in taken:
                continue
            reply = await client.post(f"/api/v1/tickets/{ticket_id}/grab", headers=member.headers)
            outcome = outcome_of(reply)
            log.attempts += 1
            log.outcomes[outcome] += 1
            if outcome == (200, ""):
                log.won.setdefault(ticket_id, []).append(member.technician_id)
                taken.add(ticket_id)
                if on_win is not None:
                    await on_win(log)
            elif outcome == (409, "already_taken"):
                taken.add(ticket_id)
            elif outcome == (409, "limit_reached"):
                return

    tasks = [asyncio.ensure_future(technician(n, m)) for n, m in enumerate(members)]
    start.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=DEADLINE_S * 3)
    return log
