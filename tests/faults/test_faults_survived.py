"""Faults survived, measured: PostgreSQL and Redis restarted, the worker and an API process SIGKILLed, each
during a grab storm and a burst of reports.

After each fault, without restarting the API: it answers again (no stale connection served), every report
a client was told was taken (201) is in PostgreSQL with its creation event and its outbox rows sent, no
ticket has two owners, every report is offered, `fieldpool pool check` is clean and `/readyz` said so while
it lasted. Each test prints its time to recover; the module runs on a PostgreSQL and a Redis of its own.
"""

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from redis import Redis
from rq import Queue
from rq.registry import StartedJobRegistry
from sqlalchemy import text
from sqlalchemy.engine import Engine

from dispatch.kernel.queues import Outcomes, periodic_outcomes
from dispatch.kernel.settings import Settings
from dispatch.tickets import jobs, outbox
from tests.concurrency.storms import XL_POINT, ApiServer, Crowd, Member, wait_until
from tests.faults.conftest import SECRET, City, Worker

# Every job the worker runs on a clock: the drain, rings, SLA, write-through, live index and pool upkeep.
PERIODIC = {outbox.TICK_JOB_ID, *(job.job_id for job in jobs.periodic(Settings()))}
REPORTERS = 6  # clients filing reports at once, each as fast as it is answered
GRABBERS = 6  # technicians tapping every other report together: one of them must win it
WATCHERS = 3  # on duty at the reports' point, grabbing nothing: the rings offer them the rest
REQUEST_TIMEOUT_S = 10.0
RECOVERY_S = 60.0  # the deadline for answering again, never the figure measured
PROBES = itertools.count()
WARM_REPORTS = 10  # reports taken before a fault, and again after recovery, before the load stops


@dataclass
class Sent:
    began: float
    kind: str
    status: int  # 0: no answer
    code: str


@dataclass
class Traffic:
    """Reports, grabs and location pings from one asyncio loop in a thread, every answer recorded."""

    base_url: str
    dispatcher: dict[str, str]
    grabbers: list[Member]
    watchers: list[Member]
    reported: dict[int, str] = field(default_factory=dict)  # ticket id -> number, from every 201
    won: dict[int, list[int]] = field(default_factory=dict)  # ticket -> technicians told they won it
    sent: list[Sent] = field(default_factory=list)
    ready: list[tuple[float, str]] = field(default_factory=list)  # /readyz as it answered, polled throughout
    stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def stormed(self) -> list[int]:
        """Every other report is stormed; the rest are left to the rings."""
        return list(self.reported)[::2]

    def reports_since(self, since: float) -> int:
        return sum(1 for s in self.sent if s.kind == "report" and s.status == 201 and s.began >= since)

    def __enter__(self) -> "Traffic":
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        assert self._thread is not None
        self._thread.join(timeout=REQUEST_TIMEOUT_S * 3)
        assert not self._thread.is_alive(), "the traffic did not stop"

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
            await asyncio.gather(*(self._reporter(client, n) for n in range(REPORTERS)),
                                 *(self._grabber(client, m) for m in self.grabbers),
                                 *(self._watcher(client, m) for m in self.watchers), self._readiness(client))

    async def _send(self, client: httpx.AsyncClient, kind: str, method: str, path: str,
                    **kwargs: object) -> httpx.Response | None:
        began = time.monotonic()
        try:
            reply = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            self.sent.append(Sent(began, kind, 0, type(exc).__name__))
            return None
        code = "" if reply.status_code < 400 else str(reply.json().get("code", "")) \
            if reply.headers.get("content-type", "").endswith("json") else reply.text[:40]
        self.sent.append(Sent(began, kind, reply.status_code, code))
        return reply

    async def _reporter(self, client: httpx.AsyncClient, n: int) -> None:
        serial = 0
        while not self.stopping.is_set():
            serial += 1
            body = {"type_code": "broadband_fault", "description": f"断网了 {n}-{serial}", "location": XL_POINT,
                    "contact": {"name": "张三", "phone": f"139{n:02d}{serial:06d}"}}
            reply = await self._send(client, "report", "POST", "/api/v1/tickets", json=body, headers=self.dispatcher)
            if reply is not None and reply.status_code == 201:
                self.reported[int(reply.json()["id"])] = reply.json()["number"]
            else:
                await asyncio.sleep(0.05)  # pacing while the service is down, not a wait for an outcome

    async def _grabber(self, client: httpx.AsyncClient, member: Member) -> None:
        tried: set[int] = set()
        while not self.stopping.is_set():
            untried = [t for t in self.stormed if t not in tried and t not in self.won]
            if not untried:
                await asyncio.sleep(0.02)  # pacing: nothing new to tap yet
                continue
            ticket_id = untried[-1]
            reply = await self._send(client, "grab", "POST", f"/api/v1/tickets/{ticket_id}/grab",
                                     headers=member.headers)
            if reply is None or reply.status_code >= 500:
                continue  # tapped again: a phone retries what got no answer
            tried.add(ticket_id)
            if reply.status_code == 200:
                self.won.setdefault(ticket_id, []).append(member.technician_id)

    async def _watcher(self, client: httpx.AsyncClient, member: Member) -> None:
        while not self.stopping.is_set():
            await self._send(client, "ping", "PUT", "/api/v1/me/location", headers=member.headers,
                             json={**XL_POINT, "crs": "wgs84", "accuracy_m": 10})
            await asyncio.sleep(1.0)  # a phone's ping interval

    async def _readiness(self, client: httpx.AsyncClient) -> None:
        while not self.stopping.is_set():
            try:
                reply = await client.get("/readyz")
                state = (reply.json()["status"] + " " + str(reply.json()["checks"].get("pool", ""))
                         if reply.status_code == 200 else str(reply.status_code))
            except httpx.TransportError as exc:
                state = type(exc).__name__
            self.ready.append((time.monotonic(), state))
            await asyncio.sleep(0.1)  # the load balancer's probe interval


