"""Time limits: SLA due times, the sweep that acts on them, escalation chains and surge mode.

Due times live in ticket columns, so the worker's periodic sweep finds what is
due with small partial indexes; nothing hangs on per-ticket scheduled jobs, and
a worker that was down catches up within one sweep of coming back. Every
checkpoint (warning, timeout, resolution breach, escalation step) is claimed
with FOR UPDATE SKIP LOCKED and marked done in the same transaction as its
event row and outbox notification: two sweepers never send one twice, and a
sweep that dies sends nothing it did not record.

A pending ticket past its response SLA becomes timed_out (still grabbable); an
accepted one past its resolution SLA is flagged (`sla_breached_at`). Either
starts the escalation chain of the ticket's region, which climbs one step at
each step's delay after the breach until someone acts: the timed-out ticket is
taken or invalidated, the breached one completed, released or invalidated.

A step may name staff notice channels (DingTalk, SMS, ...): the sweep is then given a `Reach`
(dispatch/notices implements it) that writes the notices in the same transaction, so a step's messages
exist exactly when its event does. A step whose recipients none can be reached now (no such channel set
up, quiet hours) is passed at once to the next step, and its event says so.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from redis import Redis
from sqlalchemy import any_, bindparam, delete, func, literal, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from dispatch.accounts.models import NoticeChannel, User
from dispatch.kernel.auth import Actor, PrincipalKind, Role
from dispatch.kernel.errors import Forbidden, InvalidInput, NotFound
from dispatch.kernel.pagination import PageParams
from dispatch.kernel.settings import SlaSettings
from dispatch.tickets import mirror
from dispatch.tickets.errors import InvalidTransition
from dispatch.tickets.lifecycle import Action, record, transition
from dispatch.tickets.models import EscalationStep, Priority, SurgeSwitch, Ticket, TicketState, TicketType
from dispatch.tickets.priority import PricedType, sla_profile
from geo import regions
from geo.models import Region, RegionKind

S = TicketState
SYSTEM = Actor(kind=PrincipalKind.USER, id=0, role=Role.ADMIN, label="system:sla")
# Who switches surge mode and acknowledges escalations.
DISPATCHERS = frozenset({Role.ADMIN, Role.DISPATCHER})
# Position of each level in a grid's materialised path (/company/branch/grid/).
DEPTH = {RegionKind.COMPANY: 0, RegionKind.BRANCH: 1, RegionKind.GRID: 2}


class SlaKind(StrEnum):
    RESPONSE = "response"
    RESOLUTION = "resolution"


class RegionNotFound(NotFound):
    code = "region_not_found"
    title = "No such region"


# --- timing ----------------------------------------------------------------------------

class SlaMinutes(Protocol):
    """A ticket type's two limits: the ORM row, or the values a process remembers of it."""

    @property
    def response_sla_min(self) -> int: ...

    @property
    def resolution_sla_min(self) -> int: ...


@dataclass(frozen=True)
class Surge:
    """A surge switch as timing reads it."""

    id: int
    response_factor: float
    resolution_factor: float

    @classmethod
    def of(cls, switch: SurgeSwitch) -> "Surge":
        return cls(switch.id, switch.response_factor, switch.resolution_factor)


def timing(ticket_type: SlaMinutes, *, created_at: datetime, surge: Surge | None,
           warning_fraction: float) -> dict[str, Any]:
    """The ticket columns an SLA profile sets: due times, warning times, and the surge that applied."""
    response = timedelta(minutes=ticket_type.response_sla_min * (surge.response_factor if surge else 1.0))
    resolution = timedelta(minutes=ticket_type.resolution_sla_min * (surge.resolution_factor if surge else 1.0))
    return {"response_due_at": created_at + response, "response_warn_at": created_at + response * warning_fraction,
            "resolution_due_at": created_at + resolution,
            "resolution_warn_at": created_at + resolution * warning_fraction,
            "sla_surge_id": surge.id if surge else None}


