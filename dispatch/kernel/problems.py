"""RFC 9457 problem details: the one place errors become HTTP responses."""

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from dispatch.kernel.errors import DomainError, NotFound, Overloaded, ServiceUnavailable

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


def _domain_problem(exc: DomainError) -> JSONResponse:
    response = problem(exc.status, exc.code, exc.title, exc.detail, **exc.extra)
    if "retry_after" in exc.extra:
        response.headers["Retry-After"] = str(exc.extra["retry_after"])
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


# The handlers are async: Starlette runs a plain one in a worker thread, and the grab storm's losers (three
# taps in four, each a 409) queued for the threads its winners commit in.

async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return _domain_problem(exc)


async def _on_pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    return _domain_problem(Overloaded(retry_after=RETRY_AFTER_S))


async def _on_database_down(request: Request, exc: Exception) -> JSONResponse:
    # A lost connection or a server restarting: nothing was committed, the client may retry.
    return _domain_problem(ServiceUnavailable("the database cannot be reached", retry_after=RETRY_AFTER_S))


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if all(e["loc"][0] == "path" for e in exc.errors()):
        # An id too large for its column, or a code no row can have: that resource does not exist.
        return _domain_problem(NotFound(f"no such resource: {request.url.path}"))
    # A body that is not JSON at all is located at a character offset: blame the body.
    errors = [{"field": "body" if e["type"] == "json_invalid" else _field_of(e["loc"]), "message": e["msg"]}
              for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, "validation_error", "Invalid input", detail, errors=errors)


# Starlette's own errors (and the door's body cap), by status: code and, where the detail varies, a title.
HTTP_PROBLEMS = {401: ("unauthorized", None), 403: ("forbidden", None), 404: ("not_found", None),
                 405: ("method_not_allowed", None), 413: ("too_large", "Request body too large"),
                 429: ("rate_limited", None)}


def http_problem(exc: StarletteHTTPException, request: Request | None = None) -> JSONResponse:
    """An HTTPException (Starlette's or the body cap's) as problem JSON."""
    code, title = HTTP_PROBLEMS.get(exc.status_code, ("http_error", None))
    response = problem(exc.status_code, code, title or str(exc.detail), str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    if exc.status_code == 405 and request is not None:
        # Starlette names only the methods of the first route on the path; each method is a route here.
        response.headers["Allow"] = ", ".join(sorted(_methods_at(request)))
    return response


def _methods_at(request: Request) -> set[str]:
    methods: set[str] = set()
    for route in _api_routes(request.app.router.routes):
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return methods


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return http_problem(exc, request)


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
    install_openapi(app)


def problem_docs(*errors: type[DomainError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the domain errors an endpoint may raise."""
    docs: dict[int | str, dict[str, Any]] = {}
    for err in errors:
        _describe(docs.setdefault(err.status, {"description": ""}), err)
    return docs


def _describe(entry: dict[str, Any], err: type[DomainError]) -> None:
    said = f"`{err.code}`: {err.title}"
    if said not in entry["description"]:
        entry["description"] = " / ".join(filter(None, [entry["description"], said]))


D = TypeVar("D", bound=Callable[..., Any])


def raises(*errors: type[DomainError]) -> Callable[[D], D]:
    """Mark a dependency with the domain errors it raises: every operation using it documents them."""
    def mark(dependency: D) -> D:
        dependency.__raises__ = errors  # type: ignore[attr-defined]
        return dependency

    return mark


def _raised_by(dependant: Dependant) -> Iterator[type[DomainError]]:
    yield from getattr(dependant.call, "__raises__", ())
    for sub in dependant.dependencies:
        yield from _raised_by(sub)


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem", "type": "object", "required": ["type", "title", "status", "detail", "code"],
    "description": "RFC 9457 problem details",
    "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                   "detail": {"type": "string"}, "code": {"type": "string"},
                   "errors": {"type": "array", "items": {
                       "type": "object", "required": ["field", "message"],
                       "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}}}
PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
PATH_NOT_FOUND = "`not_found`: no such resource"
# FastAPI's own answer to a body it cannot even decode (bytes that are not UTF-8).
BODY_UNREADABLE = "`http_error`: the body cannot be read"
# Every 429 says when to come back; a 503 does where the wait is known (a saturated database, WeChat down).
RETRY_AFTER_SENT = {"429": True, "503": False}


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # Recent FastAPI keeps an included router whole instead of copying its routes into the app.
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def _document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, made true to what the handlers above send.

    Each operation lists the errors its dependencies raise (`raises`) besides
    those its route declares, 404 where it has path parameters (see
    `_on_validation_error`), every error as problem JSON, 422 included, and
    the Retry-After header of a 429 or 503.
    """
    doc = FastAPI.openapi(app)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    for route in _api_routes(app.routes):
        if not route.include_in_schema:
            continue
        for method in route.methods or ():
            responses = doc["paths"][route.path_format][method.lower()]["responses"]
            for err in _raised_by(route.dependant):
                _describe(responses.setdefault(str(err.status), {"description": ""}), err)
            if route.dependant.path_params:
                responses.setdefault("404", {"description": PATH_NOT_FOUND})
            if route.dependant.body_params:
                responses.setdefault("400", {"description": BODY_UNREADABLE})
            for status, entry in responses.items():
                if status[0] in "45":
                    entry["content"] = PROBLEM_CONTENT
                    if status == "422":
                        entry["description"] = "`validation_error`: Invalid input, each field named in `errors`"
                if status in RETRY_AFTER_SENT:
                    entry["headers"] = {"Retry-After": {
                        "description": "seconds to wait before trying again", "required": RETRY_AFTER_SENT[status],
                        "schema": {"type": "integer", "minimum": 1}}}
    return doc


def install_openapi(app: FastAPI) -> None:
    """Serve `_document` as /openapi.json (built once, on first use)."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
