"""A hybrid branch's sweep assigning a ticket while a technician grabs it: exactly one owner, every round.

The grab goes through a live server (pool claim, then PostgreSQL's compare-and-set); the sweep runs in a thread
of this process on its own connection, as the worker would. Both leave a Barrier together. In-process, the sweep
is faster than an HTTP grab, so every other round it first waits (a poll with a deadline) until the grab holds
its claim in the pool: the grab is then on its way into PostgreSQL while the sweep assigns, the overlap the
sweep's row locks and its SKIP LOCKED on technicians are for. Either way the ticket has one owner and one taking
event.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
from redis import Redis
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dispatch.kernel.settings import Settings
from dispatch.tickets import modes
from dispatch.tickets.models import Ticket
from grab_pool.pool import PoolKeys
from tests.concurrency.test_races import LOOPBACK_TLS, XL_POINT, report_body
from tests.conftest import TEST_REDIS_URL, log_in, on_duty

ROUNDS = 10
TAKING = {"grab", "system_assign"}


def test_a_hybrid_sweep_racing_a_grab_leaves_exactly_one_owner(live_server: str, committed_db: Engine,
                                                               settings: Settings,
                                                               demo_technicians_restored: None) -> None:
    with httpx.Client(base_url=live_server, timeout=60, verify=LOOPBACK_TLS) as api:
        dispatcher = log_in(api, "dispatcher.xl")
        [xl] = api.get("/api/v1/dispatch-modes", headers=dispatcher).json()
        chosen = api.put(f"/api/v1/regions/{xl['region_id']}/dispatch-mode",
                         json={"mode": "hybrid", "hybrid_after_s": 60}, headers=dispatcher)
        assert chosen.status_code == 200, chosen.text
        racers = {name: on_duty(api, log_in(api, name), at=XL_POINT) for name in ("tech01", "tech02", "tech05")}
        for round_ in range(ROUNDS):
            grabber = list(racers)[round_ % len(racers)]
            reply = api.post("/api/v1/tickets", json=report_body(), headers=dispatcher)
            assert reply.status_code == 201 and reply.json()["state"] == "pending", reply.text
            ticket_id = reply.json()["id"]

            grab_reply, assigned = _race(live_server, ticket_id, racers[grabber], committed_db, settings,
                                         after_claim=round_ % 2 == 1)

            ticket = api.get(f"/api/v1/tickets/{ticket_id}", headers=dispatcher).json()
            taking = [e for e in ticket["events"] if e["action"] in TAKING]
            assert ticket["state"] == "accepted" and len(taking) == 1, ticket["events"]
            assert ticket["technician_id"] == taking[0]["technician_id"]
            if assigned == 0:
                assert grab_reply.status_code == 200 and taking[0]["action"] == "grab", grab_reply.text
                assert not ticket["system_assigned"]
            else:
                assert taking[0]["action"] == "system_assign" and ticket["system_assigned"]
                if grab_reply.status_code == 200:
                    # The system chose the grabber: their grab then finds the ticket theirs and is not told it lost.
                    assert grab_reply.json()["technician_id"] == ticket["technician_id"]
                else:
                    assert grab_reply.status_code == 409 and grab_reply.json()["code"] == "already_taken", \
                        grab_reply.text
            # Whoever got it finishes it, so no racer reaches their limit over the rounds.
            [holder] = [n for n, headers in racers.items()
                        if ticket_id in [t["id"] for t in api.get("/api/v1/me/tickets", headers=headers).json()]]
            done = api.post(f"/api/v1/tickets/{ticket_id}/complete", json={"note": "修好了"}, headers=racers[holder])
            assert done.status_code == 200, done.text


def _race(base_url: str, ticket_id: int, grabber: dict[str, str], engine: Engine, settings: Settings, *,
          after_claim: bool) -> tuple[httpx.Response, int]:
    start = threading.Barrier(2)
    later = datetime.now(UTC) + timedelta(seconds=120)  # the hybrid wait is over for the sweep

    with httpx.Client(base_url=base_url, timeout=60, verify=LOOPBACK_TLS) as client:
        assert client.get("/healthz").status_code == 200  # connected before the start line

        def grab() -> httpx.Response:
            start.wait(timeout=30)
            return client.post(f"/api/v1/tickets/{ticket_id}/grab", headers=grabber)

        def sweep() -> int:
            redis = Redis.from_url(TEST_REDIS_URL)
            try:
                with Session(engine) as session, session.begin():
                    branch_id = session.scalars(select(Ticket.branch_id).where(Ticket.id == ticket_id)).one()
                    start.wait(timeout=30)
                    if after_claim:
                        _until_claimed(redis, PoolKeys.of(branch_id).ticket(ticket_id))
                    return modes.sweep_hybrid(session, redis, settings=settings, now=later, limit=50)
            finally:
                redis.close()

        with ThreadPoolExecutor(max_workers=2) as pool:
            grabbed, swept = pool.submit(grab), pool.submit(sweep)
            return grabbed.result(timeout=60), swept.result(timeout=60)



def _until_claimed(redis: Redis, key: str) -> None:
    """Until the pool no longer lists the ticket as grabbable (claimed, or taken already)."""
    deadline = time.monotonic() + 10
    while redis.hget(key, "state") in (b"pending", None):
        assert time.monotonic() < deadline, "the grab never reached the pool"