def retiming(ticket: Ticket, ticket_type: PricedType, *, surge: Surge | None, cfg: SlaSettings,
             now: datetime, kinds: Sequence[SlaKind] = tuple(SlaKind), level: Priority | None = None) -> dict[str, Any]:
    """New SLA columns of `kinds` for an open ticket (retype, new priority, surge), from its type's profile at
    `level` (its own priority by default); a warning whose new time lies ahead goes out again."""
    times = timing(sla_profile(ticket_type, level or ticket.priority, cfg), created_at=ticket.created_at,
                   surge=surge, warning_fraction=cfg.warning_fraction)
    values: dict[str, Any] = {"sla_surge_id": times["sla_surge_id"]}
    for kind in kinds:
        values[f"{kind}_due_at"], values[f"{kind}_warn_at"] = times[f"{kind}_due_at"], times[f"{kind}_warn_at"]
        if times[f"{kind}_warn_at"] > now:
            values[f"{kind}_warned_at"] = None
    return values


def surge_of(session: Session, ticket: Ticket) -> Surge | None:
    """The surge that timed this ticket (None: the standard profile)."""
    switch = session.get(SurgeSwitch, ticket.sla_surge_id) if ticket.sla_surge_id is not None else None
    return Surge.of(switch) if switch is not None else None


def current_surge(session: Session, region_path: str) -> Surge | None:
    """The surge in force at a region: the most specific region on its path whose latest switch is on."""
    path = regions.path_steps(region_path)
    on = {row.region_id: Surge(row.id, row.response_factor, row.resolution_factor)
          for row in session.connection().execute(_SURGES_ON, {"path": path})}
    return next((on[region_id] for region_id in reversed(path) if region_id in on), None)


# Built once and sent on the connection, columns only: every intake asks, and building the statement or
# loading the entity cost more than sending it.
_LATEST_ON_PATH = (select(func.max(SurgeSwitch.id)).where(SurgeSwitch.region_id.in_(bindparam("path", expanding=True)))
                   .group_by(SurgeSwitch.region_id).scalar_subquery())
_SURGES_ON = select(SurgeSwitch.id, SurgeSwitch.region_id, SurgeSwitch.response_factor,
                    SurgeSwitch.resolution_factor).where(SurgeSwitch.id.in_(_LATEST_ON_PATH), SurgeSwitch.on)


# --- escalation chains -------------------------------------------------------------------

@dataclass(frozen=True)
class Rung:
    """One step of an escalation chain, as values (from the table or the default chain)."""

    level: int
    title: str
    delay_min: int
    role: Role | None = None
    reach: RegionKind | None = None
    user_id: int | None = None
    channels: tuple[NoticeChannel, ...] = ()


@dataclass(frozen=True)
class Reached:
    """A recipient a step's notice went to, and through which channels."""

    user_id: int
    channels: tuple[NoticeChannel, ...]


class Reach(Protocol):
    """Staff notices for the sweep's checkpoints, written in the sweep's transaction."""

    def escalation(self, session: Session, ticket: Ticket, rung: Rung, users: Sequence[User], *,
                   now: datetime) -> list[Reached]:
        """Notify a step's recipients through its channels; returns who could be reached now."""
        ...

    def warning(self, session: Session, ticket: Ticket, rung: Rung, users: Sequence[User], *, kind: SlaKind,
                now: datetime) -> None:
        """Notify (or hold for a digest) the first step's recipients that an SLA is about to pass."""
        ...


DEFAULT_TARGETS = (
    ("网格值机员", Role.DISPATCHER, RegionKind.GRID),
    ("分公司值机员", Role.DISPATCHER, RegionKind.BRANCH),
    # PRODUCT.md gives payroll and managers one row of permissions: the branch's payroll role is its manager.
    ("分公司经理", Role.PAYROLL, RegionKind.BRANCH),
    ("总部", Role.ADMIN, RegionKind.COMPANY),
)


def default_chain(cfg: SlaSettings) -> list[Rung]:
    """Grid dispatcher → branch dispatcher → branch manager → HQ, at the configured delays."""
    return [Rung(level=i + 1, title=title, delay_min=delay, role=role, reach=reach)
            for i, ((title, role, reach), delay) in enumerate(zip(DEFAULT_TARGETS, cfg.escalation_delays_min,
                                                                  strict=True))]


