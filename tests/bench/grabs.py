"""The 抢单 benchmark (issue 4): the pool's grab against a PostgreSQL-only grab, over HTTP, with floors.

One server (API_PROCESSES uvicorn workers, the same for every row) serves the
app with two routes the harness mounts and the API never ships: an async
no-op (the HTTP floor) and a naive grab that arbitrates with SELECT ... FOR
UPDATE and does the same durable work as the project's winner (state change,
event row, outbox row). 50 clients, each one keep-alive connection, send
grab attempts; every technician always goes through the same connection, so
after a warm-up each API process knows the tokens it sees and an attempt
costs no log-in read. Statements are counted in each API process (an engine
event) and collected over Redis pub/sub after each row.
"""

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from redis import Redis
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dispatch.app import create_app
from dispatch.kernel.auth import Actor
from dispatch.kernel.db import Database
from dispatch.kernel.settings import get_settings
from dispatch.tickets import load, mirror, offers
from dispatch.tickets.errors import AlreadyTaken, LimitReached, TicketNotFound
from dispatch.tickets.lifecycle import GRABBABLE, Action, transition
from dispatch.tickets.models import Ticket, TicketState
from dispatch.tickets.schemas import TicketRead, ticket_read
from grab_pool import pool
from technicians import live
from technicians.deps import CallingTechnician
from technicians.models import Technician
from tests.bench.harness import server
from tests.concurrency.storms import XL_POINT, Crowd, Member, free_port

CLIENTS = 50
CLIENT_PROCESSES = 2
API_PROCESSES = 2
TECHNICIANS = 1000
HOT_TICKETS = 10  # a hot storm: every technician on these ten, then on the next ten
ATTEMPTS = int(os.environ.get("BENCH_GRAB_ATTEMPTS", "5000"))
LOW_ATTEMPTS = int(os.environ.get("BENCH_GRAB_LOW_ATTEMPTS", "2000"))  # one ticket per attempt
FLOOR_CALLS = 3000
HOT_VS_FLOOR = 0.50  # targets of issue 4
HOT_VS_NAIVE = 1.5
SECRET = "bench-secret-key-0123456789-0123456789-abcdef"
TALLY = "bench:tally"


# --- what the harness mounts on the app ----------------------------------------------------------

