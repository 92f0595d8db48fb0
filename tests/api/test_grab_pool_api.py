"""Grabs and the near-me pool over HTTP, against a live server committing for real so the pool mirrors it."""

import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from dispatch.app import create_app
from dispatch.kernel.db import session_scope
from dispatch.kernel.settings import Settings
from dispatch.tickets import mirror
from geo.distance import EARTH_MEAN_RADIUS_M
from geo.latlng import LatLng
from grab_pool import pool
from grab_pool.pool import PoolKeys
from technicians import live
from tests.conftest import log_in, on_duty

HERE = LatLng(43.935, 116.08)  # grid XL-G05
DISPATCHER = "dispatcher.xl"
_phones = iter(range(1, 10_000))


def north_of(point: LatLng, metres: float) -> LatLng:
    return LatLng(point.lat + math.degrees(metres / EARTH_MEAN_RADIUS_M), point.lng)


class Desk:
    def __init__(self, api: httpx.Client, engine: Engine, redis: Redis) -> None:
        self.api, self.engine, self.redis = api, engine, redis
        self.on_duty: set[str] = set()

    def headers(self, username: str) -> dict[str, str]:
        return log_in(self.api, username)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()

    def report(self, at: LatLng = HERE) -> dict[str, Any]:
        body = {"type_code": "broadband_fault", "description": "断网了", "location": {"lat": at.lat, "lng": at.lng},
                "contact": {"name": "张三", "phone": f"1370000{next(_phones):04d}"}}
        reply = self.api.post("/api/v1/tickets", json=body, headers=self.headers(DISPATCHER))
        assert reply.status_code == 201, reply.text
        return dict(reply.json())

    def grab(self, ticket_id: int, username: str, at: LatLng = HERE) -> httpx.Response:
        """A grab by a technician on duty here (a grab needs duty and a fresh position)."""
        if username not in self.on_duty:
            on_duty(self.api, self.headers(username), at={"lat": at.lat, "lng": at.lng})
            self.on_duty.add(username)
        return self.api.post(f"/api/v1/tickets/{ticket_id}/grab", headers=self.headers(username))

    def events(self, ticket_id: int, action: str) -> list[dict[str, Any]]:
        reply = self.api.get(f"/api/v1/tickets/{ticket_id}", headers=self.headers(DISPATCHER))
        return [e for e in reply.json()["events"] if e["action"] == action]

    def technician_id(self, username: str) -> int:
        return int(self.scalar("SELECT t.id FROM technician t JOIN user_account u ON u.id = t.user_id "
                               "WHERE u.username = :u", u=username))

    def branch_id(self, code: str) -> int:
        return int(self.scalar("SELECT id FROM region WHERE code = :c", c=code))

    def place(self, username: str, at: LatLng) -> None:
        """On duty at `at`, as the phone reports it."""
        on_duty(self.api, self.headers(username), at={"lat": at.lat, "lng": at.lng})
        self.on_duty.add(username)

    def pool_check(self) -> list[str]:
        with session_scope() as session:
            return [str(d) for d in mirror.check(session, self.redis)]


@pytest.fixture
def desk(live_server: str, committed_db: Engine, redis: Redis, demo_technicians_restored: None) -> Iterator[Desk]:
    with httpx.Client(base_url=live_server, timeout=30) as api:
        desk = Desk(api, committed_db, redis)
        with session_scope() as session:
            mirror.rebuild(session, redis)
        yield desk


def test_the_first_grab_wins_the_next_is_already_taken_and_the_pool_agrees(desk: Desk) -> None:
    ticket = desk.report()
    first = desk.grab(ticket["id"], "tech01")
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "accepted" and first.json()["technician_id"] == desk.technician_id("tech01")
    second = desk.grab(ticket["id"], "tech02")
    assert second.status_code == 409 and second.json()["code"] == "already_taken"
    assert len(desk.events(ticket["id"], "grab")) == 1
    assert desk.pool_check() == []