def chain_for(session: Session, region_path: str, cfg: SlaSettings) -> tuple[int | None, list[Rung]]:
    """The chain in force at a region and the region that defines it (None: the default chain).

    The most specific region on the path with steps of its own wins.
    """
    path = regions.path_steps(region_path)
    steps = session.scalars(select(EscalationStep).where(EscalationStep.region_id.in_(path))
                            .order_by(EscalationStep.level)).all()
    for region_id in reversed(path):
        own = [Rung(level=s.level, title=s.title, delay_min=s.delay_min, role=s.role, reach=s.reach,
                    user_id=s.user_id, channels=tuple(NoticeChannel(c) for c in s.channels))
               for s in steps if s.region_id == region_id]
        if own:
            return region_id, own
    return None, default_chain(cfg)


def recipients(session: Session, rung: Rung, region_path: str) -> list[User]:
    """The active users a step notifies for a ticket in the grid at `region_path`."""
    query = select(User).where(User.active).order_by(User.id)
    if rung.user_id is not None:
        return list(session.scalars(query.where(User.id == rung.user_id)))
    query = query.where(User.role == rung.role)
    if rung.role is Role.ADMIN:  # HQ sees every region
        return list(session.scalars(query))
    path = regions.path_steps(region_path)
    depth = DEPTH[rung.reach or RegionKind.BRANCH]
    if depth >= len(path):
        return []
    return list(session.scalars(query.where(literal(path[depth]) == any_(User.region_ids))))


# --- the sweep ----------------------------------------------------------------------------

@dataclass
class SweepResult:
    timed_out: list[int] = field(default_factory=list)  # ticket ids
    breached: int = 0
    warned: int = 0
    escalated: int = 0

    @property
    def total(self) -> int:
        return len(self.timed_out) + self.breached + self.warned + self.escalated


@dataclass
class _Chains:
    """Escalation chains looked up once per sweep (an admin may change them between sweeps)."""

    cfg: SlaSettings
    reach: Reach | None = None
    by_path: dict[str, list[Rung]] = field(default_factory=dict)

    def of(self, session: Session, ticket: Ticket) -> list[Rung]:
        path = mirror.grid_path(session, ticket.region_id)
        if path not in self.by_path:
            self.by_path[path] = chain_for(session, path, self.cfg)[1]
        return self.by_path[path]


def _claim(session: Session, due: Any, *conditions: ColumnElement[bool], limit: int) -> Sequence[Ticket]:
    # SKIP LOCKED: rows another sweeper (or a grab) holds are theirs; the locks
    # taken here last until commit, which also records that the checkpoint is done.
    return session.scalars(select(Ticket).where(*conditions).order_by(due).limit(limit)
                           .with_for_update(skip_locked=True).execution_options(populate_existing=True)).all()


def sweep(session: Session, redis: Redis, *, cfg: SlaSettings, now: datetime, limit: int,
          reach: Reach | None = None) -> SweepResult:
    """Act on every SLA checkpoint due by `now`: timeouts, resolution breaches, warnings, escalation steps.

    Breaches go first so that a ticket already late gets no warning, and the first
    escalation step (often due at once) goes out in the same sweep. With `reach`, steps
    and warnings naming channels send staff notices; without it they are events alone.
    """
    result, chains = SweepResult(), _Chains(cfg, reach)
    for ticket in _claim(session, Ticket.response_due_at, Ticket.state == S.PENDING, Ticket.response_due_at <= now,
                         limit=limit):
        _time_out(session, ticket, now=now, chain=chains.of(session, ticket), cfg=cfg)
        # Still in the pool, at its new state and version (mirrored once this transaction commits).
        mirror.mirror(session, redis, ticket)
        result.timed_out.append(ticket.id)
    for ticket in _claim(session, Ticket.resolution_due_at, Ticket.state == S.ACCEPTED,
                         Ticket.sla_breached_at.is_(None), Ticket.resolution_due_at <= now, limit=limit):
        _flag_breach(session, ticket, now=now, chain=chains.of(session, ticket), cfg=cfg)
        result.breached += 1
    result.warned += _warn(session, SlaKind.RESPONSE, S.PENDING, chains=chains, now=now, limit=limit)
    result.warned += _warn(session, SlaKind.RESOLUTION, S.ACCEPTED, chains=chains, now=now, limit=limit)
    for ticket in _claim(session, Ticket.next_escalation_at, Ticket.next_escalation_at <= now, limit=limit):
        result.escalated += _escalate(session, ticket, chains=chains, now=now)
    session.flush()
    return result


