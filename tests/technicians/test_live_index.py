"""The searched sets of the live index: who the nearest search looks at, kept true on every change.

A technician is in a branch's open set of a skill only while they could be offered a ticket needing
it: on duty, located, fresh, on shift at their last ping and below max_active. Each case checks the
sets themselves and that the search agrees. T0 is a Monday 10:00 in Xilinhot (Asia/Shanghai).
"""

import math
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.kernel.settings import Settings
from geo.distance import EARTH_MEAN_RADIUS_M
from geo.latlng import LatLng
from geo.models import Region
from technicians import live, presence
from technicians.errors import OffShift
from technicians.models import Technician
from technicians.nearest import find_nearest

SHANGHAI = ZoneInfo("Asia/Shanghai")
TICKET = LatLng(43.935, 116.08)  # grid XL-G05
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)


def technician(db: Session, username: str) -> Technician:
    return db.scalars(select(Technician).join(User, User.id == Technician.user_id)
                      .where(User.username == username)).one()


def region(db: Session, code: str) -> Region:
    return db.scalars(select(Region).where(Region.code == code)).one()


def keys(db: Session) -> live.LiveKeys:
    return live.LiveKeys.of(region(db, "XL").id)


def open_to(redis: Redis, db: Session, skill: str) -> set[int]:
    return {int(m.split(b"|")[0]) for m in redis.zrange(keys(db).open(skill), 0, -1)}


def ping(db: Session, redis: Redis, tech: Technician, at: datetime, settings: Settings, metres: float = 100) -> None:
    point = LatLng(TICKET.lat + math.degrees(metres / EARTH_MEAN_RADIUS_M), TICKET.lng)
    presence.record_ping(redis, ref=presence.ref_of(db, tech), point=point, accuracy_m=5.0, now=at,
                         tz=settings.timezone, cfg=settings.presence)


def at_work(db: Session, redis: Redis, settings: Settings, username: str, metres: float = 100) -> Technician:
    tech = technician(db, username)
    presence.set_duty(db, redis, technician=tech, on_duty=True)
    ping(db, redis, tech, T0, settings, metres)
    return tech


def found(db: Session, redis: Redis, settings: Settings, *, now: datetime = T0,
          skills: tuple[str, ...] = ("broadband",), k: int = 5) -> list[int]:
    return [c.technician_id for c in find_nearest(
        redis, branch_id=region(db, "XL").id, point=TICKET, k=k, radius_m=3000, skills=list(skills),
        ticket_path=region(db, "XL-G05").path, now=now, tz=settings.timezone, presence=settings.presence,
        offer=settings.offer)]


def set_load(redis: Redis, db: Session, tech: Technician, active: int) -> None:
    live.set_load(redis, keys(db), tech.id, active=active, hours=1.5)


def test_a_pinging_technician_is_open_for_each_of_their_skills_only(db: Session, redis: Redis,
                                                                     settings: Settings) -> None:
    both = at_work(db, redis, settings, "tech01")  # broadband;tv
    broadband = at_work(db, redis, settings, "tech02", 200)  # broadband
    tv = at_work(db, redis, settings, "tech04", 300)  # tv

    assert open_to(redis, db, "broadband") == {both.id, broadband.id}
    assert open_to(redis, db, "tv") == {both.id, tv.id}
    assert open_to(redis, db, "install") == set()


def test_on_duty_without_a_position_is_in_no_open_set(db: Session, redis: Redis) -> None:
    presence.set_duty(db, redis, technician=technician(db, "tech01"), on_duty=True)

    assert open_to(redis, db, "broadband") == set()


def test_a_full_technician_leaves_and_comes_back_below_the_limit(db: Session, redis: Redis,
                                                                 settings: Settings) -> None:
    tech = at_work(db, redis, settings, "tech01")  # max_active 3

    set_load(redis, db, tech, 3)
    assert open_to(redis, db, "broadband") == set() == open_to(redis, db, "tv")
    assert found(db, redis, settings) == []

    set_load(redis, db, tech, 2)
    assert open_to(redis, db, "broadband") == {tech.id} == open_to(redis, db, "tv")
    assert found(db, redis, settings) == [tech.id]


def test_a_raised_limit_reopens_a_full_technician(db: Session, redis: Redis, settings: Settings) -> None:
    tech = at_work(db, redis, settings, "tech01")
    set_load(redis, db, tech, 3)

    tech.max_active = 4
    presence.set_duty(db, redis, technician=tech, on_duty=True)  # what a change of limit publishes

    assert open_to(redis, db, "broadband") == {tech.id}


def test_a_stale_technician_leaves_on_expiry_and_comes_back_with_a_ping(db: Session, redis: Redis,
                                                                        settings: Settings) -> None:
    stale = at_work(db, redis, settings, "tech01")
    later = T0 + timedelta(seconds=settings.presence.freshness_s + 30)
    fresh = technician(db, "tech02")
    presence.set_duty(db, redis, technician=fresh, on_duty=True)
    ping(db, redis, fresh, later - timedelta(seconds=60), settings, 200)

    gone = presence.expire_stale(redis, branch_ids=[region(db, "XL").id], now=later, cfg=settings.presence)

    assert gone == 1
    assert open_to(redis, db, "broadband") == {fresh.id}
    assert found(db, redis, settings, now=later) == [fresh.id]
    assert presence.expire_stale(redis, branch_ids=[region(db, "XL").id], now=later, cfg=settings.presence) == 0

    ping(db, redis, stale, later, settings)
    assert open_to(redis, db, "broadband") == {stale.id, fresh.id}
    assert found(db, redis, settings, now=later) == [stale.id, fresh.id]


