"""Keeping the Redis grab pool a true mirror of PostgreSQL: after each commit, on rebuild, on check.

PostgreSQL is the source of truth. Each commit that adds, hands over,
returns or closes a ticket mirrors it into the pool once the rows are durable
(a mirror that ran ahead of the commit could offer a ticket PostgreSQL does not
have yet). What a mirror misses (Redis down at that moment, a process killed)
is repaired by the periodic rebuild; `check` reports any drift.
"""

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from geoalchemy2 import WKBElement
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from dispatch.kernel.db import after_commit
from dispatch.tickets.lifecycle import GRABBABLE
from dispatch.tickets.models import Ticket, TicketState
from geo.models import Region, RegionKind
from geo.points import from_wkb
from grab_pool import pool

log = structlog.get_logger()
REBUILD_TURN_S = 30
# Longer than a transaction runs between stamping a ticket's updated_at and committing it.
CATCH_UP = timedelta(seconds=60)

# Region paths never change once a region exists: remember them per process.
_paths: dict[int, str] = {}
_paths_lock = threading.Lock()


def grid_path(session: Session, region_id: int) -> str:
    with _paths_lock:
        path = _paths.get(region_id)
    if path is None:
        path = session.execute(select(Region.path).where(Region.id == region_id)).scalar_one()
        with _paths_lock:
            _paths[region_id] = path
    return path


class Mirrored(Protocol):
    """What the pool keeps of a ticket: a Ticket, or a row of `_MIRRORED`'s columns."""

    id: int
    branch_id: int
    state: TicketState
    version: int
    technician_id: int | None
    region_id: int
    location: WKBElement
    type_code: str
    number: str


# The columns a rebuild reads (its picture and its catch-up): whole Ticket objects for every open ticket of a
# branch cost it its time, and always read fresh rows, where objects needed populate_existing.
_MIRRORED = (Ticket.id, Ticket.branch_id, Ticket.state, Ticket.version, Ticket.technician_id, Ticket.region_id,
             Ticket.location, Ticket.type_code, Ticket.number)


def _pool_state(ticket: Mirrored) -> str:
    if ticket.state in GRABBABLE:
        return str(ticket.state)
    return pool.ACCEPTED if ticket.state is TicketState.ACCEPTED else pool.CLOSED


def entry_of(session: Session, ticket: Mirrored) -> pool.Entry:
    return pool.Entry(ticket_id=ticket.id, branch_id=ticket.branch_id, state=_pool_state(ticket),
                      version=ticket.version, holder=ticket.technician_id,
                      grid_path=grid_path(session, ticket.region_id), point=from_wkb(ticket.location),
                      type_code=ticket.type_code, number=ticket.number)


def mirror(session: Session, redis: Redis, ticket: Ticket) -> None:
    """Put the ticket's state as this transaction leaves it into the pool, once committed."""
    entry = entry_of(session, ticket)
    after_commit(session, f"pool:{ticket.id}", lambda: _put(redis, entry))


def _put(redis: Redis, entry: pool.Entry) -> None:
    pool.put(redis, entry)


def mirror_now(session: Session, redis: Redis, ticket_id: int) -> None:
    """Re-read a ticket's committed state and mirror it (after a claim PostgreSQL refused)."""
    ticket = session.get(Ticket, ticket_id, populate_existing=True)
    if ticket is None:
        return
    try:
        pool.put(redis, entry_of(session, ticket))
    except RedisError as exc:
        log.warning("pool_mirror_skipped", ticket_id=ticket_id, error=str(exc))


# --- rebuild and check ------------------------------------------------------

def branch_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Region.id).where(Region.kind == RegionKind.BRANCH).order_by(Region.id)))


def _picture(session: Session, branch_id: int) -> tuple[list[pool.Entry], dict[int, int]]:
    """What PostgreSQL says the branch's pool should hold: grabbable and accepted tickets, and who holds how many."""
    # One statement, so one snapshot: counted apart, a grab committed between the two reads was
    # both left pending and counted as held, and the catch-up's put then counted it again.
    # A holder's limit counts all their active tickets, in any branch: counted once per holder of the branch
    # (a count per accepted row took 45 s for 48,000 open tickets) and joined to their rows.
    holders = select(Ticket.technician_id).where(Ticket.branch_id == branch_id,
                                                 Ticket.state == TicketState.ACCEPTED)
    held_by = (select(Ticket.technician_id.label("holder"), func.count().label("held"))
               .where(Ticket.state == TicketState.ACCEPTED, Ticket.technician_id.in_(holders))
               .group_by(Ticket.technician_id).subquery())
    rows = session.execute(
        select(*_MIRRORED, held_by.c.held)
        .outerjoin(held_by, and_(held_by.c.holder == Ticket.technician_id, Ticket.state == TicketState.ACCEPTED))
        .where(Ticket.branch_id == branch_id, Ticket.state.in_([*GRABBABLE, TicketState.ACCEPTED]))
        .order_by(Ticket.id)).all()
    entries = [entry_of(session, row) for row in rows]
    held = {row.technician_id: int(row.held) for row in rows if row.held is not None}
    return entries, held


def rebuild_branch(session: Session, redis: Redis, branch_id: int) -> int | None:
    """Rebuild one branch's pool from PostgreSQL; None if another process is rebuilding it.

    Raises: RedisError.
    """
    if not pool.take_rebuild_turn(redis, branch_id, ttl_s=REBUILD_TURN_S):
        return None
    try:
        since = datetime.now(UTC) - CATCH_UP
        entries, held = _picture(session, branch_id)
        built = pool.rebuild(redis, branch_id, entries, held, at=time.time())
        _catch_up(session, redis, branch_id, since)
        return built
    finally:
        pool.end_rebuild_turn(redis, branch_id)


