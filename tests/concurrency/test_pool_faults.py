"""The grab pool losing its Redis mid-storm, and claimers dying mid-grab: PostgreSQL keeps one owner.

A flush or a kill -9 of Redis while 300 technicians storm 100 tickets must
leave no ticket with two owners and none lost from the pool for good; a
claim whose process died before committing blocks the ticket only for its
lease, after which the ticket is grabbable and listed near technicians again.
"""

import asyncio
from collections.abc import Awaitable, Callable

import httpx
from redis import Redis
from sqlalchemy.engine import Engine

from dispatch.tickets import jobs
from grab_pool import pool
from tests.concurrency.storms import (
    XL_BRANCH,
    ApiServer,
    Crowd,
    Member,
    PrivateRedis,
    StormLog,
    build_pool,
    events,
    fieldpool,
    open_client,
    outcome_of,
    owners,
    storm,
    wait_until,
)
from tests.concurrency.test_grab_storms import assert_one_owner_each, assert_within_limits, tickets
from tests.conftest import TEST_REDIS_URL

EH_BRANCH = 3  # 二连浩特分公司: nobody storms it
LOST_AFTER = 30  # wins before Redis goes
BACK_AFTER = 50  # wins (PostgreSQL alone deciding) before a killed Redis starts again


def run_storm(server: ApiServer, members: list[Member], ticket_ids: list[int],
              fault: Callable[[StormLog], Awaitable[None]]) -> StormLog:
    async def run() -> StormLog:
        client = await open_client(server.base_url, len(members))
        try:
            return await storm(client, members, ticket_ids, seed=7, on_win=fault)
        finally:
            await client.aclose()

    return asyncio.run(run())


def assert_pool_agrees(redis_url: str) -> None:
    assert drift(redis_url) == []


def drift(redis_url: str) -> list[str]:
    """What `fieldpool pool check` reports, one line per difference; it exits non-zero on any."""
    checked = fieldpool("pool", "check", redis_url=redis_url)
    assert checked.returncode in {0, 1}, checked.stdout + checked.stderr
    return checked.stdout.splitlines() if checked.returncode else []


def test_a_storm_through_a_redis_flush_leaves_one_owner_per_ticket_and_the_pool_whole(
        crowd: Crowd, api_server: ApiServer, committed_db: Engine) -> None:
    members = crowd.enlist(300, max_active=lambda n: 1 + n % 2)
    ticket_ids = tickets(api_server.base_url, crowd, 100)
    build_pool(committed_db, TEST_REDIS_URL)
    flushed: list[int] = []

    def flush() -> None:
        with Redis.from_url(TEST_REDIS_URL) as redis:
            redis.flushdb()

    async def flush_once(log: StormLog) -> None:
        if log.wins >= LOST_AFTER and not flushed:
            flushed.append(log.wins)
            await asyncio.to_thread(flush)

    log = run_storm(api_server, members, ticket_ids, flush_once)

    assert flushed and log.wins > flushed[0], "the flush came after the storm"
    assert_one_owner_each(committed_db, ticket_ids, log)
    assert_within_limits(committed_db)
    # The stormed branch rebuilt itself on demand; Erenhot's pool, flushed too but untouched, waits for the
    # worker's repair.
    assert drift(TEST_REDIS_URL) == [f"branch {EH_BRANCH}, pool: not built"]
    assert jobs.repair_pool()["rebuilt"] == 1
    assert drift(TEST_REDIS_URL) == []


class KillAndRestart:
    """kill -9 the pool's Redis after some wins; start it again, empty, after more wins without it."""

    def __init__(self, redis: PrivateRedis) -> None:
        self.redis = redis
        self.down = asyncio.Event()
        self.phase = "up"

    async def __call__(self, log: StormLog) -> None:
        if self.phase == "up" and log.wins >= LOST_AFTER:
            self.phase = "killing"
            await asyncio.to_thread(self.redis.kill)
            self.down.set()
        elif self.phase == "killing" and log.wins >= BACK_AFTER:
            self.phase = "back"
            await self.down.wait()
            await asyncio.to_thread(self.redis.start)


