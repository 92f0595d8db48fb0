"""HTTP load at the door (issue 13): the API as `make run` serves it, rows beside an authenticated floor; the soak.

`fieldpool serve` (no --workers: its own process count) and `fieldpool worker` run as `make run` starts
them, for the whole table as for the soak, on the bench database (the demo city, freshly seeded) and
Redis. 64 keep-alive clients (`tests/bench/load.py`) send each row; every row stands beside the
authenticated floor `GET /api/v1/me` measured in the same run, once before the rows and once after, and
is divided by the floor measured nearer to it. Technicians are minted in SQL with tokens signed by the
bench server's secret (`tests.concurrency.storms.Crowd`), then go on duty and send a first position over
HTTP, spread over the Xilinhot grids.

The soak: the same stack and clients, `BENCH_SOAK_S` (600) seconds of mixed traffic, each client a
technician who pings, lists the pool, taps fresh tickets (about four taps per report) and, on a win,
arrives and completes; and reports, nearest searches and ticket reads as the dispatcher. Afterwards
`fieldpool pool check` must exit 0, the worker must have failed no job and no request may have got a 5xx.
"""

import json
import math
import os
import random
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from redis import Redis
from rq import Worker
from rq.registry import FailedJobRegistry
from shapely.geometry import shape
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from geo import crs
from geo.latlng import LatLng
from tests.bench import harness, load, presence
from tests.bench.load import CLIENTS, Call, Send, Tally
from tests.concurrency.storms import Crowd, Member

ROW_S = float(os.environ.get("BENCH_DOOR_ROW_S", "15"))  # each row but the grab storm runs this long
ROW_BOUND = 10_000_000  # requests: a row's loop ends here at the latest
TAPS = int(os.environ.get("BENCH_DOOR_TAPS", "4000"))  # the grab storm's, on TAPS / TAPS_PER_TICKET tickets
SOAK_S = float(os.environ.get("BENCH_SOAK_S", "600"))
TECHNICIANS = 320  # on duty and located; the grab storm's tappers
TAPS_PER_TICKET = 4  # a grab storm of about one winner per four taps
TYPE = "broadband_fault"
SECRET = "bench-door-secret-key-0123456789-0123456789"
GRIDS = Path(__file__).resolve().parents[2] / "fixtures/grids.geojson"
# Issue 13's targets: each row's rate over the floor's.
TARGETS = {"nearest": 0.6, "grab storm": 0.5, "location pings": 0.6, "intake": 0.2}
BURST_P99_MS = 1000.0
# Distinct phones (a report from a known phone merges into its open ticket): a prefix per kind of report.
PHONES = {"intake": "136", "burst": "137", "storm": "135", "soak": "139"}


# --- the stack and its world ---------------------------------------------------------------------

def _env(database_url: str, redis_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "REDIS_QUEUE_URL": redis_url,
            "LOG_LEVEL": "WARNING", "SECRET_KEY": SECRET, **presence.SERVER_ENV}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def stack(env: dict[str, str]) -> Iterator[harness.Api]:
    with harness.api(env, _free_port()) as served, harness.worker(env) as worker:
        yield served
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode} during the run")


@dataclass(frozen=True)
class World:
    members: list[Member]
    homes: list[LatLng]  # each member's first position, GCJ-02
    dispatcher: dict[str, str]
    points: list[LatLng]  # where reports come from and searches look, GCJ-02


def grid_points(count: int, seed: int) -> list[LatLng]:
    """Random points inside the Xilinhot grids, as the phones and the Chinese map SDKs give them (GCJ-02)."""
    features = json.loads(GRIDS.read_text())["features"]
    town = shapely.union_all([shape(f["geometry"]) for f in features if f["properties"]["branch"] == "XL"])
    west, south, east, north = town.bounds
    rng = np.random.default_rng(seed)
    lng, lat = rng.uniform(west, east, 3 * count), rng.uniform(south, north, 3 * count)
    inside = shapely.contains_xy(town, lng, lat)
    points = [crs.from_wgs84(LatLng(float(y), float(x)), crs.Crs.GCJ02) for x, y in zip(lng[inside], lat[inside],
                                                                                         strict=True)][:count]
    assert len(points) == count, "the grids fill most of their bounding box"
    return points


