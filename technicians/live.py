"""The live index in Redis: on-duty technicians' positions and what eligibility needs, per branch.

Keys carry the branch as a hash tag, so every script touches one slot and
runs unchanged on Redis Cluster. The nearest search reads a branch's open
sets, one per skill, holding only technicians who could be offered (on duty,
located, fresh, on shift, below their limit), since a radius search slows
with every member inside it: every change below keeps them true in the same
script call (lua/offerable.lua), and `expire` takes out those gone stale.
"""

import os
import threading
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from dispatch.kernel.lua import ScriptBook
from dispatch.kernel.redis import as_text
from geo.latlng import LatLng

# Each script starts with the shared rules of who is offerable (lua/offerable.lua).
_scripts = ScriptBook("technicians", prelude="offerable")


@dataclass(frozen=True)
class LiveKeys:
    tag: str
    geo: str
    fresh: str
    meta: str
    load: str
    track: str
    sampled: str
    members: str
    open_log: str
    open_seq: str
    open_epoch: str

    @classmethod
    def of(cls, branch_id: int) -> "LiveKeys":
        tag = f"fp:{{b{branch_id}}}"
        return cls(tag=tag, geo=f"{tag}:geo", fresh=f"{tag}:fresh", meta=f"{tag}:meta", load=f"{tag}:load",
                   track=f"{tag}:track", sampled=f"{tag}:sampled", members=f"{tag}:members",
                   open_log=f"{tag}:open-log", open_seq=f"{tag}:open-seq", open_epoch=f"{tag}:open-epoch")

    def rate(self, technician_id: int) -> str:
        return f"{self.tag}:rate:{technician_id}"

    def taps(self, technician_id: int) -> str:
        return f"{self.tag}:taps:{technician_id}"

    def open(self, skill: str) -> str:
        """The geo set of technicians who could be offered a ticket needing `skill` (any: "*"), named in
        offerable.lua; members are "id|seen|active|hours|scope|roster|skills"."""
        return f"{self.tag}:open:{skill}"

    @property
    def offerable(self) -> list[str]:
        """The keys every script that keeps or reads the open sets takes first."""
        return [self.geo, self.fresh, self.meta, self.load, self.members]


@dataclass(frozen=True)
class OpenChange:
    """One entry of a branch's change log: the technician's open member and position now ("": out)."""

    seq: int
    epoch: str
    technician_id: int
    member: str
    lng: float
    lat: float

    @classmethod
    def of(cls, entry_id: bytes | str, fields: dict[Any, Any]) -> "OpenChange":
        text = {as_text(name): as_text(value) for name, value in fields.items()}
        lng, lat = text["lng"], text["lat"]
        return cls(seq=int(as_text(entry_id).split("-")[0]), epoch=text["epoch"], technician_id=int(text["id"]),
                   member=text["member"], lng=float(lng) if lng else 0.0, lat=float(lat) if lat else 0.0)


def _run(redis: Redis, name: str, keys: list[str], args: list[str | int | float]) -> Any:
    return _scripts.run(redis, name, keys, args)


# Changes this process sent to each server's branch indexes: a copy of the open sets that has not
# caught up since this process changed them asks Redis before it is searched (technicians/replica.py).
_sent: dict[tuple[object, ...], int] = {}
_sent_lock = threading.Lock()
# Held across a fork, so that a forked job never starts with the lock taken by a thread it lacks.
os.register_at_fork(before=_sent_lock.acquire, after_in_parent=_sent_lock.release,
                    after_in_child=_sent_lock.release)


def server_of(redis: Redis | AsyncRedis) -> tuple[object, ...]:
    """Which Redis server and database a client talks to."""
    kwargs = redis.connection_pool.connection_kwargs
    return kwargs.get("host"), kwargs.get("port"), kwargs.get("path"), kwargs.get("db", 0)


def sent_to(redis: Redis | AsyncRedis, keys: LiveKeys) -> int:
    """How many changes this process has sent to the branch's index on this server (never decreases)."""
    return _sent.get((*server_of(redis), keys.tag), 0)


