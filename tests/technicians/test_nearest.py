"""The nearest eligible technicians, on the real live index in Redis, with hand-checkable distances.

Technicians are placed due north of a ticket point in Xilinhot (grid XL-G05) at whole-metre
distances; every case passes an explicit `now`, so freshness and rosters are deterministic.
Redis measures on a sphere of radius 6372797.56 m and stores positions as 52-bit geohashes, so
its distances run 0.03 % above `haversine_m` (radius 6371008.8 m): compared with rel=1e-3.
"""

import math
from collections.abc import Callable
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.kernel.settings import Settings
from geo.distance import EARTH_MEAN_RADIUS_M, haversine_m
from geo.latlng import LatLng
from geo.models import Region
from technicians import live, presence
from technicians.models import Technician
from technicians.nearest import Candidate, find_nearest

SHANGHAI = ZoneInfo("Asia/Shanghai")
TICKET = LatLng(43.935, 116.08)  # grid XL-G05
# A Monday, 10:00 local time; no technician has a roster unless a test sets one.
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
NOW = T0 + timedelta(seconds=5)


def north_of(point: LatLng, metres: float) -> LatLng:
    """The point `metres` due north on the haversine sphere."""
    return LatLng(point.lat + math.degrees(metres / EARTH_MEAN_RADIUS_M), point.lng)


def technician(db: Session, username: str) -> Technician:
    return db.scalars(select(Technician).join(User, User.id == Technician.user_id)
                      .where(User.username == username)).one()


def region(db: Session, code: str) -> Region:
    return db.scalars(select(Region).where(Region.code == code)).one()


def ids(found: list[Candidate]) -> list[int]:
    return [c.technician_id for c in found]


Place = Callable[..., int]
Search = Callable[..., list[Candidate]]


@pytest.fixture
def xl(db: Session) -> int:
    return region(db, "XL").id


@pytest.fixture
def place(db: Session, redis: Redis, settings: Settings) -> Place:
    """Put a demo technician on duty and ping from `metres` north of the ticket at `at`."""

    def place(username: str, metres: float, *, at: datetime = T0) -> int:
        tech = technician(db, username)
        presence.set_duty(db, redis, technician=tech, on_duty=True)
        presence.record_ping(redis, ref=presence.ref_of(db, tech), point=north_of(TICKET, metres), accuracy_m=5.0,
                             now=at, tz=settings.timezone, cfg=settings.presence)
        return tech.id

    return place


@pytest.fixture
def search(db: Session, redis: Redis, settings: Settings, xl: int) -> Search:
    g05_path = region(db, "XL-G05").path

    def search(*, k: int = 5, radius_m: int = 3000, skills: tuple[str, ...] = ("broadband",),
               ticket_path: str | None = None, now: datetime = NOW, exclude: set[int] | None = None,
               branch_id: int | None = None) -> list[Candidate]:
        return find_nearest(redis, branch_id=branch_id or xl, point=TICKET, k=k, radius_m=radius_m,
                            skills=list(skills), ticket_path=ticket_path or g05_path, now=now, tz=settings.timezone,
                            presence=settings.presence, offer=settings.offer, exclude=exclude)

    return search


def set_load(redis: Redis, branch_id: int, technician_id: int, *, active: int, hours: float) -> None:
    live.set_load(redis, live.LiveKeys.of(branch_id), technician_id, active=active, hours=hours)


def test_offsets_north_are_the_distances_they_claim() -> None:
    for metres in (50, 100, 150, 2000):
        assert haversine_m(TICKET, north_of(TICKET, metres)) == pytest.approx(metres, abs=1e-6)


# --- distance ---------------------------------------------------------------------------

def test_technician_100_m_away_beats_one_2_km_away(place: Place, search: Search) -> None:
    far = place("tech01", 2000)
    near = place("tech02", 100)

    found = search()

    assert ids(found) == [near, far]
    assert found[0].distance_m == pytest.approx(100, rel=1e-3)
    assert found[1].distance_m == pytest.approx(2000, rel=1e-3)
    assert (found[0].active, found[0].hours) == (0, 0.0)


