"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and costs a task per request)."""

import time
import uuid
from contextvars import ContextVar

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatch.kernel.problems import unexpected

REQUESTS = Counter("fieldpool_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("fieldpool_http_request_seconds", "HTTP request latency", ["method", "route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
log = structlog.get_logger()
# The request's client address (after uvicorn's trusted proxy headers), for the audit log: set here once
# rather than passed through every service that audits; jobs and the CLI have none.
client_address: ContextVar[str | None] = ContextVar("client_address", default=None)


class RequestContext:
    """Binds a request id to every log line, echoes it back, and records metrics per route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        address = client_address.set(scope["client"][0] if scope.get("client") else None)
        status = 500
        response_started = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Caught here, inside the request context, so that the traceback is
            # logged with the request id and the 500 carries it as a header.
            log.exception("unhandled_error", method=scope["method"], path=scope["path"])
            if response_started:
                raise
            await unexpected()(scope, receive, send_with_id)
        finally:
            # The route template, not the raw path: ids in paths would explode the label set.
            route = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(scope["method"], route).observe(elapsed)
            (log.error if status >= 500 else log.info)(
                "request", method=scope["method"], path=scope["path"], route=route, status=status,
                ms=round(elapsed * 1000, 1))
            structlog.contextvars.unbind_contextvars("request_id")
            client_address.reset(address)
