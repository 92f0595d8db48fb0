"""The grab pool in Redis: grabbable tickets per branch, claimed atomically by Lua scripts.

Redis arbitrates so that the losers of a grab storm are turned away without
touching PostgreSQL; PostgreSQL stays the source of truth. A winner's claim is
a lease: the caller commits it to PostgreSQL (whose version column is the
fence) and mirrors the result back with `put`, or undoes it with `unclaim`. A
claimer that dies in between loses its lease, and the ticket returns to the
pool. Every key of a branch carries the branch as a hash tag, so each script
touches one slot and the pool runs unchanged on Redis Cluster.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from dispatch.kernel.lua import ScriptBook
from dispatch.kernel.redis import as_text
from geo.latlng import LatLng

_scripts = ScriptBook("grab_pool", prelude="claim")
# Pool states: what PostgreSQL says, plus the claim in flight between the two.
GRABBABLE = ("pending", "timed_out")
ACCEPTED = "accepted"
CLAIMED = "claimed"
CLOSED = "closed"


@dataclass(frozen=True)
class PoolKeys:
    tag: str
    built: str
    geo: str
    held: str
    leases: str
    index: str
    rebuilding: str

    @classmethod
    def of(cls, branch_id: int) -> "PoolKeys":
        tag = f"fp:{{p{branch_id}}}"
        return cls(tag=tag, built=f"{tag}:built", geo=f"{tag}:geo", held=f"{tag}:held", leases=f"{tag}:leases",
                   index=f"{tag}:tickets", rebuilding=f"{tag}:rebuilding")

    @property
    def ticket_prefix(self) -> str:
        return f"{self.tag}:t:"

    def ticket(self, ticket_id: int) -> str:
        return f"{self.ticket_prefix}{ticket_id}"


class Outcome(StrEnum):
    WON = "won"
    TAKEN = "taken"
    OUT_OF_SCOPE = "out_of_scope"
    LIMIT = "limit"
    MISSING = "missing"  # not in this branch's pool: PostgreSQL decides
    UNBUILT = "unbuilt"  # the pool was flushed or never built: PostgreSQL decides, and a rebuild is due
    UNAVAILABLE = "unavailable"  # Redis is down: PostgreSQL decides



@dataclass(frozen=True)
class Claim:
    outcome: Outcome
    version: int | None = None  # the PostgreSQL version the pool mirrored when it was claimed
    holder: int | None = None
    request_id: str = ""


@dataclass(frozen=True)
class Grabber:
    technician_id: int
    branch_id: int
    scope_path: str
    max_active: int


@dataclass(frozen=True)
class Entry:
    """One ticket as the pool mirrors it."""

    ticket_id: int
    branch_id: int
    state: str  # pending | timed_out | accepted | closed
    version: int
    holder: int | None
    grid_path: str
    point: LatLng
    type_code: str
    number: str

    def fields(self) -> list[str | int | float]:
        return [self.ticket_id, self.state, self.version, self.holder or "", self.grid_path,
                self.point.lng, self.point.lat, self.type_code, self.number]


def new_request_id() -> str:
    return uuid.uuid4().hex


def _claim(result: list[object], request_id: str) -> Claim:
    outcome = Outcome(as_text(result[0]))
    detail = as_text(result[1])
    if outcome is Outcome.WON:
        return Claim(outcome, version=int(detail), request_id=request_id)
    if outcome is Outcome.TAKEN:
        return Claim(outcome, holder=int(detail))
    return Claim(outcome)



def _grab_call(grabber: Grabber, ticket_id: int, request_id: str,
               lease_ms: int) -> tuple[list[str], list[str | int | float]]:
    keys = PoolKeys.of(grabber.branch_id)
    return ([keys.built, keys.ticket(ticket_id), keys.geo, keys.held, keys.leases],
            [ticket_id, grabber.technician_id, grabber.scope_path, grabber.max_active, request_id, lease_ms])


def grab(redis: Redis, grabber: Grabber, ticket_id: int, *, request_id: str, lease_ms: int) -> Claim:
    """Claim a ticket for a technician if it is grabbable, in scope and under their limit."""
    keys, args = _grab_call(grabber, ticket_id, request_id, lease_ms)
    try:
        return _claim(_scripts.run(redis, "grab", keys, args), request_id)
    except RedisError:
        return Claim(Outcome.UNAVAILABLE)


async def grab_async(redis: AsyncRedis, grabber: Grabber, ticket_id: int, *, request_id: str,
                     lease_ms: int) -> Claim:
    keys, args = _grab_call(grabber, ticket_id, request_id, lease_ms)
    try:
        return _claim(await _scripts.run_async(redis, "grab", keys, args), request_id)
    except RedisError:
        return Claim(Outcome.UNAVAILABLE)


def assign(redis: Redis, *, branch_id: int, ticket_id: int, technician_id: int, request_id: str,
           lease_ms: int) -> Claim:
    """Claim a pooled ticket for the technician a dispatcher chose (no scope or limit check)."""
    keys = PoolKeys.of(branch_id)
    try:
        result = _scripts.run(redis, "assign", [keys.built, keys.ticket(ticket_id), keys.geo, keys.held, keys.leases],
                              [ticket_id, technician_id, request_id, lease_ms])
    except RedisError:
        return Claim(Outcome.UNAVAILABLE)
    return _claim(result, request_id)


def unclaim(redis: Redis, *, branch_id: int, ticket_id: int, technician_id: int, request_id: str) -> bool:
    """Undo this request's claim (its commit failed); False if the claim had moved on or Redis is down."""
    keys = PoolKeys.of(branch_id)
    try:
        undone = _scripts.run(redis, "unclaim", [keys.ticket(ticket_id), keys.geo, keys.held, keys.leases],
                              [ticket_id, technician_id, request_id])
    except RedisError:
        return False  # the lease runs out on its own
    return bool(undone)


