"""Health, readiness and metrics for the operator's load balancer and Prometheus."""

import ipaddress
import os
from collections.abc import Iterator
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from dispatch.kernel.auth import Actor, Authenticator, Role, bearer_scheme
from dispatch.kernel.db import Database
from dispatch.kernel.errors import Forbidden, Unauthorized
from dispatch.kernel.problems import problem, raises
from dispatch.kernel.queues import periodic_outcomes, queue
from dispatch.tickets import mirror
from grab_pool import pool

router = APIRouter(tags=["operations"])
log = structlog.get_logger()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (no dependencies checked)."""
    return {"status": "ok"}


def _from_loopback(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:  # not an address at all (a test client's name)
        return False


def _actor_of(database: Database, authenticate: Authenticator, token: str) -> Actor:
    with database.session_scope() as session:
        return authenticate(session, token, None)


@raises(Unauthorized)
async def sees_internals(request: Request, token: Annotated[str | None, Depends(bearer_scheme)]) -> bool:
    """Versions, checks and traffic are for this machine (Prometheus, `make bench`) or an admin's token.

    Behind a reverse proxy on the same machine, the proxy must send X-Forwarded-For (uvicorn trusts it from
    loopback), or every client would look local.

    Raises: Unauthorized (a bearer token that is not valid).
    """
    if _from_loopback(request):
        return True
    if not token:
        return False
    state = request.app.state
    actor = state.authenticate.cached(token) or await state.db.run(_actor_of, state.db, state.authenticate, token)
    return actor.role is Role.ADMIN


Insider = Annotated[bool, Depends(sees_internals)]


@router.get("/readyz", responses={503: {"description": "PostgreSQL is down"}})
def readyz(request: Request, insider: Insider) -> Any:
    """PostgreSQL and PostGIS reachable (else 503); Redis and the grab pool up, or "degraded".

    Without Redis the service still takes reports and arbitrates grabs in
    PostgreSQL alone, so it stays in the load balancer, saying so. The checks
    (with versions) are shown from loopback or to an admin; anyone else gets the status alone.
    """
    checks: dict[str, str] = {}
    database: Database = request.app.state.db
    try:
        checks["postgis"] = database.postgis_version()
        checks["postgres"] = "ok"
    except SQLAlchemyError as exc:
        checks["postgres"] = f"down: {type(exc).__name__}"
    try:
        request.app.state.redis.ping()
        checks["redis"] = "ok"
    except RedisError as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
    details = {"checks": checks} if insider else {}
    if checks["postgres"] != "ok":
        return problem(503, "service_unavailable", "A required service is down",
                       "not reachable: postgres" if insider else "not ready", **details)
    checks["pool"] = _pool_state(request, redis_up=checks["redis"] == "ok")
    degraded = any(state != "ok" for name, state in checks.items() if name != "postgis")
    return JSONResponse({"status": "degraded" if degraded else "ok", **details})


def _pool_state(request: Request, *, redis_up: bool) -> str:
    if not redis_up:
        return "degraded: Redis is down, PostgreSQL alone arbitrates grabs"
    with request.app.state.db.session_scope() as session:
        branches = mirror.branch_ids(session)
    try:
        unbuilt = [b for b in branches if not pool.is_built(request.app.state.redis, b)]
    except RedisError as exc:
        return f"degraded: {type(exc).__name__}"
    if unbuilt:
        return f"degraded: rebuilding branches {', '.join(map(str, unbuilt))}, PostgreSQL arbitrates their grabs"
    return "ok"


class PeriodicJobs(Collector):
    """The worker's periodic jobs as it recorded them in the queues' Redis: alert on failures rising
    or a last success growing old."""

    def __init__(self, connection: Redis) -> None:
        self._connection = connection

    def collect(self) -> Iterator[Metric]:
        runs = CounterMetricFamily("fieldpool_periodic_job_runs", "Runs of a periodic job", labels=["job"])
        failures = CounterMetricFamily("fieldpool_periodic_job_failures", "Failed runs of a periodic job",
                                       labels=["job"])
        succeeded = GaugeMetricFamily("fieldpool_periodic_job_last_success_timestamp_seconds",
                                      "When a periodic job last succeeded", labels=["job"])
        failed = GaugeMetricFamily("fieldpool_periodic_job_last_failure_timestamp_seconds",
                                   "When a periodic job last failed", labels=["job"])
        for job in periodic_outcomes(self._connection):
            runs.add_metric([job.job_id], job.runs)
            failures.add_metric([job.job_id], job.failures)
            if job.last_success_at is not None:
                succeeded.add_metric([job.job_id], job.last_success_at)
            if job.last_failure_at is not None:
                failed.add_metric([job.job_id], job.last_failure_at)
        yield from (runs, failures, succeeded, failed)


@router.get("/metrics", response_class=Response, responses={403: {"description": "neither loopback nor an admin"}})
def metrics(insider: Insider) -> Response:
    """Prometheus text exposition: HTTP figures summed over every API process, and the worker's jobs
    (from loopback or with an admin's bearer token)."""
    if not insider:
        raise Forbidden("metrics are served to this machine or an admin's token")
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        exposition = generate_latest(registry)
    else:
        exposition = generate_latest()
    jobs = CollectorRegistry()
    jobs.register(PeriodicJobs(queue().connection))
    try:
        exposition += generate_latest(jobs)
    except RedisError as exc:
        log.warning("periodic_job_metrics_unavailable", error=f"{type(exc).__name__}: {exc}")
    return Response(exposition, media_type=CONTENT_TYPE_LATEST)