def _next_step_at(ticket: Ticket, breached_at: datetime, chain: list[Rung], level: int,
                  cfg: SlaSettings) -> datetime | None:
    """When the chain's step `level` is due; a P1's steps come sooner (at once by default)."""
    if level >= len(chain):
        return None
    scale = cfg.urgent_escalation_factor if ticket.priority is Priority.P1 else 1.0
    return breached_at + timedelta(minutes=chain[level].delay_min * scale)


def _time_out(session: Session, ticket: Ticket, *, now: datetime, chain: list[Rung], cfg: SlaSettings) -> None:
    transition(session, ticket, action=Action.TIME_OUT, actor=SYSTEM,
               note=f"response SLA passed at {ticket.response_due_at.isoformat()}",
               data={"due_at": ticket.response_due_at.isoformat()},
               changes={"timed_out_at": now, "escalation_level": 0,
                        "next_escalation_at": _next_step_at(ticket, now, chain, 0, cfg)})


def _flag_breach(session: Session, ticket: Ticket, *, now: datetime, chain: list[Rung], cfg: SlaSettings) -> None:
    ticket.sla_breached_at = now
    ticket.escalation_level = 0
    ticket.next_escalation_at = _next_step_at(ticket, now, chain, 0, cfg)
    due = ticket.resolution_due_at.isoformat()
    record(session, ticket, action=Action.SLA_BREACH, actor=SYSTEM, note=f"resolution SLA passed at {due}",
           data={"kind": SlaKind.RESOLUTION, "due_at": due}, feed_data={"kind": SlaKind.RESOLUTION, "due_at": due})


def _warn(session: Session, kind: SlaKind, state: TicketState, *, chains: _Chains, now: datetime, limit: int) -> int:
    warn_at, warned_at = getattr(Ticket, f"{kind}_warn_at"), getattr(Ticket, f"{kind}_warned_at")
    due_at = getattr(Ticket, f"{kind}_due_at")
    due = _claim(session, warn_at, Ticket.state == state, warned_at.is_(None), warn_at <= now, due_at > now,
                 limit=limit)
    for ticket in due:
        setattr(ticket, f"{kind}_warned_at", now)
        payload = {"kind": kind, "due_at": getattr(ticket, f"{kind}_due_at").isoformat()}
        record(session, ticket, action=Action.SLA_WARNING, actor=SYSTEM, note=f"{kind} SLA due at {payload['due_at']}",
               data=payload, feed_data=payload)
        chain = chains.of(session, ticket)
        first = chain[0] if chain else None
        if chains.reach is not None and first is not None and first.channels:
            # Warned: the people the chain would reach first, through its first step's channels.
            users = recipients(session, first, mirror.grid_path(session, ticket.region_id))
            chains.reach.warning(session, ticket, first, users, kind=kind, now=now)
    return len(due)


@dataclass(frozen=True)
class Breach:
    kind: SlaKind
    at: datetime


def breach_of(ticket: Ticket) -> Breach | None:
    """The breach the ticket is escalated for now; None once someone acted on it (or none happened)."""
    if ticket.state is S.TIMED_OUT and ticket.timed_out_at is not None:
        return Breach(SlaKind.RESPONSE, ticket.timed_out_at)
    if ticket.state is S.ACCEPTED and ticket.sla_breached_at is not None:
        return Breach(SlaKind.RESOLUTION, ticket.sla_breached_at)
    return None


