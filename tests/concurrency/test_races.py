"""Races between real HTTP clients on a live server: one winner, clear losers, nothing doubled.

Every racer logs in and opens its connection before the start line (a Barrier);
argon2 is slow on purpose and would otherwise spread the racers out. Where a
serial order would let both requests succeed legitimately, a gate holds the
ticket row locked until every racer has read it and queues on the
compare-and-set (seen in pg_blocking_pids), so the overlap happens on every run
instead of now and then. The busy-polling gate replaces a sleep.
"""

import itertools
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from dispatch.app import create_app
from dispatch.kernel.settings import Settings
from grab_pool.pool import PoolKeys
from tests.conftest import log_in, serving

XL_POINT = {"lat": 43.935, "lng": 116.08}
DISPATCHER = "dispatcher.xl"
# Twenty of the 32 Xilinhot technicians; every one can hold at least three tickets.
STORM = [f"tech{n:02d}" for n in range(1, 21)]
_phones = itertools.count(1)

Call = Callable[[httpx.Client], httpx.Response]
# The server is plain HTTP on loopback; one shared context spares every client
# the ~30 ms of loading the CA bundle, which would spread the racers out.
LOOPBACK_TLS = ssl.create_default_context()


# --- racing machinery --------------------------------------------------------------------

# Backends waiting on the gate, directly or behind another waiter (the second
# UPDATE of a row queues on the first one's tuple lock, not on the gate).
QUEUED_BEHIND = text("""
    WITH RECURSIVE queued(pid) AS (
        SELECT pid FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))
        UNION
        SELECT a.pid FROM pg_stat_activity a JOIN queued q ON q.pid = ANY(pg_blocking_pids(a.pid))
    ) SELECT count(*) FROM queued""")


class RowGate:
    """Holds one ticket row locked: racers read it freely but queue on their UPDATE of it."""

    def __init__(self, engine: Engine, ticket_id: int) -> None:
        self.engine = engine
        self.conn: Connection = engine.connect()
        self.tx = self.conn.begin()
        self.conn.execute(text("SELECT 1 FROM ticket WHERE id = :id FOR UPDATE"), {"id": ticket_id})
        self.pid = self.conn.execute(text("SELECT pg_backend_pid()")).scalar_one()

    def open_when_queued(self, racers: int, futures: list[Future[httpx.Response]]) -> None:
        """Release the row once `racers` requests wait on it (or one finished without waiting)."""
        try:
            deadline = time.monotonic() + 20
            with self.engine.connect() as probe:
                while time.monotonic() < deadline and not any(f.done() for f in futures):
                    queued = probe.execute(QUEUED_BEHIND, {"pid": self.pid}).scalar_one()
                    probe.rollback()
                    if queued >= racers:
                        return
                activity = probe.execute(text(
                    "SELECT pid, state, wait_event_type, wait_event, pg_blocking_pids(pid), left(query, 120) "
                    "FROM pg_stat_activity WHERE datname = current_database()")).all()
            pytest.fail(f"only some racers reached the ticket row (gate {self.pid}); done: "
                        f"{[f.done() for f in futures]}; activity: {activity}")
        finally:
            self.open()

    def open(self) -> None:
        if not self.conn.closed:
            self.tx.rollback()
            self.conn.close()


def race(base_url: str, calls: list[Call], *, gate: RowGate | None = None) -> list[httpx.Response]:
    """Run every call in its own thread with its own client, all released at once."""
    clients = [httpx.Client(base_url=base_url, timeout=60, verify=LOOPBACK_TLS) for _ in calls]
    try:
        for client in clients:  # connect before the start line
            assert client.get("/healthz").status_code == 200
        start = threading.Barrier(len(calls))

        def run(i: int) -> httpx.Response:
            start.wait(timeout=30)
            return calls[i](clients[i])

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = [pool.submit(run, i) for i in range(len(calls))]
            if gate is not None:
                gate.open_when_queued(len(calls), futures)
            return [f.result(timeout=60) for f in futures]
    finally:
        if gate is not None:
            gate.open()  # never leave the row locked: the truncate after the test would wait on it
        for client in clients:
            client.close()