def test_search_widens_past_its_first_radius_up_to_the_limit(place: Place, search: Search) -> None:
    # The script starts at 500 m and grows fourfold: 500 -> 2000 -> 3000 (capped).
    at_2500 = place("tech01", 2500)

    assert ids(search(radius_m=3000)) == [at_2500]


def test_technician_beyond_the_radius_is_excluded(place: Place, search: Search) -> None:
    inside = place("tech01", 900)
    place("tech02", 2000)

    assert ids(search(radius_m=1000)) == [inside]


def test_k_limits_the_count_to_the_nearest(place: Place, search: Search) -> None:
    # 500 m apart: each in a tie band of its own, so plain distance order.
    at = [place(username, metres) for username, metres in
          (("tech01", 100), ("tech02", 600), ("tech03", 1100), ("tech05", 1600))]

    assert ids(search(k=2)) == at[:2]
    assert ids(search(k=1)) == at[:1]
    assert ids(search(k=10)) == at


def test_empty_branch_returns_nothing(db: Session, place: Place, search: Search) -> None:
    place("tech01", 100)  # on duty in XL, not in EH

    assert search(branch_id=region(db, "EH").id, ticket_path=region(db, "EH-G01").path) == []


def test_on_duty_without_a_position_is_not_found(db: Session, redis: Redis, search: Search) -> None:
    presence.set_duty(db, redis, technician=technician(db, "tech01"), on_duty=True)

    assert search() == []


# --- eligibility -------------------------------------------------------------------------

def test_off_duty_technician_is_excluded(db: Session, redis: Redis, place: Place, search: Search) -> None:
    gone = place("tech01", 100)
    stays = place("tech02", 200)

    presence.set_duty(db, redis, technician=technician(db, "tech01"), on_duty=False)

    assert ids(search()) == [stays]
    assert gone not in ids(search())


def test_position_older_than_freshness_is_excluded(place: Place, search: Search, settings: Settings) -> None:
    tid = place("tech01", 100, at=T0)
    freshness = timedelta(seconds=settings.presence.freshness_s)

    assert ids(search(now=T0 + freshness)) == [tid]
    assert search(now=T0 + freshness + timedelta(seconds=1)) == []


def test_a_later_ping_makes_a_stale_technician_fresh_again(place: Place, search: Search, settings: Settings) -> None:
    tid = place("tech01", 100, at=T0)
    later = T0 + timedelta(seconds=settings.presence.freshness_s + 60)
    assert search(now=later) == []

    place("tech01", 100, at=later)

    assert ids(search(now=later)) == [tid]


def test_technician_without_the_skill_is_excluded(place: Place, search: Search) -> None:
    tv_only = place("tech04", 100)  # tv
    broadband = place("tech02", 200)  # broadband
    both = place("tech03", 300)  # install;broadband

    assert ids(search(skills=("broadband",))) == [broadband, both]
    assert ids(search(skills=("install", "broadband"))) == [both]
    assert ids(search(skills=("tv",))) == [tv_only]
    assert ids(search(skills=())) == [tv_only, broadband, both]


def test_technician_at_max_active_is_excluded(redis: Redis, xl: int, place: Place, search: Search) -> None:
    tid = place("tech01", 100)  # max_active 3
    other = place("tech02", 1000)

    set_load(redis, xl, tid, active=3, hours=0)
    assert ids(search()) == [other]

    set_load(redis, xl, tid, active=2, hours=7.5)
    found = search()
    assert ids(found) == [tid, other]
    assert (found[0].active, found[0].hours) == (2, 7.5)


def test_ticket_in_another_branch_is_out_of_every_xl_technicians_scope(db: Session, place: Place,
                                                                        search: Search) -> None:
    place("tech01", 100)
    place("tech02", 200)

    assert search(ticket_path=region(db, "EH-G01").path) == []


def test_grid_bound_technician_is_out_of_scope_for_another_grid(db: Session, place: Place, search: Search) -> None:
    branch_wide = place("tech01", 200)
    tech = technician(db, "tech02")
    tech.region_id = region(db, "XL-G01").id
    db.flush()
    grid_bound = place("tech02", 100)

    assert ids(search()) == [branch_wide]
    assert ids(search(ticket_path=region(db, "XL-G01").path)) == [grid_bound, branch_wide]


