"""System dispatch as a branch's choice (issue 18): `grab` (抢单, the default), `assign` (系统派单: the best
eligible technician at intake) or `hybrid` (offered first; the system assigns after the branch's N seconds
unanswered). A technician may decline a system assignment with a reason (拒单); the ticket then goes to the next
best, never back to anyone who declined it.

The best is who the offers' own search puts first (technicians.nearest): on duty, fresh position, every skill,
on shift, below max_active, in grab scope, nearest, and among the near-equal (OFFER__TIE_BAND_M) the one with
fewer labor hours this period, then fewer active tickets.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.audit import service as audit
from dispatch.audit.models import AuditAction
from dispatch.kernel.auth import Actor, PrincipalKind, Role
from dispatch.kernel.cache import Remembered
from dispatch.kernel.errors import InvalidInput
from dispatch.kernel.settings import Settings
from dispatch.tickets import handover, load
from dispatch.tickets.errors import NotDeclinable
from dispatch.tickets.lifecycle import GRABBABLE, Action, Step, transition
from dispatch.tickets.models import (
    BranchDispatch,
    DeclineReason,
    DispatchMode,
    Ticket,
    TicketDecline,
    TicketType,
)
from dispatch.tickets.permissions import MANAGERS, require, require_holder
from dispatch.tickets.sla import get_region
from geo import regions
from geo.models import Region, RegionKind
from geo.points import from_wkb
from technicians.models import Technician
from technicians.nearest import find_nearest

log = structlog.get_logger()

SYSTEM = Actor(kind=PrincipalKind.USER, id=0, role=Role.ADMIN, label="system:dispatch")


@dataclass(frozen=True)
class BranchMode:
    """A branch's dispatch mode as intake and the sweep read it; `hybrid_after_s` is the one in force."""

    branch_id: int
    mode: DispatchMode
    hybrid_after_s: int
    changed_by: str | None = None
    changed_at: datetime | None = None


# Read by every intake; changed a few times a year: another process sees a change within this.
_modes: Remembered[int, BranchMode] = Remembered(ttl_s=10, maxsize=1000)


def mode_of(session: Session, branch_id: int, *, settings: Settings) -> BranchMode:
    """The branch's dispatch mode, remembered; `grab` for a branch that never chose."""
    def load() -> BranchMode:
        row = session.get(BranchDispatch, branch_id)
        if row is None:
            return BranchMode(branch_id=branch_id, mode=DispatchMode.GRAB, hybrid_after_s=settings.offer.hybrid_after_s)
        return BranchMode(branch_id=branch_id, mode=row.mode,
                          hybrid_after_s=row.hybrid_after_s or settings.offer.hybrid_after_s,
                          changed_by=row.changed_by, changed_at=row.changed_at)

    return _modes.get_or_load(branch_id, load)


def branch_modes(session: Session, *, actor: Actor, settings: Settings) -> list[tuple[Region, BranchMode]]:
    """Every branch the caller may see, with its dispatch mode."""
    visible = regions.list_regions(session, scope=actor.scope)
    return [(region, mode_of(session, region.id, settings=settings))
            for region in visible if region.kind is RegionKind.BRANCH]


def set_mode(session: Session, *, region_id: int, actor: Actor, mode: DispatchMode, hybrid_after_s: int | None,
             settings: Settings) -> BranchMode:
    """Choose a branch's dispatch mode, audited; tickets taken in from now on follow it.

    Raises:
        Forbidden: only admins and the branch's dispatchers choose.
        RegionNotFound: no such region in the caller's regions.
        InvalidInput: the region is not a branch.
    """
    require(actor, MANAGERS, "change a branch's dispatch mode")
    region = get_region(session, region_id, actor=actor)
    if region.kind is not RegionKind.BRANCH:
        raise InvalidInput("region_id", f"{region.name} is a {region.kind}: a dispatch mode is a branch's")
    # One change of a branch's mode at a time: two at once (a mode and its wait, sent together) both found no
    # row, both inserted it, and one answered 500.
    session.execute(select(Region.id).where(Region.id == region.id).with_for_update())
    row = session.get(BranchDispatch, region.id)
    before = row.mode if row is not None else DispatchMode.GRAB
    row = row or BranchDispatch(region_id=region.id)
    row.mode, row.hybrid_after_s = mode, hybrid_after_s
    row.changed_by, row.changed_at = actor.label, datetime.now(UTC)
    session.add(row)
    audit.record(session, action=AuditAction.DISPATCH_MODE_CHANGED, actor=actor, target=("region", region.id),
                 hybrid_after_s=hybrid_after_s, **{"from": before.value, "to": mode.value})
    session.flush()
    _modes.forget(region.id)
    return mode_of(session, region.id, settings=settings)