def _sent_one(redis: Redis | AsyncRedis, keys: LiveKeys) -> None:
    # Counted once Redis has it: a search that then finds the count unchanged has seen the change.
    # Locked: two threads writing at once must both count, or a search could take its copy as current
    # without the second write.
    where = (*server_of(redis), keys.tag)
    with _sent_lock:
        _sent[where] = _sent.get(where, 0) + 1


def _change(redis: Redis, keys: LiveKeys, *args: str | int | float) -> Any:
    reply = _run(redis, "index", [*keys.offerable, keys.sampled], list(args))
    _sent_one(redis, keys)
    return reply


def put_on_duty(redis: Redis, keys: LiveKeys, technician_id: int, *, skills: list[str], scope_path: str,
                max_active: int, roster: str) -> None:
    """On duty, or what eligibility reads of the technician changed: skills, scope, limit or roster."""
    _change(redis, keys, "duty", technician_id, f"{','.join(skills)}|{scope_path}|{max_active}|{roster}")


@dataclass(frozen=True)
class GrabGate:
    """What a grab needs to know of the technician before the pool is asked, read in one round trip."""

    on_duty: bool
    seen_at: float | None  # epoch s of the last accepted ping; None once stale or never located
    taps: int  # grabs sent in the current window, this one included
    window_left_ms: int


async def grab_gate(redis: AsyncRedis, keys: LiveKeys, technician_id: int, *, window_ms: int) -> GrabGate:
    """Count this grab in the technician's window and read their duty and last ping."""
    reply = cast(list[Any], await _scripts.run_async(redis, "gate", [*keys.offerable, keys.taps(technician_id)],
                                                     [technician_id, window_ms]))
    on_duty, count, left = reply[:3]
    seen = reply[3] if len(reply) > 3 else None  # a nil at the end of a Lua table is no element
    return GrabGate(on_duty=bool(on_duty), seen_at=float(seen) if seen is not None else None, taps=int(count),
                    window_left_ms=max(int(left), 0))


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
    _change(redis, keys, "off", technician_id)


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
        return ([*keys.offerable, keys.track, keys.sampled, keys.rate(self.technician_id)],
                [self.technician_id, self.point.lng, self.point.lat,
                 "" if self.accuracy_m is None else self.accuracy_m, self.now, self.weekday, self.minute,
                 self.limit, self.window_s, self.sample_interval_s])


def ping(redis: Redis, keys: LiveKeys, ping: Ping) -> tuple[str, str]:
    """(status, detail): ok, rate_limited (seconds to wait), off_duty or off_shift."""
    status, detail = _run(redis, "ping", *ping.call(keys))
    _sent_one(redis, keys)
    return as_text(status), as_text(detail)


async def ping_async(redis: AsyncRedis, keys: LiveKeys, ping: Ping) -> tuple[str, str]:
    """`ping` for the event loop: the phones' hot path needs no worker thread."""
    status, detail = await _scripts.run_async(redis, "ping", *ping.call(keys))
    _sent_one(redis, keys)
    return as_text(status), as_text(detail)



def place_at(redis: Redis, keys: LiveKeys, technician_id: int, *, point: LatLng, seen_at: int) -> None:
    """Put a known recent position back into the index (rebuild), unless a later ping is there already."""
    _change(redis, keys, "place", technician_id, point.lng, point.lat, seen_at)


def positions(redis: Redis, keys: LiveKeys, technician_ids: list[int]) -> list[tuple[LatLng | None, int]]:
    """Where these technicians are in the index (None: not located) and how many tickets they hold."""
    members = [str(t) for t in technician_ids]
    pipe = redis.pipeline(transaction=False)
    pipe.geopos(keys.geo, *members)
    pipe.hmget(keys.load, members)
    points, loads = pipe.execute()
    return [(LatLng(lat=p[1], lng=p[0]) if p else None, int(as_text(load).split("|")[0]) if load else 0)
            for p, load in zip(points, loads, strict=True)]