def _escalate(session: Session, ticket: Ticket, *, chains: _Chains, now: datetime) -> int:
    """Climb every step of the chain due by `now` (a P1's come at once); returns the steps taken."""
    breach = breach_of(ticket)
    chain = chains.of(session, ticket)
    if breach is None:  # taken, invalidated or completed
        ticket.next_escalation_at = None
        return 0
    climbed = 0
    while ticket.next_escalation_at is not None and ticket.next_escalation_at <= now:
        level = ticket.escalation_level
        if level >= len(chain):  # the chain got shorter
            ticket.next_escalation_at = None
            break
        rung = chain[level]
        notified = recipients(session, rung, mirror.grid_path(session, ticket.region_id))
        payload: dict[str, Any] = {
            "kind": breach.kind, "level": rung.level, "title": rung.title,
            "recipients": [{"user_id": u.id, "username": u.username, "name": u.name} for u in notified]}
        note = f"level {rung.level}: {rung.title}"
        passed = False
        if rung.channels and chains.reach is not None:
            reached = chains.reach.escalation(session, ticket, rung, notified, now=now)
            payload["channels"] = list(rung.channels)
            payload["reached"] = [{"user_id": r.user_id, "channels": list(r.channels)} for r in reached]
            passed = not reached
            if passed:
                payload["unreachable"] = True
                note += " (nobody reachable: next step at once)"
        record(session, ticket, action=Action.ESCALATE, actor=SYSTEM, note=note, data=payload, feed_data=payload)
        ticket.escalation_level = level + 1
        ticket.next_escalation_at = _next_step_at(ticket, breach.at, chain, level + 1, chains.cfg)
        if passed and ticket.next_escalation_at is not None:
            ticket.next_escalation_at = min(ticket.next_escalation_at, now)
        climbed += 1
    return climbed


def acknowledge(session: Session, *, ticket: Ticket, actor: Actor, note: str | None) -> None:
    """Stop the ticket's escalation: someone in charge has taken it on. It stays red until it is dealt with,
    and a later breach starts a new chain.

    Raises:
        Forbidden: only dispatchers and admins acknowledge.
        InvalidTransition: the ticket is not being escalated (no breach, or acknowledged already).
    """
    if actor.role not in DISPATCHERS:
        raise Forbidden(f"a {actor.role} may not acknowledge escalations", required=sorted(DISPATCHERS))
    # Locked and re-read: a sweep may be notifying the next step right now.
    session.refresh(ticket, with_for_update=True)
    breach = breach_of(ticket)
    if breach is None or ticket.next_escalation_at is None:
        raise InvalidTransition(f"ticket {ticket.number} is not being escalated", state=ticket.state)
    ticket.next_escalation_at = None
    payload = {"kind": breach.kind, "level": ticket.escalation_level}
    record(session, ticket, action=Action.ACKNOWLEDGE, actor=actor, note=note, data=payload, feed_data=payload)


# --- surge mode -----------------------------------------------------------------------------

def get_region(session: Session, region_id: int, *, actor: Actor) -> Region:
    """Raises: RegionNotFound (also outside the caller's regions: existence must not leak)."""
    region = session.get(Region, region_id)
    if region is None or (actor.scope is not None and not regions.covers_any(region.id, actor.scope, session)):
        raise RegionNotFound(f"region {region_id} does not exist")
    return region


def latest_switch(session: Session, region_id: int) -> SurgeSwitch | None:
    return session.scalars(select(SurgeSwitch).where(SurgeSwitch.region_id == region_id)
                           .order_by(SurgeSwitch.id.desc()).limit(1)).first()


def list_switches(session: Session, region_id: int, *, page: PageParams) -> list[SurgeSwitch]:
    """The region's own surge switches, newest first, `page.limit + 1` rows (the extra one says more exist)."""
    query = select(SurgeSwitch).where(SurgeSwitch.region_id == region_id)
    if page.after_id is not None:
        query = query.where(SurgeSwitch.id < page.after_id)
    return list(session.scalars(query.order_by(SurgeSwitch.id.desc()).limit(page.limit + 1)))


