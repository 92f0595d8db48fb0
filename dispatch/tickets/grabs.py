"""抢单: Redis arbitrates a grab, PostgreSQL commits the winner, the pool mirrors the result.

The pool's Lua script turns losers away without a PostgreSQL statement, so a
storm of a thousand taps costs the database one transaction. The winner's
claim is then committed with the ticket's PostgreSQL version as the fence;
if that commit fails the claim is undone. When Redis cannot decide (down,
flushed, or the ticket is not in the pool) PostgreSQL arbitrates alone:
slower, still exactly one winner.
"""

import math
from dataclasses import dataclass

import structlog
from geoalchemy2 import Geography
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from dispatch.kernel.auth import Actor
from dispatch.kernel.db import UnitOfWork
from dispatch.kernel.errors import OutOfScope
from dispatch.kernel.settings import Settings
from dispatch.tickets import mirror, queries, service
from dispatch.tickets.errors import AlreadyTaken, GrabbingTooFast, LimitReached, LocationUnknown, NotOnDuty
from dispatch.tickets.lifecycle import GRABBABLE, Step
from dispatch.tickets.models import Ticket, TicketState
from dispatch.tickets.permissions import require_manager
from geo.latlng import LatLng
from geo.points import sql_point
from grab_pool import pool
from technicians import live, presence
from technicians.presence import TechnicianRef

log = structlog.get_logger()


def grabber_of(ref: TechnicianRef) -> pool.Grabber | None:
    """None for a technician whose scope is the whole company: no branch pool holds their tickets."""
    if ref.branch_id is None:
        return None
    return pool.Grabber(technician_id=ref.id, branch_id=ref.branch_id, scope_path=ref.scope_path,
                        max_active=ref.max_active)


async def admit(redis: AsyncRedis, ref: TechnicianRef, *, settings: Settings, now_s: float) -> None:
    """Turn a grab away before the pool is asked: too many taps, off duty, or no fresh position.

    The pool offers tickets by where a technician is, so one who is off duty
    or whose phone has not said where it is for `presence.freshness_s` may
    not take one (unless their branch allows it). With Redis down none of it
    can be read and the grab goes on: PostgreSQL arbitrates alone then.

    Raises: GrabbingTooFast, NotOnDuty, LocationUnknown.
    """
    cfg = settings.pool
    try:
        gate = await live.grab_gate(redis, ref.keys, ref.id, window_ms=cfg.grab_window_s * 1000)
    except RedisError as exc:
        log.warning("grab_gate_unavailable", technician_id=ref.id, error=f"{type(exc).__name__}: {exc}")
        return
    if gate.taps > cfg.grab_taps:
        raise GrabbingTooFast(f"at most {cfg.grab_taps} grabs per {cfg.grab_window_s} s; wait a moment",
                              retry_after=max(1, math.ceil(gate.window_left_ms / 1000)))
    if ref.branch_id in cfg.grab_anywhere_branch_ids:
        return
    if not gate.on_duty:
        raise NotOnDuty("go on duty first: only technicians on duty grab tickets")
    if gate.seen_at is None or now_s - gate.seen_at > settings.presence.freshness_s:
        raise LocationUnknown("send your location first: tickets are grabbed by where you are")


def refuse(claim: pool.Claim, ticket_id: int, grabber: pool.Grabber) -> None:
    """Turn a loser away with what the pool knows; returns only if the pool did not refuse.

    Raises: AlreadyTaken, OutOfScope, LimitReached.
    """
    if claim.outcome is pool.Outcome.TAKEN:
        raise AlreadyTaken(f"ticket {ticket_id} is already taken", state=TicketState.ACCEPTED)
    if claim.outcome is pool.Outcome.OUT_OF_SCOPE:
        raise OutOfScope(f"ticket {ticket_id} is outside your grab scope")
    if claim.outcome is pool.Outcome.LIMIT:
        raise LimitReached(f"you hold {grabber.max_active} active tickets already", max_active=grabber.max_active)


