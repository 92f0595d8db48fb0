"""Webhook delivery (issue 16): the outbox's delivery rate to a local receiver beside a raw HTTP client.

`fieldpool worker` runs as `make run` starts it (then a second one beside it, for the third row), on the
bench database and Redis. First a steady flow (STEADY_PER_S events a second, one a commit): the lag of
one event when nothing queues. Then a burst: this process commits
`BENCH_WEBHOOK_EVENTS` (5000) feed events over 500 tickets, 50 per transaction as fast as it can, each
commit asking for an outbox drain as the API's commits do; the worker drains them, fans each event out to
one webhook (the XL branch, every type) and posts the signed deliveries, in order per ticket, to an aiohttp
receiver in a process of its own that checks every signature. Lag is commit -> receipt, per event.

Beside it, in the same run and to the same receiver: the same bodies posted by httpx from this process,
signed the same way, with as many threads as the sender has in flight (WEBHOOKS__CONCURRENCY, 16); its
"lag" is the time of each POST. Every row must see every event exactly once; the outbox rows in order.

One rq worker runs one job at a time: the drain's fan-out (a transaction per event) and the sending take
turns, so under a burst the sends wait for the drain. A second worker lets them overlap.
"""

import hashlib
import hmac
import json
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import numpy as np
from redis import Redis
from rq import Queue, Worker
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.kernel.auth import Actor, PrincipalKind, Role
from dispatch.kernel.settings import WebhookSettings
from dispatch.tickets import feed, notify, outbox
from dispatch.webhooks import sender, service
from dispatch.webhooks.models import WebhookDelivery
from dispatch.webhooks.schemas import EventType
from geo.models import Region
from tests.bench import harness
from tests.concurrency.storms import free_port

EVENTS = int(os.environ.get("BENCH_WEBHOOK_EVENTS", "5000"))
TICKETS = 500
PER_COMMIT = 50
STEADY_PER_S = 50
STEADY_EVENTS = 1000
SECRET = "whsec_bench_0123456789abcdef0123456789"
WAIT_S = 600.0


# --- the receiver, in a process of its own ----------------------------------------------------------

def _serve(port: int, secret: str) -> None:
    from aiohttp import web  # the bench's dev dependency, imported in the receiver process only

    received: dict[str, list[tuple[str, int, int, float]]] = {"outbox": [], "raw": []}

    async def take(request: web.Request) -> web.Response:
        body = await request.read()
        at = time.time()
        fields = dict(p.split("=", 1) for p in request.headers.get(sender.SIGNATURE_HEADER, "").split(","))
        mac = hmac.new(secret.encode(), fields.get("t", "").encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, fields.get("v1", "")):
            return web.Response(status=400)
        event = json.loads(body)
        received[request.match_info["row"]].append((event["id"], event["data"]["ticket_id"], event["data"]["seq"], at))
        return web.Response(status=200)

    async def results(request: web.Request) -> web.Response:
        return web.json_response(received[request.match_info["row"]])

    app = web.Application()
    app.router.add_post("/hook/{row}", take)
    app.router.add_get("/results/{row}", results)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


@contextmanager
def receiver() -> Iterator[str]:
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(port, SECRET), daemon=True)
    process.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{base}/results/raw", timeout=1.0)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield base
    finally:
        process.terminate()
        process.join(10)


def received(base: str, row: str) -> list[tuple[str, int, int, float]]:
    return [tuple(r) for r in httpx.get(f"{base}/results/{row}", timeout=30.0).json()]  # type: ignore[misc]


# --- the rows --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    name: str
    deliveries: int
    seconds: float
    p50_ms: float
    p99_ms: float
    duplicates: int
    in_order: bool | None  # None: not asked of the raw client, which posts a ticket's events at once

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds


def _row(name: str, got: list[tuple[str, int, int, float]], start: float, end: float, lags: list[float], *,
         ordered: bool) -> Row:
    seen: dict[int, int] = {}
    in_order = True
    for _, ticket_id, seq, _ in got:
        in_order &= seq > seen.get(ticket_id, -1)
        seen[ticket_id] = seq
    return Row(name, len({g[0] for g in got}), end - start, float(np.percentile(lags, 50)) * 1000,
               float(np.percentile(lags, 99)) * 1000, len(got) - len({g[0] for g in got}),
               in_order if ordered else None)


