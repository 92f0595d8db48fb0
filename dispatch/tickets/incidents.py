"""Outage incidents: many reports of one fault in one place, grouped under one ticket that is repaired once.

A type that detects outages names N, a radius and a window: when N reports of
it lie within the radius of each other's cells (H3, res 9) inside the window,
they are grouped under an incident whose own ticket is offered and grabbed
like any other; a later report in the incident's cells, inside the window
(counted from its latest report), joins it. Grouped reports are not offered
themselves; they are completed with the incident, each subscriber told.

Reports racing to open the same incident are serialised by transaction-level
advisory locks on the coarse cells (res 7) their search covers: two reports
close enough to group always share one, reports far apart never wait on each
other.
"""

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import any_, func, literal, select, text
from sqlalchemy.orm import Session

from dispatch.tickets.lifecycle import GRABBABLE
from dispatch.tickets.models import Incident, Ticket, TicketState
from geo import hexgrid
from geo.distance import haversine_m
from geo.latlng import LatLng
from geo.points import from_wkb

LOCK_RES = 7  # about 5 km² a cell: a city's reports rarely wait on one another


def cells_of(point: LatLng, radius_m: int) -> set[str]:
    """The cells (H3_RES) within `radius_m` of a report: where the reports it groups with lie."""
    return hexgrid.cells_around(point, radius_m, hexgrid.H3_RES)


def lock_area(session: Session, type_code: str, cells: Iterable[str]) -> None:
    """Hold, until commit, the advisory locks of the coarse cells under `cells` for this type."""
    parents = sorted({hexgrid.parent(cell, LOCK_RES) for cell in cells})
    for parent in parents:  # in one order everywhere: no deadlock between two reports
        digest = hashlib.blake2b(f"incident:{type_code}:{parent}".encode(), digest_size=8).digest()
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": int.from_bytes(digest, "big", signed=True)})


def open_incident_at(session: Session, *, type_code: str, branch_id: int, cell: str,
                     since: datetime) -> Incident | None:
    """The open incident of this type whose cells hold `cell` and whose latest report came after `since`."""
    return session.scalars(select(Incident).where(
        Incident.type_code == type_code, Incident.branch_id == branch_id, Incident.resolved_at.is_(None),
        Incident.last_report_at >= since, literal(cell) == any_(Incident.cells))
        .order_by(Incident.id.desc()).limit(1)).first()


def reports_near(session: Session, *, type_code: str, branch_id: int, point: LatLng, radius_m: int,
                 cells: set[str], since: datetime) -> list[Ticket]:
    """Ungrouped grabbable reports of this type within `radius_m` of `point`, since `since`; locked."""
    candidates = session.scalars(select(Ticket).where(
        Ticket.type_code == type_code, Ticket.branch_id == branch_id, Ticket.h3.in_(cells),
        Ticket.created_at >= since, Ticket.state.in_(GRABBABLE), Ticket.incident_id.is_(None))
        .order_by(Ticket.id).with_for_update())
    return [t for t in candidates if haversine_m(point, from_wkb(t.location)) <= radius_m]


def centre_of(points: Sequence[LatLng]) -> LatLng:
    """Where an incident's own ticket is placed: the middle of its reports (a few streets, no wrap-around)."""
    return LatLng(sum(p.lat for p in points) / len(points), sum(p.lng for p in points) / len(points))


def new_incident(session: Session, *, lead: Ticket, reports: Sequence[Ticket], radius_m: int,
                 opened_by: str) -> Incident:
    cells = set().union(*(cells_of(from_wkb(t.location), radius_m) for t in reports))
    incident = Incident(ticket_id=lead.id, type_code=lead.type_code, branch_id=lead.branch_id, cells=sorted(cells),
                        last_report_at=max(t.created_at for t in reports), opened_by=opened_by)
    session.add(incident)
    session.flush()
    return incident


def grew(incident: Incident, at: datetime) -> None:
    incident.last_report_at = max(incident.last_report_at, at)


def led_by(session: Session, ticket_id: int) -> Incident | None:
    return session.scalars(select(Incident).where(Incident.ticket_id == ticket_id)).first()


def grouped(session: Session, incident: Incident) -> list[Ticket]:
    """The reports still grouped under the incident, locked."""
    return list(session.scalars(select(Ticket).where(Ticket.incident_id == incident.id,
                                                     Ticket.state == TicketState.GROUPED)
                                .order_by(Ticket.id).with_for_update()))


def child_ids(session: Session, incident_ids: Sequence[int]) -> dict[int, list[int]]:
    """Every report linked to each incident (grouped, or completed with it), by incident."""
    rows = session.execute(select(Ticket.incident_id, func.array_agg(Ticket.id))
                           .join(Incident, Incident.id == Ticket.incident_id)
                           .where(Ticket.incident_id.in_(incident_ids), Ticket.id != Incident.ticket_id)
                           .group_by(Ticket.incident_id)).all()
    return {incident_id: sorted(ids) for incident_id, ids in rows if incident_id is not None}
