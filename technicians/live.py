"""The live index in Redis: on-duty technicians' positions and what eligibility needs, per branch.

Keys carry the branch as a hash tag, so every script touches one slot and
runs unchanged on Redis Cluster. Only technicians who could be offered are
in a branch's geo set (on duty, located), since a radius search slows with
every member inside it.
"""

from dataclasses import dataclass
from importlib.resources import files

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.commands.core import AsyncScript, Script

from geo.latlng import LatLng

_scripts: dict[str, Script] = {}
_async_scripts: dict[str, AsyncScript] = {}


@dataclass(frozen=True)
class LiveKeys:
    tag: str
    geo: str
    seen: str
    meta: str
    load: str
    track: str
    sampled: str

    @classmethod
    def of(cls, branch_id: int) -> "LiveKeys":
        tag = f"fp:{{b{branch_id}}}"
        return cls(tag=tag, geo=f"{tag}:geo", seen=f"{tag}:seen", meta=f"{tag}:meta", load=f"{tag}:load",
                   track=f"{tag}:track", sampled=f"{tag}:sampled")

    def rate(self, technician_id: int) -> str:
        return f"{self.tag}:rate:{technician_id}"


@dataclass(frozen=True)
class Hit:
    technician_id: int
    distance_m: float
    active: int
    hours: float


def _source(name: str) -> str:
    return files("technicians").joinpath(f"lua/{name}.lua").read_text()


def _run(redis: Redis, name: str, keys: list[str], args: list[str | int | float]) -> list[object]:
    # Script objects call EVALSHA and load the source again on NOSCRIPT (after a
    # Redis restart or failover), so a script is read from disk once per process.
    if name not in _scripts:
        _scripts[name] = redis.register_script(_source(name))
    result: list[object] = _scripts[name](keys=keys, args=args, client=redis)
    return result


def put_on_duty(redis: Redis, keys: LiveKeys, technician_id: int, *, skills: list[str], scope_path: str,
                max_active: int, roster: str) -> None:
    redis.hset(keys.meta, str(technician_id), f"{','.join(skills)}|{scope_path}|{max_active}|{roster}")


def is_located(redis: Redis, keys: LiveKeys, technician_id: int) -> bool:
    return redis.zscore(keys.geo, str(technician_id)) is not None


def position(redis: Redis, keys: LiveKeys, technician_id: int) -> LatLng | None:
    """Where the technician's phone last was, as the live index holds it (None when not located)."""
    found = redis.geopos(keys.geo, str(technician_id))
    if not found or found[0] is None:
        return None
    lng, lat = found[0]
    return LatLng(lat=float(lat), lng=float(lng))


def take_off_duty(redis: Redis, keys: LiveKeys, technician_id: int) -> None:
    member = str(technician_id)
    pipe = redis.pipeline(transaction=True)
    pipe.zrem(keys.geo, member)
    pipe.hdel(keys.meta, member)
    pipe.hdel(keys.seen, member)
    pipe.hdel(keys.sampled, member)
    pipe.execute()


@dataclass(frozen=True)
class Ping:
    """One location ping, as the ping script takes it."""

    technician_id: int
    point: LatLng
    accuracy_m: float | None
    now: int
    weekday: int
    minute: int
    limit: int
    window_s: int
    sample_interval_s: int

    def call(self, keys: LiveKeys) -> tuple[list[str], list[str | int | float]]:
        return ([keys.geo, keys.seen, keys.meta, keys.track, keys.sampled, keys.rate(self.technician_id)],
                [self.technician_id, self.point.lng, self.point.lat,
                 "" if self.accuracy_m is None else self.accuracy_m, self.now, self.weekday, self.minute,
                 self.limit, self.window_s, self.sample_interval_s])


def ping(redis: Redis, keys: LiveKeys, ping: Ping) -> tuple[str, str]:
    """(status, detail): ok, rate_limited (seconds to wait), off_duty or off_shift."""
    status, detail = _run(redis, "ping", *ping.call(keys))
    return _text(status), _text(detail)


async def ping_async(redis: AsyncRedis, keys: LiveKeys, ping: Ping) -> tuple[str, str]:
    """`ping` for the event loop: the phones' hot path needs no worker thread."""
    if "ping" not in _async_scripts:
        _async_scripts["ping"] = redis.register_script(_source("ping"))
    status, detail = await _async_scripts["ping"](*ping.call(keys), client=redis)
    return _text(status), _text(detail)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def place_at(redis: Redis, keys: LiveKeys, technician_id: int, *, point: LatLng, seen_at: int) -> None:
    """Put a known recent position back into the index (rebuild)."""
    pipe = redis.pipeline(transaction=True)
    pipe.geoadd(keys.geo, (point.lng, point.lat, str(technician_id)))
    pipe.hset(keys.seen, str(technician_id), seen_at)
    pipe.execute()


def positions(redis: Redis, keys: LiveKeys, technician_ids: list[int]) -> list[tuple[LatLng | None, int]]:
    """Where these technicians are in the index (None: not located) and how many tickets they hold."""
    members = [str(t) for t in technician_ids]
    pipe = redis.pipeline(transaction=False)
    pipe.geopos(keys.geo, *members)
    pipe.hmget(keys.load, members)
    points, loads = pipe.execute()
    return [(LatLng(lat=p[1], lng=p[0]) if p else None, int(_text(load).split("|")[0]) if load else 0)
            for p, load in zip(points, loads, strict=True)]


def set_load(redis: Redis, keys: LiveKeys, technician_id: int, *, active: int, hours: float) -> None:
    redis.hset(keys.load, str(technician_id), f"{active}|{hours:g}")


def nearest(redis: Redis, keys: LiveKeys, *, point: LatLng, k: int, max_radius_m: int, start_radius_m: int,
            now: int, freshness_s: int, skills: list[str], ticket_path: str, exclude: set[int], weekday: int,
            minute: int, tie_band_m: int) -> list[Hit]:
    """The K eligible technicians within `max_radius_m` to offer first: nearest, fairest among near-equals."""
    flat = _run(
        redis, "nearest", [keys.geo, keys.seen, keys.meta, keys.load],
        [point.lng, point.lat, k, max_radius_m, now, freshness_s, ",".join(skills), ticket_path,
         "," + ",".join(map(str, sorted(exclude))) + ",", weekday, minute, start_radius_m, tie_band_m])
    return [Hit(technician_id=int(_text(flat[i])), distance_m=float(_text(flat[i + 1])),
                active=int(_text(flat[i + 2])), hours=float(_text(flat[i + 3]))) for i in range(0, len(flat), 4)]


def peek_track(redis: Redis, keys: LiveKeys, limit: int) -> list[tuple[int, int, float, float, float | None]]:
    """Up to `limit` sampled track points, oldest first, left in place until `trim_track`:
    (technician_id, epoch s, lng, lat, accuracy)."""
    points = []
    for item in redis.lrange(keys.track, 0, limit - 1):
        tid, at, lng, lat, acc = _text(item).split("|")
        points.append((int(tid), int(at), float(lng), float(lat), float(acc) if acc else None))
    return points


def trim_track(redis: Redis, keys: LiveKeys, count: int) -> None:
    redis.ltrim(keys.track, count, -1)


def lock_track(redis: Redis, keys: LiveKeys, *, ttl_s: int) -> bool:
    """One flusher per branch at a time; the lock lapses by itself if its holder dies."""
    return bool(redis.set(f"{keys.tag}:track-lock", 1, nx=True, ex=ttl_s))


def unlock_track(redis: Redis, keys: LiveKeys) -> None:
    redis.delete(f"{keys.tag}:track-lock")