def _catch_up(session: Session, redis: Redis, branch_id: int, since: datetime) -> None:
    """Mirror again what changed while the picture was read.

    A grab that committed after the picture was read but mirrored itself
    before the rebuild landed would be undone by it (the pool would offer an
    accepted ticket and miscount its holder until the next full rebuild).
    Puts never take a ticket back to an older version, so putting every
    recently changed ticket again is safe.
    """
    changed = session.execute(select(*_MIRRORED).where(Ticket.branch_id == branch_id, Ticket.updated_at >= since))
    for ticket in changed:
        pool.put(redis, entry_of(session, ticket))


def rebuild(session: Session, redis: Redis, branches: Iterable[int] | None = None) -> dict[int, int]:
    """Rebuild the pool of every branch (or the given ones); returns tickets mirrored per branch.

    Raises: RedisError.
    """
    done: dict[int, int] = {}
    for branch_id in branches if branches is not None else branch_ids(session):
        built = rebuild_branch(session, redis, branch_id)
        if built is not None:
            done[branch_id] = built
    return done


@dataclass(frozen=True)
class Drift:
    branch_id: int
    ticket_id: int | None
    problem: str

    def __str__(self) -> str:
        subject = f"ticket {self.ticket_id}" if self.ticket_id is not None else "pool"
        return f"branch {self.branch_id}, {subject}: {self.problem}"


def check(session: Session, redis: Redis) -> list[Drift]:
    """Every difference between the pool and PostgreSQL (claims in flight are not drift).

    Raises: RedisError.
    """
    drift: list[Drift] = []
    for branch_id in branch_ids(session):
        entries, held = _picture(session, branch_id)
        drift.extend(_branch_drift(branch_id, {e.ticket_id: e for e in entries}, held,
                                   pool.snapshot(redis, branch_id)))
    return drift


def lasting_drift(session: Session, redis: Redis, *, settle: Callable[[], None]) -> list[Drift]:
    """The drift `check` finds twice, the same both times, with `settle` (a wait) between the looks.

    On a live service a commit's mirror lands just after it, and a sweep's
    batch of timeouts mirrors ticket by ticket: one look taken between them
    reports drift that heals by itself a moment later. What is still there,
    unchanged, after a settle is drift.

    Raises: RedisError.
    """
    first = check(session, redis)
    if not first:
        return []
    settle()  # read committed: the second look's statements see what was committed meanwhile
    return [drift for drift in check(session, redis) if drift in first]


def _branch_drift(branch_id: int, expected: dict[int, pool.Entry], held: dict[int, int],
                  mirror: pool.Mirror) -> list[Drift]:
    if not mirror.built:
        return [Drift(branch_id, None, "not built")]
    drift = [Drift(branch_id, tid, f"in the pool as {h.get('state')} but not open in PostgreSQL")
             for tid, h in mirror.tickets.items() if tid not in expected]
    for tid, entry in expected.items():
        found = mirror.tickets.get(tid)
        problem = _entry_drift(entry, found, in_geo=tid in mirror.grabbable)
        if problem:
            drift.append(Drift(branch_id, tid, problem))
    if _claims_in_flight(mirror):  # a claim counts as held before PostgreSQL knows of it
        return drift
    holders = {e.holder for e in expected.values() if e.holder is not None}
    for technician_id in holders | set(mirror.held):
        if mirror.held.get(technician_id, 0) != held.get(technician_id, 0):
            drift.append(Drift(branch_id, None, f"technician {technician_id} holds "
                                                f"{held.get(technician_id, 0)}, the pool counts "
                                                f"{mirror.held.get(technician_id, 0)}"))
    return drift


def _claims_in_flight(mirror: pool.Mirror) -> bool:
    return any(h.get("state") == pool.CLAIMED for h in mirror.tickets.values())


def _entry_drift(entry: pool.Entry, found: dict[str, str] | None, *, in_geo: bool) -> str | None:
    if found is None:
        return f"{entry.state} in PostgreSQL, missing from the pool"
    if found.get("state") == pool.CLAIMED:
        return None if entry.state in GRABBABLE else f"claimed in the pool, {entry.state} in PostgreSQL"
    if found.get("state") != entry.state or int(found.get("v", 0)) != entry.version:
        return (f"pool has {found.get('state')} v{found.get('v')}, "
                f"PostgreSQL has {entry.state} v{entry.version}")
    if entry.state == pool.ACCEPTED and found.get("by") != str(entry.holder):
        return f"pool says held by {found.get('by')}, PostgreSQL by {entry.holder}"
    if entry.state in GRABBABLE and not in_geo:
        return "grabbable but not listed near anyone"
    if entry.state not in GRABBABLE and in_geo:
        return "listed although not grabbable"
    return None


def repair(session: Session, redis: Redis) -> dict[str, int]:
    """Return dead claims to the pool and rebuild branches whose pool is gone (flushed, restarted).

    Raises: RedisError.
    """
    returned = rebuilt = 0
    for branch_id in branch_ids(session):
        if not pool.is_built(redis, branch_id):
            rebuilt += rebuild_branch(session, redis, branch_id) is not None
        else:
            returned += len(pool.expire_leases(redis, branch_id))
    return {"returned": returned, "rebuilt": rebuilt}