def put(redis: Redis, entry: Entry) -> bool:
    """Mirror one ticket's committed state; a stale mirror never overwrites a newer one.

    Raises: RedisError.
    """
    keys = PoolKeys.of(entry.branch_id)
    changed = _scripts.run(redis, "put", [keys.ticket(entry.ticket_id), keys.geo, keys.held, keys.leases, keys.index],
                           entry.fields())
    return bool(changed)


def expire_leases(redis: Redis, branch_id: int) -> list[int]:
    """Return tickets whose claimer died before committing to the pool.

    Raises: RedisError.
    """
    keys = PoolKeys.of(branch_id)
    back = _scripts.run(redis, "expire", [keys.leases, keys.geo, keys.held, keys.ticket_prefix], [])
    return [int(as_text(t)) for t in back]


def near(redis: Redis, branch_id: int, point: LatLng, *, radius_m: float, count: int) -> list[tuple[int, float]]:
    """Grabbable tickets of a branch within `radius_m`, nearest first, with distances in metres.

    Raises: RedisError.
    """
    found = redis.geosearch(PoolKeys.of(branch_id).geo, longitude=point.lng, latitude=point.lat, radius=radius_m,
                            unit="m", sort="ASC", count=count, withdist=True)
    return [(int(as_text(member)), float(distance)) for member, distance in found]  # type: ignore[str-unpack, arg-type]


def is_built(redis: Redis, branch_id: int) -> bool:
    """Raises: RedisError."""
    return bool(redis.exists(PoolKeys.of(branch_id).built))


def take_rebuild_turn(redis: Redis, branch_id: int, *, ttl_s: int) -> bool:
    """One rebuilder per branch at a time across all processes.

    Raises: RedisError.
    """
    return bool(redis.set(PoolKeys.of(branch_id).rebuilding, "1", nx=True, ex=ttl_s))


def end_rebuild_turn(redis: Redis, branch_id: int) -> None:
    redis.delete(PoolKeys.of(branch_id).rebuilding)


def rebuild(redis: Redis, branch_id: int, entries: Sequence[Entry], held: dict[int, int], *, at: float) -> int:
    """Replace a branch's pool with this picture of PostgreSQL in one atomic step.

    Raises: RedisError.
    """
    keys = PoolKeys.of(branch_id)
    args: list[str | int | float] = [at, len(entries)]
    for entry in entries:
        args.extend(entry.fields())
    for technician_id, count in held.items():
        args.extend([technician_id, count])
    built = _scripts.run(redis, "rebuild", [keys.built, keys.geo, keys.held, keys.leases, keys.index,
                                            keys.ticket_prefix], args)
    return int(as_text(built))


@dataclass(frozen=True)
class Mirror:
    """What the pool holds for one branch, for drift checks."""

    built: bool
    tickets: dict[int, dict[str, str]]
    held: dict[int, int]
    grabbable: set[int]


def snapshot(redis: Redis, branch_id: int) -> Mirror:
    """Raises: RedisError."""
    keys = PoolKeys.of(branch_id)
    ids = sorted(int(as_text(t)) for t in redis.smembers(keys.index))  # type: ignore[union-attr]
    pipe = redis.pipeline(transaction=False)
    for ticket_id in ids:
        pipe.hgetall(keys.ticket(ticket_id))
    pipe.hgetall(keys.held)
    pipe.zrange(keys.geo, 0, -1)
    pipe.exists(keys.built)
    *hashes, held, geo, built = pipe.execute()
    tickets = {tid: {as_text(k): as_text(v) for k, v in h.items()} for tid, h in zip(ids, hashes, strict=True) if h}
    return Mirror(built=bool(built), tickets=tickets,
                  held={int(as_text(k)): int(as_text(v)) for k, v in held.items() if int(as_text(v)) != 0},
                  grabbable={int(as_text(m)) for m in geo})
