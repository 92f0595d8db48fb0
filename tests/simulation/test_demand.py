"""The generated day: the same for a seed, shaped as the settings say, and replayable from its CSV."""

from collections import Counter
from datetime import date, time
from pathlib import Path
from zoneinfo import ZoneInfo

from shapely.geometry import Point

from simulation import demand
from simulation.city import load_city
from simulation.config import SimulationSettings

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TZ = "Asia/Shanghai"
DAY = date(2026, 11, 16)


def test_a_seed_gives_the_same_day_and_another_seed_another() -> None:
    city, cfg = load_city(FIXTURES), SimulationSettings()
    first = demand.generate(city, day=DAY, seed=7, cfg=cfg, tz=TZ)
    assert demand.generate(city, day=DAY, seed=7, cfg=cfg, tz=TZ) == first
    assert demand.generate(city, day=DAY, seed=8, cfg=cfg, tz=TZ) != first


def test_the_day_has_its_peaks_its_burst_and_its_types() -> None:
    city, cfg = load_city(FIXTURES), SimulationSettings()
    reports = demand.generate(city, day=DAY, seed=7, cfg=cfg, tz=TZ)
    assert len(reports) == cfg.reports + cfg.burst_reports
    burst = [r for r in reports if r.burst]
    assert len(burst) == 30
    assert (max(r.at for r in burst) - min(r.at for r in burst)).total_seconds() <= 10 * 60
    grids = {g.code for r in burst for g in city.grids if g.polygon.contains(Point(r.point.lng, r.point.lat))}
    assert len(grids) == 1
    hours = Counter(r.at.astimezone(ZoneInfo(TZ)).hour for r in reports if not r.burst)
    assert hours[9] > hours[14] and hours[19] > hours[14]  # the morning and evening peaks over the afternoon
    assert all(time(7, 30) <= r.at.astimezone(ZoneInfo(TZ)).time() <= time(20, 30) for r in reports)
    kinds = Counter(r.type_code for r in reports if not r.burst)
    assert kinds.most_common(1)[0][0] == "broadband_fault"  # the largest share


def test_a_written_day_replays_as_it_was(tmp_path: Path) -> None:
    reports = demand.generate(load_city(FIXTURES), day=DAY, seed=3, cfg=SimulationSettings(reports=20), tz=TZ)
    demand.write_csv(reports, tmp_path / "reports.csv")
    assert demand.read_csv(tmp_path / "reports.csv") == reports
