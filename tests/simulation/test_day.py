"""Short simulated days through the real services: the same seed gives the same table, and every policy gets
every ticket accepted by exactly one technician."""

from datetime import date, time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from dispatch.kernel.settings import Settings
from simulation import demand, run
from simulation.city import load_city
from simulation.config import Shift, SimulationSettings
from simulation.database import Place
from simulation.policies import POLICIES, PolicyName
from simulation.scorecard import table

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
DAY = date(2026, 11, 16)
# Six reports between 07:10 and 07:50, and an outage of six reports within 100 m in five minutes.
SHORT_DAY = SimulationSettings(
    reports=6, first_report=time(7, 10), last_report=time(7, 50), morning_peak=time(7, 30),
    evening_peak=time(7, 40), peak_spread_min=10, burst_reports=10, burst_minutes=2, burst_at=time(7, 20),
    burst_radius_m=100, early_shift=Shift(starts=time(7, 0), ends=time(12, 0)),
    late_shift=Shift(starts=time(7, 0), ends=time(14, 0)))


@pytest.fixture
def place(settings: Settings) -> Place:
    """A database of its own beside the test database (the simulation drops and copies it), the tests' Redis."""
    url = make_url(settings.owner_database_url)
    return Place(owner_url=url.set(database=f"{url.database}_simulation").render_as_string(hide_password=False),
                 redis_url=settings.redis_url)


def _day(seed: int) -> run.Day:
    city = load_city(FIXTURES)
    return run.Day(city, DAY, seed, demand.generate(city, day=DAY, seed=seed, cfg=SHORT_DAY, tz="Asia/Shanghai"))


def test_the_same_seed_gives_the_same_table(place: Place, settings: Settings) -> None:
    tables = [table(run.play_all(place, _day(7), [PolicyName.NEAREST_PUSH], settings=settings, cfg=SHORT_DAY,
                                 fixtures=FIXTURES)) for _ in range(2)]
    assert tables[0] == tables[1]
    assert "nearest-push" in tables[0] and "hindsight" in tables[0]


def test_every_policy_gets_every_ticket_accepted_by_one_technician(place: Place, settings: Settings) -> None:
    day = _day(11)
    scores = run.play_all(place, day, list(POLICIES), settings=settings, cfg=SHORT_DAY, fixtures=FIXTURES)
    by_policy = {s.policy: s for s in scores}
    assert set(by_policy) == {*POLICIES, run.HINDSIGHT}
    for policy in POLICIES:
        score = by_policy[policy]
        assert (score.unaccepted, score.two_owners) == (0, 0), policy
        # The same day for each: the same reports (the tickets dispatched may differ, as the outage's reports
        # group only while the burst's others wait ungrabbed).
        assert score.reports == len(day.reports), policy
        # A report not grouped is a ticket of its own; an incident's ticket stands for two reports or more.
        assert score.reports - score.grouped <= score.tickets <= score.reports, policy
        assert score.accept_p90_min >= score.accept_p50_min >= 0, policy
        assert score.arrive_p50_min > 0 and score.km_per_ticket > 0, policy
        assert score.outage_clear_min > 0, policy  # the outage's reports were all completed
    assert any(by_policy[p].grouped for p in POLICIES), "the outage grouped under some policy"
    assert by_policy[run.HINDSIGHT].km_per_ticket <= min(by_policy[p].km_per_ticket for p in POLICIES)
