"""The whole dispatch flow with a real worker: intake, the first ring, the second ring from the worker's
own sweep, and an accept that stops the rings, seen through the HTTP API and the live feed.

`fieldpool serve` and `fieldpool worker` run as processes of their own on the test database and Redis,
both configured by environment variables as a deployment would be, with the ring step shortened to
STEP_S seconds. Nobody calls the sweep here: every wait is on the feed or a poll, with a deadline.
"""

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from sqlalchemy import text
from sqlalchemy.engine import Engine

from dispatch.kernel.settings import Settings
from geo.distance import EARTH_MEAN_RADIUS_M
from geo.latlng import LatLng
from tests.api.test_stream import TIMEOUT, Message, Sse
from tests.conftest import _free_port, answers, fieldpool_process, log_in

STEP_S = 3
DEADLINE_S = 60.0  # generous: the machine is shared, and the worker starts from cold
CENTRE = LatLng(43.9350, 116.0800)  # grid XL-G05
# Metres north of the ticket: two inside the first ring (3 km), one only inside the second (6 km),
# and one only inside a third (12 km), so that a third ring after the accept would show on the feed.
RING_1, RING_2 = ("tech01", "tech02"), "tech03"
OFFSETS_M = {"tech01": 100, "tech02": 400, "tech03": 4500, "tech05": 9000}


def north_of(point: LatLng, metres: float) -> LatLng:
    return LatLng(point.lat + math.degrees(metres / EARTH_MEAN_RADIUS_M), point.lng)


@dataclass
class Flow:
    api: httpx.Client
    engine: Engine
    worker_log: Path

    def headers(self, username: str) -> dict[str, str]:
        return log_in(self.api, username)

    def technician_id(self, username: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT t.id FROM technician t JOIN user_account u ON u.id = t.user_id "
                                         "WHERE u.username = :u"), {"u": username}).scalar_one())

    def call(self, method: str, path: str, username: str, status: int, **kwargs: Any) -> Any:
        reply = self.api.request(method, path, headers=self.headers(username), **kwargs)
        assert reply.status_code == status, reply.text
        return reply.json() if reply.content else None

    def report(self, phone: str) -> dict[str, Any]:
        body = {"type_code": "broadband_fault", "description": "光猫红灯", "contact": {"name": "李四", "phone": phone},
                "location": {"lat": CENTRE.lat, "lng": CENTRE.lng}}
        ticket: dict[str, Any] = self.call("POST", "/api/v1/tickets", "dispatcher.xl", 201, json=body)
        return ticket

    def offers(self, username: str) -> list[dict[str, Any]]:
        mine: list[dict[str, Any]] = self.call("GET", "/api/v1/me/offers", username, 200)
        return mine

    def wait_for(self, sse: Sse, match: Callable[[dict[str, Any]], bool], what: str) -> list[dict[str, Any]]:
        """The events read from `sse` up to and including the first that matches."""
        deadline = time.monotonic() + DEADLINE_S
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            message: Message = sse.next()
            if message.data is None:
                continue
            seen.append(message.data)
            if match(message.data):
                return seen
        pytest.fail(f"no {what} within {DEADLINE_S} s; saw {seen}; worker log:\n{self.worker_log.read_text()}")


def offered(ticket_id: int, ring: int) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "ticket.offered" and e["ticket_id"] == ticket_id and e["ring"] == ring


@pytest.fixture
def flow(settings: Settings, committed_db: Engine, redis: Redis, tmp_path: Path,
         demo_technicians_restored: None) -> Iterator[Flow]:
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "REDIS_QUEUE_URL": settings.redis_url, "SECRET_KEY": settings.secret_key,
           "MEDIA_DIR": str(settings.media_dir), "LOG_LEVEL": "WARNING", "LOG_JSON": "false",
           # The first ring's K at once (no lead ring, tests/dispatch/test_offers.py has it): rings by the step.
           "OFFER__STEP_S": str(STEP_S), "OFFER__SWEEP_INTERVAL_S": "1", "OFFER__LEAD_K": "0"}
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with fieldpool_process(["serve", "--port", str(port)], env, tmp_path / "api.log", answers(base_url)), \
            fieldpool_process(["worker"], env, tmp_path / "worker.log"), \
            httpx.Client(base_url=base_url, timeout=TIMEOUT) as api:
        yield Flow(api=api, engine=committed_db, worker_log=tmp_path / "worker.log")


def test_an_untaken_ticket_widens_by_the_workers_sweep_and_an_accept_stops_it(flow: Flow) -> None:
    ids = {username: flow.technician_id(username) for username in OFFSETS_M}
    for username, metres in OFFSETS_M.items():
        flow.call("PUT", "/api/v1/me/duty", username, 200, json={"on_duty": True})
        where = north_of(CENTRE, metres)
        flow.call("PUT", "/api/v1/me/location", username, 204, json={"lat": where.lat, "lng": where.lng})

    dispatcher, ring_2 = Sse(flow.api, flow.headers("dispatcher.xl")), Sse(flow.api, flow.headers(RING_2))
    try:
        ticket = flow.report("13900004444")
        # Ring 1 at intake: the two within 3 km, nobody further out.
        assert {o["technician_id"] for o in ticket["offers"]} == {ids[u] for u in RING_1}
        first = flow.wait_for(dispatcher, offered(ticket["id"], 1), "first-ring offer on the dispatcher's feed")
        assert set(first[-1]["technician_ids"]) == {ids[u] for u in RING_1}

        # Ring 2 once the step has passed, from the worker's own sweep: the technician at 4.5 km.
        flow.wait_for(ring_2, offered(ticket["id"], 2), "second-ring offer on tech03's feed")
        [mine] = flow.offers(RING_2)
        assert (mine["ticket"]["id"], mine["ring"]) == (ticket["id"], 2)
        waited = datetime.fromisoformat(mine["offered_at"]) - datetime.fromisoformat(ticket["created_at"])
        assert waited.total_seconds() >= STEP_S

        taken = flow.call("POST", f"/api/v1/tickets/{ticket['id']}/grab", RING_2, 200)
        assert (taken["state"], taken["technician_id"]) == ("accepted", ids[RING_2])

        # A second report is the clock: its second ring is due after the first ticket's third would
        # have been, and a sweep takes every due ticket, oldest due first. Once it has come, a third
        # ring of the taken ticket would have come too.
        clock = flow.report("13900005555")
        after = flow.wait_for(dispatcher, offered(clock["id"], 2), "the second report's second ring")
    finally:
        dispatcher.close()
        ring_2.close()

    about_taken = [(e["type"], e.get("ring")) for e in first + after if e["ticket_id"] == ticket["id"]]
    assert about_taken[:3] == [("ticket.created", None), ("ticket.offered", 1), ("ticket.offered", 2)]
    # A third ring may have beaten the grab on a slow machine; none may follow the accept.
    accepted = about_taken.index(("ticket.accepted", None))
    assert about_taken[accepted + 1:] == []
    assert [o["ticket"]["id"] for o in flow.offers(RING_1[0])] == [clock["id"]], "the taken one is gone"
