"""Health, readiness and metrics for the operator's load balancer and Prometheus."""

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from dispatch.kernel.db import Database
from dispatch.kernel.problems import problem

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (no dependencies checked)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a required service is down"}})
def readyz(request: Request) -> Any:
    """PostgreSQL, PostGIS and Redis are reachable."""
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
    down = [name for name, state in checks.items() if state.startswith("down")]
    if down:
        return problem(503, "service_unavailable", "A required service is down",
                       f"not reachable: {', '.join(down)}", checks=checks)
    return JSONResponse({"status": "ok", "checks": checks})


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """Prometheus text exposition."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
