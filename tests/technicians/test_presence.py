"""Duty, rosters, pings into the live index, sampled track write-through and the rebuild, on real Redis and PostGIS.

Every ping passes an explicit `now`; T0 is a Monday 10:00 in Xilinhot (Asia/Shanghai).
"""

import math
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from redis import Redis
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.kernel.errors import InvalidInput
from dispatch.kernel.settings import PresenceSettings, Settings
from geo.distance import EARTH_MEAN_RADIUS_M, haversine_m
from geo.latlng import LatLng
from geo.models import Region
from technicians import live, presence
from technicians.errors import NoBranch, OffDuty, OffShift, RateLimited
from technicians.models import Technician
from technicians.nearest import find_nearest
from technicians.presence import Shift

SHANGHAI = ZoneInfo("Asia/Shanghai")
TICKET = LatLng(43.935, 116.08)  # grid XL-G05
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)  # a Monday


def north_of(point: LatLng, metres: float) -> LatLng:
    return LatLng(point.lat + math.degrees(metres / EARTH_MEAN_RADIUS_M), point.lng)


def metres_apart(a: LatLng | None, b: LatLng) -> float:
    """Redis keeps positions as 52-bit geohashes (about 0.6 m): compare positions within a metre."""
    assert a is not None
    return haversine_m(a, b)


def technician(db: Session, username: str) -> Technician:
    return db.scalars(select(Technician).join(User, User.id == Technician.user_id)
                      .where(User.username == username)).one()


def region(db: Session, code: str) -> Region:
    return db.scalars(select(Region).where(Region.code == code)).one()


def keys(db: Session) -> live.LiveKeys:
    return live.LiveKeys.of(region(db, "XL").id)


def geopos(redis: Redis, db: Session, technician_id: int) -> LatLng | None:
    pos = redis.geopos(keys(db).geo, str(technician_id))[0]
    return None if pos is None else LatLng(lat=pos[1], lng=pos[0])


def seen(redis: Redis, db: Session, technician_id: int) -> int | None:
    value = redis.zscore(keys(db).fresh, str(technician_id))
    return None if value is None else int(value)


def on_duty(db: Session, redis: Redis, username: str) -> Technician:
    tech = technician(db, username)
    presence.set_duty(db, redis, technician=tech, on_duty=True)
    return tech


def ping(db: Session, redis: Redis, tech: Technician, point: LatLng, at: datetime, settings: Settings, *,
         accuracy_m: float | None = 5.0, cfg: PresenceSettings | None = None) -> None:
    presence.record_ping(redis, ref=presence.ref_of(db, tech), point=point, accuracy_m=accuracy_m, now=at,
                         tz=settings.timezone, cfg=cfg or settings.presence)


def epoch(at: datetime) -> int:
    return int(at.timestamp())


# --- duty and pings ----------------------------------------------------------------------

def test_ping_of_an_on_duty_technician_lands_in_the_live_index(db: Session, redis: Redis,
                                                               settings: Settings) -> None:
    tech = on_duty(db, redis, "tech01")
    where = north_of(TICKET, 100)

    ping(db, redis, tech, where, T0, settings)

    assert metres_apart(geopos(redis, db, tech.id), where) < 1
    assert seen(redis, db, tech.id) == epoch(T0)
    assert tech.on_duty is True


def test_later_ping_replaces_the_position(db: Session, redis: Redis, settings: Settings) -> None:
    tech = on_duty(db, redis, "tech01")

    ping(db, redis, tech, north_of(TICKET, 100), T0, settings)
    ping(db, redis, tech, north_of(TICKET, 2000), T0 + timedelta(seconds=5), settings)

    assert metres_apart(geopos(redis, db, tech.id), north_of(TICKET, 2000)) < 1
    assert redis.zcard(keys(db).geo) == 1
    assert seen(redis, db, tech.id) == epoch(T0) + 5


def test_ping_while_off_duty_is_refused_and_not_stored(db: Session, redis: Redis, settings: Settings) -> None:
    tech = technician(db, "tech01")
    assert tech.on_duty is False

    with pytest.raises(OffDuty) as refused:
        ping(db, redis, tech, TICKET, T0, settings)

    assert (refused.value.status, refused.value.code) == (409, "off_duty")
    assert redis.zcard(keys(db).geo) == 0
    assert seen(redis, db, tech.id) is None
    assert redis.llen(keys(db).track) == 0