def hybrid_deadline(mode: BranchMode, now: datetime) -> datetime | None:
    """When the system assigns a new ticket of this branch that nobody grabbed; None outside hybrid mode."""
    return now + timedelta(seconds=mode.hybrid_after_s) if mode.mode is DispatchMode.HYBRID else None


def rearm(session: Session, ticket: Ticket, *, settings: Settings, now: datetime) -> None:
    """A ticket back in a hybrid branch's pool (handed back, or declined with nobody to take it) waits the
    branch's N seconds again before the system assigns it."""
    ticket.system_assign_at = hybrid_deadline(mode_of(session, ticket.branch_id, settings=settings), now)
    session.flush()


# --- the system's assignment ---------------------------------------------------------------------

def decliners(session: Session, ticket_id: int) -> set[int]:
    return set(session.scalars(select(TicketDecline.technician_id).where(TicketDecline.ticket_id == ticket_id)))


def _candidates(session: Session, redis: Redis, ticket: Ticket, *, settings: Settings, now: datetime,
                skills: Sequence[str] | None, grid_path: str | None) -> list[int]:
    if skills is None:
        skills = session.execute(select(TicketType.skills).where(TicketType.code == ticket.type_code)).scalar_one()
    path = grid_path or session.execute(select(Region.path).where(Region.id == ticket.region_id)).scalar_one()
    found = find_nearest(redis, branch_id=ticket.branch_id, point=from_wkb(ticket.location), k=settings.offer.k,
                         radius_m=settings.offer.max_radius_m, skills=skills, ticket_path=path, now=now,
                         tz=settings.timezone, presence=settings.presence, offer=settings.offer,
                         exclude=decliners(session, ticket.id) if ticket.id is not None else None)
    return [c.technician_id for c in found]


_TAKER_LOAD = select(*load.TAKER_LOAD)


def _free(session: Session, technician_id: int, *, now: datetime,
          tz: str) -> tuple[Technician, load.Load] | None:
    """The technician, locked, with their load once this ticket counts, if they may take one more ticket now.

    SKIP LOCKED: a technician whose row is locked is grabbing (a grab locks its grabber first, then the ticket),
    while the system holds the ticket and would lock them second; waiting could deadlock, so the next best gets it.
    """
    technician = session.scalars(select(Technician).where(Technician.id == technician_id, Technician.active)
                                 .with_for_update(skip_locked=True)).first()
    if technician is None:
        return None
    held, worked, region_path = session.execute(_TAKER_LOAD, load.taker(technician, now=now, tz=tz)).one()
    if held >= technician.max_active:
        return None
    return technician, load.after_one_more(held, worked, region_path)


