"""The bridge from a ticket's lifecycle to piece-rate pay: the facts of a completion, as values for workload."""

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.kernel.auth import Actor
from dispatch.kernel.settings import Settings
from dispatch.tickets.lifecycle import Action
from dispatch.tickets.models import Ticket, TicketEvent, TicketType
from geo.latlng import LatLng
from geo.points import from_wkb
from technicians.models import Technician, TrackPoint
from workload import service as workload
from workload.models import WorkRecord

TAKING = (Action.GRAB, Action.ASSIGN, Action.SYSTEM_ASSIGN, Action.REASSIGN)


def position_at_accept(session: Session, ticket: Ticket, technician: Technician, *, accepted_at: datetime,
                       freshness_s: int) -> LatLng | None:
    """Where the technician was when the ticket became theirs: the taking event's position when it
    carries one, else their last sampled track point before it, if recent enough to trust."""
    taken = session.scalar(select(TicketEvent.location).where(
        TicketEvent.ticket_id == ticket.id, TicketEvent.technician_id == technician.id,
        TicketEvent.action.in_(TAKING)).order_by(TicketEvent.id.desc()).limit(1))
    if taken is not None:
        return from_wkb(taken)
    sampled = session.scalar(select(TrackPoint.location).where(
        TrackPoint.technician_id == technician.id, TrackPoint.at <= accepted_at,
        TrackPoint.at >= accepted_at - timedelta(seconds=freshness_s)).order_by(TrackPoint.at.desc()).limit(1))
    return from_wkb(sampled) if sampled is not None else None


def record_completion(session: Session, ticket: Ticket, technician: Technician, *, settings: Settings) -> WorkRecord:
    """The work record of a ticket just completed, credited to `technician` (who completed it)."""
    assert ticket.accepted_at is not None and ticket.completed_at is not None  # set by accept and complete
    ticket_type = session.get_one(TicketType, ticket.type_code)
    completion = workload.Completion(
        ticket_id=ticket.id, ticket_number=ticket.number, type_code=ticket_type.code, type_name=ticket_type.name,
        region_id=ticket.region_id, branch_id=ticket.branch_id, technician_id=technician.id,
        technician_name=technician.name, accepted_at=ticket.accepted_at, arrived_at=ticket.arrived_at,
        completed_at=ticket.completed_at, site=from_wkb(ticket.location),
        accepted_from=position_at_accept(session, ticket, technician, accepted_at=ticket.accepted_at,
                                         freshness_s=settings.presence.freshness_s),
        type_piece_rate=ticket_type.piece_rate, type_standard_hours=ticket_type.standard_hours)
    return workload.record_work(session, completion=completion, cfg=settings.workload, tz=settings.timezone)


def record_followup(session: Session, ticket: Ticket, *, satisfaction: int, actor: Actor, settings: Settings,
                    now: datetime) -> None:
    """The rating reprices the visit (or, its period closed, pays the difference next month)."""
    workload.rate_visit(session, ticket_id=ticket.id, satisfaction=satisfaction, actor_label=actor.label,
                        cfg=settings.workload, now=now, tz=settings.timezone)


def record_visit(session: Session, ticket: Ticket, technician: Technician, *, settings: Settings) -> WorkRecord:
    """The work record of a report grouped under an outage incident that needed its own visit: the repair is
    paid once, on the incident; this pays the visit at the type's visit rate, whatever rates are in force."""
    assert ticket.accepted_at is not None and ticket.completed_at is not None  # set with the incident's
    ticket_type = session.get_one(TicketType, ticket.type_code)
    completion = workload.Completion(
        ticket_id=ticket.id, ticket_number=ticket.number, type_code=ticket_type.code, type_name=ticket_type.name,
        region_id=ticket.region_id, branch_id=ticket.branch_id, technician_id=technician.id,
        technician_name=technician.name, accepted_at=ticket.accepted_at, arrived_at=None,
        completed_at=ticket.completed_at, site=from_wkb(ticket.location), accepted_from=None,
        type_piece_rate=ticket_type.visit_rate, type_standard_hours=Decimal(0), visit=True)
    return workload.record_work(session, completion=completion, cfg=settings.workload, tz=settings.timezone)