class StatementTally:
    """Statements this process sent to PostgreSQL; reported to Redis when the harness asks."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *args: Any) -> None:
        self.count += 1  # every statement runs in a worker thread holding the GIL: no lost update matters here

    def answer(self, redis_url: str) -> None:
        redis = Redis.from_url(redis_url)
        subscription = redis.pubsub(ignore_subscribe_messages=True)
        subscription.subscribe(TALLY)
        for message in subscription.listen():
            redis.hset(f"{TALLY}:{message['data'].decode()}", str(os.getpid()), self.count)


def naive_grab(database: Database, redis: Redis, ticket_id: int, technician_id: int, actor: Actor,
               tz: str) -> TicketRead:
    """抢单 the PostgreSQL-only way: lock the row, check, update; every loser queues on the lock.

    The winner does the project's winner's work but for the pool: state
    change, event row (with the technician's live position) and outbox row in
    one transaction, offers closed, load pushed to the live index, and the
    same answer (the accepted ticket, as API.md has it).
    """
    with database.session_scope() as session:
        ticket = session.get(Ticket, ticket_id, with_for_update=True)
        if ticket is None:
            raise TicketNotFound(f"ticket {ticket_id} does not exist")
        if ticket.state not in GRABBABLE:
            raise AlreadyTaken(f"ticket {ticket.number} is already taken", state=ticket.state)
        technician = session.get(Technician, technician_id, with_for_update=True)
        assert technician is not None
        held = session.scalar(select(func.count()).select_from(Ticket).where(
            Ticket.technician_id == technician_id, Ticket.state == TicketState.ACCEPTED)) or 0
        if held >= technician.max_active:
            raise LimitReached(f"you hold {technician.max_active} active tickets already",
                               max_active=technician.max_active)
        transition(session, ticket, action=Action.GRAB, actor=actor, technician_id=technician_id,
                   location=live.position(redis, live.LiveKeys.of(ticket.branch_id), technician_id),
                   changes={"technician_id": technician_id, "accepted_at": datetime.now(UTC)})
        offers.close_offers(session, ticket, taken_by=technician_id)
        load.refresh(session, redis, [technician_id], now=datetime.now(UTC), tz=tz)
    return ticket_read(ticket)


def create_bench_app() -> FastAPI:
    """create_app plus the benchmark's routes; served with `uvicorn --factory tests.bench.grabs:create_bench_app`."""
    app = create_app()
    tally = StatementTally()
    event.listen(Engine, "before_cursor_execute", tally)
    threading.Thread(target=tally.answer, args=(get_settings().redis_url,), daemon=True).start()

    @app.get("/bench/noop")
    async def noop() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/bench/naive/tickets/{ticket_id}/grab")
    async def naive(ticket_id: int, caller: CallingTechnician) -> TicketRead:
        return await run_in_threadpool(naive_grab, app.state.db, app.state.redis, ticket_id, caller.ref.id,
                                       caller.actor, app.state.settings.timezone)

    return app


# --- load: 50 clients, one connection each, released together after their warm-up ----------------

# Attempt number g (0, 1, 2, ... across all clients) -> method, path, headers.
Plan = Callable[[int], tuple[str, str, dict[str, str]]]


@dataclass(frozen=True)
class Row:
    name: str
    seconds: float
    latencies: list[float]  # seconds, sorted
    won: int
    lost: int
    errors: int
    statements: int | None

    @property
    def attempts(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.attempts / self.seconds

    @property
    def p50_ms(self) -> float:
        return _percentile(self.latencies, 0.50)

    @property
    def p99_ms(self) -> float:
        return _percentile(self.latencies, 0.99)

    @property
    def per_attempt(self) -> float | None:
        return None if self.statements is None else self.statements / self.attempts


def merged(name: str, rows: list[Row]) -> Row:
    """Halves of one row run apart (A B B A), so that a shared machine's drift weighs on both sides alike."""
    counts = [r.statements for r in rows]
    return Row(name, sum(r.seconds for r in rows), sorted(t for r in rows for t in r.latencies),
               won=sum(r.won for r in rows), lost=sum(r.lost for r in rows), errors=sum(r.errors for r in rows),
               statements=None if None in counts else sum(c or 0 for c in counts))


def _client_process(base: str, clients: list[int], plan: Plan, attempts: int, warm: Plan | None,
                    start: Any, results: Any) -> None:
    asyncio.run(_clients(base, clients, plan, attempts, warm, start, results))


async def _clients(base: str, clients: list[int], plan: Plan, attempts: int, warm: Plan | None, start: Any,
                   results: Any) -> None:
    connections = {c: httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=1))
                   for c in clients}

    async def send(c: int, step: tuple[str, str, dict[str, str]]) -> int:
        method, path, headers = step
        return (await connections[c].request(method, path, headers=headers)).status_code

    async def warm_up(c: int) -> None:
        await send(c, ("GET", "/bench/noop", {}))  # the connection is open before the start line
        if warm is not None:
            for g in range(c, TECHNICIANS, CLIENTS):
                await send(c, warm(g))  # this connection's technicians are known to the process serving it

    latencies: list[float] = []
    statuses: list[int] = []

    async def load(c: int) -> None:
        for g in range(c, attempts, CLIENTS):
            began = time.perf_counter()
            statuses.append(await send(c, plan(g)))
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(warm_up(c) for c in clients))
    start.wait()  # all warm
    start.wait()  # the tally is read: go
    await asyncio.gather(*(load(c) for c in clients))
    results.put((latencies, statuses))
    for connection in connections.values():
        await connection.aclose()