def set_load(redis: Redis, keys: LiveKeys, technician_id: int, *, active: int, hours: float) -> None:
    """The technician's active tickets and hours this period; at max_active they leave the open sets."""
    _change(redis, keys, "load", technician_id, f"{active}|{hours:g}")


def expire(redis: Redis, keys: LiveKeys, *, cutoff: int, batch: int) -> int:
    """Take technicians whose last ping is older than `cutoff` (epoch s) out of the open sets, at most
    `batch` per call (one script call blocks Redis); returns how many left."""
    return int(_change(redis, keys, "expire", cutoff, batch))


def follow(redis: Redis, after: dict[LiveKeys, int], *, block_ms: int) -> dict[str, list[OpenChange]]:
    """The changes logged after these, by branch tag, waiting up to `block_ms` for the first."""
    reply = cast(list[Any] | None, redis.xread({keys.open_log: f"{seq}-0" for keys, seq in after.items()},
                                                count=1000, block=block_ms))
    tags = {keys.open_log: keys.tag for keys in after}
    return {tags[as_text(stream)]: [OpenChange.of(entry_id, fields) for entry_id, fields in entries]
            for stream, entries in (reply or [])}


def epochs(redis: Redis, branches: list[LiveKeys]) -> list[str]:
    """Each branch's change-log epoch ("" before its first change)."""
    return [as_text(epoch) if epoch else "" for epoch in redis.mget([keys.open_epoch for keys in branches])]


def changes(redis: Redis, keys: LiveKeys, *, epoch: str, after: int,
            most: int) -> tuple[str, int, list[OpenChange] | None]:
    """(epoch, last change, the changes after `after`), or None for the changes when a copy holding
    `epoch` and `after` must reload instead (a new log, trimmed past it, or more than `most` behind)."""
    reply = _run(redis, "changes", [keys.geo, keys.open_epoch, keys.open_seq, keys.open_log], [epoch, after, most])
    current, last = as_text(reply[0]), int(reply[1])
    if as_text(reply[2]) == "reload":
        return current, last, None
    return current, last, [OpenChange.of(entry_id, dict(zip(fields[::2], fields[1::2], strict=True)))
                           for entry_id, fields in (reply[3] if len(reply) > 3 else [])]


def snapshot_step(redis: Redis, keys: LiveKeys, *, cursor: str,
                  count: int) -> tuple[str, list[tuple[str, float, float]]]:
    """One step of copying the open set of any skill: (next cursor, "0" when done; [(member, lng, lat)])."""
    reply = _run(redis, "snapshot", [keys.geo, keys.open("*")], [cursor, count])
    return as_text(reply[0]), [(as_text(reply[i]), float(reply[i + 1]), float(reply[i + 2]))
                               for i in range(1, len(reply), 3)]


def peek_track(redis: Redis, keys: LiveKeys, limit: int) -> list[tuple[int, int, float, float, float | None]]:
    """Up to `limit` sampled track points, oldest first, left in place until `trim_track`:
    (technician_id, epoch s, lng, lat, accuracy)."""
    points = []
    for item in redis.lrange(keys.track, 0, limit - 1):
        tid, at, lng, lat, acc = as_text(item).split("|")
        points.append((int(tid), int(at), float(lng), float(lat), float(acc) if acc else None))
    return points


def trim_track(redis: Redis, keys: LiveKeys, count: int) -> None:
    redis.ltrim(keys.track, count, -1)


def lock_track(redis: Redis, keys: LiveKeys, *, ttl_s: int) -> bool:
    """One flusher per branch at a time; the lock lapses by itself if its holder dies."""
    return bool(redis.set(f"{keys.tag}:track-lock", 1, nx=True, ex=ttl_s))


def unlock_track(redis: Redis, keys: LiveKeys) -> None:
    redis.delete(f"{keys.tag}:track-lock")
