"""The ring policy: offer a new ticket to the nearest eligible technicians, then widen.

Ring 1 goes out at intake: the nearest LEAD_K of the K within the first
radius who hold no ticket, alone, for LEAD_S (the nearest free should not race
four others to a ticket at their door), else the K at once. While nobody
takes the ticket, the sweep offers the next K not yet offered within the first
radius, then within twice the last one's radius, every step, up to the maximum
radius. Offers are unique per
(ticket, technician), so running a ring twice offers nobody twice.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import bindparam, case, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dispatch.kernel.settings import OfferSettings, Settings
from dispatch.tickets.lifecycle import GRABBABLE, announce
from dispatch.tickets.models import Offer, OfferOutcome, Priority, Ticket, TicketType
from geo.latlng import LatLng
from geo.models import Region
from geo.points import from_wkb
from technicians import live
from technicians.at_limit import find_at_limit
from technicians.models import Technician
from technicians.nearest import Candidate, find_nearest

log = structlog.get_logger()


@dataclass(frozen=True)
class Ring:
    """Who a ring offers the ticket to, and how far it reached."""

    number: int
    radius_m: int
    candidates: list[Candidate]


def offer_ring(session: Session, redis: Redis, ticket: Ticket, *, settings: Settings,
               now: datetime | None = None) -> list[Candidate]:
    """Offer the ticket's next ring and schedule the one after; returns who was offered now."""
    now = now or datetime.now(UTC)
    ring = next_ring(session, redis, ticket, settings=settings, now=now)
    if ring is not None:
        send_offers(session, ticket, ring, now=now)
    session.flush()
    return ring.candidates if ring is not None else []


def next_ring(session: Session, redis: Redis, ticket: Ticket, *, settings: Settings, now: datetime,
              grid_path: str | None = None, skills: Sequence[str] | None = None,
              over_limit: bool | None = None) -> Ring | None:
    """Choose the ticket's next ring and move its ring columns on; None while the live index is down.

    Writes nothing itself: intake chooses the first ring before the ticket's
    INSERT, which then carries the ring columns (no UPDATE after it).
    `grid_path`, `skills` and `over_limit` (the type's urgent_over_limit), when
    the caller knows them, save reading them again. A P1 reaches more
    technicians, further out from its first ring on.
    """
    cfg = settings.offer
    urgent = ticket.priority is Priority.P1
    first_radius = cfg.urgent_first_radius_m if urgent else cfg.first_radius_m
    radius = first_radius if ticket.ring == 0 else min(max((ticket.ring_radius_m or 0) * 2, first_radius),
                                                       cfg.max_radius_m)
    try:
        candidates = _nearest(session, redis, ticket, radius=radius, grid_path=grid_path, skills=skills, now=now,
                              settings=settings, k=cfg.urgent_k if urgent else cfg.k,
                              over_limit=urgent and _over_limit(session, ticket, over_limit))
    except RedisError as exc:
        # The live index is down: keep the ticket due so the sweep retries; the pool still works.
        log.warning("offer_ring_deferred", ticket_id=ticket.id, error=str(exc))
        ticket.next_ring_at = now + timedelta(seconds=cfg.sweep_interval_s)
        return None
    lead = _lead(candidates, cfg) if ticket.ring == 0 and not urgent else []
    if lead:
        # The lead ring reaches its own and whoever is as near (the tie band): the next is the first radius (or
        # twice the lead's). The pool lists the ticket within it meanwhile.
        candidates, radius = lead, math.ceil(max(c.distance_m for c in lead)) + cfg.tie_band_m
    ticket.ring += 1
    ticket.ring_radius_m = radius
    step_s = cfg.lead_s if lead else cfg.step_s
    ticket.next_ring_at = now + timedelta(seconds=step_s) if radius < cfg.max_radius_m else None
    return Ring(number=ticket.ring, radius_m=radius, candidates=candidates)


def _lead(first_ring: list[Candidate], cfg: OfferSettings) -> list[Candidate]:
    """The nearest of the first ring holding no ticket, who get it alone for a while: one on the way to or at
    another job would leave it waiting. Empty (the whole ring at once) when none is free or leads are off."""
    if not 0 < cfg.lead_k < len(first_ring):
        return []
    return [c for c in first_ring if c.active == 0][:cfg.lead_k]


_INSERT_OFFER = insert(Offer).on_conflict_do_nothing(index_elements=[Offer.ticket_id, Offer.technician_id])


def send_offers(session: Session, ticket: Ticket, ring: Ring, *, now: datetime) -> None:
    """Record the ring's offers and put them on the live feed (the ticket has its id by now)."""
    if not ring.candidates:
        return
    # Rows as parameters of one cached statement (sent as one multi-row INSERT) on the connection: rows
    # written into the statement compiled it anew on every ring, and the ORM's bulk layer doubled the cost.
    session.connection().execute(_INSERT_OFFER, [
        {"ticket_id": ticket.id, "technician_id": c.technician_id, "ring": ring.number,
         "distance_m": round(c.distance_m, 1), "offered_at": now} for c in ring.candidates])
    announce(session, ticket, "ticket.offered", technician_ids=[c.technician_id for c in ring.candidates],
             ring=ring.number, radius_m=ring.radius_m,
             distances_m={str(c.technician_id): round(c.distance_m) for c in ring.candidates})


