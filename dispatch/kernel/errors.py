"""Domain errors: each carries the HTTP status and stable code it is rendered with."""

from typing import Any, ClassVar


class DomainError(Exception):
    """Base of every error a service raises on purpose; `problems` renders it."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    status = 404
    code = "not_found"
    title = "Not found"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"
    title = "Missing or bad credentials"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title = "State conflict"


class InvalidInput(DomainError):
    """Bad input found past schema validation; names the field at fault."""

    status = 422
    code = "validation_error"
    title = "Invalid input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])


class RateLimited(DomainError):
    """Too many requests of one kind; `retry_after` (seconds) goes out as the Retry-After header."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"


class ServiceUnavailable(DomainError):
    status = 503
    code = "service_unavailable"
    title = "A required service is down"


class Overloaded(ServiceUnavailable):
    """Every database connection stayed busy past the pool's wait: the caller should come back shortly."""

    code = "overloaded"
    title = "Too busy, try again shortly"

    def __init__(self, *, retry_after: int) -> None:
        super().__init__("no database connection came free in time", retry_after=retry_after)


class OutOfScope(Forbidden):
    code = "out_of_scope"
    title = "Outside your regions"
