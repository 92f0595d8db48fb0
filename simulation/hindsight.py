"""The hindsight optimum: the day's least driving, planned knowing every report in advance.

How it is computed: each dispatched ticket needs one predecessor, the point its technician drives from: either a
technician's home at the start of their shift, or the site of a ticket finished before. Each home and each
ticket can be the predecessor of at most one ticket, so the plan is a set of chains, one per technician used.
A link is allowed when it could be driven in time: a home only for a technician of the ticket's branch with its
skills, on shift after the report; a ticket i before j only in the same branch, i reported first, some
technician of the branch having both types' skills, and i, started at its report, finished and driven from
in time to finish j within j's resolution SLA. Choosing one predecessor per ticket at the least total road km is
an assignment problem (scipy's linear_sum_assignment on tickets × (homes + tickets)); since links only go
forward in report time the choice has no cycles, so it is the optimal set of chains. It relaxes the day in its
own favour (a technician is never busy when a chain says they start, skills are judged per link): no policy that
serves each technician's tickets in report order within the resolution SLA drives less. A bound to measure the
policies by, not a plan the service could run.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from scipy.optimize import linear_sum_assignment

from geo.latlng import LatLng
from simulation import travel
from simulation.config import SimulationSettings

FORBIDDEN = 1e9


@dataclass(frozen=True)
class Visit:
    id: int
    site: LatLng
    branch_id: int
    skills: frozenset[str]
    reported_at: datetime
    onsite: timedelta
    resolution_due_at: datetime


@dataclass(frozen=True)
class Start:
    technician_id: int
    home: LatLng
    branch_id: int
    skills: frozenset[str]
    shift_start: datetime
    shift_end: datetime


@dataclass(frozen=True)
class Link:
    visit_id: int
    from_technician: int | None  # their home, or else
    from_visit: int | None  # the site of this visit
    km: float
    arrive_min: float  # from the report, driving at once from a free start: the optimistic lead time


@dataclass(frozen=True)
class Plan:
    links: list[Link]
    unreachable: list[int]  # visits no allowed link reaches

    @property
    def km_per_visit(self) -> float:
        return sum(link.km for link in self.links) / len(self.links) if self.links else float("nan")


def _drive(a: LatLng, b: LatLng, at: datetime, tz: str, cfg: SimulationSettings) -> timedelta:
    return timedelta(seconds=travel.drive_s(a, b, at=at, tz=tz, cfg=cfg))


def _from_home(start: Start, visit: Visit, tz: str, cfg: SimulationSettings) -> float:
    if start.branch_id != visit.branch_id or not visit.skills <= start.skills or start.shift_end < visit.reported_at:
        return FORBIDDEN
    leave = max(start.shift_start, visit.reported_at)
    if leave + _drive(start.home, visit.site, leave, tz, cfg) + visit.onsite > visit.resolution_due_at:
        return FORBIDDEN
    return travel.road_km(start.home, visit.site, cfg)


def _after(before: Visit, visit: Visit, crews: list[frozenset[str]], tz: str, cfg: SimulationSettings) -> float:
    if before.id == visit.id or before.branch_id != visit.branch_id or \
            (before.reported_at, before.id) >= (visit.reported_at, visit.id) or \
            not any(before.skills | visit.skills <= skills for skills in crews):
        return FORBIDDEN
    leave = before.reported_at + before.onsite
    if leave + _drive(before.site, visit.site, leave, tz, cfg) + visit.onsite > visit.resolution_due_at:
        return FORBIDDEN
    return travel.road_km(before.site, visit.site, cfg)


def optimum(visits: list[Visit], starts: list[Start], *, tz: str, cfg: SimulationSettings) -> Plan:
    """The least-km set of chains serving every visit that any allowed link reaches."""
    if not visits:
        return Plan(links=[], unreachable=[])
    crews_by_branch: dict[int, list[frozenset[str]]] = {}
    for start in starts:
        crews_by_branch.setdefault(start.branch_id, []).append(start.skills)
    cost = np.array([[_from_home(s, v, tz, cfg) for s in starts]
                     + [_after(b, v, crews_by_branch.get(v.branch_id, []), tz, cfg) for b in visits]
                     for v in visits])
    rows, cols = linear_sum_assignment(cost)
    links, unreachable = [], []
    for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
        visit = visits[row]
        if cost[row, col] >= FORBIDDEN:
            unreachable.append(visit.id)
            continue
        if col < len(starts):
            start = starts[col]
            leave = max(start.shift_start, visit.reported_at)
            arrive = leave + _drive(start.home, visit.site, leave, tz, cfg)
            links.append(Link(visit.id, start.technician_id, None, float(cost[row, col]),
                              (arrive - visit.reported_at).total_seconds() / 60))
        else:
            before = visits[col - len(starts)]
            leave = max(before.reported_at + before.onsite, visit.reported_at)
            arrive = leave + _drive(before.site, visit.site, leave, tz, cfg)
            links.append(Link(visit.id, None, before.id, float(cost[row, col]),
                              (arrive - visit.reported_at).total_seconds() / 60))
    return Plan(links=sorted(links, key=lambda link: link.visit_id), unreachable=sorted(unreachable))