def located(p: LatLng) -> dict[str, object]:
    return {"lat": round(p.lat, 6), "lng": round(p.lng, 6), "crs": "gcj02"}


def populate(base: str, engine: Engine, technicians: int) -> World:
    """Mint the technicians (max_active high enough never to bind), put each on duty at a point of its own."""
    crowd = Crowd(engine, SECRET, owner=engine)
    members = crowd.enlist(technicians, max_active=lambda n: 1000)
    homes = grid_points(technicians, seed=1)
    world = World(members, homes, crowd.staff("dispatcher.xl"), grid_points(4096, seed=2))
    for kind, plan in (("duty", lambda g: Call("duty", "PUT", "/api/v1/me/duty", members[g].headers,
                                               {"on_duty": True})),
                       ("location", lambda g: Call("location", "PUT", "/api/v1/me/location", members[g].headers,
                                                   {**located(homes[g]), "accuracy_m": 10}))):
        _expect_success(load.run(base, load.fixed(plan, technicians)), kind)
    return world


def _expect_success(tallies: dict[str, Tally], what: str) -> None:
    failed = {kind: t.described() for kind, t in tallies.items() if any(s >= 300 or s < 200 for s, _ in t.answers)}
    if failed:
        raise RuntimeError(f"setting up the bench ({what}) failed: {failed}")


def report_body(kind: str, n: int, p: LatLng) -> dict[str, object]:
    return {"type_code": TYPE, "description": f"门口压测 {kind} {n}", "location": located(p),
            "contact": {"name": "压测", "phone": f"{PHONES[kind]}{n:08d}"}}