def claim(redis: Redis, grabber: pool.Grabber, ticket_id: int, settings: Settings) -> pool.Claim:
    return pool.grab(redis, grabber, ticket_id, request_id=pool.new_request_id(), lease_ms=settings.pool.lease_ms)


def settle(unit_of_work: UnitOfWork, redis: Redis, *, claimed: pool.Claim, grabber: pool.Grabber, ticket_id: int,
           actor: Actor, settings: Settings) -> Ticket:
    """Commit a claim the pool did not refuse (won, or undecided) and mirror the outcome.

    Raises:
        TicketNotFound, OutOfScope, AlreadyTaken, LimitReached, InvalidTransition, NotATechnician.
    """
    for _ in range(2):
        try:
            return _commit(unit_of_work, redis, claimed=claimed, grabber=grabber, ticket_id=ticket_id, actor=actor,
                           settings=settings)
        except service.StaleMirror:
            # The pool mirrored an older version (a retype, a time-out it has not seen):
            # refresh the mirror and let the pool arbitrate again on the current version.
            _undo(unit_of_work, redis, claimed, grabber, ticket_id)
            claimed = claim(redis, grabber, ticket_id, settings)
            refuse(claimed, ticket_id, grabber)
    # Twice stale: the ticket changes faster than the pool follows; PostgreSQL decides.
    return _commit(unit_of_work, redis, claimed=pool.Claim(pool.Outcome.MISSING), grabber=grabber, ticket_id=ticket_id,
                   actor=actor, settings=settings)


def _commit(unit_of_work: UnitOfWork, redis: Redis, *, claimed: pool.Claim, grabber: pool.Grabber, ticket_id: int,
            actor: Actor, settings: Settings) -> Ticket:
    fence = claimed.version if claimed.outcome is pool.Outcome.WON else None
    try:
        with unit_of_work() as session:
            ticket = service.grab(session, redis, ticket_id=ticket_id, technician_id=grabber.technician_id,
                                  actor=actor, settings=settings, fence=fence)
    except service.StaleMirror:
        raise
    except Exception:
        _undo(unit_of_work, redis, claimed, grabber, ticket_id)
        raise
    if claimed.outcome is pool.Outcome.UNBUILT:
        _rebuild(unit_of_work, redis, grabber.branch_id)
    return ticket


def _undo(unit_of_work: UnitOfWork, redis: Redis, claimed: pool.Claim, grabber: pool.Grabber, ticket_id: int) -> None:
    """The commit did not happen: give the claim back and mirror what PostgreSQL says now."""
    if claimed.outcome is pool.Outcome.WON:
        pool.unclaim(redis, branch_id=grabber.branch_id, ticket_id=ticket_id, technician_id=grabber.technician_id,
                     request_id=claimed.request_id)
    if claimed.outcome is not pool.Outcome.UNAVAILABLE:
        with unit_of_work() as session:
            mirror.mirror_now(session, redis, ticket_id)


def _rebuild(unit_of_work: UnitOfWork, redis: Redis, branch_id: int) -> None:
    """The pool was gone (flushed, Redis restarted): rebuild it now rather than at the next periodic run."""
    try:
        with unit_of_work() as session:
            mirror.rebuild_branch(session, redis, branch_id)
    except Exception as exc:
        log.warning("pool_rebuild_failed", branch_id=branch_id, error=f"{type(exc).__name__}: {exc}")


