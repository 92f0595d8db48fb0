"""The real `fieldpool worker` runs its periodic jobs hundreds of times, each in a forked process, on a
city with reports and technicians on duty: not one run fails, and the log stays quiet.

The ticks run a thousand times faster (PERIODIC_SCALE): the failures this guards against came from a
worker that had run for minutes (forked jobs reusing the parent's connection) and passed every test
that ran a fresh worker for one minute.
"""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry
from sqlalchemy.engine import Engine

from dispatch.kernel.queues import Outcomes, periodic_outcomes
from dispatch.kernel.settings import Settings
from dispatch.tickets import jobs, outbox
from tests.conftest import _free_port, answers, fieldpool_process, log_in

RUNS = 200
DEADLINE_S = 420.0  # generous: a shared 2-core machine forks 1,600 jobs
PERIODIC = [job.job_id for job in jobs.periodic(Settings())] + [outbox.TICK_JOB_ID]
XL_POINT = {"lat": 43.935, "lng": 116.08, "crs": "wgs84"}


@pytest.fixture
def city(settings: Settings, committed_db: Engine, redis: Redis, tmp_path: Path,
         demo_technicians_restored: None) -> Iterator[tuple[Path, Redis, httpx.Client]]:
    """The API and a worker ticking fast, with reports waiting and two technicians on duty, pinging."""
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "REDIS_QUEUE_URL": settings.redis_url, "SECRET_KEY": settings.secret_key,
           "MEDIA_DIR": str(settings.media_dir), "LOG_LEVEL": "INFO", "LOG_JSON": "true",
           "PERIODIC_SCALE": "0.001", "OFFER__STEP_S": "1"}
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    worker_log = tmp_path / "worker.log"
    with fieldpool_process(["serve", "--port", str(port), "--workers", "1"], env, tmp_path / "api.log",
                           answers(base_url)), httpx.Client(base_url=base_url, timeout=30) as api:
        for n, username in enumerate(("tech01", "tech02")):
            me = log_in(api, username)
            assert api.put("/api/v1/me/duty", json={"on_duty": True}, headers=me).status_code == 200
            where = {**XL_POINT, "lat": XL_POINT["lat"] + n / 1000}
            assert api.put("/api/v1/me/location", json=where, headers=me).status_code == 204
        for n in range(5):
            reply = api.post("/api/v1/tickets", headers=log_in(api, "dispatcher.xl"), json={
                "type_code": "broadband_fault", "description": "断网了", "location": XL_POINT,
                "contact": {"name": "张三", "phone": f"1360000{n:04d}"}})
            assert reply.status_code == 201, reply.text
        with fieldpool_process(["worker"], env, worker_log):
            yield worker_log, redis, api


def _all_ran(redis: Redis) -> dict[str, Outcomes]:
    deadline = time.monotonic() + DEADLINE_S
    while True:  # polled with a deadline: the worker runs on its own clock
        outcomes = {o.job_id: o for o in periodic_outcomes(redis)}
        if all(job in outcomes and outcomes[job].runs >= RUNS for job in PERIODIC):
            return outcomes
        if time.monotonic() > deadline:
            raise AssertionError(f"not every job ran {RUNS} times: {outcomes}")
        time.sleep(0.5)


def test_every_periodic_job_runs_hundreds_of_times_without_one_failure(
        city: tuple[Path, Redis, httpx.Client]) -> None:
    worker_log, redis, api = city
    outcomes = _all_ran(redis)

    assert {job: o.failures for job, o in outcomes.items()} == {job: 0 for job in outcomes}
    assert all(o.last_success_at is not None and o.last_failure_at is None for o in outcomes.values())
    assert FailedJobRegistry(queue=Queue("default", connection=redis)).count == 0
    lines = [json.loads(line) for line in worker_log.read_text().splitlines() if line.startswith("{")]
    assert [line for line in lines if line.get("level") in {"error", "critical"}] == []
    # An idle tick says nothing: the log holds what the jobs did, not one line per run.
    runs = sum(o.runs for o in outcomes.values())
    assert len(worker_log.read_text().splitlines()) < runs / 10
    exposition = api.get("/metrics").text  # what an operator's alert reads
    for job in PERIODIC:
        assert f'fieldpool_periodic_job_failures_total{{job="{job}"}} 0.0' in exposition
        assert f'fieldpool_periodic_job_runs_total{{job="{job}"}}' in exposition