def test_the_pool_check_reports_lasting_drift_not_a_mirror_landing_a_moment_late(desk: Desk) -> None:
    ticket = desk.report()

    def commit_unmirrored() -> None:
        """Another process's commit, whose mirror has not landed yet."""
        with desk.engine.begin() as conn:
            conn.execute(text("UPDATE ticket SET version = version + 1 WHERE id = :id"), {"id": ticket["id"]})

    def mirror_lands() -> None:
        with session_scope() as session:
            mirror.mirror_now(session, desk.redis, ticket["id"])

    def lasting(settle: Callable[[], None]) -> list[str]:
        with session_scope() as session:
            return [str(d) for d in mirror.lasting_drift(session, desk.redis, settle=settle)]

    commit_unmirrored()
    assert lasting(settle=mirror_lands) == []
    commit_unmirrored()
    [stuck] = lasting(settle=lambda: None)
    assert f"ticket {ticket['id']}" in stuck and "PostgreSQL has pending" in stuck


def test_a_double_tap_answers_200_twice_with_one_event(desk: Desk) -> None:
    ticket = desk.report()
    assert [desk.grab(ticket["id"], "tech03").status_code for _ in range(2)] == [200, 200]
    assert len(desk.events(ticket["id"], "grab")) == 1


def test_grabs_the_pool_turns_away_cost_no_postgresql_statement(desk: Desk) -> None:
    ticket = desk.report()
    assert desk.grab(ticket["id"], "tech01").status_code == 200
    headers = desk.headers("tech02")
    desk.grab(ticket["id"], "tech02")  # warm the caches (token, technician) like any phone in use
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        replies = [desk.api.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=headers) for _ in range(15)]
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert {r.status_code for r in replies} == {409}
    assert statements == []


def test_refusals_say_why(desk: Desk) -> None:
    ticket = desk.report()
    assert desk.grab(987654321, "tech01").status_code == 404
    not_a_technician = desk.api.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=desk.headers(DISPATCHER))
    assert not_a_technician.status_code == 403
    other_branch = desk.grab(ticket["id"], "tech33", at=LatLng(43.66, 111.96))  # an Erenhot technician
    assert other_branch.status_code == 403 and other_branch.json()["code"] == "out_of_scope"
    reply = desk.api.post(f"/api/v1/tickets/{ticket['id']}/invalidate", json={"reason": "虚假报修"},
                          headers=desk.headers(DISPATCHER))
    assert reply.status_code == 200
    invalid = desk.grab(ticket["id"], "tech01")
    assert invalid.status_code == 409 and invalid.json()["state"] == "invalid"
    assert desk.pool_check() == []


def test_a_retyped_ticket_is_still_grabbed_although_the_pool_mirrored_an_older_version(desk: Desk) -> None:
    ticket = desk.report()
    # A version bump the pool never saw (as if its mirror had been lost).
    with desk.engine.begin() as conn:
        conn.execute(text("UPDATE ticket SET version = version + 1 WHERE id = :id"), {"id": ticket["id"]})
    reply = desk.grab(ticket["id"], "tech04")
    assert reply.status_code == 200, reply.text
    assert reply.json()["version"] == ticket["version"] + 2
    assert desk.pool_check() == []


def test_grabs_go_on_through_postgresql_when_the_pool_is_gone_and_it_comes_back(desk: Desk) -> None:
    ticket = desk.report()
    branch = desk.branch_id("XL")
    desk.redis.delete(PoolKeys.of(branch).built)  # as after FLUSHALL or a restart
    assert desk.grab(ticket["id"], "tech05").status_code == 200
    assert desk.grab(ticket["id"], "tech06").json()["code"] == "already_taken"
    assert pool.is_built(desk.redis, branch)  # the first grab that found it gone rebuilt it
    assert desk.pool_check() == []


