"""Two SLA sweepers on one database (two workers): every warning, timeout and escalation step goes out once."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dispatch.kernel.queues import enqueue_tick
from dispatch.kernel.settings import Settings
from dispatch.tickets import jobs, mirror, sla
from grab_pool import pool
from tests.conftest import log_in

XL_POINT = {"lat": 43.935, "lng": 116.08}
TICKETS = 40
SWEEPERS = 2
BATCH = 3  # small batches: many short transactions per sweeper, interleaved with the other's


def report_many(base_url: str, count: int) -> list[int]:
    with httpx.Client(base_url=base_url, timeout=30) as api:
        headers = log_in(api, "dispatcher.xl")
        ids = []
        for i in range(count):
            reply = api.post("/api/v1/tickets", headers=headers, json={
                "type_code": "broadband_fault", "description": "断网了", "location": XL_POINT,
                "contact": {"name": "赵六", "phone": f"1370000{i:04d}"}})
            assert reply.status_code == 201, reply.text
            ids.append(int(reply.json()["id"]))
    return ids


def sweep_until_done(engine: Engine, redis: Redis, cfg: Settings, now: datetime, start: threading.Barrier) -> int:
    start.wait()
    total = 0
    while True:
        with Session(engine) as session, session.begin():
            done = sla.sweep(session, redis, cfg=cfg.sla, now=now, limit=BATCH).total
        if not done:
            return total
        total += done


def race(engine: Engine, redis: Redis, settings: Settings, now: datetime) -> list[int]:
    start = threading.Barrier(SWEEPERS)
    with ThreadPoolExecutor(SWEEPERS) as pool:
        futures = [pool.submit(sweep_until_done, engine, redis, settings, now, start) for _ in range(SWEEPERS)]
        return [f.result(timeout=120) for f in futures]


def counts(engine: Engine, ticket_ids: list[int]) -> tuple[Counter[str], Counter[str]]:
    """Event rows by action, and feed notifications by type, for these tickets."""
    with engine.connect() as conn:
        events = conn.execute(text("SELECT action FROM ticket_event WHERE ticket_id = ANY(:ids)"),
                              {"ids": ticket_ids}).scalars()
        feed = conn.execute(text("SELECT payload->>'type' FROM outbox WHERE topic = 'feed' "
                                 "AND (payload->>'ticket_id')::int = ANY(:ids)"), {"ids": ticket_ids}).scalars()
        return Counter(events), Counter(feed)


def test_two_concurrent_sweeps_send_each_notification_once(live_server: str, committed_db: Engine, redis: Redis,
                                                           settings: Settings) -> None:
    ticket_ids = report_many(live_server, TICKETS)
    now = datetime.now(UTC)

    warned = race(committed_db, redis, settings, now + timedelta(minutes=25))  # 80% of the 30-minute response SLA
    assert sum(warned) == TICKETS
    late = race(committed_db, redis, settings, now + timedelta(minutes=31))  # each times out and reaches step 1
    assert sum(late) == 2 * TICKETS
    later = race(committed_db, redis, settings, now + timedelta(minutes=31 + 15))  # step 2 of the XL chain
    assert sum(later) == TICKETS

    events, feed = counts(committed_db, ticket_ids)
    assert (events["sla_warning"], events["time_out"], events["escalate"]) == (TICKETS, TICKETS, 2 * TICKETS)
    assert (feed["ticket.sla_warning"], feed["ticket.timed_out"], feed["ticket.escalated"]) == (
        TICKETS, TICKETS, 2 * TICKETS)
    with committed_db.connect() as conn:
        levels = conn.execute(text("SELECT (payload->>'level')::int, count(*) FROM outbox "
                                   "WHERE payload->>'type' = 'ticket.escalated' GROUP BY 1 ORDER BY 1")).all()
    assert [tuple(row) for row in levels] == [(1, TICKETS), (2, TICKETS)]


def test_the_worker_job_times_out_a_ticket_reported_long_ago(live_server: str, redis: Redis,
                                                            committed_db: Engine) -> None:
    [ticket_id] = report_many(live_server, 1)
    with committed_db.begin() as conn:  # reported 31 minutes ago: its 30-minute response SLA has passed
        conn.execute(text("UPDATE ticket SET created_at = created_at - interval '31 min', "
                          "response_due_at = response_due_at - interval '31 min', "
                          "response_warn_at = response_warn_at - interval '31 min' WHERE id = :id"),
                     {"id": ticket_id})
    with Session(committed_db) as session:
        mirror.rebuild(session, redis)  # as the worker does at start
    queue = Queue("default", connection=redis)
    assert enqueue_tick(queue, jobs.sweep_sla, job_id="sweep-sla", timeout_s=60)
    SimpleWorker([queue], connection=redis).work(burst=True)
    assert queue.failed_job_registry.count == 0
    with committed_db.connect() as conn:
        state, level = conn.execute(text("SELECT state, escalation_level FROM ticket WHERE id = :id"),
                                    {"id": ticket_id}).one()
        branch_id = conn.execute(text("SELECT branch_id FROM ticket WHERE id = :id"), {"id": ticket_id}).scalar_one()
        version = conn.execute(text("SELECT version FROM ticket WHERE id = :id"), {"id": ticket_id}).scalar_one()
    assert (state, level) == ("timed_out", 1)
    entry = pool.snapshot(redis, branch_id).tickets[ticket_id]
    assert (entry["state"], int(entry["v"])) == ("timed_out", version), "the grab pool follows the timeout"
    with Session(committed_db) as session:
        assert mirror.check(session, redis) == [], "PostgreSQL and the pool agree"