# --- the world the races run in ----------------------------------------------------------

@dataclass
class World:
    api: httpx.Client
    engine: Engine
    base_url: str

    def headers(self, username: str) -> dict[str, str]:
        return log_in(self.api, username)

    def report(self, reporter: str = DISPATCHER) -> int:
        reply = self.api.post("/api/v1/tickets", json=report_body(), headers=self.headers(reporter))
        assert reply.status_code == 201, reply.text
        return int(reply.json()["id"])

    def act(self, ticket_id: int, verb: str, username: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = self.api.post(f"/api/v1/tickets/{ticket_id}/{verb}", json=body, headers=self.headers(username))
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def read(self, ticket_id: int) -> dict[str, Any]:
        reply = self.api.get(f"/api/v1/tickets/{ticket_id}", headers=self.headers(DISPATCHER))
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def technician_id(self, username: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT t.id FROM technician t JOIN user_account u ON u.id = t.user_id "
                                         "WHERE u.username = :u"), {"u": username}).scalar_one())

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()


@pytest.fixture
def world(live_server: str, committed_db: Engine) -> Iterator[World]:
    with httpx.Client(base_url=live_server, timeout=60) as api:
        yield World(api=api, engine=committed_db, base_url=live_server)


def report_body(phone: str | None = None) -> dict[str, Any]:
    return {"type_code": "broadband_fault", "description": "断网了", "location": XL_POINT,
            "contact": {"name": "张三", "phone": phone or f"1380000{next(_phones):04d}"}}


def post(path: str, headers: dict[str, str], body: dict[str, Any] | None = None) -> Call:
    return lambda client: client.post(path, json=body, headers=headers)


def actions(ticket: dict[str, Any]) -> list[str]:
    return [e["action"] for e in ticket["events"]]


# --- two different transitions on one ticket -------------------------------------------------

@dataclass(frozen=True)
class Move:
    verb: str
    username: str
    body: dict[str, Any] | None
    action: str  # the event it writes when it wins
    leaves: str  # the state it leaves the ticket in when it wins


INVALIDATE = Move("invalidate", DISPATCHER, {"reason": "虚假报修"}, "invalidate", "invalid")
PAIRS = {
    # A pending ticket: the dispatcher throws it out while a technician grabs it.
    "invalidate-vs-grab": ("pending", [INVALIDATE, Move("grab", "tech05", None, "grab", "accepted")]),
    # A pending ticket: two dispatchers (branch and HQ) force-assign it to different technicians.
    "two-dispatchers-assign": ("pending", [
        Move("assign", DISPATCHER, {"technician_id": "tech05"}, "assign", "accepted"),
        Move("assign", "admin", {"technician_id": "tech06"}, "assign", "accepted")]),
    # tech04's ticket: tech04 completes while the dispatcher hands it back to the pool.
    "complete-vs-release": ("accepted", [
        Move("complete", "tech04", {"note": "修好了"}, "complete", "awaiting_followup"),
        Move("release", DISPATCHER, {"reason": "用户改约"}, "release", "pending")]),
}


@pytest.mark.parametrize("pair", list(PAIRS))
def test_two_concurrent_transitions_apply_exactly_one(world: World, pair: str) -> None:
    start_state, moves = PAIRS[pair]
    ticket_id = world.report()
    if start_state == "accepted":
        world.act(ticket_id, "grab", "tech04")
    before = world.read(ticket_id)
    calls = []
    for move in moves:
        body = dict(move.body or {})
        if "technician_id" in body:
            body["technician_id"] = world.technician_id(body["technician_id"])
        calls.append(post(f"/api/v1/tickets/{ticket_id}/{move.verb}", world.headers(move.username), body))

    replies = race(world.base_url, calls, gate=RowGate(world.engine, ticket_id))

    assert sorted(r.status_code for r in replies) == [200, 409], [r.text for r in replies]
    winner = moves[[r.status_code for r in replies].index(200)]
    loser = next(r for r in replies if r.status_code == 409).json()
    assert loser["code"] in {"already_taken", "invalid_transition", "concurrent_change"}
    assert loser["state"] == winner.leaves
    after = world.read(ticket_id)
    assert after["state"] == winner.leaves
    assert after["version"] == before["version"] + 1
    new_events = after["events"][len(before["events"]):]
    assert [(e["action"], e["actor"]) for e in new_events] == [(winner.action, winner.username)]