def test_going_off_duty_removes_the_member_and_later_pings_are_refused(db: Session, redis: Redis,
                                                                       settings: Settings) -> None:
    tech = on_duty(db, redis, "tech01")
    ping(db, redis, tech, TICKET, T0, settings)

    presence.set_duty(db, redis, technician=tech, on_duty=False)

    assert tech.on_duty is False
    assert geopos(redis, db, tech.id) is None
    assert seen(redis, db, tech.id) is None
    assert not redis.hexists(keys(db).meta, str(tech.id))
    with pytest.raises(OffDuty):
        ping(db, redis, tech, TICKET, T0 + timedelta(seconds=5), settings)
    assert geopos(redis, db, tech.id) is None


def test_company_level_technician_cannot_go_on_duty(db: Session, redis: Redis) -> None:
    tech = technician(db, "tech01")
    tech.region_id = region(db, "NMG").id
    db.flush()

    with pytest.raises(NoBranch):
        presence.set_duty(db, redis, technician=tech, on_duty=True)

    assert tech.on_duty is False
    assert redis.dbsize() == 0


def test_flood_of_pings_is_rate_limited_and_the_extra_one_not_stored(db: Session, redis: Redis,
                                                                     settings: Settings) -> None:
    cfg = settings.presence.model_copy(update={"ping_limit": 3, "ping_window_s": 60})
    tech = on_duty(db, redis, "tech01")
    for second in range(3):
        ping(db, redis, tech, north_of(TICKET, 100), T0 + timedelta(seconds=second), settings, cfg=cfg)

    with pytest.raises(RateLimited) as limited:
        ping(db, redis, tech, north_of(TICKET, 2000), T0 + timedelta(seconds=3), settings, cfg=cfg)

    assert (limited.value.status, limited.value.code) == (429, "rate_limited")
    assert 1 <= limited.value.extra["retry_after"] <= 60
    assert metres_apart(geopos(redis, db, tech.id), north_of(TICKET, 100)) < 1
    assert seen(redis, db, tech.id) == epoch(T0) + 2


def test_rate_limit_is_per_technician(db: Session, redis: Redis, settings: Settings) -> None:
    cfg = settings.presence.model_copy(update={"ping_limit": 1})
    first, second = on_duty(db, redis, "tech01"), on_duty(db, redis, "tech02")
    ping(db, redis, first, TICKET, T0, settings, cfg=cfg)
    with pytest.raises(RateLimited):
        ping(db, redis, first, TICKET, T0, settings, cfg=cfg)

    ping(db, redis, second, TICKET, T0, settings, cfg=cfg)

    assert geopos(redis, db, second.id) is not None


# --- rosters -----------------------------------------------------------------------------

def test_day_shift_accepts_pings_from_its_start_until_just_before_its_end(db: Session, redis: Redis,
                                                                         settings: Settings) -> None:
    tech = on_duty(db, redis, "tech01")
    presence.set_roster(db, redis, technician=tech, shifts=[Shift(0, time(9), time(17))])  # Monday 09-17
    monday = datetime(2026, 11, 23, tzinfo=SHANGHAI)

    for accepted in (time(9, 0), time(16, 59)):
        ping(db, redis, tech, TICKET, datetime.combine(monday, accepted, SHANGHAI), settings)
    for refused in (time(8, 59), time(17, 0)):
        with pytest.raises(OffShift) as off:
            ping(db, redis, tech, north_of(TICKET, 500), datetime.combine(monday, refused, SHANGHAI), settings)
        assert (off.value.status, off.value.code) == (409, "off_shift")
    with pytest.raises(OffShift):  # Tuesday at 10:00: no shift that day
        ping(db, redis, tech, north_of(TICKET, 500), datetime(2026, 11, 24, 10, tzinfo=SHANGHAI), settings)

    assert metres_apart(geopos(redis, db, tech.id), TICKET) < 1
    assert seen(redis, db, tech.id) == epoch(datetime(2026, 11, 23, 16, 59, tzinfo=SHANGHAI))