def test_force_assign_goes_through_the_pool_and_a_grab_then_loses(desk: Desk) -> None:
    ticket = desk.report()
    reply = desk.api.post(f"/api/v1/tickets/{ticket['id']}/assign",
                          json={"technician_id": desk.technician_id("tech07")}, headers=desk.headers(DISPATCHER))
    assert reply.status_code == 200, reply.text
    assert desk.grab(ticket["id"], "tech08").json()["code"] == "already_taken"
    assert desk.pool_check() == []


def test_release_puts_the_ticket_back_in_the_pool(desk: Desk) -> None:
    ticket = desk.report()
    assert desk.grab(ticket["id"], "tech09").status_code == 200
    reply = desk.api.post(f"/api/v1/tickets/{ticket['id']}/release", json={"reason": "用户改约"},
                          headers=desk.headers("tech09"))
    assert reply.status_code == 200, reply.text
    assert desk.pool_check() == []
    assert desk.grab(ticket["id"], "tech10").status_code == 200


def test_my_pool_lists_grabbable_tickets_in_scope_nearest_first(desk: Desk) -> None:
    far, near, taken = desk.report(north_of(HERE, 2000)), desk.report(north_of(HERE, 300)), desk.report(HERE)
    outside = desk.report(north_of(HERE, 9000))
    assert desk.grab(taken["id"], "tech02").status_code == 200
    desk.place("tech01", HERE)

    for pool_gone in (False, True):  # from the pool's geo set, then from PostGIS alone
        if pool_gone:
            desk.redis.delete(PoolKeys.of(desk.branch_id("XL")).built)
        reply = desk.api.get("/api/v1/me/pool", params={"radius_m": 5000}, headers=desk.headers("tech01"))
        assert reply.status_code == 200, reply.text
        listed = [(t["id"], t["distance_m"]) for t in reply.json()]
        assert [tid for tid, _ in listed] == [near["id"], far["id"]], listed
        assert [round(d, -1) for _, d in listed] == [300, 2000]
        assert outside["id"] not in {tid for tid, _ in listed}


def test_my_pool_needs_a_position_and_a_technician(desk: Desk) -> None:
    reply = desk.api.get("/api/v1/me/pool", headers=desk.headers("tech11"))
    assert reply.status_code == 409 and reply.json()["code"] == "location_unknown"
    assert desk.api.get("/api/v1/me/pool", headers=desk.headers(DISPATCHER)).status_code == 403
    bad = desk.api.get("/api/v1/me/pool", params={"radius_m": 10}, headers=desk.headers("tech11"))
    assert bad.status_code == 422


def test_with_redis_down_reports_grabs_and_assigns_still_work_exactly_once(settings: Settings,
                                                                           committed_db: Engine) -> None:
    app = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    with TestClient(app, raise_server_exceptions=False) as client:
        body = {"type_code": "broadband_fault", "description": "断网了", "location": {"lat": HERE.lat, "lng": HERE.lng},
                "contact": {"name": "张三", "phone": "13911112222"}}
        tickets = [client.post("/api/v1/tickets", json={**body, "contact": {"name": "张三", "phone": f"1391111222{i}"}},
                               headers=log_in(client, DISPATCHER)).json()["id"] for i in range(2)]
        # Redis down: duty and position cannot be read, PostgreSQL arbitrates the grab alone.
        assert client.post(f"/api/v1/tickets/{tickets[0]}/grab", headers=log_in(client, "tech01")).status_code == 200
        late = client.post(f"/api/v1/tickets/{tickets[0]}/grab", headers=log_in(client, "tech02"))
        assert late.status_code == 409 and late.json()["code"] == "already_taken"
        with committed_db.connect() as conn:
            tech03 = conn.execute(text("SELECT t.id FROM technician t JOIN user_account u ON u.id = t.user_id "
                                       "WHERE u.username = 'tech03'")).scalar_one()
        assigned = client.post(f"/api/v1/tickets/{tickets[1]}/assign", json={"technician_id": tech03},
                               headers=log_in(client, DISPATCHER))
        assert assigned.status_code == 200, assigned.text
        assert assigned.json()["technician_id"] == tech03


