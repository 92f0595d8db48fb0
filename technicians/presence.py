"""Duty, rosters and live location: who is at work, and where."""

import io
from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import structlog
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from dispatch.kernel.errors import InvalidInput
from dispatch.kernel.settings import PresenceSettings
from geo.latlng import LatLng
from geo.models import Region
from geo.points import from_wkb
from geo.regions import path_steps, within
from technicians import live
from technicians.errors import NoBranch, OffDuty, OffShift, RateLimited
from technicians.models import RosterShift, Technician

log = structlog.get_logger()
NULL_IN_COPY = "\\N"
FLUSH_LOCK_S = 60
# Stale technicians taken out of the open sets per script call: each call blocks Redis for its length.
EXPIRE_BATCH = 500


@dataclass(frozen=True)
class TechnicianRef:
    """What the live index needs to know about a technician, as values."""

    id: int
    branch_id: int | None
    scope_path: str
    max_active: int

    @property
    def keys(self) -> live.LiveKeys:
        if self.branch_id is None:
            raise NoBranch("this technician's region is the whole company")
        return live.LiveKeys.of(self.branch_id)


@dataclass(frozen=True)
class Shift:
    weekday: int
    starts: time
    ends: time


def ref_of(session: Session, technician: Technician) -> TechnicianRef:
    path = session.execute(select(Region.path).where(Region.id == technician.region_id)).scalar_one()
    return ref_at(technician, path)


def ref_at(technician: Technician, path: str) -> TechnicianRef:
    """The technician's ref, given the path of their region (read with them, in one statement)."""
    # Paths run company/branch/grid: the branch is the second step, if any.
    steps = path_steps(path)
    return TechnicianRef(id=technician.id, branch_id=steps[1] if len(steps) > 1 else None, scope_path=path,
                         max_active=technician.max_active)


def position_of(session: Session, redis: Redis, ref: TechnicianRef) -> LatLng | None:
    """The technician's latest position: the live index, else the last one written through to PostGIS."""
    try:
        located = live.position(redis, ref.keys, ref.id) if ref.branch_id is not None else None
    except RedisError:
        located = None
    if located is not None:
        return located
    stored = session.scalar(select(Technician.last_location).where(Technician.id == ref.id))
    return from_wkb(stored) if stored is not None else None


def local_clock(now: datetime, tz: str) -> tuple[int, int]:
    """(weekday, minute of day) in the operator's time zone: rosters are written in local time."""
    local = now.astimezone(ZoneInfo(tz))
    return local.weekday(), local.hour * 60 + local.minute


def encode_roster(shifts: list[Shift]) -> str:
    return ",".join(f"{s.weekday}:{s.starts.hour * 60 + s.starts.minute}-{s.ends.hour * 60 + s.ends.minute}"
                    for s in sorted(shifts, key=lambda s: (s.weekday, s.starts)))


def list_roster(session: Session, technician_id: int) -> list[Shift]:
    rows = session.scalars(select(RosterShift).where(RosterShift.technician_id == technician_id)
                           .order_by(RosterShift.weekday, RosterShift.starts))
    return [Shift(r.weekday, r.starts, r.ends) for r in rows]


def set_roster(session: Session, redis: Redis, *, technician: Technician, shifts: list[Shift]) -> list[Shift]:
    """Replace a technician's weekly shifts; an on-duty technician's live entry follows at once.

    Raises:
        InvalidInput: a shift of zero length.
    """
    for index, shift in enumerate(shifts):
        if shift.starts == shift.ends:
            raise InvalidInput(f"{index}.ends", "a shift must not start and end at the same time")
    session.execute(delete(RosterShift).where(RosterShift.technician_id == technician.id))
    session.add_all(RosterShift(technician_id=technician.id, weekday=s.weekday, starts=s.starts, ends=s.ends)
                    for s in shifts)
    session.flush()
    if technician.on_duty:
        try:
            _publish_meta(session, redis, technician)
        except RedisError as exc:  # the live index is a cache: the periodic rebuild restores it
            log.warning("live_index_unavailable", technician_id=technician.id, error=str(exc))
    return list_roster(session, technician.id)


def _publish_meta(session: Session, redis: Redis, technician: Technician) -> None:
    ref = ref_of(session, technician)
    live.put_on_duty(redis, ref.keys, technician.id, skills=technician.skills, scope_path=ref.scope_path,
                     max_active=technician.max_active, roster=encode_roster(list_roster(session, technician.id)))