def run_row(name: str, base: str, plan: Plan, attempts: int, *, warm: Plan | None, tally: Callable[[], int] | None
            ) -> Row:
    context = multiprocessing.get_context("fork")
    start = context.Barrier(CLIENT_PROCESSES + 1)
    results = context.Queue()
    processes = [context.Process(target=_client_process, args=(base, list(range(p, CLIENTS, CLIENT_PROCESSES)), plan,
                                                                attempts, warm, start, results))
                 for p in range(CLIENT_PROCESSES)]
    for process in processes:
        process.start()
    start.wait(timeout=300)
    before = tally() if tally else None
    start.wait(timeout=60)
    began = time.perf_counter()
    parts = [results.get(timeout=600) for _ in processes]
    seconds = time.perf_counter() - began
    for process in processes:
        process.join()
    latencies = sorted(t for part, _ in parts for t in part)
    statuses = [s for _, part in parts for s in part]
    statements = tally() - before if tally and before is not None else None
    return Row(name, seconds, latencies, won=statuses.count(200), lost=statuses.count(409),
               errors=sum(s not in (200, 409) for s in statuses),
               statements=statements)


def _percentile(sorted_seconds: list[float], q: float) -> float:
    return sorted_seconds[min(len(sorted_seconds) - 1, int(len(sorted_seconds) * q))] * 1000


class Tally:
    """Asks every API process for its statement count over pub/sub and adds the answers up."""

    def __init__(self, redis_url: str) -> None:
        self.redis = Redis.from_url(redis_url)
        self.epoch = 0

    def __call__(self) -> int:
        self.epoch += 1
        key = f"{TALLY}:{self.epoch}"
        asked = self.redis.publish(TALLY, str(self.epoch))
        assert asked == API_PROCESSES, f"{asked} API processes listen for the tally, expected {API_PROCESSES}"
        deadline = time.monotonic() + 10
        while self.redis.hlen(key) < asked:
            assert time.monotonic() < deadline, "the API processes did not report their statement counts"
            time.sleep(0.01)
        return sum(int(v) for v in self.redis.hvals(key))


# --- floors without HTTP ------------------------------------------------------------------------

def lua_floor(redis_url: str, ticket_id: int, member: Member, calls: int) -> Row:
    """One EVALSHA of the grab script after another, on a taken ticket: what a loser costs Redis."""
    grabber = pool.Grabber(technician_id=member.technician_id, branch_id=2, scope_path="/1/2/", max_active=1000)
    redis = Redis.from_url(redis_url)
    latencies = []
    began = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        claim = pool.grab(redis, grabber, ticket_id, request_id=pool.new_request_id(), lease_ms=15000)
        latencies.append(time.perf_counter() - t0)
        assert claim.outcome is pool.Outcome.TAKEN
    seconds = time.perf_counter() - began
    return Row("floor: raw Lua grab script (1 conn)", seconds, sorted(latencies), won=0, lost=calls, errors=0,
               statements=0)


def update_floor(engine: Engine, ticket_id: int, calls: int) -> Row:
    """One durable compare-and-set UPDATE after another (each its own committed transaction)."""
    latencies = []
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version FROM ticket WHERE id = :id"), {"id": ticket_id}).scalar_one()
        conn.commit()
        began = time.perf_counter()
        for _ in range(calls):
            t0 = time.perf_counter()
            done = conn.execute(text("UPDATE ticket SET version = version + 1, updated_at = now() "
                                     "WHERE id = :id AND version = :v"), {"id": ticket_id, "v": version}).rowcount
            conn.commit()
            latencies.append(time.perf_counter() - t0)
            assert done == 1
            version += 1
        seconds = time.perf_counter() - began
    return Row("floor: raw conditional UPDATE (1 conn)", seconds, sorted(latencies), won=calls, lost=0, errors=0,
               statements=calls)


# --- the world: technicians and tickets in bulk ------------------------------------------------------