# --- a storm of grabs --------------------------------------------------------------------------

@pytest.mark.parametrize("pool_gone", [False, True], ids=["through-the-pool", "pool-gone-every-grab-reaches-the-row"])
def test_grab_storm_has_exactly_one_winner_and_the_rest_get_already_taken(world: World, redis: Redis,
                                                                          pool_gone: bool) -> None:
    grabs = {username: world.headers(username) for username in STORM}
    for _round in range(5):
        ticket_id = world.report()
        calls = [post(f"/api/v1/tickets/{ticket_id}/grab", headers) for headers in grabs.values()]
        gated = pool_gone
        if pool_gone:  # as after a Redis flush: PostgreSQL alone decides, every racer queues on the row
            branch_id = world.scalar("SELECT branch_id FROM ticket WHERE id = :id", id=ticket_id)
            redis.delete(PoolKeys.of(branch_id).built)

        replies = race(world.base_url, calls, gate=RowGate(world.engine, ticket_id) if gated else None)

        statuses = Counter(r.status_code for r in replies)
        assert statuses == {200: 1, 409: len(STORM) - 1}, [r.text for r in replies]
        assert {r.json()["code"] for r in replies if r.status_code == 409} == {"already_taken"}
        winner_name = list(grabs)[[r.status_code for r in replies].index(200)]
        winner_id = world.technician_id(winner_name)
        ticket = world.read(ticket_id)
        assert ticket["state"] == "accepted"
        assert ticket["technician_id"] == winner_id
        grab_events = [e for e in ticket["events"] if e["action"] == "grab"]
        assert [(e["actor"], e["technician_id"]) for e in grab_events] == [(winner_name, winner_id)]
        # The winner finishes, so that a technician winning every round never hits their limit.
        world.act(ticket_id, "complete", winner_name, {"note": "修好了"})


# --- intake under concurrency ------------------------------------------------------------------

def test_same_idempotency_key_from_eight_threads_makes_one_ticket(world: World) -> None:
    headers = {**world.headers(DISPATCHER), "Idempotency-Key": f"race-{uuid.uuid4()}"}
    body = report_body()
    tickets_before = world.scalar("SELECT count(*) FROM ticket")

    replies = race(world.base_url, [post("/api/v1/tickets", headers, body)] * 8)

    assert {r.status_code for r in replies} <= {200, 201}, [r.text for r in replies]
    assert len({r.json()["id"] for r in replies}) == 1
    assert world.scalar("SELECT count(*) FROM ticket") == tickets_before + 1
    assert actions(world.read(replies[0].json()["id"])) == ["create"]


def test_eight_identical_reports_at_once_make_one_ticket_and_seven_merges(world: World) -> None:
    body = report_body()  # same phone, same type, no key: the same subscriber reporting again
    reporters = [world.headers(DISPATCHER), world.headers("clerk.xl")] * 4
    tickets_before = world.scalar("SELECT count(*) FROM ticket")

    replies = race(world.base_url, [post("/api/v1/tickets", headers, body) for headers in reporters])

    assert sorted(r.status_code for r in replies) == [200] * 7 + [201], [r.text for r in replies]
    assert len({r.json()["id"] for r in replies}) == 1
    assert [r.json()["merged"] for r in replies if r.status_code == 200] == [True] * 7
    assert not next(r for r in replies if r.status_code == 201).json()["merged"]
    assert world.scalar("SELECT count(*) FROM ticket") == tickets_before + 1
    assert Counter(actions(world.read(replies[0].json()["id"]))) == {"create": 1, "merge": 7}


