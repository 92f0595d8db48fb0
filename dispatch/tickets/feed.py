"""The live feed: ticket events on Redis Streams, one stream per technician and per branch.

Why streams and not plain pub/sub: pub/sub forgets a message the moment it is
published, so a phone that lost its connection for thirty seconds (a lift, a
tunnel, a new cell) would miss the offer made meanwhile. A stream keeps its
entries (here the last ~10,000 and at most RETENTION_S old), and every entry
has an id that orders it; the SSE endpoint sends that position as the event
id, and a reconnecting EventSource sends it back as `Last-Event-ID`, so the
endpoint replays exactly what was missed. Fan-out across API processes works
as with pub/sub: every process blocks in XREAD on the same keys and Redis
wakes all of them on XADD, so a publisher and a reader never need to share
a process.

Keys carry the hash tag `{feed}`: XREAD over several streams (an admin follows
every branch) must stay within one Redis Cluster slot. The price is that the
feed lives on one shard, which its volume (a few events per ticket) allows.

Scope: a technician follows their own stream (their offers and their tickets,
so a publisher lists them in `technician_ids`) and reads their own part of an
offer only; dispatchers, clerks, payroll and API keys follow the branch streams
of their regions, admins every branch. Events carry no contact: who reported a
ticket is read from the ticket, by those who may see it.
"""

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.kernel.auth import Actor, Role
from dispatch.kernel.errors import Forbidden, ServiceUnavailable
from dispatch.kernel.redis import as_text
from dispatch.tickets import notify
from geo import regions
from geo.models import Region, RegionKind
from technicians.service import technician_of

TOPIC = "feed"
KEY_PREFIX = "fp:{feed}"
MAX_LEN = 10_000  # per stream, approximate (MAXLEN ~ trims whole radix-tree nodes: cheap)
RETENTION_S = 30 * 60  # what a reconnecting client can still replay
KEY_TTL_S = 24 * 3600  # streams nobody publishes to any more (a technician who left) vanish
READ_COUNT = 100
_POSITION = re.compile(r"^\d{1,20}-\d{1,20}$")


class InvalidEvent(ValueError):
    """A feed event without its type, ticket or branch: a bug in the publisher, not a transient failure."""


def tech_key(technician_id: int) -> str:
    return f"{KEY_PREFIX}:tech:{technician_id}"


def branch_key(branch_id: int) -> str:
    return f"{KEY_PREFIX}:branch:{branch_id}"


def make_event(event_type: str, *, ticket_id: int, branch_id: int, region_id: int | None = None,
               technician_ids: Iterable[int] = (), **data: Any) -> dict[str, Any]:
    """A feed event: goes to the branch's stream and to each listed technician's stream.

    `region_id` (the ticket's grid) lets users scoped to a single grid see it;
    further keyword fields (number, state, distance_m, ...) travel as they are.
    """
    event: dict[str, Any] = {"type": event_type, "ticket_id": ticket_id, "branch_id": branch_id,
                             "technician_ids": sorted(set(technician_ids)), **data}
    if region_id is not None:
        event["region_id"] = region_id
    return event


def _keys_of(event: Mapping[str, Any]) -> list[str]:
    kind, ticket_id, branch_id = event.get("type"), event.get("ticket_id"), event.get("branch_id")
    if not isinstance(kind, str) or not kind or "\n" in kind or "\r" in kind:
        raise InvalidEvent(f"a feed event needs a one-line type: {event!r}")
    if not isinstance(ticket_id, int) or not isinstance(branch_id, int):
        raise InvalidEvent(f"a feed event needs integer ticket_id and branch_id: {event!r}")
    technician_ids = event.get("technician_ids") or []
    if not isinstance(technician_ids, list) or not all(isinstance(t, int) for t in technician_ids):
        raise InvalidEvent(f"technician_ids must be a list of integers: {event!r}")
    return [branch_key(branch_id), *(tech_key(t) for t in sorted(set(technician_ids)))]


def publish(redis: Redis, event: Mapping[str, Any]) -> dict[str, str]:
    """Append the event to its branch stream and its technicians' streams; returns key -> entry id.

    One MULTI/EXEC (all keys share a slot): an event lands in all its streams
    or in none, so a retried delivery never leaves half an event behind.

    Raises:
        InvalidEvent: type, ticket_id or branch_id missing.
        redis.exceptions.RedisError: Redis unreachable (the outbox retries).
    """
    keys = _keys_of(event)
    fields = {"type": str(event["type"]), "data": json.dumps(dict(event), ensure_ascii=False, default=str)}
    oldest = f"{int(time.time() * 1000) - RETENTION_S * 1000}-0"
    with redis.pipeline(transaction=True) as pipe:
        for key in keys:
            pipe.xadd(key, fields, maxlen=MAX_LEN, approximate=True)  # type: ignore[arg-type]
            pipe.xtrim(key, minid=oldest, approximate=True)
            pipe.expire(key, KEY_TTL_S)
        replies = pipe.execute()
    return {key: as_text(replies[i * 3]) for i, key in enumerate(keys)}


def channel(redis: Redis) -> notify.Channel:
    """The notifier channel for topic "feed": the payload is the event."""

    def send(topic: str, payload: dict[str, Any]) -> None:
        publish(redis, payload)

    return send


def register(redis: Redis) -> None:
    """Register the feed as the channel for topic "feed" (create_app, worker start-up)."""
    notify.register_channel(TOPIC, channel(redis), topics={TOPIC})


# --- following: which streams a caller reads ---------------------------------------------

