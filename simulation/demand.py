"""A day of fault reports: generated from a seed with the day's shape, or replayed from a CSV."""

import csv
import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from shapely.geometry import Point

from geo.latlng import LatLng
from simulation.city import City, Grid
from simulation.config import SimulationSettings

CSV_FIELDS = ("at", "type_code", "lat", "lng", "burst")
METRES_PER_DEGREE = 111_195.0


@dataclass(frozen=True)
class Report:
    at: datetime  # UTC
    type_code: str
    point: LatLng
    burst: bool = False


def _local(day: date, clock: time, tz: str) -> datetime:
    return datetime.combine(day, clock, tzinfo=ZoneInfo(tz))


def _point_in(grid: Grid, rng: random.Random) -> LatLng:
    west, south, east, north = grid.polygon.bounds
    while True:  # rejection sampling: grids are convex enough that a few tries do
        lng, lat = rng.uniform(west, east), rng.uniform(south, north)
        if grid.polygon.contains(Point(lng, lat)):
            return LatLng(round(lat, 6), round(lng, 6))


def _near(centre: LatLng, radius_m: float, grid: Grid, rng: random.Random) -> LatLng:
    while True:
        r, a = radius_m * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        lat = centre.lat + r * math.cos(a) / METRES_PER_DEGREE
        lng = centre.lng + r * math.sin(a) / (METRES_PER_DEGREE * math.cos(math.radians(centre.lat)))
        if grid.polygon.contains(Point(lng, lat)):
            return LatLng(round(lat, 6), round(lng, 6))


def _moment(rng: random.Random, start: datetime, end: datetime, cfg: SimulationSettings, day: date,
            tz: str) -> datetime:
    """One report's time: in the morning peak, the evening peak, or anywhere in the day."""
    draw = rng.random()
    peak = cfg.morning_peak if draw < cfg.morning_share else \
        cfg.evening_peak if draw < cfg.morning_share + cfg.evening_share else None
    while True:
        if peak is None:
            at = start + timedelta(seconds=rng.uniform(0, (end - start).total_seconds()))
        else:
            at = _local(day, peak, tz) + timedelta(minutes=rng.gauss(0, cfg.peak_spread_min))
        if start <= at <= end:
            return at.replace(microsecond=0)


def _grid_weights(city: City) -> list[float]:
    """Reports come where subscribers live: a branch's share by how many technicians it employs for them, each
    grid's within it by its area."""
    crews = {b: sum(1 for w in city.workers if w.branch == b) for b in {g.branch for g in city.grids}}
    areas = {b: sum(g.polygon.area for g in city.grids if g.branch == b) for b in crews}
    return [crews[g.branch] / len(city.workers) * g.polygon.area / areas[g.branch] for g in city.grids]


def generate(city: City, *, day: date, seed: int, cfg: SimulationSettings, tz: str) -> list[Report]:
    """The day's reports, the same for the same seed: grids by _grid_weights, types by their shares, an evening and
    a morning peak, and an outage burst of `burst_reports` in `burst_minutes` around one point of one grid."""
    rng = random.Random(seed)
    start, end = _local(day, cfg.first_report, tz), _local(day, cfg.last_report, tz)
    grids, weights = city.grids, _grid_weights(city)
    codes = sorted(cfg.type_shares)
    reports = []
    for _ in range(cfg.reports):
        at = _moment(rng, start, end, cfg, day, tz)
        grid = rng.choices(grids, weights=weights)[0]
        kind = rng.choices(codes, weights=[cfg.type_shares[c] for c in codes])[0]
        reports.append(Report(at=at.astimezone(ZoneInfo("UTC")), type_code=kind, point=_point_in(grid, rng)))
    if cfg.burst_reports:
        grid = rng.choice([g for g in grids if g.branch == grids[0].branch])
        centre = _point_in(grid, rng)
        burst_start = _local(day, cfg.burst_at, tz)
        for _ in range(cfg.burst_reports):
            at = burst_start + timedelta(seconds=round(rng.uniform(0, cfg.burst_minutes * 60)))
            reports.append(Report(at=at.astimezone(ZoneInfo("UTC")), type_code=cfg.burst_type,
                                  point=_near(centre, cfg.burst_radius_m, grid, rng), burst=True))
    return sorted(reports, key=lambda r: (r.at, r.point.lat, r.point.lng))


def read_csv(path: Path) -> list[Report]:
    """Reports from a CSV with the columns of CSV_FIELDS (`at` ISO 8601 with its offset; `burst` 0/1)."""
    with path.open(encoding="utf-8", newline="") as rows:
        reports = [Report(at=datetime.fromisoformat(row["at"]).astimezone(ZoneInfo("UTC")), type_code=row["type_code"],
                          point=LatLng(float(row["lat"]), float(row["lng"])), burst=row.get("burst") == "1")
                   for row in csv.DictReader(rows)]
    return sorted(reports, key=lambda r: (r.at, r.point.lat, r.point.lng))


def write_csv(reports: list[Report], path: Path) -> None:
    """The day as a CSV that `--reports` replays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_FIELDS)
        for r in reports:
            writer.writerow([r.at.isoformat(), r.type_code, r.point.lat, r.point.lng, int(r.burst)])
