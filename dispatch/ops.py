"""Health, readiness and metrics for the operator's load balancer and Prometheus."""

import os
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from dispatch.kernel.db import Database
from dispatch.kernel.problems import problem
from dispatch.tickets import mirror
from grab_pool import pool

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (no dependencies checked)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "PostgreSQL is down"}})
def readyz(request: Request) -> Any:
    """PostgreSQL and PostGIS reachable (else 503); Redis and the grab pool up, or "degraded".

    Without Redis the service still takes reports and arbitrates grabs in
    PostgreSQL alone, so it stays in the load balancer, saying so.
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
    if checks["postgres"] != "ok":
        return problem(503, "service_unavailable", "A required service is down", "not reachable: postgres",
                       checks=checks)
    checks["pool"] = _pool_state(request, redis_up=checks["redis"] == "ok")
    degraded = any(state != "ok" for name, state in checks.items() if name != "postgis")
    return JSONResponse({"status": "degraded" if degraded else "ok", "checks": checks})


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


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """Prometheus text exposition, summed over every API process of this server."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