@dataclass(frozen=True)
class Subscription:
    """The streams one caller follows, by short label ("t7", "b3") -> key.

    `only_regions` narrows a branch stream for a user scoped to some grids of
    that branch but not the whole branch: they see events of those grids only.
    """

    streams: dict[str, str]
    only_regions: dict[str, frozenset[int]] = field(default_factory=dict)
    technician_id: int | None = None

    def visible(self, label: str, event: Mapping[str, Any]) -> bool:
        allowed = self.only_regions.get(label)
        return allowed is None or event.get("region_id") in allowed

    def view(self, label: str, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """The event as this follower may read it, None when it is not theirs to see.

        A technician reads their own part only: an offer names everyone it went
        to and how far each was, which tells one technician where the others are.
        """
        if not self.visible(label, event):
            return None
        if self.technician_id is None:
            return dict(event)
        me = self.technician_id
        shown = {**event, "technician_ids": [t for t in event.get("technician_ids") or [] if t == me]}
        if isinstance(event.get("distances_m"), dict):
            shown["distances_m"] = {k: v for k, v in event["distances_m"].items() if k == str(me)}
        return shown


def subscription_for(session: Session, actor: Actor) -> Subscription:
    """What the caller may follow on the live feed.

    Raises:
        Forbidden: a subscriber, or a user with no branch in scope.
        NotATechnician: a technician log-in without an active technician record.
    """
    if actor.role is Role.SUBSCRIBER:
        raise Forbidden("the live feed is for technicians and staff")
    if actor.role is Role.TECHNICIAN:
        technician = technician_of(session, actor)
        return Subscription(streams={f"t{technician.id}": tech_key(technician.id)}, technician_id=technician.id)
    scope = actor.scope
    branch_ids = list(session.scalars(select(Region.id).where(
        Region.kind == RegionKind.BRANCH, regions.within(Region.id, scope)).order_by(Region.id)))
    streams = {f"b{b}": branch_key(b) for b in branch_ids}
    only_regions: dict[str, frozenset[int]] = {}
    if scope:
        # Grids in scope whose branch is not wholly in scope: follow the branch, filtered.
        grids = session.execute(select(Region.id, Region.parent_id).where(
            Region.id.in_(scope), Region.kind == RegionKind.GRID)).all()
        partial: dict[int, set[int]] = {}
        for grid_id, parent_id in grids:
            if parent_id is not None and parent_id not in branch_ids:
                partial.setdefault(parent_id, set()).add(grid_id)
        for branch_id, grid_ids in sorted(partial.items()):
            streams[f"b{branch_id}"] = branch_key(branch_id)
            only_regions[f"b{branch_id}"] = frozenset(grid_ids)
    if not streams:
        raise Forbidden("no branch in your regions to follow")
    return Subscription(streams=streams, only_regions=only_regions)


# --- positions: the SSE id is the position in every followed stream -----------------------

def encode_cursor(positions: Mapping[str, str]) -> str:
    """`b3:1732262400000-0,b4:1732262399000-1`: resumes every stream at once."""
    return ",".join(f"{label}:{pos}" for label, pos in sorted(positions.items()))


def decode_cursor(text: str | None, labels: Iterable[str]) -> dict[str, str]:
    """The positions in `text` for the followed labels; anything malformed or foreign is ignored."""
    wanted, positions = set(labels), {}
    for part in (text or "").split(","):
        label, _, pos = part.strip().partition(":")
        if label in wanted and _POSITION.match(pos):
            positions[label] = pos
    return positions


async def start_positions(redis: AsyncRedis, subscription: Subscription,
                          resume: Mapping[str, str]) -> dict[str, str]:
    """Concrete positions to read after: the resumed ones, else each stream's current end.

    Raises:
        ServiceUnavailable: Redis is unreachable.

    `$` is resolved here once rather than passed to every XREAD: `$` means
    "after whatever is last when this call runs", so an entry added between two
    reads would be skipped.
    """
    positions = {label: resume[label] for label in subscription.streams if label in resume}
    fresh = [label for label in subscription.streams if label not in positions]
    if fresh:
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for label in fresh:
                    pipe.xrevrange(subscription.streams[label], count=1)
                lasts = await pipe.execute()
        except RedisError as exc:
            raise ServiceUnavailable("the live feed is unavailable, retry shortly") from exc
        for label, last in zip(fresh, lasts, strict=True):
            positions[label] = as_text(last[0][0]) if last else "0-0"
    return positions


@dataclass(frozen=True)
class Entry:
    label: str
    position: str
    type: str
    event: dict[str, Any]


async def read(redis: AsyncRedis, subscription: Subscription, positions: Mapping[str, str], *,
               block_ms: int, count: int = READ_COUNT) -> list[Entry]:
    """The next entries after `positions` (XREAD BLOCK), oldest first per stream; [] on timeout."""
    label_of = {key: label for label, key in subscription.streams.items()}
    reply: Any = await redis.xread({subscription.streams[label]: pos for label, pos in positions.items()},
                              count=count, block=block_ms)
    entries: list[Entry] = []
    for key, items in reply or []:  # [[key, [(id, fields), ...]], ...] (redis-py keeps it under RESP3)
        label = label_of[as_text(key)]
        for entry_id, fields in items:
            decoded = {as_text(k): as_text(v) for k, v in fields.items()}
            try:
                event = json.loads(decoded.get("data", ""))
            except ValueError:
                event = None
            entries.append(Entry(label=label, position=as_text(entry_id), type=decoded.get("type", "message"),
                                 event=event if isinstance(event, dict) else {}))
    return entries

