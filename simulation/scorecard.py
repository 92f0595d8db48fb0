"""The scorecard of one policy's day, read from what the real services wrote to PostgreSQL."""

from dataclasses import dataclass, fields
from datetime import datetime

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from dispatch.tickets.labor import TAKING
from dispatch.tickets.models import Incident, Ticket, TicketEvent, TicketState
from simulation.config import SimulationSettings
from simulation.engine import Outcome
from technicians.models import Technician
from workload.models import WorkRecord


@dataclass(frozen=True)
class Score:
    policy: str
    # Every report of the day, the same for each policy; how many were grouped under an outage incident (which
    # depends on the policy: a report joins the burst's others only while they wait ungrabbed); and the tickets
    # dispatched, a report's own or an incident's (grouped reports ride along): per-ticket figures count these.
    reports: int
    grouped: int
    tickets: int
    accept_p50_min: float
    accept_p90_min: float
    arrive_p50_min: float
    arrive_p90_min: float
    km_per_ticket: float
    response_sla: float  # share accepted within the response SLA
    resolution_sla: float  # share of all tickets completed within the resolution SLA
    tickets_per_tech_hour: float
    pay_gini: float
    outage_clear_min: float  # first burst report to its last ticket completed
    unaccepted: int
    two_owners: int


# Column titles of the printed table, in the order of Score's fields.
TITLES = {"policy": "policy", "reports": "reports", "grouped": "grouped", "tickets": "tickets",
          "accept_p50_min": "accept p50", "accept_p90_min": "accept p90",
          "arrive_p50_min": "arrive p50", "arrive_p90_min": "arrive p90", "km_per_ticket": "km/ticket",
          "response_sla": "resp SLA", "resolution_sla": "resol SLA", "tickets_per_tech_hour": "tix/tech-h",
          "pay_gini": "pay Gini", "outage_clear_min": "outage min", "unaccepted": "unaccepted",
          "two_owners": "2 owners"}


def _minutes(later: datetime | None, earlier: datetime) -> float | None:
    return None if later is None else (later - earlier).total_seconds() / 60


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def gini(values: list[float]) -> float:
    """0 when everyone earns the same, towards 1 when one earns everything."""
    x = np.sort(np.asarray(values, dtype=float))
    if len(x) == 0 or x.sum() == 0:
        return 0.0
    ranks = np.arange(1, len(x) + 1)
    return float(2 * (ranks * x).sum() / (len(x) * x.sum()) - (len(x) + 1) / len(x))


def dispatched(session: Session) -> list[Ticket]:
    taken = select(TicketEvent.ticket_id).where(TicketEvent.action.in_(TAKING))
    return list(session.scalars(select(Ticket).where(Ticket.id.in_(taken)).order_by(Ticket.id)))


def filed(session: Session) -> tuple[int, int]:
    """(reports, of them grouped under an outage incident): every ticket but an incident's own."""
    reports, grouped = session.execute(
        select(func.count(), func.count(Ticket.incident_id)).where(Ticket.id.not_in(select(Incident.ticket_id)))).one()
    return reports, grouped


def two_owners(session: Session) -> int:
    """Tickets two technicians took (the simulation never reassigns, so any is a double grab)."""
    owners = (select(TicketEvent.ticket_id).where(TicketEvent.action.in_(TAKING)).group_by(TicketEvent.ticket_id)
              .having(func.count(func.distinct(TicketEvent.technician_id)) > 1))
    return session.scalar(select(func.count()).select_from(owners.subquery())) or 0


def unaccepted(session: Session) -> int:
    """Tickets nobody took: not accepted, and not completed with the outage incident they were grouped under."""
    return session.scalar(select(func.count()).select_from(Ticket).where(
        Ticket.accepted_at.is_(None), Ticket.state != TicketState.INVALID)) or 0


def _pay_by_technician(session: Session) -> list[float]:
    rows = session.execute(select(Technician.id, func.coalesce(func.sum(WorkRecord.pay), 0))
                           .outerjoin(WorkRecord, WorkRecord.technician_id == Technician.id)
                           .group_by(Technician.id).order_by(Technician.id))
    return [float(pay) for _, pay in rows]


def _resolution_sla(session: Session) -> float:
    done = session.scalar(select(func.count()).select_from(Ticket).where(
        and_(Ticket.completed_at.is_not(None), Ticket.completed_at <= Ticket.resolution_due_at))) or 0
    total = session.scalar(select(func.count()).select_from(Ticket).where(Ticket.state != TicketState.INVALID)) or 0
    return done / total if total else float("nan")


def _outage_clear_min(session: Session, burst_ids: list[int]) -> float:
    if not burst_ids:
        return float("nan")
    first, last = session.execute(select(func.min(Ticket.created_at), func.max(Ticket.completed_at))
                                  .where(Ticket.id.in_(burst_ids))).one()
    return _minutes(last, first) or float("nan")


def measure(session: Session, *, policy: str, outcome: Outcome, cfg: SimulationSettings) -> Score:
    tickets = dispatched(session)
    accept = [m for t in tickets if (m := _minutes(t.accepted_at, t.created_at)) is not None]
    arrive = [m for t in tickets if (m := _minutes(t.arrived_at, t.created_at)) is not None]
    in_time = sum(1 for t in tickets if t.accepted_at is not None and t.accepted_at <= t.response_due_at)
    recorded = session.scalars(select(WorkRecord.distance_m).where(WorkRecord.ticket_id.in_([t.id for t in tickets])))
    distances = [d for d in recorded if d is not None]
    completed = sum(1 for t in tickets if t.completed_at is not None)
    reports, grouped = filed(session)
    return Score(
        policy=policy, reports=reports, grouped=grouped, tickets=len(tickets), accept_p50_min=percentile(accept, 50),
        accept_p90_min=percentile(accept, 90),
        arrive_p50_min=percentile(arrive, 50), arrive_p90_min=percentile(arrive, 90),
        # The work record keeps the straight line from where the technician was at accept; roads add the detour.
        km_per_ticket=sum(distances) / 1000 * cfg.detour_factor / len(distances) if distances else float("nan"),
        response_sla=in_time / len(tickets) if tickets else float("nan"), resolution_sla=_resolution_sla(session),
        tickets_per_tech_hour=completed / outcome.duty_hours if outcome.duty_hours else float("nan"),
        pay_gini=gini(_pay_by_technician(session)),
        outage_clear_min=_outage_clear_min(session, outcome.burst_ticket_ids),
        unaccepted=unaccepted(session), two_owners=two_owners(session))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "—" if value != value else f"{value:.2f}"  # NaN: not measured for this row
    return str(value)


def table(scores: list[Score]) -> str:
    """The scorecard as one fixed-width table, a row per policy."""
    names = [f.name for f in fields(Score)]
    rows = [[TITLES[n] for n in names]] + [[_cell(getattr(s, n)) for n in names] for s in scores]
    widths = [max(len(r[i]) for r in rows) for i in range(len(names))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                     for r in rows)
