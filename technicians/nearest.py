"""The nearest eligible technicians: one function for intake offers, rings and the dispatcher.

Index choice (measured in `make bench`, 100,000 technicians around one city, 30% on
duty, 2 clients): per branch and skill, a Redis GEO set holding only technicians who
could be offered (on duty, located, fresh, on shift, below their limit), each member
carrying what the search judges, searched by one Lua call that starts from the radius
that settled the last search nearby, widens while too few qualify, judges every
filter next to the data and applies the fairness band (technicians/lua/). It answered
in 0.38 ms p50 where the same search in PostgreSQL (bench row f: KNN on a partial
GiST index of geography points, every filter in SQL, fairness on its 4K rows) took
0.58 ms, and PostgreSQL would also need every ping committed (the write-through
batches sampled points every few seconds on purpose: one commit per ping caps
presence at ~2k/s), loads and rosters as columns, and a pinned plan (the planner
takes the filters for selective and sorts every on-duty row: 50 ms). Raw KNN
without filters (row b, 0.09 ms) answers a different question. H3 rings add a
lookup per cell and judge as many technicians.
"""

from dataclasses import dataclass
from datetime import datetime

from redis import Redis

from dispatch.kernel.settings import OfferSettings, PresenceSettings
from geo.latlng import LatLng
from technicians import live
from technicians.presence import local_clock

# The first radius tried where the index remembers none from an earlier search;
# doubled while too few qualify (a small start wins in a dense town, where a 500 m
# circle already holds hundreds).
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