def system_assign(session: Session, redis: Redis, ticket: Ticket, *, settings: Settings, now: datetime,
                  skills: Sequence[str] | None = None, grid_path: str | None = None) -> int | None:
    """Assign a grabbable ticket to the best eligible technician who never declined it; returns who, or None
    (nobody eligible, or the live index is down) and the ticket stays in the pool as it was.

    Raises: AlreadyTaken (someone grabbed it meanwhile).
    """
    try:
        candidates = _candidates(session, redis, ticket, settings=settings, now=now, skills=skills,
                                 grid_path=grid_path)
    except RedisError as exc:
        log.warning("system_assign_deferred", ticket_id=ticket.id, error=str(exc))
        return None
    for technician_id in candidates:
        free = _free(session, technician_id, now=now, tz=settings.timezone)
        if free is None:
            continue
        technician, taken = free
        transition(session, ticket, action=Action.SYSTEM_ASSIGN, actor=SYSTEM, technician_id=technician.id,
                   location=handover.whereabouts(redis, ticket, technician.id),
                   changes={"technician_id": technician.id, "accepted_at": now, "arrived_at": None,
                            "system_assigned": True})
        handover.after_handover(session, redis, ticket, settings=settings, taken_by=technician.id,
                                taken_load=(technician, taken))
        return technician.id
    return None


def due_hybrid(session: Session, *, now: datetime, limit: int) -> list[Ticket]:
    """Grabbable tickets whose hybrid wait is over; locked, skipping those another sweeper (or intake) holds."""
    return list(session.scalars(
        select(Ticket).where(Ticket.system_assign_at <= now, Ticket.state.in_(GRABBABLE))
        .order_by(Ticket.system_assign_at).limit(limit).with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)))


def sweep_hybrid(session: Session, redis: Redis, *, settings: Settings, now: datetime, limit: int) -> int:
    """Assign every unanswered ticket whose hybrid wait is over; returns how many were assigned.

    The due rows stay locked until the sweep commits: a grab racing it waits on the row, then finds it taken
    (exactly one owner). A ticket nobody can take now is tried again a ring's step later.
    """
    assigned = 0
    for ticket in due_hybrid(session, now=now, limit=limit):
        if system_assign(session, redis, ticket, settings=settings, now=now) is None:
            ticket.system_assign_at = now + timedelta(seconds=settings.offer.step_s)
        else:
            assigned += 1
    session.flush()
    return assigned


# --- 拒单 ----------------------------------------------------------------------------------------------

def decline(session: Session, redis: Redis, *, ticket: Ticket, actor: Actor, reason: DeclineReason,
            note: str | None, settings: Settings) -> Step:
    """Turn down a system assignment, with a reason: recorded, and the ticket goes to the next best (never back
    to a decliner) or, with nobody eligible or the branch back in grab mode, into the pool.

    Raises: NotATechnician, NotYourTicket, InvalidTransition (not accepted), NotDeclinable (not the system's
    assignment, arrived already, or past the decline window).
    """
    technician = require_holder(session, ticket, actor, Action.DECLINE)
    now = datetime.now(UTC)
    _require_declinable(ticket, now=now, window_s=settings.offer.decline_window_s)
    step = transition(session, ticket, action=Action.DECLINE, actor=actor, technician_id=technician.id,
                      note=note, data={"reason_code": reason.value},
                      changes={"technician_id": None, "accepted_at": None, "arrived_at": None})
    session.add(TicketDecline(ticket_id=ticket.id, technician_id=technician.id, branch_id=ticket.branch_id,
                              reason_code=reason, note=note, at=now))
    session.flush()
    handover.after_handover(session, redis, ticket, settings=settings, taken_by=None, also=technician.id)
    if mode_of(session, ticket.branch_id, settings=settings).mode is not DispatchMode.GRAB and \
            system_assign(session, redis, ticket, settings=settings, now=now) is None:
        rearm(session, ticket, settings=settings, now=now)
    return step


def _require_declinable(ticket: Ticket, *, now: datetime, window_s: int) -> None:
    if not ticket.system_assigned:
        raise NotDeclinable(f"ticket {ticket.number} was not assigned by the system: hand it back instead",
                            state=ticket.state)
    if ticket.arrived_at is not None:
        raise NotDeclinable(f"you arrived at ticket {ticket.number} already", state=ticket.state)
    if ticket.accepted_at is not None and now - ticket.accepted_at > timedelta(seconds=window_s):
        raise NotDeclinable(f"a system assignment may be declined within {window_s // 60} min", state=ticket.state)
