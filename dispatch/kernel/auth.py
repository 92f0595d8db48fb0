"""Who is calling: the Actor value and the JWT that carries it between requests."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Protocol

import jwt
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dispatch.kernel.db import SessionDep, UnitOfWork, UnitOfWorkDep
from dispatch.kernel.errors import Forbidden, Unauthorized
from dispatch.kernel.problems import raises

JWT_ALGORITHM = "HS256"


class Role(StrEnum):
    ADMIN = "admin"
    DISPATCHER = "dispatcher"
    CLERK = "clerk"
    PAYROLL = "payroll"
    TECHNICIAN = "technician"
    SUBSCRIBER = "subscriber"
    API = "api"


STAFF_ROLES = frozenset({Role.ADMIN, Role.DISPATCHER, Role.CLERK, Role.PAYROLL})


class PrincipalKind(StrEnum):
    USER = "user"
    SUBSCRIBER = "subscriber"
    API_KEY = "api_key"


@dataclass(frozen=True)
class Actor:
    """The authenticated caller, as values: what every service checks permissions against."""

    kind: PrincipalKind
    id: int
    role: Role
    label: str
    region_ids: tuple[int, ...] = ()

    @property
    def is_global(self) -> bool:
        """HQ sees everything; every other role is bound to its regions."""
        return self.role is Role.ADMIN

    @property
    def principal(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def scope(self) -> tuple[int, ...] | None:
        """Region ids this actor is bound to; None means everywhere."""
        return None if self.is_global else self.region_ids


def issue_token(subject: str, *, secret: str, ttl: timedelta) -> str:
    now = datetime.now(UTC)
    return jwt.encode({"sub": subject, "iat": now, "exp": now + ttl}, secret, algorithm=JWT_ALGORITHM)


def read_token(token: str, *, secret: str) -> str:
    """The subject of a valid token.

    Raises:
        Unauthorized: expired, forged or malformed.
    """
    # Our own words: the JWT library's messages describe its internals (claims, padding, segments).
    try:
        claims = jwt.decode(token, secret, algorithms=[JWT_ALGORITHM], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired; log in again") from None
    except jwt.PyJWTError:
        raise Unauthorized("token invalid") from None
    return str(claims["sub"])



class Authenticator(Protocol):
    """How credentials become an Actor; accounts (a higher layer) puts one on app.state.authenticate."""

    def cached(self, token: str) -> Actor | None:
        """The actor of a bearer token seen lately, without touching the database."""

    def __call__(self, session: Session, token: str | None, api_key: str | None) -> Actor:
        """The bearer token's actor when one is sent (an X-API-Key beside it is not looked at), else the key's."""


bearer_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


@raises(Unauthorized)
async def current_actor(request: Request, session: SessionDep,
                        token: Annotated[str | None, Depends(bearer_scheme)],
                        api_key: Annotated[str | None, Depends(api_key_scheme)]) -> Actor:
    """The caller, from a bearer token or else an X-API-Key; 401 without either.

    A token seen lately costs no thread and no statement; the database is read in a thread.
    """
    authenticate: Authenticator = request.app.state.authenticate
    actor = authenticate.cached(token) if token else None
    if actor is None:
        actor = await run_in_threadpool(authenticate.__call__, session, token, api_key)
    return actor


ActorDep = Annotated[Actor, Depends(current_actor)]


@raises(Unauthorized)
async def optional_actor(request: Request, session: SessionDep,
                         token: Annotated[str | None, Depends(bearer_scheme)],
                         api_key: Annotated[str | None, Depends(api_key_scheme)]) -> Actor | None:
    """The caller of a public endpoint that answers staff more fully: None without credentials, 401 on bad ones."""
    if not token and not api_key:
        return None
    return await current_actor(request, session, token, api_key)


OptionalActorDep = Annotated[Actor | None, Depends(optional_actor)]


@raises(Unauthorized)
async def unit_actor(request: Request, unit_of_work: UnitOfWorkDep,
                     token: Annotated[str | None, Depends(bearer_scheme)],
                     api_key: Annotated[str | None, Depends(api_key_scheme)]) -> Actor:
    """The caller of an endpoint that opens its own unit of work: no request session is held (a session
    dependency commits in a thread hop of its own); a token seen lately costs nothing, else a unit of work reads
    the caller in a thread."""
    authenticate: Authenticator = request.app.state.authenticate
    actor = authenticate.cached(token) if token else None
    if actor is None:
        actor = await request.app.state.db.run(_authenticated, unit_of_work, authenticate, token, api_key)
    return actor


def _authenticated(unit_of_work: UnitOfWork, authenticate: Authenticator, token: str | None,
                   api_key: str | None) -> Actor:
    with unit_of_work() as session:
        return authenticate(session, token, api_key)


UnitActorDep = Annotated[Actor, Depends(unit_actor)]
# A route's `openapi_extra` where credentials are optional: an empty requirement beside the declared schemes.
OPTIONAL_CREDENTIALS: dict[str, object] = {"security": [{}]}


def require_role(*roles: Role) -> Callable[[Actor], Awaitable[Actor]]:
    """A dependency admitting only the given roles (403 for the others); async: a check costs no thread."""
    allowed = frozenset(roles)

    @raises(Forbidden)
    async def check(actor: ActorDep) -> Actor:
        if actor.role not in allowed:
            raise Forbidden(f"role {actor.role} may not do this", required=sorted(allowed))
        return actor

    return check


# The one spelling of "admins only" for routers written from here on.
AdminDep = Annotated[Actor, Depends(require_role(Role.ADMIN))]