def fieldpool(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([harness.FIELDPOOL, *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=600, check=False)


class FailedJobs:
    """The worker's failed jobs: ids seen in rq's failed registry of queue 'default' each time it is called
    (periodic jobs keep a failure for 60 s only), and the worker's own failure count."""

    def __init__(self, queue_url: str) -> None:
        self.redis = Redis.from_url(queue_url)
        self.registry = FailedJobRegistry("default", connection=self.redis)
        self.seen: set[str] = set()

    def __call__(self) -> None:
        self.seen.update(self.registry.get_job_ids())

    def counted_by_worker(self) -> int:
        return sum(w.failed_job_count for w in Worker.all(connection=self.redis))


# --- the table -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    name: str  # the row and what it sends
    tally: Tally
    floor: Tally | None  # the floor it is divided by
    target: float | None = None

    @property
    def ratio(self) -> float | None:
        return None if self.floor is None else self.tally.rate / self.floor.rate


def table(database_url: str, redis_url: str) -> str:
    """The door table against a freshly seeded bench database and a flushed Redis; returns the report."""
    env = _env(database_url, redis_url)
    engine = create_engine(database_url)
    failed = FailedJobs(redis_url)
    try:
        with stack(env) as served:
            world = populate(served.base, engine, TECHNICIANS)
            rows, storm_note = _rows(served.base, engine, world, failed)
            failed()
            by_worker = failed.counted_by_worker()
            check = fieldpool(env, "pool", "check")
    finally:
        engine.dispose()
    return _report(served, rows, storm_note, len(failed.seen), by_worker, check)


def _rows(base: str, engine: Engine, world: World, watch: Callable[[], None]) -> tuple[list[Row], str]:
    members, homes, dispatcher, points = world.members, world.homes, world.dispatcher, world.points

    def measure(kind: str, plan: Callable[[int], Call], count: int = ROW_BOUND, seconds: float | None = ROW_S
                ) -> Tally:
        return load.run(base, load.fixed(plan, count, seconds), during=watch)[kind]

    def me(g: int) -> Call:
        return Call("floor", "GET", "/api/v1/me", members[g % CLIENTS].headers)

    def nearest(g: int) -> Call:
        p = points[g % len(points)]
        return Call("nearest", "GET", f"/api/v1/technicians/nearest?lat={p.lat:.6f}&lng={p.lng:.6f}&crs=gcj02"
                    f"&type_code={TYPE}", dispatcher)

    def ping(g: int) -> Call:
        c, step = g % CLIENTS, g // CLIENTS
        # Each client is its own technician, walking a loop of a few hundred metres around home.
        home, angle = homes[c], step / 25
        here = LatLng(home.lat + 0.002 * math.sin(angle), home.lng + 0.003 * math.cos(angle))
        return Call("pings", "PUT", "/api/v1/me/location", members[c].headers,
                    {**located(here), "accuracy_m": 5 + step % 30})

    def intake(g: int) -> Call:
        return Call("intake", "POST", "/api/v1/tickets", dispatcher, report_body("intake", g, points[g % len(points)]))

    def burst(g: int) -> Call:
        return Call("burst", "POST", "/api/v1/tickets", dispatcher, report_body("burst", g, points[-1 - g]))

    def pool(g: int) -> Call:
        return Call("pool", "GET", "/api/v1/me/pool", members[g % CLIENTS].headers)

    for kind, plan in (("floor", me), ("nearest", nearest), ("pings", ping), ("pool", pool)):
        # Warm-up, a request per client: callers known to every process, each process's copy of the live index.
        measure(kind, plan, CLIENTS, None)
    floor = measure("floor", me)
    rows = [Row("floor: GET /api/v1/me (each client its own technician)", floor, None),
            Row("nearest: GET /technicians/nearest (dispatcher)", measure("nearest", nearest), floor,
                TARGETS["nearest"]),
            Row("location pings: PUT /me/location", measure("pings", ping), floor, TARGETS["location pings"]),
            Row("intake: POST /tickets (distinct reports)", measure("intake", intake), floor, TARGETS["intake"])]
    burst_row = measure("burst", burst, CLIENTS, None)
    storm, tickets = _storm(base, engine, world, watch)
    pool_row = measure("pool", pool)
    floor_again = measure("floor", me)
    rows += [Row("intake burst: 64 distinct reports at once", burst_row, None),
             Row("grab storm: POST /tickets/{id}/grab", storm, floor_again, TARGETS["grab storm"]),
             Row("pool listing: GET /me/pool", pool_row, floor_again),
             Row("floor again: GET /api/v1/me", floor_again, None)]
    with engine.connect() as conn:
        accepted = conn.execute(text("SELECT count(*) FROM ticket WHERE id = ANY(:ids) AND state = 'accepted' "
                                     "AND technician_id IS NOT NULL"), {"ids": tickets}).scalar_one()
    note = (f"grab storm: {len(tickets)} new tickets (reported by the dispatcher just before the row), "
            f"{TAPS_PER_TICKET} taps on each by {TAPS_PER_TICKET} technicians at once, tappers rotating through "
            f"{TECHNICIANS}: {storm.count(200)} won, {storm.count(409, 'already_taken')} already_taken; "
            f"{accepted} of the tickets accepted in PostgreSQL")
    return rows, note


def _storm(base: str, engine: Engine, world: World, watch: Callable[[], None]) -> tuple[Tally, list[int]]:
    """TAPS_PER_TICKET taps on each of a batch of fresh tickets, the taps of one ticket sent together."""
    count = TAPS // TAPS_PER_TICKET

    def report(g: int) -> Call:
        return Call("report", "POST", "/api/v1/tickets", world.dispatcher,
                    report_body("storm", g, world.points[g % len(world.points)]))

    _expect_success(load.run(base, load.fixed(report, count)), "the grab storm's tickets")
    with engine.connect() as conn:
        tickets = list(conn.execute(text("SELECT id FROM ticket WHERE contact_phone LIKE :storm ORDER BY id"),
                                    {"storm": f"{PHONES['storm']}%"}).scalars())
    assert len(tickets) == count, f"{len(tickets)} storm tickets, expected {count}"

    def tap(g: int) -> Call:
        # Taps g = 4k .. 4k+3 go to ticket k from four neighbouring clients in the same turn.
        member = world.members[g % TECHNICIANS]
        return Call("grab", "POST", f"/api/v1/tickets/{tickets[g // TAPS_PER_TICKET]}/grab", member.headers)

    return load.run(base, load.fixed(tap, count * TAPS_PER_TICKET), during=watch)["grab"], tickets


def _report(served: harness.Api, rows: list[Row], storm_note: str, failed_seen: int, failed_by_worker: int,
            check: subprocess.CompletedProcess[str]) -> str:
    lines = [f"\nDoor benchmark (issue 13): `fieldpool serve` in {served.processes} API process(es) and "
             f"`fieldpool worker` beside it; {CLIENTS} keep-alive clients (aiohttp) in {load.PROCESSES} client "
             f"processes; {TECHNICIANS} technicians on duty over the Xilinhot grids; each row {ROW_S:.0f} s after a "
             f"warm-up, but the burst (64 requests) and the grab storm ({TAPS} taps).\n",
             f"{'row':<56} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'5xx':>4} {'>5s':>4} "
             f"{'other':>5} {'vs floor':>8}"]
    for r in rows:
        t = r.tally
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        lines.append(f"{r.name:<56} {t.requests:>8} {t.rate:>8.1f} {t.percentile_ms(0.5):>8.1f} "
                     f"{t.percentile_ms(0.99):>8.1f} {t.server_errors:>4} {t.slow:>4} {t.other:>5} {ratio:>8}")
    lines += ["", "vs floor: the row's rate over the floor's measured nearer to it in the run (the first floor for "
              "nearest, pings and intake; the second for the grab storm and the pool listing). other: answers "
              "neither 2xx, 4xx nor 5xx, and requests with no answer (status 0). Every answer:"]
    lines += [f"  {r.name.split(':')[0]:<22} {r.tally.described()}" for r in rows]
    lines += [f"  {storm_note}",
              "  nearest: k=5 broadband technicians around 4096 points spread over the grids; pings: each client "
              "its own technician, walking; intake: every report a new phone and point; pool: each client's "
              "technician, 5 km around their last position, up to 100 tickets", ""]
    checks = [(f"{r.name.split(':')[0]} / floor >= {r.target:.2f}", f"{r.ratio:.2f}", r.ratio >= r.target)
              for r in rows if r.target is not None and r.ratio is not None]
    burst = next(r.tally for r in rows if r.tally.kind == "burst")
    checks += [(f"intake burst p99 (64 at once) < {BURST_P99_MS:.0f} ms", f"{burst.percentile_ms(0.99):.0f}",
                burst.percentile_ms(0.99) < BURST_P99_MS),
               ("5xx in every row == 0", str(sum(r.tally.server_errors for r in rows)),
                all(r.tally.server_errors == 0 for r in rows)),
               ("requests over 5 s in every row == 0", str(sum(r.tally.slow for r in rows)),
                all(r.tally.slow == 0 for r in rows))]
    lines += [f"target {label:<48} {value:>8}  {'met' if met else 'NOT MET'}" for label, value, met in checks]
    lines.append(f"after the table: worker failed jobs {failed_by_worker} (registry: {failed_seen}); "
                 f"`fieldpool pool check` exit {check.returncode}: {_last_line(check)}")
    return "\n".join(lines)


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    out = (done.stdout + done.stderr).strip().splitlines()
    return out[-1] if out else ""


# --- the soak ------------------------------------------------------------------------------------

# What a client does next, by weight: about four grab taps per report.
MIX = {"ping": 30, "grab": 28, "pool": 10, "intake": 8, "nearest": 8, "read": 8, "me": 8}


def soak(database_url: str, redis_url: str, seconds: float = SOAK_S) -> str:
    """Mixed traffic for `seconds` with the worker running; then the pool check, failed jobs and 5xx."""
    env = _env(database_url, redis_url)
    engine = create_engine(database_url)
    failed = FailedJobs(redis_url)
    try:
        with stack(env) as served:
            world = populate(served.base, engine, CLIENTS)
            tallies = load.run(served.base, _mixed(world, seconds), during=failed)
            failed()
            by_worker = failed.counted_by_worker()
            check = fieldpool(env, "pool", "check")
    finally:
        engine.dispose()
    return _soak_report(served, seconds, tallies, check, len(failed.seen), by_worker)


def _mixed(world: World, seconds: float) -> load.Script:
    fresh: list[int] = []  # tickets reported by this process's clients and not known taken (one list per process)
    kinds, weights = list(MIX), list(MIX.values())

    async def client(c: int, send: Send) -> None:
        me, home, dispatcher = world.members[c].headers, world.homes[c], world.dispatcher
        rng = random.Random(c)
        held: list[int] = []
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            n += 1
            if held:  # a won ticket: on site, then done
                ticket = held.pop()
                await send(Call("arrive", "POST", f"/api/v1/tickets/{ticket}/arrive", me, {"location": located(home)}))
                await send(Call("complete", "POST", f"/api/v1/tickets/{ticket}/complete", me, {"note": "已修复"}))
                continue
            kind = rng.choices(kinds, weights)[0]
            p = world.points[rng.randrange(len(world.points))]
            if kind == "grab" and fresh:
                ticket = fresh[-1 - rng.randrange(min(8, len(fresh)))]
                answer = await send(Call("grab", "POST", f"/api/v1/tickets/{ticket}/grab", me))
                if answer.status == 200:
                    held.append(ticket)
                if answer.status in (200, 409) and ticket in fresh:
                    fresh.remove(ticket)
            elif kind == "intake":
                answer = await send(Call("intake", "POST", "/api/v1/tickets", dispatcher,
                                         report_body("soak", c * 1_000_000 + n, p)), read=True)
                if answer.status == 201:
                    fresh.append(int(answer.body["id"]))
            elif kind == "nearest":
                await send(Call("nearest", "GET", f"/api/v1/technicians/nearest?lat={p.lat:.6f}&lng={p.lng:.6f}"
                                f"&crs=gcj02&type_code={TYPE}", dispatcher))
            elif kind == "read" and fresh:
                await send(Call("read", "GET", f"/api/v1/tickets/{rng.choice(fresh)}", dispatcher))
            elif kind == "pool":
                await send(Call("pool", "GET", "/api/v1/me/pool", me))
            elif kind == "me":
                await send(Call("me", "GET", "/api/v1/me", me))
            else:  # a ping, or a grab or read with no fresh ticket yet
                here = LatLng(home.lat + 0.002 * math.sin(n / 25), home.lng + 0.003 * math.cos(n / 25))
                await send(Call("ping", "PUT", "/api/v1/me/location", me, {**located(here), "accuracy_m": 10}))

    return client


def _soak_report(served: harness.Api, seconds: float, tallies: dict[str, Tally],
                 check: subprocess.CompletedProcess[str], failed_seen: int, failed_by_worker: int) -> str:
    lines = [f"\nSoak (issue 13): {seconds:.0f} s of mixed traffic, {CLIENTS} clients each a technician on duty "
             f"(dispatcher for reports, nearest and reads), `fieldpool serve` in {served.processes} API "
             f"process(es) with `fieldpool worker`.\n",
             f"{'kind':<10} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'5xx':>4} {'>5s':>4} "
             f"{'other':>5}  answers"]
    every = list(tallies.values())
    total = Tally("all", every[0].seconds, [x for t in every for x in t.latencies],
                  sum((t.answers for t in every), Counter()))
    for t in [*(tallies[kind] for kind in sorted(tallies)), total]:
        answers = t.described() if t is not total else ""
        lines.append(f"{t.kind:<10} {t.requests:>8} {t.rate:>8.1f} {t.percentile_ms(0.5):>8.1f} "
                     f"{t.percentile_ms(0.99):>8.1f} {t.server_errors:>4} {t.slow:>4} {t.other:>5}  {answers}")
    checks = [("`fieldpool pool check` exits 0", f"{check.returncode}: {_last_line(check)}", check.returncode == 0),
              ("failed jobs == 0 (worker count; registry ids seen)", f"{failed_by_worker}; {failed_seen}",
               failed_by_worker == 0 and failed_seen == 0),
              ("5xx == 0", str(sum(t.server_errors for t in every)), all(t.server_errors == 0 for t in every)),
              ("requests over 5 s == 0", str(sum(t.slow for t in every)), all(t.slow == 0 for t in every)),
              ("no answer / other == 0", str(sum(t.other for t in every)), all(t.other == 0 for t in every))]
    lines.append("")
    lines += [f"soak {label:<52} {value:>10}  {'met' if met else 'NOT MET'}" for label, value, met in checks]
    return "\n".join(lines)