def test_a_type_change_reaches_the_pool_before_anyone_grabs(desk: Desk) -> None:
    ticket = desk.report()
    reply = desk.api.patch(f"/api/v1/tickets/{ticket['id']}", json={"type_code": "slow_network"},
                           headers=desk.headers(DISPATCHER))
    assert reply.status_code == 200, reply.text
    assert desk.pool_check() == []
    assert desk.grab(ticket["id"], "tech12").json()["version"] == ticket["version"] + 2


def test_the_grab_event_keeps_where_the_technician_was_for_the_travel_pay(desk: Desk) -> None:
    ticket = desk.report()
    there = north_of(HERE, 1200)
    desk.place("tech13", there)
    assert desk.grab(ticket["id"], "tech13").status_code == 200
    [grab] = desk.events(ticket["id"], "grab")
    assert grab["location"]["lat"] == pytest.approx(there.lat, abs=1e-5)
    assert grab["location"]["lng"] == pytest.approx(there.lng, abs=1e-5)


def test_with_the_pool_gone_postgresql_still_holds_a_technician_to_their_limit(desk: Desk) -> None:
    first, second = desk.report(), desk.report(north_of(HERE, 200))
    tech14 = desk.technician_id("tech14")
    limit = desk.scalar("SELECT max_active FROM technician WHERE id = :id", id=tech14)
    with desk.engine.begin() as conn:
        conn.execute(text("UPDATE technician SET max_active = 1 WHERE id = :id"), {"id": tech14})
    built = PoolKeys.of(desk.branch_id("XL")).built
    try:
        desk.redis.delete(built)
        assert desk.grab(first["id"], "tech14").status_code == 200
        desk.redis.delete(built)  # the first grab rebuilt it: gone again, so PostgreSQL decides alone
        refused = desk.grab(second["id"], "tech14")
        assert refused.status_code == 409 and refused.json()["code"] == "limit_reached", refused.text
        assert refused.json()["max_active"] == 1
    finally:
        with desk.engine.begin() as conn:
            conn.execute(text("UPDATE technician SET max_active = :n WHERE id = :id"), {"n": limit, "id": tech14})


def test_a_rebuild_counts_what_a_holder_holds_in_every_branch(desk: Desk) -> None:
    here, there = desk.report(), desk.report(north_of(HERE, 200))
    assert desk.grab(here["id"], "tech15").status_code == 200
    assert desk.grab(there["id"], "tech15").status_code == 200
    tech15, xl, eh = desk.technician_id("tech15"), desk.branch_id("XL"), desk.branch_id("EH")
    try:
        with desk.engine.begin() as conn:  # the second ticket is now one of EH's, still tech15's
            conn.execute(text("UPDATE ticket SET branch_id = :eh WHERE id = :id"), {"eh": eh, "id": there["id"]})
        with session_scope() as session:
            mirror.rebuild(session, desk.redis)
        holds = desk.scalar("SELECT count(*) FROM ticket WHERE technician_id = :t AND state = 'accepted'", t=tech15)
        assert holds >= 2
        assert pool.snapshot(desk.redis, xl).held[tech15] == holds  # their limit counts both branches' tickets
        assert pool.snapshot(desk.redis, eh).held[tech15] == holds
        assert desk.pool_check() == []
    finally:
        with desk.engine.begin() as conn:
            conn.execute(text("UPDATE ticket SET branch_id = :xl WHERE id = :id"), {"xl": xl, "id": there["id"]})
        with session_scope() as session:
            mirror.rebuild(session, desk.redis)


