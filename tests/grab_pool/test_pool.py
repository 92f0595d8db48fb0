"""The pool's Lua scripts on a real Redis: who wins, who is turned away, what a dead claimer leaves behind."""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from redis import Redis

from geo.latlng import LatLng
from grab_pool import pool
from grab_pool.pool import Entry, Grabber, Outcome, PoolKeys

BRANCH = 2
GRID = "/1/2/7/"
HERE = LatLng(43.935, 116.08)


def entry(ticket_id: int, *, state: str = "pending", version: int = 1, holder: int | None = None,
          metres_north: float = 0.0) -> Entry:
    return Entry(ticket_id=ticket_id, branch_id=BRANCH, state=state, version=version, holder=holder, grid_path=GRID,
                 point=LatLng(HERE.lat + metres_north / 111_195.0, HERE.lng), type_code="broadband_fault",
                 number=f"XL-20261122-{ticket_id:04d}")


def tech(technician_id: int, *, scope: str = "/1/2/", max_active: int = 3) -> Grabber:
    return Grabber(technician_id=technician_id, branch_id=BRANCH, scope_path=scope, max_active=max_active)


def grab(redis: Redis, grabber: Grabber, ticket_id: int, *, request_id: str = "r", lease_ms: int = 15000) -> pool.Claim:
    return pool.grab(redis, grabber, ticket_id, request_id=request_id, lease_ms=lease_ms)


@pytest.fixture
def built(redis: Redis) -> Redis:
    pool.rebuild(redis, BRANCH, [entry(1), entry(2, metres_north=500), entry(3, metres_north=2000)], {}, at=0)
    return redis


