"""Periodic rq jobs of dispatch: ring and SLA sweeps, and the live index's upkeep.

Each opens its own unit of work, is safe to run twice (offers are unique
per ticket and technician; track points are popped once) and is enqueued
with a fixed job id by the worker's ticker, so a slow run never piles up.
"""

from datetime import UTC, datetime

from dispatch.kernel.db import session_scope
from dispatch.kernel.queues import Periodic
from dispatch.kernel.redis import connect
from dispatch.kernel.settings import Settings, get_settings
from dispatch.tickets import load, mirror, offers, sla
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


def sweep_sla() -> int:
    """Act on every due SLA checkpoint (timeouts, breaches, warnings, escalation steps); returns how many."""
    settings = get_settings()
    redis = connect(settings.redis_url)
    with session_scope() as session:
        result = sla.sweep(session, redis, cfg=settings.sla, now=datetime.now(UTC), limit=settings.sla.sweep_batch)
    redis.close()
    return result.total


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


def repair_pool() -> dict[str, int]:
    """Return dead claims to the grab pool and rebuild branches whose pool vanished (Redis flushed or restarted)."""
    settings = get_settings()
    redis = connect(settings.redis_url)
    with session_scope() as session:
        repaired = mirror.repair(session, redis)
    redis.close()
    return repaired


def rebuild_pool() -> dict[int, int]:
    """Rebuild the whole grab pool from PostgreSQL: whatever a mirror missed is put right."""
    settings = get_settings()
    redis = connect(settings.redis_url)
    with session_scope() as session:
        rebuilt = mirror.rebuild(session, redis)
    redis.close()
    return rebuilt


def periodic(settings: Settings) -> list[Periodic]:
    """What the worker runs on a clock (each also once at start): ring and SLA sweeps, write-through,
    restoring the live index and expiring stale positions from it, and keeping the grab pool true to
    PostgreSQL."""
    return [Periodic(sweep_rings, "sweep-rings", settings.offer.sweep_interval_s),
            Periodic(sweep_sla, "sweep-sla", settings.sla.sweep_interval_s),
            Periodic(flush_track, "flush-track", FLUSH_EVERY_S),
            Periodic(rebuild_live_index, "rebuild-live-index", REBUILD_EVERY_S),
            Periodic(expire_live_index, "expire-live-index", EXPIRE_EVERY_S),
            Periodic(repair_pool, "repair-pool", settings.pool.repair_interval_s),
            Periodic(rebuild_pool, "rebuild-pool", settings.pool.rebuild_interval_s)]
