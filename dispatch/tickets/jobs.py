"""Periodic rq jobs of dispatch: ring and SLA sweeps, and the live index's upkeep.

Each opens its own unit of work, is safe to run twice (offers are unique
per ticket and technician; track points are popped once) and is enqueued
with a fixed job id by the worker's ticker, so a slow run never piles up.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from redis import Redis
from sqlalchemy.orm import Session

from dispatch.kernel.db import session_scope
from dispatch.kernel.queues import Periodic
from dispatch.kernel.redis import connect
from dispatch.kernel.settings import Settings, get_settings
from dispatch.tickets import load, mirror, modes, offers, sla
from technicians import presence

SWEEP_BATCH = 200
FLUSH_EVERY_S = 5.0
# Also run at worker start: after a Redis restart on-duty technicians come back within this time.
REBUILD_EVERY_S = 300.0
# Stale technicians leave the searched sets within this time (the search skips them meanwhile).
EXPIRE_EVERY_S = 30.0


@contextmanager
def _job() -> Iterator[tuple[Settings, Redis, Session]]:
    """What every job opens: the process settings, a Redis connection and one unit of work."""
    settings = get_settings()
    redis = connect(settings.redis_url)
    try:
        with session_scope() as session:
            yield settings, redis, session
    finally:
        redis.close()


def sweep_rings() -> int:
    """Offer the next ring of every grabbable ticket whose ring is due, then let the system assign the tickets of
    hybrid branches left unanswered for their branch's wait; returns how many were swept and assigned.

    One job for both, each in its own unit of work (a grab waits on the assigned rows only as long as their own
    transaction): rq forks a process per job, and a job of its own would cost a fork every sweep interval, a
    delay to the outbox drain behind it on a busy worker.
    """
    now = datetime.now(UTC)
    with _job() as (settings, redis, session):
        rings = offers.sweep(session, redis, settings=settings, now=now, limit=SWEEP_BATCH)
    with _job() as (settings, redis, session):
        return rings + modes.sweep_hybrid(session, redis, settings=settings, now=now, limit=SWEEP_BATCH)


def sweep_sla(reach: sla.Reach | None = None) -> int:
    """Act on every due SLA checkpoint (timeouts, breaches, warnings, escalation steps); returns how many.

    `reach` sends the steps' staff notices (dispatch.notices.jobs passes it).
    """
    with _job() as (settings, redis, session):
        return sla.sweep(session, redis, cfg=settings.sla, now=datetime.now(UTC),
                         limit=settings.sla.sweep_batch, reach=reach).total


def flush_track() -> int:
    """Write the sampled positions through to PostGIS."""
    with _job() as (settings, redis, session):
        flushed = presence.flush_track(session, redis, branch_ids=presence.branch_ids(session),
                                       batch=settings.presence.flush_batch)
        session.commit()
        return presence.confirm_flushed(redis, flushed)  # only once the rows are committed


def rebuild_live_index() -> int:
    """Restore on-duty technicians into the live index (after a Redis restart, nothing is lost for long)."""
    with _job() as (settings, redis, session):
        restored = presence.rebuild_live(session, redis, cfg=settings.presence)
        # Loads too: a technician at their limit must not come back into the searched sets.
        load.refresh(session, redis, restored, now=datetime.now(UTC), tz=settings.timezone)
        return len(restored)


def expire_live_index() -> int:
    """Take technicians whose position went stale out of the searched sets."""
    with _job() as (settings, redis, session):
        return presence.expire_stale(redis, branch_ids=presence.branch_ids(session), now=datetime.now(UTC),
                                     cfg=settings.presence)


def repair_pool() -> dict[str, int]:
    """Return dead claims to the grab pool and rebuild branches whose pool vanished (Redis flushed or restarted)."""
    with _job() as (_, redis, session):
        return mirror.repair(session, redis)


def rebuild_pool() -> dict[int, int]:
    """Rebuild the whole grab pool from PostgreSQL: whatever a mirror missed is put right."""
    with _job() as (_, redis, session):
        return mirror.rebuild(session, redis)


def periodic(settings: Settings, *, sla_sweep: Callable[[], int] = sweep_sla) -> list[Periodic]:
    """What the worker runs on a clock (each also once at start): ring, hybrid dispatch and SLA sweeps, write-through,
    restoring the live index and expiring stale positions from it, and keeping the grab pool true to
    PostgreSQL; every interval times `settings.periodic_scale`."""
    scale = settings.periodic_scale
    # The rebuilds do not report: what they return is everything they rebuilt, not what changed.
    return [Periodic(sweep_rings, "sweep-rings", settings.offer.sweep_interval_s * scale),
            Periodic(sla_sweep, "sweep-sla", settings.sla.sweep_interval_s * scale),
            Periodic(flush_track, "flush-track", FLUSH_EVERY_S * scale),
            Periodic(rebuild_live_index, "rebuild-live-index", REBUILD_EVERY_S * scale, reports=False),
            Periodic(expire_live_index, "expire-live-index", EXPIRE_EVERY_S * scale),
            Periodic(repair_pool, "repair-pool", settings.pool.repair_interval_s * scale),
            Periodic(rebuild_pool, "rebuild-pool", settings.pool.rebuild_interval_s * scale, reports=False)]