def until(condition: Callable[[], bool], *, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"


def test_first_grab_wins_and_everyone_else_is_told_who_holds_it(built: Redis) -> None:
    won = grab(built, tech(11), 1)
    assert won.outcome is Outcome.WON and won.version == 1
    lost = grab(built, tech(12), 1)
    assert lost.outcome is Outcome.TAKEN and lost.holder == 11
    assert 1 not in dict(pool.near(built, BRANCH, HERE, radius_m=5000, count=10))


def test_the_winner_resending_is_told_it_won_again(built: Redis) -> None:
    assert grab(built, tech(11), 1, request_id="a").outcome is Outcome.WON
    again = grab(built, tech(11), 1, request_id="a")
    assert again.outcome is Outcome.WON and again.version == 1
    assert pool.snapshot(built, BRANCH).held == {11: 1}  # counted once


def test_a_thousand_concurrent_claims_have_one_winner(built: Redis) -> None:
    with ThreadPoolExecutor(max_workers=32) as executor:
        claims = list(executor.map(lambda t: grab(Redis(connection_pool=built.connection_pool), tech(t), 2),
                                   range(100, 1100)))
    winners = [c for c in claims if c.outcome is Outcome.WON]
    assert len(winners) == 1
    assert {c.outcome for c in claims} == {Outcome.WON, Outcome.TAKEN}


def test_out_of_scope_and_over_the_limit_are_turned_away(built: Redis) -> None:
    assert grab(built, tech(11, scope="/1/3/"), 1).outcome is Outcome.OUT_OF_SCOPE
    assert grab(built, tech(11, scope="/1/2/8/"), 1).outcome is Outcome.OUT_OF_SCOPE
    assert grab(built, tech(11, scope="/1/2/7/", max_active=1), 1).outcome is Outcome.WON
    assert grab(built, tech(11, max_active=1), 2).outcome is Outcome.LIMIT
    assert grab(built, tech(12), 2).outcome is Outcome.WON  # the refused claim left the ticket in the pool


def test_a_ticket_not_in_the_pool_or_an_unbuilt_pool_leaves_the_decision_to_postgres(redis: Redis) -> None:
    assert grab(redis, tech(11), 1).outcome is Outcome.UNBUILT
    pool.rebuild(redis, BRANCH, [], {}, at=0)
    assert grab(redis, tech(11), 1).outcome is Outcome.MISSING


def test_unclaim_returns_the_ticket_only_for_the_same_request(built: Redis) -> None:
    assert grab(built, tech(11), 1, request_id="mine").outcome is Outcome.WON
    assert not pool.unclaim(built, branch_id=BRANCH, ticket_id=1, technician_id=11, request_id="other")
    assert pool.unclaim(built, branch_id=BRANCH, ticket_id=1, technician_id=11, request_id="mine")
    assert 1 in dict(pool.near(built, BRANCH, HERE, radius_m=100, count=10))
    assert pool.snapshot(built, BRANCH).held == {}
    assert grab(built, tech(12), 1).outcome is Outcome.WON


def test_a_dead_claimers_lease_runs_out_and_the_ticket_is_grabbable_again(built: Redis) -> None:
    assert grab(built, tech(11), 1, lease_ms=200).outcome is Outcome.WON
    assert grab(built, tech(12), 1).outcome is Outcome.TAKEN  # while the lease holds
    until(lambda: grab(built, tech(12), 1).outcome is Outcome.WON)
    assert pool.snapshot(built, BRANCH).held == {12: 1}  # the dead claim no longer counts


def test_expired_leases_return_to_the_near_me_listing(built: Redis) -> None:
    assert grab(built, tech(11), 3, lease_ms=100).outcome is Outcome.WON
    assert pool.expire_leases(built, BRANCH) == []
    until(lambda: pool.expire_leases(built, BRANCH) == [3])
    assert 3 in dict(pool.near(built, BRANCH, HERE, radius_m=5000, count=10))
    assert pool.snapshot(built, BRANCH).held == {}


def test_put_mirrors_handovers_and_keeps_held_counts(built: Redis) -> None:
    assert grab(built, tech(11), 1).outcome is Outcome.WON
    pool.put(built, entry(1, state="accepted", version=2, holder=11))  # the commit went through
    assert pool.snapshot(built, BRANCH).held == {11: 1}
    pool.put(built, entry(1, state="accepted", version=3, holder=12))  # reassigned
    assert pool.snapshot(built, BRANCH).held == {12: 1}
    pool.put(built, entry(1, state="pending", version=4))  # released
    assert pool.snapshot(built, BRANCH).held == {}
    assert 1 in pool.snapshot(built, BRANCH).grabbable
    pool.put(built, entry(1, state="closed", version=5))  # invalidated
    mirror = pool.snapshot(built, BRANCH)
    assert 1 not in mirror.tickets and 1 not in mirror.grabbable


def test_a_late_mirror_never_undoes_a_newer_one(built: Redis) -> None:
    assert pool.put(built, entry(1, state="accepted", version=3, holder=11))
    assert not pool.put(built, entry(1, state="pending", version=2))
    assert pool.snapshot(built, BRANCH).tickets[1]["state"] == "accepted"


def test_a_closed_ticket_stays_closed_whatever_older_picture_arrives_after(built: Redis) -> None:
    assert pool.put(built, entry(1, state="accepted", version=3, holder=11))
    assert pool.put(built, entry(1, state="closed", version=4))  # completed
    assert not pool.put(built, entry(1, state="accepted", version=3, holder=11)), "a re-read mirrored late"
    mirror = pool.snapshot(built, BRANCH)
    assert 1 not in mirror.tickets and mirror.held.get(11, 0) == 0
    assert grab(built, tech(12), 1).outcome is Outcome.MISSING  # PostgreSQL decides, and says no
    assert 0 < built.ttl(PoolKeys.of(BRANCH).ticket(1)) <= 3600, "the tombstone goes in time"


def test_a_rebuild_from_an_older_picture_keeps_what_was_mirrored_since(built: Redis) -> None:
    assert pool.put(built, entry(1, state="accepted", version=2, holder=11))  # grabbed after the picture
    assert pool.put(built, entry(2, state="accepted", version=2, holder=12))
    assert pool.put(built, entry(2, state="closed", version=3))  # completed after the picture
    picture = [entry(1), entry(2, state="accepted", version=2, holder=12), entry(3)]

    pool.rebuild(built, BRANCH, picture, {12: 1}, at=0)

    mirror = pool.snapshot(built, BRANCH)
    assert mirror.tickets[1]["state"] == "accepted" and mirror.tickets[1]["by"] == "11"
    assert 2 not in mirror.tickets and mirror.grabbable == {3}
    assert {t: n for t, n in mirror.held.items() if n} == {11: 1}
    assert grab(built, tech(13), 1).outcome is Outcome.TAKEN


def test_rebuild_replaces_everything_atomically(built: Redis) -> None:
    assert grab(built, tech(11), 1).outcome is Outcome.WON
    pool.rebuild(built, BRANCH, [entry(2, state="accepted", version=2, holder=12), entry(4)], {12: 2}, at=0)
    mirror = pool.snapshot(built, BRANCH)
    assert set(mirror.tickets) == {2, 4}
    assert mirror.grabbable == {4}
    assert mirror.held == {12: 2}
    assert not built.exists(PoolKeys.of(BRANCH).ticket(1))
    assert built.zcard(PoolKeys.of(BRANCH).leases) == 0


def test_every_key_of_a_branch_hashes_to_one_slot() -> None:
    keys = PoolKeys.of(BRANCH)
    names = [keys.built, keys.geo, keys.held, keys.leases, keys.index, keys.rebuilding, keys.ticket(123456)]
    assert {name[name.index("{"):name.index("}") + 1] for name in names} == {"{p2}"}


def test_scripts_reload_after_a_script_flush(built: Redis) -> None:
    assert grab(built, tech(11), 1).outcome is Outcome.WON
    built.script_flush()  # as after a Redis restart or failover
    assert grab(built, tech(12), 1).outcome is Outcome.TAKEN


def test_assign_claims_for_the_chosen_technician_unless_a_grab_is_mid_commit(built: Redis) -> None:
    claimed = pool.assign(built, branch_id=BRANCH, ticket_id=1, technician_id=21, request_id="d", lease_ms=15000)
    assert claimed.outcome is Outcome.WON
    assert grab(built, tech(11), 2).outcome is Outcome.WON
    refused = pool.assign(built, branch_id=BRANCH, ticket_id=2, technician_id=21, request_id="d2", lease_ms=15000)
    assert refused.outcome is Outcome.TAKEN and refused.holder == 11