@pytest.mark.parametrize(("local", "on_shift"), [
    (datetime(2026, 11, 23, 21, 59, tzinfo=SHANGHAI), False),  # Monday, before it starts
    (datetime(2026, 11, 23, 22, 0, tzinfo=SHANGHAI), True),
    (datetime(2026, 11, 23, 23, 59, tzinfo=SHANGHAI), True),
    (datetime(2026, 11, 24, 0, 0, tzinfo=SHANGHAI), True),  # Tuesday, the morning part
    (datetime(2026, 11, 24, 5, 59, tzinfo=SHANGHAI), True),
    (datetime(2026, 11, 24, 6, 0, tzinfo=SHANGHAI), False),
    (datetime(2026, 11, 24, 23, 0, tzinfo=SHANGHAI), False),  # Tuesday night: no shift
    (datetime(2026, 11, 23, 3, 0, tzinfo=SHANGHAI), False),  # Monday morning: Sunday has no shift
    # The same instant in UTC (Monday 15:30Z = 23:30 local): rosters are read in local time.
    (datetime(2026, 11, 23, 15, 30, tzinfo=UTC), True),
], ids=lambda value: value.isoformat() if isinstance(value, datetime) else str(value))
def test_shift_running_past_midnight(db: Session, redis: Redis, settings: Settings, local: datetime,
                                     on_shift: bool) -> None:
    tech = on_duty(db, redis, "tech01")
    presence.set_roster(db, redis, technician=tech, shifts=[Shift(0, time(22), time(6))])  # Monday 22 - Tuesday 6

    if on_shift:
        ping(db, redis, tech, TICKET, local, settings)
        assert seen(redis, db, tech.id) == epoch(local)
    else:
        with pytest.raises(OffShift):
            ping(db, redis, tech, TICKET, local, settings)
        assert geopos(redis, db, tech.id) is None


def test_sunday_night_shift_runs_into_monday(db: Session, redis: Redis, settings: Settings) -> None:
    tech = on_duty(db, redis, "tech01")
    presence.set_roster(db, redis, technician=tech, shifts=[Shift(6, time(20), time(2))])

    ping(db, redis, tech, TICKET, datetime(2026, 11, 23, 1, 30, tzinfo=SHANGHAI), settings)  # Monday 01:30
    with pytest.raises(OffShift):
        ping(db, redis, tech, TICKET, datetime(2026, 11, 23, 2, 0, tzinfo=SHANGHAI), settings)


def test_roster_change_reaches_an_on_duty_technician_at_once(db: Session, redis: Redis,
                                                             settings: Settings) -> None:
    tech = on_duty(db, redis, "tech01")
    presence.set_roster(db, redis, technician=tech, shifts=[Shift(2, time(8), time(18))])  # Wednesday
    with pytest.raises(OffShift):
        ping(db, redis, tech, TICKET, T0, settings)

    presence.set_roster(db, redis, technician=tech, shifts=[])  # no shifts: any time

    ping(db, redis, tech, TICKET, T0, settings)
    assert seen(redis, db, tech.id) == epoch(T0)


def test_roster_set_while_off_duty_applies_when_going_on_duty(db: Session, redis: Redis,
                                                              settings: Settings) -> None:
    tech = technician(db, "tech01")
    presence.set_roster(db, redis, technician=tech, shifts=[Shift(2, time(8), time(18))])
    assert redis.dbsize() == 0

    presence.set_duty(db, redis, technician=tech, on_duty=True)

    with pytest.raises(OffShift):
        ping(db, redis, tech, TICKET, T0, settings)


def test_set_roster_replaces_and_returns_the_shifts_in_week_order(db: Session, redis: Redis) -> None:
    tech = technician(db, "tech01")
    presence.set_roster(db, redis, technician=tech, shifts=[Shift(1, time(8), time(12))])

    stored = presence.set_roster(db, redis, technician=tech,
                                 shifts=[Shift(4, time(13), time(17)), Shift(0, time(22), time(6)),
                                         Shift(0, time(8), time(12))])

    expected = [Shift(0, time(8), time(12)), Shift(0, time(22), time(6)), Shift(4, time(13), time(17))]
    assert stored == expected
    assert presence.list_roster(db, tech.id) == expected
    assert presence.encode_roster(stored) == "0:480-720,0:1320-360,4:780-1020"


def test_zero_length_shift_is_invalid_and_nothing_is_replaced(db: Session, redis: Redis) -> None:
    tech = technician(db, "tech01")
    presence.set_roster(db, redis, technician=tech, shifts=[Shift(1, time(8), time(12))])

    with pytest.raises(InvalidInput) as invalid:
        presence.set_roster(db, redis, technician=tech,
                            shifts=[Shift(2, time(8), time(12)), Shift(3, time(9), time(9))])

    assert invalid.value.status == 422
    assert invalid.value.extra["errors"][0]["field"].endswith("1.ends")  # the second shift
    assert presence.list_roster(db, tech.id) == [Shift(1, time(8), time(12))]


