"""The nearest search runs on each process's copy of the open sets: it must answer as Redis holds them.

A branch of its own (no database rows) filled through the live index's own calls; the answers are
checked against a brute-force search over what Redis holds, at once after this process's changes,
and in moments after another process's (the follower brings them), a flushed Redis or a trimmed log.
"""

import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from multiprocessing.connection import Connection

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis import Redis

from dispatch.kernel.redis import connect
from dispatch.kernel.settings import OfferSettings, PresenceSettings
from geo.distance import haversine_m
from geo.latlng import LatLng
from technicians import live, replica
from technicians.nearest import Candidate, find_nearest
from tests.conftest import TEST_REDIS_URL

BRANCH = 9301
PATH = "/1/9301/"
CENTRE = LatLng(43.93, 116.08)
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Xilinhot
TZ = "Asia/Shanghai"
KEYS = live.LiveKeys.of(BRANCH)
SKILLS = (("broadband",), ("tv",), ("broadband", "tv"))


def at_work(redis: Redis, tid: int, point: LatLng, *, skills: tuple[str, ...] = ("broadband",), active: int = 0,
            hours: float = 0.0, seen: datetime = NOW, scope: str = PATH, max_active: int = 3) -> None:
    live.put_on_duty(redis, KEYS, tid, skills=list(skills), scope_path=scope, max_active=max_active, roster="")
    live.place_at(redis, KEYS, tid, point=point, seen_at=int(seen.timestamp()))
    live.set_load(redis, KEYS, tid, active=active, hours=hours)


def north(metres: float, east: float = 0.0) -> LatLng:
    return LatLng(CENTRE.lat + metres / 111_195.0, CENTRE.lng + east / 80_100.0)


def nearest(redis: Redis, point: LatLng = CENTRE, *, k: int = 5, skills: tuple[str, ...] = ("broadband",),
            radius_m: int = 20_000, exclude: set[int] | None = None) -> list[int]:
    return [c.technician_id for c in find_nearest(
        redis, branch_id=BRANCH, point=point, k=k, radius_m=radius_m, skills=list(skills), ticket_path=PATH + "7/",
        now=NOW, tz=TZ, presence=PresenceSettings(), offer=OfferSettings(), exclude=exclude)]


def brute_force(redis: Redis, point: LatLng, *, k: int, skills: tuple[str, ...], radius_m: int,
                exclude: set[int]) -> list[int]:
    """The rules written plainly over everything Redis holds for the branch."""
    band, fresh_since = OfferSettings().tie_band_m, int(NOW.timestamp()) - PresenceSettings().freshness_s
    found = []
    for raw in redis.zrange(KEYS.open("*"), 0, -1):
        ident, seen, active, hours, scope, _, have = raw.decode().split("|")
        [(lng, lat)] = redis.geopos(KEYS.open("*"), raw)
        metres = haversine_m(point, LatLng(lat, lng))
        if (int(seen) >= fresh_since and set(skills) <= set(have.split(",")) and int(ident) not in exclude
                and (PATH + "7/").startswith(scope) and metres <= radius_m):
            found.append(Candidate(int(ident), metres, int(active), float(hours)))
    found.sort(key=lambda c: (c.distance_m, c.technician_id))
    if len(found) >= k:
        reach = found[k - 1].distance_m + band
        found = [c for c in found if c.distance_m <= reach]
    found = found[:4 * k]
    ordered: list[Candidate] = []
    while found:
        group = [c for c in found if c.distance_m - found[0].distance_m <= band]
        ordered += sorted(group, key=lambda c: (c.hours, c.active, c.distance_m))
        found = found[len(group):]
    return [c.technician_id for c in ordered[:k]]