@dataclass(frozen=True)
class Recovery:
    fault: str
    down_s: float  # how long the fault lasted (the service away)
    recover_s: float  # from the service back to the API answering reports and /readyz ok


@pytest.fixture(scope="module")
def people(city: City, owner: Engine) -> tuple[dict[str, str], list[Member], list[Member]]:
    crowd = Crowd(owner, SECRET, owner=owner)
    grabbers = crowd.enlist(GRABBERS, max_active=lambda n: 100_000)
    watchers = crowd.enlist(WATCHERS, max_active=lambda n: 100_000)
    return crowd.staff("dispatcher.xl"), grabbers, watchers


@pytest.fixture
def traffic(api: ApiServer, worker: Worker, people: tuple[dict[str, str], list[Member], list[Member]],
            city: City) -> Iterator[Traffic]:
    dispatcher, grabbers, watchers = people
    with httpx.Client(base_url=api.base_url, timeout=REQUEST_TIMEOUT_S) as client:
        for member in watchers:
            assert client.put("/api/v1/me/duty", json={"on_duty": True}, headers=member.headers).status_code == 200
    yield Traffic(api.base_url, dispatcher, grabbers, watchers)
    assert worker.process is not None and worker.process.poll() is None, city.root.joinpath("worker.log").read_text()


def answers_reports(api: ApiServer, dispatcher: dict[str, str]) -> bool:
    """/readyz ok, and a report taken: the API works again, on fresh connections."""
    # A number of its own each time: a second report from one phone at one place would be merged (200).
    body = {"type_code": "broadband_fault", "description": "探测", "location": XL_POINT,
            "contact": {"name": "探测", "phone": f"137{next(PROBES):08d}"}}
    try:
        with httpx.Client(base_url=api.base_url, timeout=REQUEST_TIMEOUT_S) as client:
            ready = client.get("/readyz")
            return (ready.status_code == 200 and ready.json()["status"] == "ok"
                    and client.post("/api/v1/tickets", json=body, headers=dispatcher).status_code == 201)
    except httpx.TransportError:
        return False


