"""The worker's side of webhooks: send what is due, right after a fan-out commits and every few seconds.

Sending runs only here, never in a request: a slow or dead receiver holds
up a job (and at most `WEBHOOKS__TIMEOUT_S` per attempt), never an API call.
"""

from datetime import UTC, datetime

import httpx
import structlog
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.job import Job
from sqlalchemy.orm import Session

from dispatch.kernel.db import after_commit, session_scope
from dispatch.kernel.queues import Periodic, queue
from dispatch.kernel.settings import Settings, WebhookSettings, get_settings
from dispatch.webhooks import sender, service

SEND_JOB_TIMEOUT_S = 600
SEND_NOW_JOB_ID = "webhooks-send-now"
TICK_JOB_ID = "webhooks-send-tick"
# Set when a send was asked for while one ran: that run looks again before it ends.
AGAIN_KEY = "fieldpool:webhooks:send-again"
MAX_BATCHES_PER_JOB = 50  # a run under constant inflow ends; the next one continues

log = structlog.get_logger()


def send_due(http: httpx.Client, *, cfg: WebhookSettings, now: datetime | None = None) -> int:
    """Send due deliveries in batches, each its own transaction, until none is due; returns how many
    were delivered. `now` fixed (tests) stands for the clock throughout.

    Safe to run concurrently: deliveries are claimed with SKIP LOCKED and their outcome is recorded in the
    claiming transaction. At least once: a run that dies between a receiver's 2xx and its commit sends
    that delivery again, with the same event id.
    """
    clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
    delivered = 0
    failed: set[int] = set()  # webhooks that failed in this run wait for their retry time, not the next batch
    with session_scope() as session:
        if gave_up := service.give_up_stale(session, now=clock(), cfg=cfg):
            log.warning("webhook_deliveries_given_up", count=gave_up, retried_for_s=cfg.retry_for_s)
        service.disable_failing(session, now=clock(), cfg=cfg)
    for _ in range(MAX_BATCHES_PER_JOB):
        with session_scope() as session:
            batch = service.claim_due(session, now=clock(), limit=cfg.batch, skip_webhooks=failed)
            outcomes = sender.post_all(http, batch, cfg=cfg, clock=clock)
            service.record_outcomes(session, outcomes, now=clock(), cfg=cfg)
        delivered += sum(1 for o in outcomes if o.delivered)
        failed |= {o.webhook_id for o in outcomes if not o.delivered}
        if not batch:
            break
    return delivered


def send_deliveries_job() -> int:
    """rq job: send what is due, and again while sends were asked for meanwhile; returns how many went."""
    cfg = get_settings().webhooks
    again = queue().connection
    total = 0
    with sender.client(cfg) as http:
        while True:
            again.delete(AGAIN_KEY)
            total += send_due(http, cfg=cfg)
            if not again.exists(AGAIN_KEY):
                return total


def enqueue_send(q: Queue) -> None:
    """Have the due deliveries sent now (after a fan-out commits); a run queued or in progress is told to
    look again instead, so a drain fanning out 500 events asks rq once, not 500 times.

    A request that lands as a run ends, after its last look, waits for the periodic send (WEBHOOKS__SEND_EVERY_S).
    """
    try:
        with q.connection.pipeline(transaction=False) as pipe:
            pipe.set(AGAIN_KEY, 1, ex=SEND_JOB_TIMEOUT_S)
            pipe.exists(Job.key_for(SEND_NOW_JOB_ID))
            _, pending = pipe.execute()
        if not pending:
            q.enqueue(send_deliveries_job, job_id=SEND_NOW_JOB_ID, unique=True, result_ttl=0, failure_ttl=60,
                      job_timeout=SEND_JOB_TIMEOUT_S, description="webhook deliveries after commit")
    except DuplicateJobError:
        pass  # enqueued meanwhile by another commit: it will see the flag
    except (RedisError, OSError) as exc:
        log.warning("webhook_send_enqueue_failed", error=f"{type(exc).__name__}: {exc}")


def send_after_commit(session: Session) -> None:
    """Have the due deliveries sent once this session's transaction commits (nothing if it rolls back)."""
    after_commit(session, "webhooks.send", lambda: enqueue_send(queue()))


def send_tick(settings: Settings) -> Periodic:
    """The periodic send of the worker's ticker: retries come due here."""
    return Periodic(send_deliveries_job, TICK_JOB_ID, settings.webhooks.send_every_s * settings.periodic_scale,
                    SEND_JOB_TIMEOUT_S)