def test_a_storm_through_a_redis_kill_and_restart_leaves_one_owner_per_ticket_and_the_pool_whole(
        crowd: Crowd, start_api: Callable[[str], ApiServer], private_redis: PrivateRedis,
        committed_db: Engine) -> None:
    server = start_api(private_redis.url)
    members = crowd.enlist(300, max_active=lambda n: 1 + n % 2)
    ticket_ids = tickets(server.base_url, crowd, 100)
    build_pool(committed_db, private_redis.url)
    fault = KillAndRestart(private_redis)

    log = run_storm(server, members, ticket_ids, fault)

    assert fault.phase == "back", "Redis was not killed and restarted during the storm"
    assert_one_owner_each(committed_db, ticket_ids, log)
    assert_within_limits(committed_db)
    assert drift(private_redis.url) == [f"branch {EH_BRANCH}, pool: not built"]
    rebuilt = fieldpool("pool", "rebuild", redis_url=private_redis.url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert drift(private_redis.url) == []


# --- a claimer that died before committing ----------------------------------------------------------

LEASE_MS = 3000


def claim_and_die(redis: Redis, member: Member, ticket_id: int) -> None:
    """What a worker killed between the pool's claim and the PostgreSQL commit leaves behind."""
    grabber = pool.Grabber(technician_id=member.technician_id, branch_id=XL_BRANCH, scope_path="/1/2/", max_active=1)
    claimed = pool.grab(redis, grabber, ticket_id, request_id=pool.new_request_id(), lease_ms=LEASE_MS)
    assert claimed.outcome is pool.Outcome.WON


def near_me(api: httpx.Client, member: Member) -> list[int]:
    reply = api.get("/api/v1/me/pool", headers=member.headers)
    assert reply.status_code == 200, reply.text
    return [t["id"] for t in reply.json()]


def test_a_dead_claim_turns_grabs_away_until_its_lease_ends_and_the_repair_lists_the_ticket_again(
        crowd: Crowd, api_server: ApiServer, committed_db: Engine, redis: Redis) -> None:
    dead, alive = crowd.enlist(2)
    [ticket_id] = tickets(api_server.base_url, crowd, 1)
    build_pool(committed_db, TEST_REDIS_URL)
    claim_and_die(redis, dead, ticket_id)
    with httpx.Client(base_url=api_server.base_url, timeout=30) as api:
        assert outcome_of(api.post(f"/api/v1/tickets/{ticket_id}/grab", headers=alive.headers)) == \
            (409, "already_taken")
        assert ticket_id not in near_me(api, alive)
        returned: list[int] = []

        def repaired() -> bool:
            returned.append(jobs.repair_pool()["returned"])  # the worker's periodic repair
            return returned[-1] > 0

        wait_until(repaired, what="the dead claim's lease to run out", timeout_s=LEASE_MS / 1000 + 30)
        assert sum(returned) == 1
        assert ticket_id in near_me(api, alive)
        assert api.post(f"/api/v1/tickets/{ticket_id}/grab", headers=alive.headers).status_code == 200

    assert owners(committed_db, [ticket_id]) == {ticket_id: ("accepted", alive.technician_id)}
    assert events(committed_db, [ticket_id], "grab") == {ticket_id: [("grab", alive.username, alive.technician_id)]}
    assert_pool_agrees(TEST_REDIS_URL)  # the dead claimer no longer counts as holding a ticket


def test_a_dead_claim_expires_by_itself_for_the_next_grabber_without_any_repair(
        crowd: Crowd, api_server: ApiServer, committed_db: Engine, redis: Redis) -> None:
    dead, alive = crowd.enlist(2)
    [ticket_id] = tickets(api_server.base_url, crowd, 1)
    build_pool(committed_db, TEST_REDIS_URL)
    claim_and_die(redis, dead, ticket_id)
    seen: list[tuple[int, str]] = []
    with httpx.Client(base_url=api_server.base_url, timeout=30) as api:
        def grabbed() -> bool:
            seen.append(outcome_of(api.post(f"/api/v1/tickets/{ticket_id}/grab", headers=alive.headers)))
            return seen[-1] == (200, "")

        wait_until(grabbed, what="the dead claim's lease to run out", timeout_s=LEASE_MS / 1000 + 30)

    assert set(seen[:-1]) == {(409, "already_taken")}
    assert owners(committed_db, [ticket_id]) == {ticket_id: ("accepted", alive.technician_id)}
    assert_pool_agrees(TEST_REDIS_URL)
