from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request

from dispatch.accounts import service
from dispatch.accounts.errors import AccountLocked, BadCredentials, TooManyAttempts
from dispatch.accounts.models import ApiKey, Subscriber, User
from dispatch.accounts.schemas import (
    ApiKeyCreate,
    ApiKeyIssued,
    ApiKeyRead,
    MeRead,
    SubscriberMark,
    SubscriberRead,
    TokenRead,
    UserCreate,
    UserPatch,
    UserRead,
)
from dispatch.kernel.auth import Actor, ActorDep, Role, require_role
from dispatch.kernel.db import SessionDep, UnitOfWorkDep
from dispatch.kernel.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from dispatch.kernel.inputs import Id, Text
from dispatch.kernel.pagination import Page, PageDep, page_of
from dispatch.kernel.problems import problem_docs
from dispatch.kernel.redis import RedisDep
from dispatch.kernel.settings import SettingsDep

router = APIRouter(prefix="/api/v1", tags=["accounts"])
Admin = Annotated[Actor, Depends(require_role(Role.ADMIN))]
Manager = Annotated[Actor, Depends(require_role(Role.ADMIN, Role.DISPATCHER))]


@router.post("/auth/token", response_model=TokenRead,
             responses=problem_docs(BadCredentials, AccountLocked, TooManyAttempts))
def log_in(username: Annotated[Text, Form(max_length=64)], password: Annotated[Text, Form(max_length=128)],
           unit_of_work: UnitOfWorkDep, redis: RedisDep, settings: SettingsDep, request: Request,
           grant_type: Annotated[str | None, Form(pattern="^password$")] = None) -> TokenRead:
    """Exchange a username and password for a bearer token (OAuth2 password flow).

    Failed log-ins are limited per username and per client address (429 with Retry-After); after
    `LOGIN__LOCK_AFTER` of them the account is locked until an admin unlocks it.
    """
    # Its own unit of work: a refused attempt's audit event and lock are committed before the refusal is raised.
    with unit_of_work() as session:
        attempt = service.log_in(session, redis, username=username, password=password,
                                 address=request.client.host if request.client else "", cfg=settings.login)
    user = attempt.accepted()
    token = service.token_for(f"user:{user.id}", secret=settings.secret_key, ttl_min=settings.token_ttl_min)
    return TokenRead(access_token=token, role=user.role, user_id=user.id, expires_in=settings.token_ttl_min * 60)


@router.get("/me", response_model=MeRead, responses=problem_docs(Unauthorized))
def who_am_i(actor: ActorDep, session: SessionDep) -> MeRead:
    """The caller as the server sees it: role, region scope and name."""
    return MeRead(kind=actor.kind, id=actor.id, role=actor.role, label=actor.label,
                  region_ids=list(actor.region_ids), name=service.name_of(session, actor))


@router.post("/users", response_model=UserRead, status_code=201, responses=problem_docs(Forbidden, InvalidInput))
def create_user(body: UserCreate, session: SessionDep, admin: Admin) -> User:
    """Add a console log-in (admin only)."""
    return service.create_user(session, username=body.username, password=body.password, role=body.role,
                               name=body.name, region_ids=body.region_ids, actor=admin)


@router.get("/users", response_model=Page[UserRead], responses=problem_docs(Forbidden, InvalidInput))
def list_users(session: SessionDep, admin: Admin, page: PageDep) -> dict[str, object]:
    """Every log-in (technicians' too), by id (admin only)."""
    return page_of(service.list_users(session, page=page), page)


@router.patch("/users/{user_id}", response_model=UserRead, responses=problem_docs(Forbidden, InvalidInput, NotFound))
def change_user(user_id: Id, body: UserPatch, session: SessionDep, admin: Admin) -> User:
    """Change a log-in's role, regions, name or whether it is active (admin only; audited)."""
    return service.change_user(session, user=service.get_user(session, user_id), actor=admin, role=body.role,
                               region_ids=body.region_ids, name=body.name, active=body.active)


@router.post("/users/{user_id}/unlock", response_model=UserRead, responses=problem_docs(Forbidden, NotFound))
def unlock_user(user_id: Id, session: SessionDep, redis: RedisDep, admin: Admin) -> User:
    """Let an account locked after failed log-ins log in again (admin only; audited)."""
    return service.unlock_user(session, redis, user=service.get_user(session, user_id), actor=admin)


@router.post("/api-keys", response_model=ApiKeyIssued, status_code=201,
             responses=problem_docs(Forbidden, InvalidInput))
def create_api_key(body: ApiKeyCreate, session: SessionDep, admin: Admin) -> ApiKeyIssued:
    """Issue a key for another system, scoped to regions; the secret is returned only here."""
    key, secret = service.create_api_key(session, name=body.name, region_ids=body.region_ids, actor=admin)
    return ApiKeyIssued(**ApiKeyRead.model_validate(key).model_dump(), key=secret)


@router.get("/api-keys", response_model=list[ApiKeyRead], responses=problem_docs(Forbidden))
def list_api_keys(session: SessionDep, admin: Admin) -> list[ApiKey]:
    """Every API key, revoked ones included (admin only)."""
    return service.list_api_keys(session)


@router.delete("/api-keys/{key_id}", response_model=ApiKeyRead, responses=problem_docs(Forbidden))
def revoke_api_key(key_id: Id, session: SessionDep, admin: Admin) -> ApiKey:
    """Revoke a key at once; requests with it get 401 from then on."""
    return service.revoke_api_key(session, key_id=key_id, actor=admin)


@router.post("/subscribers/importance", response_model=SubscriberRead, tags=["priority"],
             responses=problem_docs(Forbidden, InvalidInput))
def mark_subscriber(body: SubscriberMark, session: SessionDep, manager: Manager) -> Subscriber:
    """Mark the subscriber with this phone as a VIP, an enterprise line or a hospital (null: none), so that their
    reports are raised; created when new. Dispatchers and admins; audited."""
    return service.mark_subscriber(session, actor=manager, phone=body.phone, importance=body.importance)