def _over_limit(session: Session, ticket: Ticket, known: bool | None) -> bool:
    if known is not None:
        return known
    return bool(session.execute(select(TicketType.urgent_over_limit)
                                .where(TicketType.code == ticket.type_code)).scalar_one())


def _nearest(session: Session, redis: Redis, ticket: Ticket, *, radius: int, grid_path: str | None,
             skills: Sequence[str] | None, now: datetime, settings: Settings, k: int,
             over_limit: bool) -> list[Candidate]:
    if skills is None:
        skills = session.execute(select(TicketType.skills).where(TicketType.code == ticket.type_code)).scalar_one()
    path = grid_path or session.execute(select(Region.path).where(Region.id == ticket.region_id)).scalar_one()
    # Nobody has been offered a ticket before its first ring: no statement to learn it.
    offered = set(session.scalars(select(Offer.technician_id).where(Offer.ticket_id == ticket.id))) \
        if ticket.ring else set()
    point = from_wkb(ticket.location)
    found = find_nearest(redis, branch_id=ticket.branch_id, point=point, k=k, radius_m=radius, skills=skills,
                         ticket_path=path, now=now, tz=settings.timezone, presence=settings.presence,
                         offer=settings.offer, exclude=offered)
    if not over_limit:
        return found
    busy = find_at_limit(redis, branch_id=ticket.branch_id, point=point, k=k, radius_m=radius, skills=skills,
                         ticket_path=path, now=now, tz=settings.timezone, presence=settings.presence,
                         exclude=offered)
    return sorted(found + busy, key=lambda c: c.distance_m)[:k]


def offered_to(session: Session, ticket: Ticket) -> list[int]:
    """The technicians the ticket is offered to now."""
    return list(session.scalars(select(Offer.technician_id).where(Offer.ticket_id == ticket.id,
                                                                  Offer.outcome == OfferOutcome.OPEN)))


@dataclass(frozen=True)
class SentOffer:
    """One technician a ticket was offered to, and where they were last seen (None: never located)."""

    technician_id: int
    name: str
    ring: int
    distance_m: float
    offered_at: datetime
    outcome: OfferOutcome
    last_seen: LatLng | None


def list_offers(session: Session, redis: Redis, ticket: Ticket) -> list[SentOffer]:
    """Everyone the ticket was offered to, ring by ring and nearest first, where the live index has them now
    (else where their last written-through ping put them)."""
    rows = session.execute(select(Offer, Technician.name, Technician.last_location)
                           .join(Technician, Technician.id == Offer.technician_id)
                           .where(Offer.ticket_id == ticket.id).order_by(Offer.ring, Offer.distance_m)).all()
    try:
        now_at = [point for point, _ in live.positions(redis, live.LiveKeys.of(ticket.branch_id),
                                                       [offer.technician_id for offer, _, _ in rows])]
    except RedisError:
        now_at = [None] * len(rows)  # the map still shows who, from the database's last positions
    return [SentOffer(technician_id=offer.technician_id, name=name, ring=offer.ring, distance_m=offer.distance_m,
                      offered_at=offer.offered_at, outcome=offer.outcome,
                      last_seen=here or (from_wkb(stored) if stored is not None else None))
            for (offer, name, stored), here in zip(rows, now_at, strict=True)]


def close_offers(session: Session, ticket: Ticket, *, taken_by: int | None) -> None:
    """The ticket left the pool (its state change stopped the rings): its open offers end, the winner's as
    taken."""
    session.connection().execute(_CLOSE_OFFERS, {"closing_ticket_id": ticket.id, "taken_by": taken_by,
                                                 "closing_at": datetime.now(UTC)})


# One statement, built once, for every ticket that changes hands (taken_by NULL: every offer closed). Offers are
# loaded as objects only to list them (open_offers), never in a session that closes them: nothing to synchronise.
_CLOSE_OFFERS = (update(Offer).where(Offer.ticket_id == bindparam("closing_ticket_id"),
                                     Offer.outcome == OfferOutcome.OPEN)
                 .values(outcome=case((Offer.technician_id == bindparam("taken_by"), OfferOutcome.TAKEN),
                                      else_=OfferOutcome.CLOSED), closed_at=bindparam("closing_at")))


def due_tickets(session: Session, *, now: datetime, limit: int) -> list[Ticket]:
    """Grabbable tickets whose next ring is due; locked, skipping those another sweeper holds."""
    return list(session.scalars(
        select(Ticket).where(Ticket.next_ring_at <= now, Ticket.state.in_(GRABBABLE))
        .order_by(Ticket.next_ring_at).limit(limit).with_for_update(skip_locked=True)))


def sweep(session: Session, redis: Redis, *, settings: Settings, now: datetime, limit: int) -> int:
    """Offer the next ring of every grabbable ticket whose ring is due; returns how many were swept."""
    due = due_tickets(session, now=now, limit=limit)
    for ticket in due:
        offer_ring(session, redis, ticket, settings=settings, now=now)
    return len(due)


def open_offers(session: Session, *, technician_id: int) -> list[tuple[Offer, Ticket]]:
    """A technician's open offers on tickets still grabbable, the most urgent first, then the nearest."""
    rows = session.execute(
        select(Offer, Ticket).join(Ticket, Ticket.id == Offer.ticket_id)
        .where(Offer.technician_id == technician_id, Offer.outcome == OfferOutcome.OPEN,
               Ticket.state.in_(GRABBABLE))
        .order_by(Ticket.priority, Offer.distance_m, Offer.id))
    return [(offer, ticket) for offer, ticket in rows]