@pytest.fixture
def fleet(redis: Redis) -> Callable[[int, int], None]:
    """`count` technicians, spread like a town: most within 2 km, some out to 15 km; a tenth gone stale."""

    def fleet(count: int, seed: int) -> None:
        rng = random.Random(seed)
        for tid in range(1, count + 1):
            spread = 2000 if rng.random() < 0.7 else 15000
            at_work(redis, tid, north(rng.uniform(-spread, spread), rng.uniform(-spread, spread)),
                    skills=rng.choice(SKILLS), active=rng.randint(0, 3), hours=round(rng.uniform(0, 40), 1),
                    scope=PATH if rng.random() < 0.8 else f"{PATH}{rng.choice((7, 8))}/",
                    seen=NOW if rng.random() < 0.9 else datetime(2026, 11, 23, 1, 30, tzinfo=UTC))
    return fleet


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(metres_north=st.floats(-16000, 16000), metres_east=st.floats(-16000, 16000), k=st.integers(1, 8),
       skills=st.sampled_from([("broadband",), ("tv",), ("broadband", "tv"), ()]),
       radius_m=st.sampled_from([500, 3000, 20000]), exclude=st.sets(st.integers(1, 400), max_size=20))
def test_the_search_answers_as_brute_force_over_what_redis_holds(redis: Redis, fleet: Callable[[int, int], None],
                                                                   metres_north: float, metres_east: float, k: int,
                                                                   skills: tuple[str, ...], radius_m: int,
                                                                   exclude: set[int]) -> None:
    if not redis.exists(KEYS.open("*")):
        fleet(400, 11)
    point = north(metres_north, metres_east)
    expected = brute_force(redis, point, k=k, skills=skills, radius_m=radius_m, exclude=exclude)
    assert nearest(redis, point, k=k, skills=skills, radius_m=radius_m, exclude=exclude) == expected


def test_a_move_a_limit_and_a_departure_are_seen_by_the_very_next_search(redis: Redis) -> None:
    at_work(redis, 1, north(100))
    at_work(redis, 2, north(500))
    assert nearest(redis) == [1, 2]

    live.place_at(redis, KEYS, 2, point=north(50), seen_at=int(NOW.timestamp()) + 1)
    assert nearest(redis) == [2, 1]
    live.set_load(redis, KEYS, 2, active=3, hours=0)  # at max_active
    assert nearest(redis) == [1]
    live.take_off_duty(redis, KEYS, 1)
    assert nearest(redis) == []


def _writer(commands: Connection) -> None:
    """Another process: changes the index whenever told (its writes are not this process's)."""
    redis = connect(TEST_REDIS_URL)
    while (change := commands.recv()) is not None:
        if change == "flush":
            redis.flushdb()
        else:
            tid, metres, active = change
            at_work(redis, tid, north(metres), active=active)
        commands.send("done")


@pytest.fixture
def elsewhere() -> Iterator[Callable[[object], None]]:
    """Make a change from another process and wait until it is made."""
    here, there = multiprocessing.get_context("fork").Pipe()
    process = multiprocessing.get_context("fork").Process(target=_writer, args=(there,))
    process.start()

    def change(what: object) -> None:
        here.send(what)
        assert here.recv() == "done"

    yield change
    here.send(None)
    process.join(10)


def soon(redis: Redis, expected: list[int]) -> list[int]:
    """The search's answer once it is `expected`, or its last one after a few seconds."""
    deadline = time.monotonic() + 5
    while (found := nearest(redis)) != expected and time.monotonic() < deadline:
        pass
    return found


def test_a_change_made_in_another_process_reaches_this_copy_in_moments(redis: Redis,
                                                                        elsewhere: Callable[[object], None]) -> None:
    elsewhere((1, 100, 0))
    assert nearest(redis) == [1]  # loaded, and followed from here on

    elsewhere((2, 40, 0))
    elsewhere((1, 100, 3))  # at max_active
    assert soon(redis, [2]) == [2]


def test_a_redis_flushed_elsewhere_is_noticed_by_the_follower(redis: Redis,
                                                              elsewhere: Callable[[object], None]) -> None:
    elsewhere((1, 100, 0))
    elsewhere((2, 200, 0))
    assert nearest(redis) == [1, 2]

    elsewhere("flush")  # the log begins anew: its first entries have numbers the copy already holds
    elsewhere((3, 300, 0))
    assert soon(redis, [3]) == [3]