# --- sampled track and write-through -----------------------------------------------------

def test_track_keeps_at_most_one_sample_per_interval(db: Session, redis: Redis, settings: Settings) -> None:
    assert settings.presence.sample_interval_s == 30
    tech = on_duty(db, redis, "tech01")
    for second in (0, 10, 29, 30, 45, 61):
        ping(db, redis, tech, north_of(TICKET, second), T0 + timedelta(seconds=second), settings, accuracy_m=second)

    track = live.peek_track(redis, keys(db), 100)

    assert [(tid, at - epoch(T0)) for tid, at, *_ in track] == [(tech.id, 0), (tech.id, 30), (tech.id, 61)]
    for (_, _, lng, lat, accuracy), second in zip(track, (0, 30, 61), strict=True):
        assert LatLng(lat, lng) == north_of(TICKET, second)
        assert accuracy == second
    # The live index always has the latest ping, sampled or not.
    assert seen(redis, db, tech.id) == epoch(T0) + 61


def test_track_sampling_is_per_technician(db: Session, redis: Redis, settings: Settings) -> None:
    first, second = on_duty(db, redis, "tech01"), on_duty(db, redis, "tech02")

    ping(db, redis, first, TICKET, T0, settings)
    ping(db, redis, second, TICKET, T0 + timedelta(seconds=1), settings)
    ping(db, redis, first, TICKET, T0 + timedelta(seconds=2), settings)

    assert [(tid, at - epoch(T0)) for tid, at, *_ in live.peek_track(redis, keys(db), 100)] == \
        [(first.id, 0), (second.id, 1)]


def track_rows(db: Session, *technician_ids: int) -> list[tuple[int, int, float, float, float | None]]:
    return [tuple(row) for row in db.execute(text(
        "SELECT technician_id, extract(epoch FROM at)::bigint, ST_Y(location), ST_X(location), accuracy_m "
        "FROM track_point WHERE technician_id = ANY(:ids) ORDER BY at, technician_id"),
        {"ids": list(technician_ids)})]


def last_known(db: Session, technician_id: int) -> tuple[float, float, datetime, float | None]:
    row = db.execute(text(
        "SELECT ST_Y(last_location), ST_X(last_location), last_seen_at, last_accuracy_m FROM technician "
        "WHERE id = :id"), {"id": technician_id}).one()
    return row[0], row[1], row[2], row[3]


def test_flush_track_copies_samples_to_postgis_and_updates_the_latest(db: Session, redis: Redis,
                                                                      settings: Settings) -> None:
    xl = region(db, "XL").id
    first, second = on_duty(db, redis, "tech01"), on_duty(db, redis, "tech02")
    p1, p2, p3 = north_of(TICKET, 100), north_of(TICKET, 2000), north_of(TICKET, 700)
    ping(db, redis, first, p1, T0, settings, accuracy_m=8.0)
    ping(db, redis, second, p3, T0 + timedelta(seconds=10), settings, accuracy_m=3.5)
    ping(db, redis, first, p2, T0 + timedelta(seconds=30), settings, accuracy_m=None)

    written = presence.confirm_flushed(redis, presence.flush_track(db, redis, branch_ids=[xl], batch=100))

    assert written == 3
    t0 = epoch(T0)
    assert track_rows(db, first.id, second.id) == [
        (first.id, t0, pytest.approx(p1.lat), pytest.approx(p1.lng), 8.0),
        (second.id, t0 + 10, pytest.approx(p3.lat), pytest.approx(p3.lng), 3.5),
        (first.id, t0 + 30, pytest.approx(p2.lat), pytest.approx(p2.lng), None),
    ]
    assert last_known(db, first.id) == (pytest.approx(p2.lat), pytest.approx(p2.lng),
                                        T0 + timedelta(seconds=30), None)
    assert last_known(db, second.id) == (pytest.approx(p3.lat), pytest.approx(p3.lng),
                                         T0 + timedelta(seconds=10), 3.5)
    assert redis.llen(keys(db).track) == 0
    assert presence.confirm_flushed(redis, presence.flush_track(db, redis, branch_ids=[xl], batch=100)) == 0