def republish(session: Session, redis: Redis, *, technician: Technician, was: TechnicianRef) -> None:
    """After a technician's skills, limit or region changed: an on-duty technician's live entry follows at once,
    moved to their new branch's index when the branch changed."""
    if not technician.on_duty:
        return
    branch_id = ref_of(session, technician).branch_id
    try:
        if was.branch_id is not None and was.branch_id != branch_id:
            live.take_off_duty(redis, was.keys, technician.id)
        if branch_id is not None:
            _publish_meta(session, redis, technician)
    except RedisError as exc:  # the live index is a cache: the periodic rebuild restores it
        log.warning("live_index_unavailable", technician_id=technician.id, error=str(exc))


def set_duty(session: Session, redis: Redis, *, technician: Technician, on_duty: bool) -> bool:
    """Go on or off duty; returns whether the live index has a position for the technician.
    Off duty removes the technician from the live index at once.

    Raises:
        NoBranch: a company-level technician cannot be tracked per branch.
    """
    ref = ref_of(session, technician)
    ref.keys  # noqa: B018 -- fail before writing anything for a technician with no branch
    technician.on_duty = on_duty
    session.flush()
    try:
        if not on_duty:
            live.take_off_duty(redis, ref.keys, technician.id)
            return False
        _publish_meta(session, redis, technician)
        return live.is_located(redis, ref.keys, technician.id)
    except RedisError as exc:
        log.warning("live_index_unavailable", technician_id=technician.id, error=str(exc))
        return False


def ping_of(ref: TechnicianRef, *, point: LatLng, accuracy_m: float | None, now: datetime, tz: str,
            cfg: PresenceSettings) -> live.Ping:
    weekday, minute = local_clock(now, tz)
    return live.Ping(technician_id=ref.id, point=point, accuracy_m=accuracy_m, now=int(now.timestamp()),
                     weekday=weekday, minute=minute, limit=cfg.ping_limit, window_s=cfg.ping_window_s,
                     sample_interval_s=cfg.sample_interval_s)


def check_ping(status: str, detail: str, cfg: PresenceSettings) -> None:
    """Raises: RateLimited, OffDuty, OffShift (the ping was not stored)."""
    if status == "rate_limited":
        raise RateLimited(f"at most {cfg.ping_limit} pings per {cfg.ping_window_s} s", retry_after=int(detail))
    if status == "off_duty":
        raise OffDuty("go on duty before sending positions; this one was not stored")
    if status == "off_shift":
        raise OffShift("you are outside your roster window; this position was not stored")


def record_ping(redis: Redis, *, ref: TechnicianRef, point: LatLng, accuracy_m: float | None, now: datetime,
                tz: str, cfg: PresenceSettings) -> None:
    """Keep the latest position of a technician at work; sampled into the track for write-through.

    Raises:
        RateLimited, OffDuty, OffShift, NoBranch.
    """
    ping = ping_of(ref, point=point, accuracy_m=accuracy_m, now=now, tz=tz, cfg=cfg)
    check_ping(*live.ping(redis, ref.keys, ping), cfg)


async def record_ping_async(redis: AsyncRedis, *, ref: TechnicianRef, point: LatLng, accuracy_m: float | None,
                            now: datetime, tz: str, cfg: PresenceSettings) -> None:
    """`record_ping` on the event loop (the endpoint phones call every few seconds)."""
    ping = ping_of(ref, point=point, accuracy_m=accuracy_m, now=now, tz=tz, cfg=cfg)
    check_ping(*await live.ping_async(redis, ref.keys, ping), cfg)


@dataclass(frozen=True)
class Flushed:
    """Track points written in a unit of work, to be removed from Redis once it has committed."""

    keys: live.LiveKeys
    count: int


def flush_track(session: Session, redis: Redis, *, branch_ids: list[int], batch: int) -> list[Flushed]:
    """Write sampled positions through to PostGIS in one COPY per branch, and each technician's latest.

    The points stay in Redis until `confirm_flushed` runs after the commit: a failed
    commit loses nothing (a crash in between may write a batch twice, never lose it).
    """
    flushed = []
    for branch_id in branch_ids:
        keys = live.LiveKeys.of(branch_id)
        if not live.lock_track(redis, keys, ttl_s=FLUSH_LOCK_S):
            continue  # another worker is flushing this branch
        points = live.peek_track(redis, keys, batch)
        if points:
            _copy_track(session, points)
        flushed.append(Flushed(keys, len(points)))
    return flushed


def confirm_flushed(redis: Redis, flushed: list[Flushed]) -> int:
    for done in flushed:
        live.trim_track(redis, done.keys, done.count)
        live.unlock_track(redis, done.keys)
    return sum(done.count for done in flushed)


