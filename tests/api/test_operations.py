"""What the operator's load balancer and Prometheus see: health, readiness, metrics, request ids, OpenAPI."""

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from dispatch.app import create_app
from dispatch.kernel.settings import Settings
from dispatch.tickets import jobs

XL_POINT = {"lat": 43.935, "lng": 116.08}


def test_healthz_is_200(client: TestClient) -> None:
    reply = client.get("/healthz")
    assert reply.status_code == 200 and reply.json() == {"status": "ok"}


def test_readyz_reports_postgis_redis_and_the_pool_to_an_admin(client: TestClient, redis: Redis, as_user) -> None:
    admin = as_user("admin")
    reply = client.get("/readyz", headers=admin)
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "degraded"  # the test Redis starts empty: no pool built yet
    assert reply.json()["checks"]["pool"].startswith("degraded: rebuilding branches")

    assert jobs.repair_pool()["rebuilt"] >= 2  # both demo branches
    reply = client.get("/readyz", headers=admin)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "ok"
    assert re.match(r"^\d+\.\d+", body["checks"]["postgis"])
    assert body["checks"] | {"postgis": "-"} == {"postgres": "ok", "postgis": "-", "redis": "ok", "pool": "ok"}


@pytest.fixture
def client_without_redis(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    # From loopback, as a load balancer's probe or Prometheus on the same machine: the checks are shown.
    with TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 50000)) as unready:
        yield unready


def test_readyz_stays_ready_but_degraded_when_redis_is_down(client_without_redis: TestClient) -> None:
    # Grabs and intake go on through PostgreSQL: the instance must stay in the load balancer.
    reply = client_without_redis.get("/readyz")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"].startswith("down")
    assert body["checks"]["pool"].startswith("degraded: Redis is down")
    assert body["checks"]["postgres"] == "ok"
    # Liveness does not depend on Redis: the process is still up.
    assert client_without_redis.get("/healthz").status_code == 200


def test_metrics_count_requests_by_route_template(client: TestClient, as_user) -> None:
    headers = as_user("dispatcher.xl")
    body = {"type_code": "broadband_fault", "description": "断网了", "location": XL_POINT,
            "contact": {"name": "张三", "phone": "13900000901"}}
    ticket = client.post("/api/v1/tickets", json=body, headers=headers).json()
    assert client.get(f"/api/v1/tickets/{ticket['id']}", headers=headers).status_code == 200
    assert client.get("/api/v1/tickets/987654321", headers=headers).status_code == 404
    reply = client.get("/metrics", headers=as_user("admin"))
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    lines = [line for line in reply.text.splitlines() if line.startswith("fieldpool_http_requests_total{")]
    assert any('route="/api/v1/tickets/{ticket_id}"' in line and 'status="200"' in line for line in lines), lines
    assert any('route="/api/v1/tickets/{ticket_id}"' in line and 'status="404"' in line for line in lines), lines
    assert not any(f"/api/v1/tickets/{ticket['id']}" in line or "987654321" in line for line in lines)
    assert "fieldpool_http_request_seconds_bucket" in reply.text


def test_readyz_tells_anyone_else_only_the_status(client: TestClient, as_user) -> None:
    for headers in ({}, as_user("dispatcher.xl")):
        reply = client.get("/readyz", headers=headers)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"status": "degraded"}  # no versions, no checks


def test_readyz_when_postgres_is_down_tells_anyone_else_nothing_more(settings: Settings, redis: Redis) -> None:
    app = create_app(settings.model_copy(update={"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/none"}))
    with TestClient(app, raise_server_exceptions=False) as outside:
        reply = outside.get("/readyz")
    assert reply.status_code == 503
    assert "checks" not in reply.json() and "postgres" not in reply.text


def test_metrics_only_from_loopback_or_to_an_admin(client: TestClient, as_user, settings: Settings,
                                                    redis: Redis) -> None:
    for headers in ({}, as_user("dispatcher.xl"), as_user("payroll")):
        reply = client.get("/metrics", headers=headers)
        assert reply.status_code == 403, reply.text
        assert reply.headers["content-type"].startswith("application/problem+json")
        assert "fieldpool_http_requests_total" not in reply.text
    assert "fieldpool_http_requests_total" in client.get("/metrics", headers=as_user("admin")).text
    with TestClient(create_app(settings), client=("::1", 50000)) as local:
        assert "fieldpool_http_requests_total" in local.get("/metrics").text
    assert client.get("/healthz").json() == {"status": "ok"}


def test_every_response_carries_a_request_id(client: TestClient, as_user) -> None:
    replies = [client.get("/healthz"), client.get("/api/v1/tickets"), client.get("/no/such/page"),
               client.get("/api/v1/tickets", headers=as_user("admin"))]
    ids = [r.headers.get("x-request-id") for r in replies]
    assert all(ids), ids
    assert len(set(ids)) == len(ids)


def test_request_id_sent_by_the_caller_is_echoed(client: TestClient) -> None:
    reply = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a9c"})
    assert reply.headers["x-request-id"] == "lb-7f3a9c"
    failing = client.get("/api/v1/tickets", headers={"X-Request-ID": "lb-401"})
    assert failing.status_code == 401 and failing.headers["x-request-id"] == "lb-401"


def test_unexpected_error_is_500_problem_with_the_request_id(settings: Settings, redis: Redis) -> None:
    # The request id matters most when something broke: it is how the operator finds the logged traceback.
    app = create_app(settings)

    def explode() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/test-only/explode", explode)
    with TestClient(app, raise_server_exceptions=False) as broken:
        reply = broken.get("/test-only/explode", headers={"X-Request-ID": "trace-500"})
    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == "internal_error" and "boom" not in reply.text
    assert reply.headers.get("x-request-id") == "trace-500"


def test_openapi_lists_the_ticket_endpoints(client: TestClient) -> None:
    reply = client.get("/openapi.json")
    assert reply.status_code == 200
    paths = reply.json()["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/tickets"])
    assert "get" in paths["/api/v1/tickets/{ticket_id}"] and "patch" in paths["/api/v1/tickets/{ticket_id}"]
    for action in ("grab", "assign", "release", "arrive", "complete", "followup", "invalidate", "attachments"):
        assert "post" in paths[f"/api/v1/tickets/{{ticket_id}}/{action}"], action
    assert "/api/v1/auth/token" in paths and "/api/v1/attachments/{attachment_id}" in paths


def test_unknown_path_is_404_problem_json(client: TestClient) -> None:
    reply = client.get("/api/v1/no-such-thing")
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == "not_found" and reply.json()["status"] == 404
