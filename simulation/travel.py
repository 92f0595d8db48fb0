"""How technicians move: straight-line distance times a detour factor, at the speed of the hour."""

from datetime import datetime
from zoneinfo import ZoneInfo

from geo.distance import haversine_m
from geo.latlng import LatLng
from simulation.config import SimulationSettings


def road_km(start: LatLng, end: LatLng, cfg: SimulationSettings) -> float:
    return haversine_m(start, end) / 1000 * cfg.detour_factor


def speed_kmh(at: datetime, tz: str, cfg: SimulationSettings) -> float:
    hour = at.astimezone(ZoneInfo(tz)).hour
    return cfg.speed_kmh_from_hour[max(h for h in cfg.speed_kmh_from_hour if h <= hour)]


def drive_s(start: LatLng, end: LatLng, *, at: datetime, tz: str, cfg: SimulationSettings) -> float:
    """Seconds to drive from `start` to `end` leaving at `at` (the speed of the hour of departure)."""
    return road_km(start, end, cfg) / speed_kmh(at, tz, cfg) * 3600


def along(start: LatLng, end: LatLng, fraction: float) -> LatLng:
    """Where a driver is after `fraction` of the way (a town is small enough for straight interpolation)."""
    f = min(1.0, max(0.0, fraction))
    return LatLng(start.lat + (end.lat - start.lat) * f, start.lng + (end.lng - start.lng) * f)
