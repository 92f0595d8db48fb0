"""The hindsight optimum on days small enough to solve by hand."""

from datetime import UTC, datetime, timedelta

import pytest

from geo.distance import EARTH_MEAN_RADIUS_M
from geo.latlng import LatLng
from simulation.config import SimulationSettings
from simulation.hindsight import Start, Visit, optimum

TZ = "Asia/Shanghai"
CFG = SimulationSettings()
NOON = datetime(2026, 11, 16, 4, 0, tzinfo=UTC)  # 12:00 in Xilinhot
KM_PER_DEGREE = EARTH_MEAN_RADIUS_M * 3.141592653589793 / 180 / 1000


def north(km: float) -> LatLng:
    """A point `km` north of a fixed point on one meridian: distances between them are differences of km."""
    return LatLng(43.9 + km / KM_PER_DEGREE, 116.05)


def technician(tid: int, km: float) -> Start:
    return Start(technician_id=tid, home=north(km), branch_id=1, skills=frozenset({"tv"}),
                 shift_start=NOON - timedelta(hours=5), shift_end=NOON + timedelta(hours=8))


def visit(vid: int, km: float, *, at: datetime = NOON, resolve_in: timedelta = timedelta(minutes=90)) -> Visit:
    return Visit(id=vid, site=north(km), branch_id=1, skills=frozenset({"tv"}), reported_at=at,
                 onsite=timedelta(hours=1), resolution_due_at=at + resolve_in)


def test_optimum_beats_nearest_first_on_three_tickets_and_three_technicians() -> None:
    # On one road: technicians A at km 0, B at km 4, C at km 10; tickets at km 3, 5 and 11, all at noon, each
    # due within 90 minutes of its hour on site, so no technician can do two. Nearest first gives the ticket
    # at km 3 to B (1 km), then km 5 to A or C (5 km), then km 11 to the other (1 or 11 km): 7 km at best.
    # By hand, the optimum is A→3 (3 km), B→5 (1 km), C→11 (1 km): 5 km.
    plan = optimum([visit(1, 3), visit(2, 5), visit(3, 11)], [technician(10, 0), technician(20, 4),
                                                               technician(30, 10)], tz=TZ, cfg=CFG)
    assert {link.visit_id: link.from_technician for link in plan.links} == {1: 10, 2: 20, 3: 30}
    assert sum(link.km for link in plan.links) == pytest.approx(5 * CFG.detour_factor, rel=1e-6)
    assert plan.unreachable == []


def test_a_technician_chains_a_later_ticket_from_the_last_site_when_time_allows() -> None:
    # One technician at km 0; a ticket at km 10 at noon, and one at km 11 reported two hours later with a day to
    # resolve: driving on from km 10 (1 km) beats anyone's home, and nobody else is there.
    plan = optimum([visit(1, 10), visit(2, 11, at=NOON + timedelta(hours=2), resolve_in=timedelta(hours=24))],
                   [technician(10, 0)], tz=TZ, cfg=CFG)
    by_visit = {link.visit_id: link for link in plan.links}
    assert by_visit[1].from_technician == 10
    assert by_visit[2].from_visit == 1
    assert plan.km_per_visit == pytest.approx((10 + 1) / 2 * CFG.detour_factor, rel=1e-6)


def test_a_ticket_no_technician_can_reach_in_time_is_reported_unreachable() -> None:
    plan = optimum([visit(1, 3), visit(2, 5)], [technician(10, 0)], tz=TZ, cfg=CFG)
    assert len(plan.links) == 1
    assert plan.unreachable == [2]
