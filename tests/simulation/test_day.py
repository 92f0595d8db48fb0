"""Short simulated days through the real services: the same seed gives the same table, and every policy gets
every ticket accepted by exactly one technician."""

from collections import Counter
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from dispatch.kernel.settings import Settings
from dispatch.tickets.labor import TAKING
from dispatch.tickets.lifecycle import Action
from dispatch.tickets.models import BranchDispatch, DispatchMode, Ticket, TicketEvent
from simulation import demand, run
from simulation.city import load_city
from simulation.config import Shift, SimulationSettings
from simulation.database import Place, prepare_city
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


def _takings(place: Place) -> list[tuple[str, datetime, datetime, bool, int | None, int | None, datetime | None]]:
    """Each taking event of the day just played: (action, its time, the ticket's creation, system_assigned, who
    took it, who holds it, when they arrived)."""
    engine = create_engine(place.app_url, poolclass=NullPool)
    try:
        with Session(engine) as session:
            return [tuple(row) for row in session.execute(  # type: ignore[misc]
                select(TicketEvent.action, TicketEvent.at, Ticket.created_at, Ticket.system_assigned,
                       TicketEvent.technician_id, Ticket.technician_id, Ticket.arrived_at)
                .join(Ticket, Ticket.id == TicketEvent.ticket_id)
                .where(TicketEvent.action.in_(TAKING)).order_by(TicketEvent.id))]
    finally:
        engine.dispose()


def _modes(place: Place) -> set[tuple[DispatchMode, int | None]]:
    engine = create_engine(place.app_url, poolclass=NullPool)
    try:
        with Session(engine) as session:
            return {(row.mode, row.hybrid_after_s) for row in session.scalars(select(BranchDispatch))}
    finally:
        engine.dispose()


def test_system_policy_is_the_branches_assign_mode_at_intake(place: Place, settings: Settings) -> None:
    prepare_city(place, FIXTURES)
    run.play(place, _day(7), PolicyName.SYSTEM, settings=settings, cfg=SHORT_DAY)
    assert _modes(place) == {(DispatchMode.ASSIGN, None)}
    takings = _takings(place)
    actions = Counter(action for action, *_ in takings)
    # No dispatcher's assignment: the service assigned (or, with nobody free, the ticket was offered and grabbed).
    assert actions[Action.ASSIGN] == 0 and actions[Action.SYSTEM_ASSIGN] > 0, actions
    for action, at, created_at, system_assigned, taker, holder, arrived_at in takings:
        assert system_assigned is (action == Action.SYSTEM_ASSIGN)
        if action == Action.SYSTEM_ASSIGN:
            assert at == created_at  # at intake, never later in assign mode
            assert holder == taker and arrived_at is not None  # the simulation sent that technician


def test_hybrid_policy_is_assigned_by_the_sweep_only_after_the_branchs_wait(place: Place,
                                                                            settings: Settings) -> None:
    # Shorter than most decisions take: on a day this short, the default wait sees every ticket grabbed first.
    cfg = SHORT_DAY.model_copy(update={"hybrid_after_s": 30})
    prepare_city(place, FIXTURES)
    run.play(place, _day(7), PolicyName.HYBRID, settings=settings, cfg=cfg)
    assert _modes(place) == {(DispatchMode.HYBRID, cfg.hybrid_after_s)}
    takings = _takings(place)
    actions = Counter(action for action, *_ in takings)
    assert actions[Action.ASSIGN] == 0 and actions[Action.GRAB] > 0 and actions[Action.SYSTEM_ASSIGN] > 0, actions
    start = datetime.combine(DAY, cfg.early_shift.starts, tzinfo=ZoneInfo("Asia/Shanghai"))
    for action, at, created_at, system_assigned, taker, holder, arrived_at in takings:
        assert system_assigned is (action == Action.SYSTEM_ASSIGN)
        if action == Action.SYSTEM_ASSIGN:
            assert at >= created_at + timedelta(seconds=cfg.hybrid_after_s)
            # By the worker's ring sweep, on one of its ticks, not at a moment of the simulation's own.
            assert (at - start).total_seconds() % settings.offer.sweep_interval_s == 0
            assert holder == taker and arrived_at is not None
