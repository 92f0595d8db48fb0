"""The nearest eligible technicians: one function for intake offers, rings and the dispatcher.

Index choice (measured in `make bench`, 100,000 technicians around one city):
a Redis GEO set per branch holding only on-duty, located technicians, searched
by a Lua script that widens its radius and applies every eligibility filter
next to the data (freshness, skill, scope, roster, load) in one round trip.
PostGIS KNN needs positions written per ping, which the write-through batches
on purpose; H3 rings add a second lookup per cell.
"""

from dataclasses import dataclass
from datetime import datetime

from redis import Redis

from dispatch.kernel.settings import OfferSettings, PresenceSettings
from geo.latlng import LatLng
from technicians import live
from technicians.presence import local_clock

# The first radius tried; doubled while too few qualify (measured: a small start
# wins in a dense town, where a 500 m circle already holds hundreds).
START_RADIUS_M = 125


@dataclass(frozen=True)
class Candidate:
    technician_id: int
    distance_m: float
    active: int
    hours: float


def find_nearest(redis: Redis, *, branch_id: int, point: LatLng, k: int, radius_m: int, skills: list[str],
                 ticket_path: str, now: datetime, tz: str, presence: PresenceSettings, offer: OfferSettings,
                 exclude: set[int] | None = None) -> list[Candidate]:
    """The K nearest technicians within `radius_m` who could take the ticket, fairest first among near-equals.

    Eligible: on duty, position fresher than the freshness limit, every skill of the type, inside their roster
    window, below max_active, and a grab scope that covers the ticket's grid (`ticket_path`).
    """
    weekday, minute = local_clock(now, tz)
    hits = live.nearest(redis, live.LiveKeys.of(branch_id), point=point, k=k, max_radius_m=radius_m,
                        start_radius_m=min(START_RADIUS_M, radius_m), now=int(now.timestamp()),
                        freshness_s=presence.freshness_s, skills=skills, ticket_path=ticket_path,
                        exclude=exclude or set(), weekday=weekday, minute=minute, tie_band_m=offer.tie_band_m)
    return [Candidate(h.technician_id, h.distance_m, h.active, h.hours) for h in hits][:k]