def test_without_the_followers_word_the_search_asks_redis_itself(redis: Redis, elsewhere: Callable[[object], None],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere((1, 100, 0))
    assert nearest(redis) == [1]
    monkeypatch.setattr(replica, "CONFIRMED_FOR_S", 0.0)  # as if the follower had not answered for long

    elsewhere((2, 40, 0))
    assert nearest(redis) == [2, 1]  # at once: no waiting for the follower


def _forked_search(answers: Connection) -> None:
    """A forked job: what it holds before its first search, then what it finds."""
    held = [len(copy.members) for copies in replica._servers.values() for copy in copies.branches.values()]
    answers.send((held, nearest(connect(TEST_REDIS_URL))))


def test_a_forked_job_starts_from_its_parents_copy_and_catches_up(redis: Redis) -> None:
    at_work(redis, 1, north(100))
    at_work(redis, 2, north(200))
    replica.preload(redis, [BRANCH])
    at_work(redis, 3, north(50))  # after the copy was made: the child must still see it

    here, there = multiprocessing.get_context("fork").Pipe()
    child = multiprocessing.get_context("fork").Process(target=_forked_search, args=(there,))
    child.start()
    held, found = here.recv()
    child.join(10)

    assert held == [2] or held == [3]  # inherited, not loaded by the child
    assert found == [3, 1, 2]


def test_a_flushed_redis_is_not_answered_from_the_old_copy(redis: Redis) -> None:
    at_work(redis, 1, north(100))
    assert nearest(redis) == [1]
    redis.flushdb()  # as a restart without persistence: the log starts counting again
    at_work(redis, 2, north(300))
    at_work(redis, 3, north(900))
    assert nearest(redis) == [2, 3]


def test_a_log_trimmed_past_the_copy_makes_it_reload(redis: Redis) -> None:
    at_work(redis, 1, north(100))
    at_work(redis, 2, north(200))
    assert nearest(redis) == [1, 2]
    live.take_off_duty(redis, KEYS, 1)
    at_work(redis, 3, north(150))
    redis.xtrim(KEYS.open_log, maxlen=1)  # the copy's next change is gone from the log
    assert nearest(redis) == [3, 2]


def test_a_copy_far_behind_reloads_rather_than_replays(redis: Redis) -> None:
    at_work(redis, 1, north(100))
    at_work(redis, 2, north(200))
    assert nearest(redis) == [1, 2]
    for step in range(replica.MOST_REPLAYED + 1):
        live.set_load(redis, KEYS, 1, active=0, hours=step)
    live.set_load(redis, KEYS, 2, active=3, hours=0)
    assert nearest(redis) == [1]


def test_searches_in_many_threads_while_technicians_move_all_see_a_whole_fleet(redis: Redis) -> None:
    for tid in range(1, 41):
        at_work(redis, tid, north(tid * 20))
    errors: list[BaseException] = []
    answers: list[list[int]] = []

    def search() -> None:
        try:
            for _ in range(30):
                answers.append(nearest(redis, k=3))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=search) for _ in range(6)]
    for thread in threads:
        thread.start()
    for step in range(200):
        tid = step % 40 + 1
        live.place_at(redis, KEYS, tid, point=north(tid * 20 + 5), seen_at=int(NOW.timestamp()) + step + 1)
    for thread in threads:
        thread.join()
    assert not errors
    assert all(len(a) == 3 and len(set(a)) == 3 for a in answers)
    assert nearest(redis, k=3) == [1, 2, 3]


def test_threads_moving_their_own_technicians_each_find_theirs_where_they_just_put_them(redis: Redis) -> None:
    """A process always sees its own writes, also when several of its threads write at once."""
    walkers, steps = 8, 60
    for walker in range(1, walkers + 1):
        at_work(redis, walker, north(0, walker * 3000))
    start = threading.Barrier(walkers)
    missed: list[tuple[int, int, list[int]]] = []

    def walk(walker: int) -> None:
        start.wait()
        for step in range(1, steps + 1):
            here = north(step * 200, walker * 3000)  # 200 m a step: the old place is outside the 50 m searched
            live.place_at(redis, KEYS, walker, point=here, seen_at=int(NOW.timestamp()) + step)
            found = nearest(redis, here, k=1, radius_m=50)
            if found != [walker]:
                missed.append((walker, step, found))

    threads = [threading.Thread(target=walk, args=(walker,)) for walker in range(1, walkers + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert missed == []
