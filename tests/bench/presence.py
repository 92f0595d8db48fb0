"""Presence in `make bench`: the worker's batched write-through to PostGIS, and the ping limit lifted.

The door table's location pings (`tests/bench/door.py`) come from technicians each pinging as themself;
the bench server runs with a ping limit high enough never to answer 429 (`SERVER_ENV`).
"""

import time

from redis import Redis
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from dispatch.kernel.settings import PresenceSettings
from technicians import live, presence
from technicians.models import TrackPoint

# Added to the bench server's environment: the default limit (30 a minute) would turn the pings into 429s.
SERVER_ENV = {"PRESENCE__PING_LIMIT": "1000000"}


def batch_size() -> int:
    return PresenceSettings().flush_batch


def write_through(database_url: str, redis_url: str, *, points: int) -> tuple[int, float]:
    """Time the worker's `presence.flush_track` (one COPY per branch) on `points` sampled positions.

    Pings are sampled into the track at most every 30 s per technician, so a few seconds
    of pinging leave too few points to time; the track list is filled with as many as a busy branch
    would gather between two sweeps, for the demo technicians, then flushed as the worker does.
    """
    redis = Redis.from_url(redis_url)
    engine = create_engine(database_url)
    batch = batch_size()
    try:
        with Session(engine) as session:
            branches = presence.branch_ids(session)
            before = session.scalar(select(func.count()).select_from(TrackPoint)) or 0
        # Each on-duty technician's samples go to their own branch's track, as their pings would.
        pingers = [(live.LiveKeys.of(b), int(i)) for b in branches for i in redis.hkeys(live.LiveKeys.of(b).meta)]
        if not pingers:
            raise RuntimeError("no technician on duty in the bench server's live index")
        now = int(time.time())
        pipe = redis.pipeline(transaction=False)
        for n in range(points):
            keys, tid = pingers[n % len(pingers)]
            pipe.rpush(keys.track, f"{tid}|{now - points + n}|{116.03 + (n % 1000) / 10000}|"
                                   f"{43.90 + (n % 700) / 10000}|{5 + n % 40}")
        pipe.execute()
        began = time.perf_counter()
        written = 0
        while True:  # the worker's job, run until the track is drained: one transaction, then trim
            with Session(engine) as session, session.begin():
                flushed = presence.flush_track(session, redis, branch_ids=branches, batch=batch)
            done = presence.confirm_flushed(redis, flushed)
            written += done
            if not done:
                break
        seconds = time.perf_counter() - began
        with Session(engine) as session:
            stored = (session.scalar(select(func.count()).select_from(TrackPoint)) or 0) - before
        if stored < points:
            raise RuntimeError(f"write-through stored {stored} of {points} track points")
        return written, seconds
    finally:
        engine.dispose()
        redis.close()