def test_excluded_ids_are_skipped(place: Place, search: Search) -> None:
    first = place("tech01", 100)
    second = place("tech02", 1000)

    assert ids(search(exclude={first})) == [second]
    assert search(exclude={first, second}) == []


def test_technician_outside_their_roster_is_excluded(db: Session, redis: Redis, place: Place,
                                                     search: Search) -> None:
    tid = place("tech01", 100)  # pinged with no roster: stored
    assert ids(search()) == [tid]

    # Wednesday only, while NOW is a Monday morning.
    presence.set_roster(db, redis, technician=technician(db, "tech01"),
                        shifts=[presence.Shift(2, time(8), time(18))])

    assert search() == []


def test_night_shift_running_past_midnight_is_eligible_until_it_ends(db: Session, redis: Redis, place: Place,
                                                                     search: Search) -> None:
    # Monday 22:00 until Tuesday 06:00, local time.
    tech = technician(db, "tech01")
    presence.set_duty(db, redis, technician=tech, on_duty=True)
    presence.set_roster(db, redis, technician=tech, shifts=[presence.Shift(0, time(22), time(6))])
    monday_night = datetime(2026, 11, 23, 23, 25, tzinfo=SHANGHAI)
    tuesday_dawn = datetime(2026, 11, 24, 5, 50, tzinfo=SHANGHAI)

    place("tech01", 100, at=monday_night)
    assert ids(search(now=monday_night + timedelta(minutes=5))) == [tech.id]

    place("tech01", 100, at=tuesday_dawn)
    assert ids(search(now=tuesday_dawn + timedelta(minutes=9))) == [tech.id]  # 05:59
    assert search(now=tuesday_dawn + timedelta(minutes=10)) == []  # 06:00, position still fresh


# --- fairness ----------------------------------------------------------------------------

def test_within_the_tie_band_fewer_hours_goes_first(redis: Redis, xl: int, place: Place, search: Search) -> None:
    busy = place("tech01", 100)
    idle = place("tech02", 150)  # 50 m further: inside tie_band_m = 300
    set_load(redis, xl, busy, active=0, hours=12)
    set_load(redis, xl, idle, active=0, hours=4)

    found = search()

    assert ids(found) == [idle, busy]
    assert found[0].distance_m == pytest.approx(150, rel=1e-3)
    assert found[0].hours == 4.0


def test_within_the_tie_band_equal_hours_fewer_active_goes_first(redis: Redis, xl: int, place: Place,
                                                                  search: Search) -> None:
    loaded = place("tech01", 100)
    free = place("tech02", 150)
    set_load(redis, xl, loaded, active=2, hours=8)
    set_load(redis, xl, free, active=0, hours=8)

    assert ids(search()) == [free, loaded]


def test_beyond_the_tie_band_distance_wins_regardless_of_hours(redis: Redis, xl: int, place: Place,
                                                               search: Search) -> None:
    near = place("tech01", 100)
    far = place("tech02", 450)  # 350 m further: outside the 300 m band
    set_load(redis, xl, near, active=0, hours=40)
    set_load(redis, xl, far, active=0, hours=0)

    assert ids(search()) == [near, far]


def test_fairest_of_several_near_equals_wins_even_with_k_1(redis: Redis, xl: int, place: Place,
                                                            search: Search) -> None:
    # Three technicians within 100 m of each other: all tied for distance, so the one with
    # the fewest hours should get the single offer. find_nearest fetches only 2 * k = 2 hits
    # from the index, so the third-nearest (and fairest) is never compared.
    first = place("tech01", 100)
    second = place("tech02", 150)
    fairest = place("tech03", 200)
    set_load(redis, xl, first, active=0, hours=10)
    set_load(redis, xl, second, active=0, hours=10)
    set_load(redis, xl, fairest, active=0, hours=0)

    assert ids(search(k=1)) == [fairest]