def copy_tickets(engine: Engine, template_id: int, count: int) -> list[int]:
    """`count` pending tickets like the template, made in one statement (reports would take minutes)."""
    with engine.begin() as conn:
        columns = [c for c in conn.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'ticket' "
            "AND column_name NOT IN ('id', 'number') ORDER BY ordinal_position")).scalars()]
        listed = ", ".join(columns)
        return list(conn.execute(text(
            f"INSERT INTO ticket (number, {listed}) SELECT 'BENCH' || ((SELECT max(id) FROM ticket) + g), {listed} "
            f"FROM ticket, generate_series(1, :n) g WHERE id = :id ORDER BY g RETURNING id"),
            {"n": count, "id": template_id}).scalars())


def report_template(base: str, dispatcher: dict[str, str]) -> int:
    body = {"type_code": "broadband_fault", "description": "压测模板", "location": XL_POINT,
            "contact": {"name": "压测", "phone": "13700000000"}}
    reply = httpx.post(f"{base}/api/v1/tickets", json=body, headers=dispatcher, timeout=30)
    assert reply.status_code == 201, reply.text
    return int(reply.json()["id"])


def grab_plan(prefix: str, members: list[Member], tickets_of: Callable[[int], int]) -> Plan:
    return lambda g: ("POST", f"{prefix}/tickets/{tickets_of(g)}/grab", members[g % TECHNICIANS].headers)


@dataclass(frozen=True)
class Stage:
    """What every grab row shares: the server, the taken ticket, the tally, a source of new technicians."""

    base: str
    crowd: Crowd
    taken: int
    tally: Tally

    def grab_row(self, name: str, prefix: str, tickets_of: Callable[[int], int], attempts: int) -> Row:
        """A row by technicians no process has seen: each warm-up caches their tokens anew, and the log-in
        cache keeps a token 30 s from its first use, longer than a row, so the row counts only grabs."""
        members = self.crowd.enlist(TECHNICIANS, max_active=lambda n: 1000)
        warm = grab_plan("/api/v1", members, lambda g: self.taken)
        return run_row(name, self.base, grab_plan(prefix, members, tickets_of), attempts, warm=warm,
                       tally=self.tally)