def test_expiry_works_through_more_stale_technicians_than_one_batch(db: Session, redis: Redis, settings: Settings,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "EXPIRE_BATCH", 2)
    for n in range(1, 6):
        at_work(db, redis, settings, f"tech0{n}", 100 * n)
    later = T0 + timedelta(seconds=settings.presence.freshness_s + 1)

    assert presence.expire_stale(redis, branch_ids=[region(db, "XL").id], now=later, cfg=settings.presence) == 5
    assert open_to(redis, db, "broadband") == set() == open_to(redis, db, "tv")


def test_off_duty_leaves_every_set_and_duty_with_a_ping_brings_back(db: Session, redis: Redis,
                                                                     settings: Settings) -> None:
    tech = at_work(db, redis, settings, "tech01")

    presence.set_duty(db, redis, technician=tech, on_duty=False)
    assert open_to(redis, db, "broadband") == set() == open_to(redis, db, "tv")

    presence.set_duty(db, redis, technician=tech, on_duty=True)
    assert open_to(redis, db, "broadband") == set(), "no position yet since going on duty"
    ping(db, redis, tech, T0 + timedelta(minutes=1), settings)
    assert open_to(redis, db, "broadband") == {tech.id} == open_to(redis, db, "tv")


def test_an_off_shift_ping_leaves_the_sets_and_the_next_shift_brings_back(db: Session, redis: Redis,
                                                                         settings: Settings) -> None:
    tech = at_work(db, redis, settings, "tech01")
    presence.set_roster(db, redis, technician=tech, shifts=[presence.Shift(0, time(8), time(12)),
                                                            presence.Shift(0, time(13), time(17))])
    assert open_to(redis, db, "broadband") == {tech.id}

    with pytest.raises(OffShift):  # the lunch break
        ping(db, redis, tech, T0.replace(hour=12, minute=30), settings)
    assert open_to(redis, db, "broadband") == set()

    ping(db, redis, tech, T0.replace(hour=13, minute=1), settings)
    assert open_to(redis, db, "broadband") == {tech.id}


def test_a_changed_skill_moves_a_technician_between_sets(db: Session, redis: Redis, settings: Settings) -> None:
    tech = at_work(db, redis, settings, "tech01")  # broadband;tv

    tech.skills = ["install", "tv"]
    presence.set_duty(db, redis, technician=tech, on_duty=True)

    assert open_to(redis, db, "broadband") == set()
    assert open_to(redis, db, "tv") == {tech.id} == open_to(redis, db, "install")
    assert found(db, redis, settings) == []
    assert found(db, redis, settings, skills=("install", "tv")) == [tech.id]


def test_a_load_set_while_off_duty_is_kept_for_the_next_shift(db: Session, redis: Redis,
                                                               settings: Settings) -> None:
    tech = technician(db, "tech01")
    set_load(redis, db, tech, 3)  # a ticket finished while off duty: the load still counts

    at_work(db, redis, settings, "tech01")

    assert open_to(redis, db, "broadband") == set()
    set_load(redis, db, tech, 0)
    assert open_to(redis, db, "broadband") == {tech.id}


def test_a_rebuild_restores_the_same_sets(db: Session, redis: Redis, settings: Settings) -> None:
    now = datetime.now(SHANGHAI)  # the rebuild keeps only positions fresh at `now`
    techs = [technician(db, u) for u in ("tech01", "tech02", "tech03", "tech04")]
    for n, tech in enumerate(techs):
        presence.set_duty(db, redis, technician=tech, on_duty=True)
        ping(db, redis, tech, now - timedelta(seconds=n), settings, 100 * (n + 1))
    loads = {techs[0].id: 3, techs[1].id: 1}  # tech01 at its limit
    for tech in techs:
        set_load(redis, db, tech, loads.get(tech.id, 0))
    before = {skill: open_to(redis, db, skill) for skill in ("broadband", "tv", "install")}
    assert presence.confirm_flushed(redis, presence.flush_track(db, redis, branch_ids=[region(db, "XL").id],
                                                                batch=100)) == 4
    db.expire_all()
    redis.flushdb()

    restored = presence.rebuild_live(db, redis, cfg=settings.presence, now=now)
    for tid in restored:  # what the rebuild job does next, from the tickets' loads
        live.set_load(redis, keys(db), tid, active=loads.get(tid, 0), hours=1.5)

    assert {t.id for t in techs} <= set(restored)
    assert {skill: open_to(redis, db, skill) for skill in before} == before
    assert techs[0].id not in before["broadband"]


def test_a_rebuild_does_not_move_a_technician_back_to_an_older_position(db: Session, redis: Redis,
                                                                        settings: Settings) -> None:
    now = datetime.now(SHANGHAI)
    tech = technician(db, "tech01")
    presence.set_duty(db, redis, technician=tech, on_duty=True)
    ping(db, redis, tech, now - timedelta(seconds=60), settings, 100)
    presence.confirm_flushed(redis, presence.flush_track(db, redis, branch_ids=[region(db, "XL").id], batch=100))
    ping(db, redis, tech, now, settings, 900)  # not written through yet
    db.expire_all()

    presence.rebuild_live(db, redis, cfg=settings.presence, now=now)

    [hit] = find_nearest(redis, branch_id=region(db, "XL").id, point=TICKET, k=1, radius_m=3000, skills=[],
                         ticket_path=region(db, "XL-G05").path, now=now, tz=settings.timezone,
                         presence=settings.presence, offer=settings.offer)
    assert hit.distance_m == pytest.approx(900, rel=1e-3)