def _commit_events(engine_url: str, redis_url: str, regions: tuple[int, int], count: int, *, seq_base: int,
                   per_commit: int = PER_COMMIT, per_s: float | None = None) -> dict[str, float]:
    """Feed events committed `per_commit` to a transaction, each commit waking the drain, as fast as possible
    or `per_s` events a second; returns event id -> commit time."""
    branch_id, grid_id = regions
    engine = create_engine(engine_url)
    queue = Queue("default", connection=Redis.from_url(redis_url))
    committed: dict[str, float] = {}
    began = time.monotonic()
    for start in range(0, count, per_commit):
        if per_s is not None:  # paced: this commit's slot
            time.sleep(max(0.0, began + start / per_s - time.monotonic()))
        ids = []
        with Session(engine) as session, session.begin():
            for n in range(start, min(start + per_commit, count)):
                event_id = uuid.uuid4().hex
                ids.append(event_id)
                outbox.emit(session, feed.TOPIC, feed.make_event(
                    "ticket.prioritized", ticket_id=1_000_000 + n % TICKETS, branch_id=branch_id, region_id=grid_id,
                    number=f"BENCH-{n % TICKETS}", state="pending", event_id=event_id,
                    at=datetime.now(UTC).isoformat(), seq=seq_base + n // TICKETS))
            notify.after_commit_drain(session, queue)
        at = time.time()
        committed.update(dict.fromkeys(ids, at))
    engine.dispose()
    return committed


def _wait_for(base: str, row: str, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while len(received(base, row)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{row}: {len(received(base, row))} of {count} deliveries after {WAIT_S:.0f} s")
        time.sleep(0.25)


def outbox_row(name: str, bench_url: str, redis_url: str, base: str, regions: tuple[int, int], seq_base: int, *,
               count: int = EVENTS, per_commit: int = PER_COMMIT, per_s: float | None = None) -> Row:
    already = len(received(base, "outbox"))
    start = time.time()
    committed = _commit_events(bench_url, redis_url, regions, count, seq_base=seq_base, per_commit=per_commit,
                               per_s=per_s)
    _wait_for(base, "outbox", already + count)
    got = [g for g in received(base, "outbox") if g[0] in committed]
    end = max(g[3] for g in got)
    return _row(name, got, start, end, [g[3] - committed[g[0]] for g in got], ordered=True)


def _workers_listed(redis_url: str, count: int) -> None:
    deadline = time.monotonic() + 120
    with Redis.from_url(redis_url) as queues:
        while len(Worker.all(connection=queues)) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} bench workers did not start")
            time.sleep(0.2)


def raw_row(bench_url: str, base: str, cfg: WebhookSettings) -> Row:
    engine = create_engine(bench_url)
    with Session(engine) as session:
        bodies = list(session.scalars(select(WebhookDelivery.body).order_by(WebhookDelivery.id)))[-EVENTS:]
    engine.dispose()
    url = f"{base}/hook/raw"
    lags: list[float] = []
    lock = threading.Lock()

    with httpx.Client(timeout=cfg.timeout_s, limits=httpx.Limits(max_connections=cfg.concurrency)) as http:
        def post(body: str) -> None:
            raw = body.encode()
            began = time.time()
            reply = http.post(url, content=raw, headers={
                "Content-Type": "application/json",
                sender.SIGNATURE_HEADER: sender.signature(SECRET, raw, timestamp=int(began))})
            reply.raise_for_status()
            with lock:
                lags.append(time.time() - began)

        start = time.time()
        with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
            list(pool.map(post, bodies))
        end = time.time()
    return _row(f"raw httpx, {cfg.concurrency} threads, same bodies", received(base, "raw"), start, end, lags,
                ordered=False)


def main(bench_url: str, redis_url: str) -> str:
    """The outbox row, then the raw row, on a freshly seeded bench database; returns the table."""
    cfg = WebhookSettings(allow_private_urls=True)
    engine = create_engine(bench_url)
    with Session(engine) as session:
        branch_id = session.scalars(select(Region.id).where(Region.code == "XL")).one()
        grid_id = session.scalars(select(Region.id).where(Region.parent_id == branch_id).order_by(Region.id)).first()
        admin_id = session.scalars(select(User.id).where(User.username == "admin")).one()
    assert grid_id is not None
    env = {"DATABASE_URL": bench_url, "REDIS_URL": redis_url, "REDIS_QUEUE_URL": redis_url, "LOG_LEVEL": "WARNING",
           "WEBHOOKS__ALLOW_PRIVATE_URLS": "true"}
    with receiver() as base:
        with Session(engine) as session, session.begin():
            service.create_webhook(session, url=f"{base}/hook/outbox", event_types=[e.value for e in EventType],
                                   region_ids=[branch_id], secret=SECRET, description="bench", cfg=cfg,
                                   actor=Actor(kind=PrincipalKind.USER, id=admin_id, role=Role.ADMIN, label="bench"))
        engine.dispose()
        regions = (branch_id, grid_id)
        with harness.worker(env):
            warm = 100
            _commit_events(bench_url, redis_url, regions, warm, seq_base=0)
            _wait_for(base, "outbox", warm)
            steady = outbox_row(f"steady: {STEADY_PER_S} events/s, 1 a commit", bench_url, redis_url, base, regions,
                                warm, count=STEADY_EVENTS, per_commit=1, per_s=STEADY_PER_S)
            seq = warm + STEADY_EVENTS
            one = outbox_row("burst: outbox -> 1 worker", bench_url, redis_url, base, regions, seq)
            with harness.worker(env):
                _workers_listed(redis_url, 2)
                two = outbox_row("burst: outbox -> 2 workers", bench_url, redis_url, base, regions, seq + EVENTS)
        raw = raw_row(bench_url, base, cfg)
    return report([steady, one, two, raw])


def _said(in_order: bool | None) -> str:
    return "-" if in_order is None else "yes" if in_order else "NO"


def report(rows: list[Row]) -> str:
    lines = [f"\nWebhook delivery (issue 16): one webhook; an aiohttp receiver checking every signature. Steady: "
             f"{STEADY_EVENTS} feed events at {STEADY_PER_S}/s, one a transaction. Burst: {EVENTS} events over "
             f"{TICKETS} tickets, {PER_COMMIT} a transaction, as fast as one process commits. Outbox lag: commit -> "
             f"receipt; raw: {EVENTS} bodies of the burst, lag = one POST.\n",
             f"{'row':<40} {'deliveries':>10} {'seconds':>8} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'dups':>5} {'in order':>8}"]
    for r in rows:
        lines.append(f"{r.name:<40} {r.deliveries:>10} {r.seconds:>8.2f} {r.rate:>8.1f} {r.p50_ms:>8.1f} "
                     f"{r.p99_ms:>8.1f} {r.duplicates:>5} {_said(r.in_order):>8}")
    _, one, two, raw = rows
    lines.append(f"outbox / raw delivery rate: {one.rate / raw.rate:.2f} with 1 worker (as `make run` starts it), "
                 f"{two.rate / raw.rate:.2f} with 2")
    return "\n".join(lines) + "\n"
