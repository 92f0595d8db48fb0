"""One simulated day per policy, each on a fresh copy of the seeded city."""

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from redis import Redis
from sqlalchemy.orm import Session

from dispatch.kernel.db import Database
from dispatch.kernel.settings import Settings
from geo.points import from_wkb
from simulation import database, demand, hindsight
from simulation.city import City, load_city
from simulation.config import SimulationSettings
from simulation.demand import Report
from simulation.engine import Outcome, World
from simulation.policies import POLICIES
from simulation.scorecard import Score, dispatched, filed, measure, percentile

HINDSIGHT = "hindsight"
UNLIMITED_PINGS = 1_000_000


@dataclass(frozen=True)
class Day:
    city: City
    day: date
    seed: int
    reports: list[Report]


def play(place: database.Place, day: Day, policy: str, *, settings: Settings, cfg: SimulationSettings,
         bound: bool = False) -> list[Score]:
    """The day under one policy, scored from what the services wrote; with `bound`, the hindsight optimum of the
    same tickets too."""
    database.fresh_day(place)
    chosen = POLICIES[policy]()
    run_settings = settings.model_copy(update={
        "database_url": place.app_url, "redis_url": place.redis_url, "migration_database_url": place.owner_url,
        "offer": settings.offer.model_copy(update=chosen.offer),
        # The phones' rate limit counts in Redis's real seconds, where a simulated hour passes in a few.
        "presence": settings.presence.model_copy(update={"ping_limit": UNLIMITED_PINGS})})
    db = Database(run_settings)
    redis = Redis.from_url(place.redis_url)
    try:
        world = World(database=db, redis=redis, settings=run_settings, cfg=cfg, city=day.city, day=day.day,
                      reports=day.reports, policy=chosen, seed=day.seed)
        outcome: Outcome = world.run()
        with db.session_scope() as session:
            scores = [measure(session, policy=policy, outcome=outcome, cfg=cfg)]
            if bound:
                scores.append(_bound(session, world))
            return scores
    finally:
        redis.close()
        db.dispose()


def play_all(place: database.Place, day: Day, policies: list[str], *, settings: Settings,
             cfg: SimulationSettings, fixtures: Path) -> list[Score]:
    database.prepare_city(place, fixtures)
    scores: list[Score] = []
    for index, policy in enumerate(policies):
        scores += play(place, day, policy, settings=settings, cfg=cfg, bound=index == len(policies) - 1)
    return scores


def _bound(session: Session, world: World) -> Score:
    """The hindsight optimum of the tickets this day dispatched, as a scorecard row (what it can say)."""
    tickets = dispatched(session)
    kinds = world.city.kinds
    visits = [hindsight.Visit(id=t.id, site=from_wkb(t.location), branch_id=t.branch_id,
                              skills=kinds[t.type_code].skills, reported_at=t.created_at,
                              onsite=timedelta(hours=kinds[t.type_code].standard_hours),
                              resolution_due_at=t.resolution_due_at) for t in tickets]
    starts = [hindsight.Start(technician_id=p.id, home=p.home, branch_id=p.ref.branch_id or 0, skills=p.skills,
                              shift_start=p.shift_start, shift_end=p.shift_end)
              for p in sorted(world.people.values(), key=lambda p: p.id)]
    plan = hindsight.optimum(visits, starts, tz=world.settings.timezone, cfg=world.cfg)
    arrive = [link.arrive_min for link in plan.links]
    nan = float("nan")
    reports, grouped = filed(session)
    return Score(policy=HINDSIGHT, reports=reports, grouped=grouped, tickets=len(plan.links), accept_p50_min=0.0,
                 accept_p90_min=0.0,
                 arrive_p50_min=percentile(arrive, 50), arrive_p90_min=percentile(arrive, 90),
                 km_per_ticket=plan.km_per_visit, response_sla=1.0, resolution_sla=nan, tickets_per_tech_hour=nan,
                 pay_gini=nan, outage_clear_min=nan, unaccepted=len(plan.unreachable), two_owners=0)


def simulate(place: database.Place, *, fixtures: Path, day: date, seed: int, policies: list[str],
             replay: Path | None, settings: Settings, cfg: SimulationSettings) -> tuple[list[Score], list[Report]]:
    """The day's reports (replayed, or generated from the seed) played under each policy, and the hindsight
    optimum after the last."""
    city = load_city(fixtures)
    reports = demand.read_csv(replay) if replay is not None else \
        demand.generate(city, day=day, seed=seed, cfg=cfg, tz=settings.timezone)
    database.point_process_at(place)
    return play_all(place, Day(city, day, seed, reports), policies, settings=settings, cfg=cfg,
                    fixtures=fixtures), reports
