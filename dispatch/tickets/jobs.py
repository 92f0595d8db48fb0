"""Periodic rq jobs of dispatch: ring sweeps and the live index's upkeep.

Each opens its own unit of work, is safe to run twice (offers are unique
per ticket and technician; track points are popped once) and is enqueued
with a fixed job id by the worker's ticker, so a slow run never piles up.
"""

from datetime import UTC, datetime

from dispatch.kernel.db import session_scope
from dispatch.kernel.queues import Periodic
from dispatch.kernel.redis import connect
from dispatch.kernel.settings import Settings, get_settings
from dispatch.tickets import load, offers
from technicians import presence

SWEEP_BATCH = 200
FLUSH_EVERY_S = 5.0
# Also run at worker start: after a Redis restart on-duty technicians come back within this time.
REBUILD_EVERY_S = 300.0
# Stale technicians leave the searched sets within this time (the search skips them meanwhile).
EXPIRE_EVERY_S = 30.0


def sweep_rings() -> int:
    """Offer the next ring of every grabbable ticket whose ring is due; returns how many were swept."""
    settings = get_settings()
    redis = connect(settings.redis_url)
    with session_scope() as session:
        swept = offers.sweep(session, redis, settings=settings, now=datetime.now(UTC), limit=SWEEP_BATCH)
    redis.close()
    return swept


def flush_track() -> int:
    """Write the sampled positions through to PostGIS."""
    settings = get_settings()
    redis = connect(settings.redis_url)
    with session_scope() as session:
        flushed = presence.flush_track(session, redis, branch_ids=presence.branch_ids(session),
                                       batch=settings.presence.flush_batch)
    written = presence.confirm_flushed(redis, flushed)  # only once the rows are committed
    redis.close()
    return written


def rebuild_live_index() -> int:
    """Restore on-duty technicians into the live index (after a Redis restart, nothing is lost for long)."""
    settings = get_settings()
    redis = connect(settings.redis_url)
    with session_scope() as session:
        restored = presence.rebuild_live(session, redis, cfg=settings.presence)
        # Loads too: a technician at their limit must not come back into the searched sets.
        load.refresh(session, redis, restored, now=datetime.now(UTC), tz=settings.timezone)
    redis.close()
    return len(restored)


def expire_live_index() -> int:
    """Take technicians whose position went stale out of the searched sets."""
    settings = get_settings()
    redis = connect(settings.redis_url)
    with session_scope() as session:
        branches = presence.branch_ids(session)
    gone = presence.expire_stale(redis, branch_ids=branches, now=datetime.now(UTC), cfg=settings.presence)
    redis.close()
    return gone


def periodic(settings: Settings) -> list[Periodic]:
    """What the worker runs on a clock: ring sweeps, write-through, restoring the live index and
    expiring stale positions from it."""
    return [Periodic(sweep_rings, "sweep-rings", settings.offer.sweep_interval_s),
            Periodic(flush_track, "flush-track", FLUSH_EVERY_S),
            Periodic(rebuild_live_index, "rebuild-live-index", REBUILD_EVERY_S),
            Periodic(expire_live_index, "expire-live-index", EXPIRE_EVERY_S)]
