"""On-duty technicians already at their max_active limit, for a P1 ticket whose type may go to them.

The open sets the nearest search reads leave such technicians out on purpose
(nearest.py); a P1 of a type that allows it (a hospital's line down) is
offered to the nearest of them too. P1 tickets are few, so this reads the
live index directly: one radius search of the branch's located technicians
and their on-duty meta, judged here.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from redis import Redis

from dispatch.kernel.redis import as_text
from dispatch.kernel.settings import PresenceSettings
from geo.latlng import LatLng
from technicians import live, replica
from technicians.nearest import Candidate
from technicians.presence import local_clock

# Located technicians looked at, nearest first: a city's busiest radius holds fewer.
LOOKED_AT = 500


def find_at_limit(redis: Redis, *, branch_id: int, point: LatLng, k: int, radius_m: int, skills: Sequence[str],
                  ticket_path: str, now: datetime, tz: str, presence: PresenceSettings,
                  exclude: set[int]) -> list[Candidate]:
    """The K nearest technicians within `radius_m` who could take the ticket but for their limit."""
    keys = live.LiveKeys.of(branch_id)
    near = cast(list[tuple[bytes, float]], redis.geosearch(
        keys.geo, longitude=point.lng, latitude=point.lat, radius=radius_m, unit="m", sort="ASC", count=LOOKED_AT,
        withdist=True))
    ids = [int(as_text(member)) for member, _ in near]
    if not ids:
        return []
    pipe = redis.pipeline(transaction=False)
    pipe.hmget(keys.meta, [str(i) for i in ids])
    pipe.zmscore(keys.fresh, [str(i) for i in ids])
    metas, seen = pipe.execute()
    weekday, minute = local_clock(now, tz)
    fresh_since = int(now.timestamp()) - presence.freshness_s
    found: list[Candidate] = []
    for (_, metres), technician_id, meta, last_seen in zip(near, ids, metas, seen, strict=True):
        if meta is None or last_seen is None or last_seen < fresh_since or technician_id in exclude:
            continue  # off duty or stale
        their_skills, scope, max_active, roster, active, hours = as_text(meta).split("|", 5)
        if (int(active) >= int(max_active) and set(skills) <= set(filter(None, their_skills.split(",")))
                and ticket_path.startswith(scope)
                and replica.on_shift(replica.parse_roster(roster), weekday, minute)):
            found.append(Candidate(technician_id, float(metres), int(active), float(hours)))
            if len(found) == k:
                break
    return found
