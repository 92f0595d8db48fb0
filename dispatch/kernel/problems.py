"""RFC 9457 problem details: the one place errors become HTTP responses."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from dispatch.kernel.errors import DomainError, Overloaded, ServiceUnavailable

# Seconds a client is asked to wait when the database is saturated or unreachable.
RETRY_AFTER_S = 2

PROBLEM_TYPE_BASE = "https://fieldpool.dev/problems/"


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM_TYPE_BASE + code, "title": title, "status": status,
            "detail": detail, "code": code, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    # FastAPI prefixes the location with where the value came from ("body",
    # "query"); clients want the field's own path, e.g. "location.lat".
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in {"body", "query", "path", "header", "form", "cookie"}:
        parts = parts[1:]
    return ".".join(parts)


def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    response = problem(exc.status, exc.code, exc.title, exc.detail, **exc.extra)
    if "retry_after" in exc.extra:
        response.headers["Retry-After"] = str(exc.extra["retry_after"])
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _on_pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    return _on_domain_error(request, Overloaded(retry_after=RETRY_AFTER_S))


def _on_database_down(request: Request, exc: Exception) -> JSONResponse:
    # A lost connection or a server restarting: nothing was committed, the client may retry.
    return _on_domain_error(request, ServiceUnavailable("the database cannot be reached",
                                                        retry_after=RETRY_AFTER_S))


def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # A body that is not JSON at all is located at a character offset: blame the body.
    errors = [{"field": "body" if e["type"] == "json_invalid" else _field_of(e["loc"]), "message": e["msg"]}
              for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, "validation_error", "Invalid input", detail, errors=errors)


# Starlette's own errors (and the door's body cap), by status: code and, where the detail varies, a title.
HTTP_PROBLEMS = {401: ("unauthorized", None), 403: ("forbidden", None), 404: ("not_found", None),
                 405: ("method_not_allowed", None), 413: ("too_large", "Request body too large"),
                 429: ("rate_limited", None)}


def http_problem(exc: StarletteHTTPException) -> JSONResponse:
    """An HTTPException (Starlette's or the body cap's) as problem JSON."""
    code, title = HTTP_PROBLEMS.get(exc.status_code, ("http_error", None))
    response = problem(exc.status_code, code, title or str(exc.detail), str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return http_problem(exc)


def unexpected() -> JSONResponse:
    """The answer to a bug: no internals leak, the request id (a header) leads to the logged traceback."""
    return problem(500, "internal_error", "Internal error", "an unexpected error occurred; it was logged")


def install(app: FastAPI) -> None:
    """Render domain, validation and HTTP errors as problem JSON (bugs: see `unexpected`)."""
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(PoolTimeout, _on_pool_timeout)
    app.add_exception_handler(OperationalError, _on_database_down)


def problem_docs(*errors: type[DomainError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the domain errors an endpoint may raise."""
    docs: dict[int | str, dict[str, Any]] = {}
    for err in errors:
        entry = docs.setdefault(err.status, {"description": "", "content": {"application/problem+json": {}}})
        entry["description"] = " / ".join(filter(None, [entry["description"], f"`{err.code}`: {err.title}"]))
    return docs