def switch_surge(session: Session, *, region_id: int, actor: Actor, on: bool, reason: str | None,
                 response_factor: float | None, resolution_factor: float | None, cfg: SlaSettings,
                 now: datetime) -> SurgeSwitch:
    """Turn surge mode on or off for a region (and everything below it); every switch is kept as audit.

    Switching on re-times the region's open tickets that have not breached yet
    from their creation, so a storm's backlog is judged by the surge profile;
    switching off leaves tickets taken in during the surge with the times they got.

    Raises:
        Forbidden: only dispatchers and admins switch surge mode.
        RegionNotFound: no such region in the caller's regions.
    """
    if actor.role not in DISPATCHERS:
        raise Forbidden(f"a {actor.role} may not switch surge mode", required=sorted(DISPATCHERS))
    region = get_region(session, region_id, actor=actor)
    switch = SurgeSwitch(region_id=region.id, on=on, reason=reason, actor=actor.label, actor_role=actor.role, at=now,
                         response_factor=response_factor or cfg.surge_response_factor,
                         resolution_factor=resolution_factor or cfg.surge_resolution_factor, retimed=0)
    session.add(switch)
    session.flush()
    if on:
        switch.retimed = _retime_open(session, region, surge=Surge.of(switch), cfg=cfg, now=now)
        session.flush()
    return switch


def _retime_open(session: Session, region: Region, *, surge: Surge, cfg: SlaSettings, now: datetime) -> int:
    # Pending tickets (not yet timed out) and accepted ones not yet breached: a
    # breach that already happened stays a fact. Locked in id order; the sweep
    # never waits on a lock (SKIP LOCKED), so the two cannot deadlock.
    rows = session.execute(
        select(Ticket, TicketType).join(TicketType, TicketType.code == Ticket.type_code)
        .where(regions.within(Ticket.region_id, (region.id,)),
               (Ticket.state == S.PENDING) | ((Ticket.state == S.ACCEPTED) & Ticket.sla_breached_at.is_(None)))
        .order_by(Ticket.id).with_for_update(of=Ticket).execution_options(populate_existing=True)).all()
    for ticket, ticket_type in rows:
        # An accepted ticket's response SLA is settled (met or not): only its resolution moves.
        kinds = tuple(SlaKind) if ticket.state is S.PENDING else (SlaKind.RESOLUTION,)
        for name, value in retiming(ticket, ticket_type, surge=surge, cfg=cfg, now=now, kinds=kinds).items():
            setattr(ticket, name, value)
    return len(rows)


def set_chain(session: Session, *, region_id: int, actor: Actor, steps: Sequence[Rung]) -> list[Rung]:
    """Replace a region's own escalation chain (admin); levels follow the order given.

    Raises:
        Forbidden: not an admin.
        RegionNotFound: no such region.
        InvalidInput: a step names neither or both of a user and a role, a role without its reach,
            an unknown user, or delays that go backwards.
    """
    if actor.role is not Role.ADMIN:
        raise Forbidden("only HQ admins set escalation chains", required=[Role.ADMIN])
    region = get_region(session, region_id, actor=actor)
    for i, rung in enumerate(steps):
        _check_rung(session, rung, field=f"steps.{i}")
        if i and rung.delay_min < steps[i - 1].delay_min:
            raise InvalidInput(f"steps.{i}.delay_min", "each step comes no earlier than the one before")
    session.execute(delete(EscalationStep).where(EscalationStep.region_id == region.id))
    session.add_all([EscalationStep(region_id=region.id, level=i + 1, title=r.title, role=r.role, reach=r.reach,
                                    user_id=r.user_id, delay_min=r.delay_min, channels=[str(c) for c in r.channels])
                     for i, r in enumerate(steps)])
    session.flush()
    return [replace(r, level=i + 1) for i, r in enumerate(steps)]


def _check_rung(session: Session, rung: Rung, *, field: str) -> None:
    if (rung.user_id is None) == (rung.role is None):
        raise InvalidInput(field, "name either a user_id or a role")
    if rung.role is not None and rung.role is not Role.ADMIN and rung.reach is None:
        raise InvalidInput(f"{field}.reach", "a role is reached at the ticket's grid, branch or company")
    if rung.user_id is not None and session.scalar(select(User.id).where(User.id == rung.user_id, User.active)) is None:
        raise InvalidInput(f"{field}.user_id", f"no active user {rung.user_id}")