# --- one technician, many tickets ----------------------------------------------------------------

def test_one_technician_grabbing_many_tickets_at_once_never_exceeds_max_active(world: World) -> None:
    tech_id = world.technician_id("tech01")
    limit = world.scalar("SELECT max_active FROM technician WHERE id = :id", id=tech_id)
    headers = world.headers("tech01")
    ticket_ids = [world.report() for _ in range(limit * 2 + 2)]

    replies = race(world.base_url, [post(f"/api/v1/tickets/{t}/grab", headers) for t in ticket_ids])

    statuses = Counter(r.status_code for r in replies)
    assert statuses == {200: limit, 409: len(ticket_ids) - limit}, [r.text for r in replies]
    assert {r.json()["code"] for r in replies if r.status_code == 409} == {"limit_reached"}
    held = world.scalar("SELECT count(*) FROM ticket WHERE technician_id = :id AND state = 'accepted'", id=tech_id)
    assert held == limit


# --- the last slot of a ticket's attachment budget ---------------------------------------------

# A valid 1x1 PNG: the attachment sniffs types from the bytes.
PHOTO = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108020000009077"
                      "53de0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082")


@pytest.mark.parametrize("budget", ["files", "bytes"])
def test_racing_uploads_never_squeeze_past_the_last_slot_of_a_tickets_budget(
        settings: Settings, committed_db: Engine, redis: Redis, tmp_path: Path, budget: str) -> None:
    caps = {"max_attachments_per_ticket": 3} if budget == "files" else {
        "max_attachment_bytes_per_ticket": 3 * len(PHOTO) + len(PHOTO) // 2}
    media = tmp_path / "media"
    with serving(create_app(settings.model_copy(update={**caps, "media_dir": media}))) as base_url, \
            httpx.Client(base_url=base_url, timeout=60) as api:
        world = World(api=api, engine=committed_db, base_url=base_url)
        ticket_id = world.report()
        headers = world.headers(DISPATCHER)
        path = f"/api/v1/tickets/{ticket_id}/attachments"
        for _ in range(2):
            assert api.post(path, files={"file": ("a.png", PHOTO)}, headers=headers).status_code == 201

        replies = race(base_url, [lambda c: c.post(path, files={"file": ("a.png", PHOTO)}, headers=headers)] * 8)

    assert sorted(r.status_code for r in replies) == [201] + [409] * 7, [r.text for r in replies]
    assert {r.json()["code"] for r in replies if r.status_code == 409} == {"attachment_budget_exceeded"}
    assert world.scalar("SELECT count(*) FROM attachment WHERE ticket_id = :id", id=ticket_id) == 3
    assert len([p for p in media.rglob("*") if p.is_file()]) == 3


def put(path: str, headers: dict[str, str], body: dict[str, Any]) -> Call:
    return lambda client: client.put(path, json=body, headers=headers)


def test_a_branchs_mode_changed_eight_times_at_once_keeps_every_change_and_its_audit(world: World) -> None:
    # The console sends the mode and its wait as two changes in a row: both found no row, both inserted it.
    branch = world.scalar("SELECT id FROM region WHERE code = 'XL'")
    path, headers = f"/api/v1/regions/{branch}/dispatch-mode", world.headers(DISPATCHER)
    modes = [{"mode": "hybrid", "hybrid_after_s": 60 + n} if n % 2 else {"mode": "assign"} for n in range(8)]

    replies = race(world.base_url, [put(path, headers, body) for body in modes])

    assert [r.status_code for r in replies] == [200] * 8, [r.text for r in replies]
    kept = world.scalar("SELECT mode || ':' || coalesce(hybrid_after_s, 0) FROM branch_dispatch WHERE region_id = :b",
                        b=branch)
    assert kept in {f"{body['mode']}:{body.get('hybrid_after_s', 0)}" for body in modes}
    assert world.scalar("SELECT count(*) FROM audit_event WHERE action = 'dispatch_mode.changed'") == 8