def main(bench_url: str, redis_url: str) -> str:
    """Run every row of the grab benchmark against a freshly seeded bench database; returns the report."""
    engine = create_engine(bench_url)
    crowd = Crowd(engine, SECRET, owner=engine)
    [holder, raw] = crowd.enlist(2)  # the taken ticket's holder: a loser never asks for their own ticket
    port = free_port()
    env = {"DATABASE_URL": bench_url, "REDIS_URL": redis_url, "REDIS_QUEUE_URL": redis_url, "LOG_LEVEL": "WARNING",
           "SECRET_KEY": SECRET, "DB_POOL_SIZE": "10"}
    with server(env, port, app_factory="tests.bench.grabs:create_bench_app", workers=API_PROCESSES) as base:
        template = report_template(base, crowd.staff("dispatcher.xl"))
        rounds = -(-ATTEMPTS // TECHNICIANS)
        hot = {name: copy_tickets(engine, template, rounds * HOT_TICKETS) for name in ("pool", "naive")}
        low = {name: copy_tickets(engine, template, LOW_ATTEMPTS) for name in ("pool", "naive")}
        [taken, update_ticket] = copy_tickets(engine, template, 2)
        with Session(engine) as session, Redis.from_url(redis_url) as redis:
            mirror.rebuild(session, redis)
        assert httpx.post(f"{base}/api/v1/tickets/{taken}/grab", headers=holder.headers).status_code == 200
        stage = Stage(base, crowd, taken, Tally(redis_url))

        def hot_of(ids: list[int]) -> Callable[[int], int]:
            return lambda g: ids[(g // TECHNICIANS) * HOT_TICKETS + g % HOT_TICKETS]

        def noop(g: int) -> tuple[str, str, dict[str, str]]:
            return "GET", "/bench/noop", {}

        run_row("warm-up", base, noop, FLOOR_CALLS, warm=None, tally=None)
        rows = [run_row("(a) no-op floor: GET /bench/noop", base, noop, FLOOR_CALLS, warm=None, tally=stage.tally),
                stage.grab_row("(b) hot: project grab", "/api/v1", hot_of(hot["pool"]), ATTEMPTS),
                stage.grab_row("(c) hot: naive FOR UPDATE grab", "/bench/naive", hot_of(hot["naive"]), ATTEMPTS),
                *low_rows(stage, low),
                run_row("(a) no-op floor again", base, noop, FLOOR_CALLS, warm=None, tally=stage.tally),
                # A loser's cost, measured alone: a storm on the taken ticket only.
                stage.grab_row("(b) losers only: taken ticket", "/api/v1", lambda g: taken, ATTEMPTS),
                lua_floor(redis_url, taken, raw, FLOOR_CALLS),
                update_floor(engine, update_ticket, FLOOR_CALLS)]
    engine.dispose()
    return report(rows)


def low_rows(stage: Stage, low: dict[str, list[int]]) -> list[Row]:
    """Low contention, one ticket per attempt: each side in two halves, run A B B A."""
    half = LOW_ATTEMPTS // 2
    prefix = {"pool": "/api/v1", "naive": "/bench/naive"}
    halves: dict[str, list[Row]] = {"pool": [], "naive": []}
    for side in ("pool", "naive", "naive", "pool"):
        halves[side].append(stage.grab_row(side, prefix[side], _from(low[side], half * len(halves[side])), half))
    return [merged("(b) low: project grab (A B B A)", halves["pool"]),
            merged("(c) low: naive FOR UPDATE grab (A B B A)", halves["naive"])]


def _from(ticket_ids: list[int], offset: int) -> Callable[[int], int]:
    return lambda g: ticket_ids[offset + g]


def report(rows: list[Row]) -> str:
    by = {r.name.split(":")[0]: r for r in rows}
    floor, again = by["(a) no-op floor"], by["(a) no-op floor again"]
    hot_b, hot_c = by["(b) hot"], by["(c) hot"]
    low_b, low_c = by["(b) low"], by["(c) low"]
    losers = by["(b) losers only"]
    lines = [f"\nGrab benchmark (issue 4): {CLIENTS} HTTP clients (one keep-alive connection each, "
             f"{CLIENT_PROCESSES} client processes), {API_PROCESSES} API processes for every row; "
             f"{TECHNICIANS} technicians; hot = {HOT_TICKETS} tickets at a time, every technician on them, "
             f"repeated; low = one ticket per attempt. Statements: SQL sent by the API processes "
             f"(BEGIN/COMMIT not counted).\n",
             f"{'row':<40} {'attempts':>8} {'grabs/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'won':>5} {'409':>5} "
             f"{'err':>4} {'stmts':>6} {'stmts/attempt':>13}"]
    for r in rows:
        per = "" if r.per_attempt is None else f"{r.per_attempt:.2f}"
        total = "" if r.statements is None else str(r.statements)
        lines.append(f"{r.name:<40} {r.attempts:>8} {r.rate:>9.1f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.won:>5} "
                     f"{r.lost:>5} {r.errors:>4} {total:>6} {per:>13}")
    floor_rate = (floor.rate + again.rate) / 2
    checks = [
        (f"hot (b) / no-op floor (mean of both) >= {HOT_VS_FLOOR:.2f}", hot_b.rate / floor_rate,
         hot_b.rate / floor_rate >= HOT_VS_FLOOR),
        (f"hot (b) / hot (c) >= {HOT_VS_NAIVE:.2f}", hot_b.rate / hot_c.rate,
         hot_b.rate / hot_c.rate >= HOT_VS_NAIVE),
        ("hot p99 (b) < p99 (c), ms", hot_b.p99_ms - hot_c.p99_ms, hot_b.p99_ms < hot_c.p99_ms),
        ("statements in the losers-only row == 0", float(losers.statements or 0),
         losers.statements == 0 and losers.won == 0),
        ("low (b) / low (c) >= 1.00 (no slower)", low_b.rate / low_c.rate, low_b.rate >= low_c.rate),
    ]
    lines.append("")
    for label, value, met in checks:
        lines.append(f"target {label:<56} {value:>8.2f}  {'met' if met else 'NOT MET'}")
    return "\n".join(lines)