def test_an_assign_made_on_a_version_a_grab_has_passed_is_turned_away(desk: Desk) -> None:
    ticket = desk.report()
    assert desk.grab(ticket["id"], "tech15").status_code == 200
    late = desk.api.post(f"/api/v1/tickets/{ticket['id']}/assign", json={"technician_id": desk.technician_id("tech16")},
                         headers={**desk.headers(DISPATCHER), "If-Match": str(ticket["version"])})
    assert late.status_code == 409 and late.json()["code"] == "already_taken", late.text
    assert [e["action"] for e in desk.events(ticket["id"], "grab")] == ["grab"]
    # Without the condition the same request is a reassign, as API.md has it.
    reassigned = desk.api.post(f"/api/v1/tickets/{ticket['id']}/assign",
                               json={"technician_id": desk.technician_id("tech16")}, headers=desk.headers(DISPATCHER))
    assert reassigned.status_code == 200 and reassigned.json()["technician_id"] == desk.technician_id("tech16")


# --- who may grab, and how fast ----------------------------------------------------------------

def test_a_grab_needs_duty_and_a_fresh_position(desk: Desk) -> None:
    ticket = desk.report()
    headers = desk.headers("tech05")
    off_duty = desk.api.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=headers)
    assert off_duty.status_code == 409 and off_duty.json()["code"] == "not_on_duty"
    assert desk.api.put("/api/v1/me/duty", json={"on_duty": True}, headers=headers).status_code < 300
    unlocated = desk.api.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=headers)
    assert unlocated.status_code == 409 and unlocated.json()["code"] == "location_unknown"
    on_duty(desk.api, headers, at={"lat": HERE.lat, "lng": HERE.lng})
    keys = live.LiveKeys.of(desk.branch_id("XL"))
    desk.redis.zadd(keys.fresh, {str(desk.technician_id("tech05")): time.time() - 3600})  # last ping an hour ago
    stale = desk.api.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=headers)
    assert stale.status_code == 409 and stale.json()["code"] == "location_unknown"
    assert desk.pool_check() == [] and desk.events(ticket["id"], "grab") == []  # nothing was claimed
    on_duty(desk.api, headers, at={"lat": HERE.lat, "lng": HERE.lng})
    assert desk.api.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=headers).status_code == 200


def test_a_technician_tapping_faster_than_a_finger_is_slowed_and_nobody_else(desk: Desk,
                                                                              settings: Settings) -> None:
    tickets = [desk.report()["id"] for _ in range(3)]
    desk.grab(tickets[0], "tech06")  # on duty, and the first tap of the window
    headers = desk.headers("tech06")
    taps = 2 * settings.pool.grab_taps

    def tap(n: int) -> httpx.Response:
        return desk.api.post(f"/api/v1/tickets/{tickets[1]}/grab", headers=headers)

    with ThreadPoolExecutor(max_workers=16) as pool_of_fingers:
        replies = list(pool_of_fingers.map(tap, range(taps)))
    slowed = [r for r in replies if r.status_code == 429]
    assert len(slowed) == taps + 1 - settings.pool.grab_taps  # every tap past the window's allowance
    assert all(r.json()["code"] == "too_many_grabs" and 1 <= int(r.headers["Retry-After"]) <= 10 for r in slowed)
    assert desk.grab(tickets[2], "tech07").status_code == 200  # another technician is not slowed


def test_a_branch_may_let_its_technicians_grab_off_duty(settings: Settings, committed_db: Engine,
                                                         redis: Redis) -> None:
    with committed_db.connect() as conn:
        xl = conn.execute(text("SELECT id FROM region WHERE code = 'XL'")).scalar_one()
    anywhere = settings.pool.model_copy(update={"grab_anywhere_branch_ids": frozenset({xl})})
    app = create_app(settings.model_copy(update={"pool": anywhere}))
    with TestClient(app, raise_server_exceptions=False) as client:
        body = {"type_code": "broadband_fault", "description": "断网了", "location": {"lat": HERE.lat, "lng": HERE.lng},
                "contact": {"name": "张三", "phone": "13911113333"}}
        ticket = client.post("/api/v1/tickets", json=body, headers=log_in(client, DISPATCHER)).json()
        grabbed = client.post(f"/api/v1/tickets/{ticket['id']}/grab", headers=log_in(client, "tech08"))
        assert grabbed.status_code == 200, grabbed.text