def _copy_track(session: Session, points: list[tuple[int, int, float, float, float | None]]) -> None:
    # COPY into a temporary table, then one INSERT and one UPDATE from it:
    # per-row statements would cap write-through at a few thousand pings a second.
    raw = session.connection().connection.driver_connection
    assert raw is not None
    session.execute(text("CREATE TEMP TABLE IF NOT EXISTS track_in (technician_id int, at double precision, "
                         "lng double precision, lat double precision, accuracy_m double precision) "
                         "ON COMMIT DELETE ROWS"))
    buffer = io.StringIO()
    for tid, at, lng, lat, acc in points:
        accuracy = NULL_IN_COPY if acc is None else acc
        buffer.write(f"{tid}\t{at}\t{lng}\t{lat}\t{accuracy}\n")
    with raw.cursor().copy("COPY track_in FROM STDIN") as copy:
        copy.write(buffer.getvalue())
    session.execute(text(
        "INSERT INTO track_point (technician_id, at, location, accuracy_m) "
        "SELECT technician_id, to_timestamp(at), ST_SetSRID(ST_MakePoint(lng, lat), 4326), accuracy_m "
        "FROM track_in"))
    session.execute(text(
        "UPDATE technician t SET last_location = ST_SetSRID(ST_MakePoint(l.lng, l.lat), 4326), "
        "last_seen_at = to_timestamp(l.at), last_accuracy_m = l.accuracy_m "
        "FROM (SELECT DISTINCT ON (technician_id) * FROM track_in ORDER BY technician_id, at DESC) l "
        "WHERE t.id = l.technician_id AND (t.last_seen_at IS NULL OR t.last_seen_at < to_timestamp(l.at))"))
    session.execute(text("TRUNCATE track_in"))


def rebuild_live(session: Session, redis: Redis, *, cfg: PresenceSettings,
                 now: datetime | None = None) -> list[int]:
    """Restore the live index from PostgreSQL (after a Redis restart): on-duty technicians,
    with their last written-through position when it is still fresh; returns their ids.
    Their loads are the caller's to restore (they come from tickets)."""
    now = now or datetime.now(UTC)
    restored = []
    for technician in session.scalars(select(Technician).where(Technician.on_duty, Technician.active)):
        ref = ref_of(session, technician)
        if ref.branch_id is None:
            continue
        _publish_meta(session, redis, technician)
        seen = technician.last_seen_at
        if technician.last_location is not None and seen and (now - seen).total_seconds() <= cfg.freshness_s:
            live.place_at(redis, ref.keys, technician.id, point=from_wkb(technician.last_location),
                          seen_at=int(seen.timestamp()))
        restored.append(technician.id)
    return restored


def expire_stale(redis: Redis, *, branch_ids: list[int], now: datetime, cfg: PresenceSettings) -> int:
    """Take technicians whose position went stale out of the searched sets; the next ping brings them back.
    The search checks freshness itself: this only keeps the sets small."""
    cutoff = int(now.timestamp()) - cfg.freshness_s
    gone = 0
    for branch_id in branch_ids:
        keys = live.LiveKeys.of(branch_id)
        while (batch := live.expire(redis, keys, cutoff=cutoff, batch=EXPIRE_BATCH)) > 0:
            gone += batch
            if batch < EXPIRE_BATCH:
                break
    return gone


def branch_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Region.id).where(Region.kind == "branch")))



@dataclass(frozen=True)
class OnDuty:
    technician_id: int
    name: str
    point: LatLng
    active: int


def on_duty(session: Session, redis: Redis, *, scope: tuple[int, ...] | None) -> list[OnDuty]:
    """On-duty technicians in scope where the live index has them (the console's map).

    Those on duty whose phone has not sent a position yet are left out: there is
    nowhere to draw them.
    """
    rows = session.execute(
        select(Technician.id, Technician.name, Region.path).join(Region, Region.id == Technician.region_id)
        .where(Technician.on_duty, Technician.active, within(Technician.region_id, scope)).order_by(Technician.id))
    by_branch: dict[int, list[tuple[int, str]]] = {}
    for technician_id, name, path in rows:
        steps = path_steps(path)
        if len(steps) > 1:  # company-wide technicians are in no branch's index
            by_branch.setdefault(steps[1], []).append((technician_id, name))
    found = []
    for branch_id, people in by_branch.items():
        where = live.positions(redis, live.LiveKeys.of(branch_id), [t for t, _ in people])
        found += [OnDuty(technician_id=t, name=name, point=point, active=active)
                  for (t, name), (point, active) in zip(people, where, strict=True) if point is not None]
    return found