def test_flush_track_writes_at_most_a_batch_per_branch_per_call(db: Session, redis: Redis,
                                                                settings: Settings) -> None:
    xl, eh = region(db, "XL").id, region(db, "EH").id
    tech = on_duty(db, redis, "tech01")
    for n in range(3):
        ping(db, redis, tech, north_of(TICKET, 100 * n), T0 + timedelta(seconds=30 * n), settings)

    assert presence.confirm_flushed(redis, presence.flush_track(db, redis, branch_ids=[xl, eh], batch=2)) == 2
    assert len(track_rows(db, tech.id)) == 2
    assert last_known(db, tech.id)[2] == T0 + timedelta(seconds=30)

    assert presence.confirm_flushed(redis, presence.flush_track(db, redis, branch_ids=[xl, eh], batch=2)) == 1
    assert len(track_rows(db, tech.id)) == 3
    assert last_known(db, tech.id)[:3] == (pytest.approx(north_of(TICKET, 200).lat),
                                           pytest.approx(TICKET.lng), T0 + timedelta(seconds=60))
    assert presence.confirm_flushed(redis, presence.flush_track(db, redis, branch_ids=[xl, eh], batch=2)) == 0


def test_rebuild_restores_on_duty_technicians_with_fresh_positions_only(db: Session, redis: Redis,
                                                                        settings: Settings) -> None:
    cfg = settings.presence
    fresh, stale, gone = on_duty(db, redis, "tech01"), on_duty(db, redis, "tech02"), on_duty(db, redis, "tech03")
    stale_at = T0 - timedelta(seconds=cfg.freshness_s + 100)
    ping(db, redis, stale, north_of(TICKET, 300), stale_at, settings)
    ping(db, redis, fresh, north_of(TICKET, 100), T0, settings)
    ping(db, redis, gone, north_of(TICKET, 200), T0, settings)
    presence.set_duty(db, redis, technician=gone, on_duty=False)
    flushed = presence.flush_track(db, redis, branch_ids=[region(db, "XL").id], batch=100)
    assert presence.confirm_flushed(redis, flushed) == 3
    # The rebuild runs in a unit of work of its own (start-up or a job), after the flush committed.
    db.expire_all()
    redis.flushdb()

    now = T0 + timedelta(seconds=10)
    restored = presence.rebuild_live(db, redis, cfg=cfg, now=now)

    on_duty_count = db.scalar(select(func.count()).select_from(Technician)
                              .where(Technician.on_duty, Technician.active))
    assert on_duty_count >= 2
    assert len(restored) == on_duty_count
    assert metres_apart(geopos(redis, db, fresh.id), north_of(TICKET, 100)) < 1
    assert seen(redis, db, fresh.id) == epoch(T0)
    assert redis.hexists(keys(db).meta, str(fresh.id))
    # On duty but last seen too long ago: on duty again, not placed.
    assert redis.hexists(keys(db).meta, str(stale.id))
    assert geopos(redis, db, stale.id) is None
    # Off duty: not restored at all.
    assert not redis.hexists(keys(db).meta, str(gone.id))
    assert geopos(redis, db, gone.id) is None

    found = find_nearest(redis, branch_id=region(db, "XL").id, point=TICKET, k=5, radius_m=3000, skills=[],
                         ticket_path=region(db, "XL-G05").path, now=now, tz=settings.timezone,
                         presence=cfg, offer=settings.offer)
    assert [c.technician_id for c in found] == [fresh.id]
    assert found[0].distance_m == pytest.approx(haversine_m(TICKET, north_of(TICKET, 100)), rel=1e-3)


def test_track_points_stay_in_redis_until_the_flush_is_confirmed(db: Session, redis: Redis,
                                                                  settings: Settings) -> None:
    """A write-through whose commit fails must lose nothing: points leave Redis only after confirmation."""
    tech = on_duty(db, redis, "tech01")
    ping(db, redis, tech, north_of(TICKET, 100), T0, settings)
    flushed = presence.flush_track(db, redis, branch_ids=[region(db, "XL").id], batch=100)
    assert len(live.peek_track(redis, keys(db), 100)) == 1, "not confirmed yet: still queued"
    assert presence.confirm_flushed(redis, flushed) == 1
    assert live.peek_track(redis, keys(db), 100) == []