def weather(traffic: Traffic, api: ApiServer, name: str, fault: Callable[[], float]) -> Recovery:
    """Load, then the fault (which returns once its service is back), then load again once the API answers."""
    with traffic:
        wait_until(lambda: len(traffic.stormed) >= WARM_REPORTS // 2 and len(traffic.won) >= 2,
                   what="the storm to get going", timeout_s=RECOVERY_S)
        struck = time.monotonic()
        back = fault()
        try:
            wait_until(lambda: answers_reports(api, traffic.dispatcher), what=f"the API to answer after {name}",
                       timeout_s=RECOVERY_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; /readyz said {traffic.ready[-3:]}; logs in {api.log.parent}") from None
        recovered = time.monotonic()
        wait_until(lambda: traffic.reports_since(recovered) >= WARM_REPORTS, what="reports after recovery",
                   timeout_s=RECOVERY_S)
    after = [s for s in traffic.sent if s.began >= recovered]
    failed = Counter((s.kind, s.status, s.code) for s in after if s.status == 0 or s.status >= 500)
    assert not failed, f"after recovering from {name} the API still failed: {failed}"
    return Recovery(name, down_s=back - struck, recover_s=recovered - back)


def assert_nothing_lost(traffic: Traffic, owner: Engine, city: City) -> None:
    reported = dict(traffic.reported)
    ids = list(reported)
    with owner.connect() as conn:
        stored = dict(conn.execute(text("SELECT id, number FROM ticket WHERE id = ANY(:ids)"), {"ids": ids}).all())
        created = set(conn.execute(text("SELECT ticket_id FROM ticket_event WHERE action = 'create' "
                                        "AND ticket_id = ANY(:ids)"), {"ids": ids}).scalars())
        announced = set(conn.execute(text("SELECT (payload->>'ticket_id')::int FROM outbox "
                                          "WHERE payload->>'type' = 'ticket.created'")).scalars())
        taken = conn.execute(text("SELECT ticket_id, count(*) FROM ticket_event WHERE action IN ('grab', 'assign') "
                                  "AND ticket_id = ANY(:ids) GROUP BY ticket_id"), {"ids": ids}).all()
        holders = dict(conn.execute(text("SELECT id, technician_id FROM ticket WHERE id = ANY(:ids)"),
                                    {"ids": list(traffic.won)}).all())
    assert stored == reported, "a report answered 201 is missing or renumbered"
    assert created == set(ids), "a report answered 201 has no creation event"
    assert set(ids) <= announced, "a report answered 201 has no outbox row"
    assert [t for t, n in taken if n > 1] == [], "a ticket was taken twice"
    assert {t: w for t, w in traffic.won.items() if len(w) > 1} == {}, "two technicians were told they won"
    assert holders == {t: w[0] for t, w in traffic.won.items()}, "a winner does not hold the ticket"

    left: list[tuple[object, ...]] = []

    def settled() -> bool:
        with owner.connect() as conn:
            left[:] = conn.execute(text(
                "SELECT 'unsent', id, attempts, last_error FROM outbox WHERE sent_at IS NULL UNION ALL "
                "SELECT 'not offered', t.id, t.ring, t.state FROM ticket t WHERE t.id = ANY(:ids) "
                "AND t.technician_id IS NULL AND NOT EXISTS (SELECT 1 FROM ticket_offer o WHERE o.ticket_id = t.id)"),
                {"ids": ids}).all()
        return not left

    try:
        wait_until(settled, what="every outbox row sent and every report offered", timeout_s=RECOVERY_S)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {left[:10]}") from None
    wait_until(lambda: city.fieldpool("pool", "check").returncode == 0, what="`fieldpool pool check` clean",
               timeout_s=RECOVERY_S)


def said(traffic: Traffic, *states: str) -> list[str]:
    return [state for _, state in traffic.ready if state.split(" ")[0] in states]


def report(capsys: pytest.CaptureFixture[str], recovery: Recovery) -> None:
    with capsys.disabled():
        print(f"\n[faults] {recovery.fault}: away {recovery.down_s:.1f} s, "
              f"recovered {recovery.recover_s:.2f} s after it came back")


# --- the faults -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Restart:
    stop: Callable[[City], None]
    start: Callable[[City], None]
    down: str  # what /readyz says while the service is away


RESTARTS = {
    # 503: without PostgreSQL nothing is taken, the load balancer must look elsewhere.
    "PostgreSQL": Restart(lambda city: city.postgres.stop(), lambda city: city.postgres.start(), "503"),
    # Degraded: PostgreSQL alone still takes reports and arbitrates grabs.
    "Redis": Restart(lambda city: city.redis.kill(), lambda city: city.redis.start(), "degraded"),
}


@pytest.mark.parametrize("service", RESTARTS)
def test_a_restart_mid_storm_loses_nothing_and_the_api_answers_again_by_itself(
        service: str, traffic: Traffic, api: ApiServer, city: City, owner: Engine,
        capsys: pytest.CaptureFixture[str]) -> None:
    restart = RESTARTS[service]

    def fault() -> float:
        restart.stop(city)
        wait_until(lambda: bool(said(traffic, restart.down)), what=f"/readyz to say {restart.down}", timeout_s=30)
        restart.start(city)
        return time.monotonic()

    recovery = weather(traffic, api, f"{service} restart", fault)

    assert_nothing_lost(traffic, owner, city)
    assert said(traffic, "ok")[-1] == traffic.ready[-1][1], "/readyz did not come back to ok"
    report(capsys, recovery)


def test_a_worker_killed_mid_job_is_started_again_and_its_jobs_resume(
        traffic: Traffic, api: ApiServer, city: City, owner: Engine, worker: Worker,
        capsys: pytest.CaptureFixture[str]) -> None:
    queues = Redis.from_url(city.redis.url)

    def busy() -> bool:
        return StartedJobRegistry("default", connection=queues).count > 0

    def kill_and_restart() -> float:
        wait_until(busy, what="the worker to be running a job", timeout_s=30)
        killed_at = time.time()
        worker.kill()
        worker.start()  # as systemd or a container runtime would

        waiting: dict[str, Outcomes | None] = {}  # each job not yet succeeded since, with how it has fared

        def resumed() -> bool:
            outcomes = {o.job_id: o for o in periodic_outcomes(queues)}
            waiting.clear()
            waiting.update((j, outcomes.get(j)) for j in PERIODIC
                           if j not in outcomes or (outcomes[j].last_success_at or 0) <= killed_at)
            return not waiting

        # Away until every periodic job has succeeded in the new worker, the one killed mid-run among them.
        try:
            wait_until(resumed, what="the restarted worker's periodic jobs to succeed", timeout_s=RECOVERY_S)
        except AssertionError as exc:
            default = Queue("default", connection=queues)
            running = StartedJobRegistry(queue=default).get_job_ids(cleanup=False)
            raise AssertionError(f"{exc}: still waiting for {waiting}; the worker is running {running} with "
                                 f"{default.job_ids} queued; worker log in {worker.log}") from None
        return time.monotonic()

    recovery = weather(traffic, api, "worker SIGKILL", kill_and_restart)

    assert_nothing_lost(traffic, owner, city)
    queues.close()
    report(capsys, recovery)


def test_an_api_process_killed_mid_request_is_replaced_and_nothing_is_lost(
        traffic: Traffic, api: ApiServer, city: City, owner: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    def kill() -> float:
        before = api.log.read_text().count("Application startup complete")
        victim = api.kill_one()
        wait_until(lambda: api.log.read_text().count("Application startup complete") > before
                   and victim not in api.api_processes(), what="serve to replace the killed process", timeout_s=60)
        return time.monotonic()

    recovery = weather(traffic, api, "API process SIGKILL", kill)

    assert_nothing_lost(traffic, owner, city)
    assert len(api.api_processes()) == api.workers
    report(capsys, recovery)