def assign(session: Session, redis: Redis, *, ticket: Ticket, technician_id: int, actor: Actor, note: str | None,
           settings: Settings) -> Step:
    """Force-assign or reassign; a pooled ticket is claimed in the pool first, so a grab mid-commit wins cleanly.

    If the request's transaction fails after the claim, the claim's lease runs
    out and the ticket returns to the pool.

    Raises: Forbidden, InvalidInput, InvalidTransition, AlreadyTaken.
    """
    if ticket.state not in GRABBABLE:
        return service.assign(session, redis, ticket=ticket, technician_id=technician_id, actor=actor, note=note,
                              settings=settings)
    require_manager(actor, "assign tickets")
    claimed = pool.assign(redis, branch_id=ticket.branch_id, ticket_id=ticket.id, technician_id=technician_id,
                          request_id=pool.new_request_id(), lease_ms=settings.pool.lease_ms)
    if claimed.outcome is pool.Outcome.TAKEN:
        raise AlreadyTaken(f"ticket {ticket.number} was just taken by technician {claimed.holder}",
                           state=TicketState.ACCEPTED)
    try:
        return service.assign(session, redis, ticket=ticket, technician_id=technician_id, actor=actor, note=note,
                              settings=settings)
    except Exception:
        if claimed.outcome is pool.Outcome.WON:
            pool.unclaim(redis, branch_id=ticket.branch_id, ticket_id=ticket.id, technician_id=technician_id,
                         request_id=claimed.request_id)
        raise


@dataclass(frozen=True)
class Nearby:
    """A page of the pool near a technician, and how many grabbable tickets lie within the radius in all."""

    found: list[tuple[Ticket, float]]
    total: int


def near_me(session: Session, redis: Redis, *, ref: TechnicianRef, radius_m: int, limit: int,
            within_ring: bool) -> Nearby:
    """Grabbable tickets in the technician's scope within `radius_m` of their position, the most urgent first,
    then the nearest; at most `limit` of them, with the count of all. With `within_ring`, a ticket whose rings
    still widen is listed only as far as its ring has reached.

    The pool's geo set orders them; PostgreSQL, the truth, says which are
    still grabbable and in scope. With the pool down or unbuilt PostgreSQL's
    GiST index does both.

    Raises: LocationUnknown (no position yet: the phone has not sent one).
    """
    here = presence.position_of(session, redis, ref)
    if here is None:
        raise LocationUnknown("send your location first: the pool lists tickets near you")
    in_scope = queries.in_pool_of(ref)
    if within_ring:
        in_scope = and_(in_scope, _ring_reaches(here))
    within = func.ST_DWithin(cast(Ticket.location, Geography), cast(sql_point(here), Geography), radius_m)
    hits = _near_in_pool(redis, ref, here, radius_m, limit)
    if hits is None:
        distance = func.ST_Distance(cast(Ticket.location, Geography), cast(sql_point(here), Geography))
        rows = session.execute(select(Ticket, distance).where(in_scope, within)
                               .order_by(Ticket.priority, distance).limit(limit))
        found = [(ticket, float(metres)) for ticket, metres in rows]
    else:
        by_id = {t.id: t for t in session.scalars(select(Ticket).where(Ticket.id.in_(list(hits)), in_scope))}
        found = sorted(((by_id[tid], metres) for tid, metres in hits.items() if tid in by_id),
                       key=lambda near: (near[0].priority, near[1]))
    # Counted only when the page is full: the person is told how many more lie beyond it.
    total = len(found) if len(found) < limit else session.scalar(
        select(func.count()).select_from(Ticket).where(in_scope, within)) or 0
    return Nearby(found=found, total=max(total, len(found)))


def _ring_reaches(here: LatLng) -> ColumnElement[bool]:
    """The ticket's rings no longer widen (or never ran), or its current ring reaches `here`: the nearest, offered
    it, are not raced to it by whoever far away looks at the pool first."""
    return or_(Ticket.next_ring_at.is_(None), Ticket.ring_radius_m.is_(None),
               func.ST_DWithin(cast(Ticket.location, Geography), cast(sql_point(here), Geography),
                               Ticket.ring_radius_m))


def _near_in_pool(redis: Redis, ref: TechnicianRef, here: LatLng, radius_m: int,
                  limit: int) -> dict[int, float] | None:
    if ref.branch_id is None:
        return None
    try:
        if not pool.is_built(redis, ref.branch_id):
            return None
        return dict(pool.near(redis, ref.branch_id, here, radius_m=radius_m, count=limit))
    except RedisError:
        return None
