"""Log-in, users, subscribers and API keys: how credentials become an Actor."""

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cachetools import TTLCache
from redis import Redis
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from dispatch.accounts import throttle
from dispatch.accounts.errors import AccountLocked, BadCredentials
from dispatch.accounts.models import ApiKey, Importance, Subscriber, User
from dispatch.audit.models import AuditAction
from dispatch.audit.service import record
from dispatch.kernel.auth import (
    Actor,
    PrincipalKind,
    Role,
    issue_token,
    read_token,
)
from dispatch.kernel.errors import DomainError, InvalidInput, NotFound, Unauthorized
from dispatch.kernel.pagination import PageParams
from dispatch.kernel.settings import LoginSettings
from geo.models import Region

_hasher = PasswordHasher()
# Verifying against a fixed hash when the user does not exist keeps the
# response time the same, so log-in does not reveal which usernames exist.
_DUMMY_HASH = _hasher.hash("not-a-password")
API_KEY_PREFIX = "fpk"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_regions(session: Session, region_ids: list[int]) -> None:
    """Raises: InvalidInput (a region id that names no region)."""
    known = set(session.scalars(select(Region.id).where(Region.id.in_(region_ids))))
    missing = sorted(set(region_ids) - known)
    if missing:
        raise InvalidInput("region_ids", f"unknown regions {missing}")


def _check_role(role: Role, region_ids: list[int]) -> None:
    if role in {Role.SUBSCRIBER, Role.API}:
        raise InvalidInput("role", f"{role} is not a log-in role")
    if role is not Role.ADMIN and not region_ids:
        raise InvalidInput("region_ids", f"a {role} must be bound to at least one region")


def create_user(session: Session, *, username: str, password: str, role: Role, name: str | None = None,
                region_ids: list[int] | None = None, actor: Actor | None = None) -> User:
    """Add a log-in; audited when someone (not the demo seed) adds it.

    Raises:
        InvalidInput: username taken, unknown region, or a regional role without regions.
    """
    region_ids = region_ids or []
    check_regions(session, region_ids)
    _check_role(role, region_ids)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise InvalidInput("username", f"{username!r} is taken")
    user = User(username=username, name=name or username, password_hash=hash_password(password),
                role=role, region_ids=region_ids)
    session.add(user)
    session.flush()
    if actor is not None:
        record(session, action=AuditAction.USER_CREATED, actor=actor, target=("user", user.id),
               username=username, role=role, region_ids=region_ids)
    return user


def get_user(session: Session, user_id: int) -> User:
    """Raises: NotFound."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    return user


def list_users(session: Session, *, page: PageParams) -> list[User]:
    """Every log-in by id, `page.limit + 1` rows (the extra one says another page exists)."""
    query = select(User).order_by(User.id).limit(page.limit + 1)
    return list(session.scalars(query if page.after_id is None else query.where(User.id > page.after_id)))


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def change_user(session: Session, *, user: User, actor: Actor, role: Role | None = None,
                region_ids: list[int] | None = None, name: str | None = None, active: bool | None = None) -> User:
    """Change a log-in's role, regions, name or whether it may log in; audited with each value before and after.

    Raises:
        InvalidInput: unknown region, or a regional role without regions.
    """
    wanted = {"role": role, "region_ids": region_ids, "name": name, "active": active}
    changes = {field: [getattr(user, field), value] for field, value in wanted.items()
               if value is not None and value != getattr(user, field)}
    if "region_ids" in changes:
        check_regions(session, changes["region_ids"][1])
    _check_role(role or user.role, region_ids if region_ids is not None else user.region_ids)
    for field, (_, value) in changes.items():
        setattr(user, field, value)
    if changes:
        session.flush()
        record(session, action=AuditAction.USER_CHANGED, actor=actor, target=("user", user.id), changes=changes)
    return user


def unlock_user(session: Session, redis: Redis, *, user: User, actor: Actor) -> User:
    """Let a locked account log in again; its failed log-ins so far no longer count."""
    throttle.forget(redis, user.username)
    if user.locked_at is not None:
        user.locked_at = None
        session.flush()
        record(session, action=AuditAction.USER_UNLOCKED, actor=actor, target=("user", user.id))
    return user


@dataclass(frozen=True)
class LogIn:
    """How a log-in attempt ended. A refusal is returned, not raised, so that its audit event and a lock
    are committed; the caller raises it afterwards (`accepted`)."""

    user: User | None
    refusal: DomainError | None = None

    def accepted(self) -> User:
        """Raises: the refusal (BadCredentials, AccountLocked)."""
        if self.refusal is not None:
            raise self.refusal
        assert self.user is not None
        return self.user


def log_in(session: Session, redis: Redis, *, username: str, password: str, address: str,
           cfg: LoginSettings) -> LogIn:
    """Check a username and password, throttled per username and address; lock the account after
    `cfg.lock_after` failures. Every attempt past the throttle is audited.

    Raises:
        TooManyAttempts: the username or the address used up its failures for the window (nothing checked).
    """
    attempt = throttle.admit(redis, cfg, username=username, address=address)
    user = find_user(session, username)
    right = _password_matches(user.password_hash if user else _DUMMY_HASH, password)
    if user is not None and user.locked_at is not None:
        return _refused(session, user, username, AccountLocked(_LOCKED), reason="locked")
    if not right or user is None:
        locks = attempt.failures >= cfg.lock_after
        # An unknown username "locks" the same way, so the answers tell no one which usernames exist.
        refusal = AccountLocked(_LOCKED) if locks else BadCredentials("wrong username or password")
        refused = _refused(session, user, username, refusal, reason="wrong_password")
        if locks and user is not None:
            _lock(session, user, failures=attempt.failures)
        return refused
    if not user.active:
        return _refused(session, user, username, BadCredentials("this account is deactivated"), reason="deactivated")
    throttle.succeeded(redis, attempt)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    record(session, action=AuditAction.LOGIN_SUCCEEDED, actor=actor_of_user(user), target=("user", user.id))
    return LogIn(user)


_LOCKED = "this account is locked after too many failed log-ins; an administrator can unlock it"


def _lock(session: Session, user: User, *, failures: int) -> None:
    # Conditional: of several failures past the limit at once, one locks the account and audits it.
    locked = session.execute(update(User).where(User.id == user.id, User.locked_at.is_(None))
                             .values(locked_at=func.now()).returning(User.locked_at)).scalar_one_or_none()
    if locked is not None:
        user.locked_at = locked
        record(session, action=AuditAction.USER_LOCKED, actor=None, label=user.username, target=("user", user.id),
               failures=failures)


def _refused(session: Session, user: User | None, username: str, refusal: DomainError, *, reason: str) -> LogIn:
    record(session, action=AuditAction.LOGIN_FAILED, actor=None, label=username,
           target=("user", user.id) if user else None, reason=reason)
    return LogIn(None, refusal)


def token_for(principal: str, *, secret: str, ttl_min: int) -> str:
    return issue_token(principal, secret=secret, ttl=timedelta(minutes=ttl_min))


def actor_of_user(user: User) -> Actor:
    return Actor(kind=PrincipalKind.USER, id=user.id, role=user.role, label=user.username,
                 region_ids=tuple(user.region_ids))


def actor_of_subscriber(subscriber: Subscriber) -> Actor:
    return Actor(kind=PrincipalKind.SUBSCRIBER, id=subscriber.id, role=Role.SUBSCRIBER,
                 label=subscriber.name or f"subscriber {subscriber.id}")


def name_of(session: Session, actor: Actor) -> str | None:
    """The person's name (a user's, a subscriber's if known); None for an API key."""
    if actor.kind == PrincipalKind.USER:
        return session.scalar(select(User.name).where(User.id == actor.id))
    if actor.kind == PrincipalKind.SUBSCRIBER:
        return session.scalar(select(Subscriber.name).where(Subscriber.id == actor.id))
    return None


def _actor_from_token(session: Session, token: str, secret: str) -> Actor:
    kind, _, raw_id = read_token(token, secret=secret).partition(":")
    if not raw_id.isdigit():
        raise Unauthorized("invalid token subject")
    if kind == PrincipalKind.USER:
        user = session.get(User, int(raw_id))
        if user is None or not user.active:
            raise Unauthorized("this account no longer exists or is deactivated")
        return actor_of_user(user)
    if kind == PrincipalKind.SUBSCRIBER:
        subscriber = session.get(Subscriber, int(raw_id))
        if subscriber is None:
            raise Unauthorized("this subscriber no longer exists")
        return actor_of_subscriber(subscriber)
    raise Unauthorized("invalid token subject")


def _digest(secret: str) -> str:
    # API keys are 32 random bytes: a fast hash is safe for them (unlike passwords).
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(session: Session, *, name: str, region_ids: list[int], actor: Actor) -> tuple[ApiKey, str]:
    """A new API key and its secret, which is never stored.

    Raises:
        InvalidInput: unknown region.
    """
    check_regions(session, region_ids)
    prefix = secrets.token_hex(4)
    secret = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(name=name, prefix=prefix, key_hash=_digest(secret), region_ids=region_ids,
                 created_by=actor.id)
    session.add(key)
    session.flush()
    record(session, action=AuditAction.API_KEY_CREATED, actor=actor, target=("api_key", key.id), name=name,
           prefix=prefix, region_ids=region_ids)
    return key, secret


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_api_key(session: Session, *, key_id: int, actor: Actor) -> ApiKey:
    """Raises: NotFound."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} does not exist")
    if key.revoked_at is None:
        key.revoked_at = func.now()
        record(session, action=AuditAction.API_KEY_REVOKED, actor=actor, target=("api_key", key.id), name=key.name)
    session.flush()
    session.refresh(key)
    return key


def _actor_from_api_key(session: Session, secret: str) -> Actor:
    # The random part may itself contain "_" (urlsafe base64): split off only the first two.
    parts = secret.split("_", 2)
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1])) \
        if len(parts) == 3 and parts[0] == API_KEY_PREFIX else None
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.key_hash, _digest(secret)):
        raise Unauthorized("invalid or revoked API key")
    return Actor(kind=PrincipalKind.API_KEY, id=key.id, role=Role.API, label=f"api:{key.name}",
                 region_ids=tuple(key.region_ids))


class TokenAuthenticator:
    """How this deployment turns a bearer token or an API key into an Actor.

    Bearer tokens are remembered for `cache_s` seconds per process: a phone
    pinging its position every few seconds must not cost a database read
    each time. A deactivated user is refused within that delay. API keys are
    not cached, so a revoked key stops at once.
    """

    def __init__(self, secret: str, *, cache_s: int = 30) -> None:
        self._secret = secret
        self._remembered: TTLCache[str, Actor] = TTLCache(maxsize=50_000, ttl=cache_s)
        self._lock = threading.Lock()

    def cached(self, token: str) -> Actor | None:
        """The actor of a token seen within the cache time, without touching the database."""
        with self._lock:
            return self._remembered.get(token)

    def __call__(self, session: Session, token: str | None, api_key: str | None) -> Actor:
        # The bearer token decides when there is one: a stale key left in a client's configuration must not
        # turn away a user who logged in.
        if not token:
            if api_key:
                return _actor_from_api_key(session, api_key)
            raise Unauthorized("send a bearer token or an X-API-Key")
        actor = self.cached(token)
        if actor is None:
            actor = _actor_from_token(session, token, self._secret)
            with self._lock:
                self._remembered[token] = actor
        return actor


class Reporter(NamedTuple):
    """A subscriber as intake needs them: who, and whether their reports go first."""

    id: int
    importance: Importance | None


def reporter_by_phone(session: Session, *, phone: str, name: str | None) -> Reporter:
    """The subscriber with this phone, created on first contact.

    The upsert takes the row lock (held to commit) in the same statement, so
    concurrent reports from one phone are serialised without a second query.
    """
    found = session.connection().execute(_UPSERT_REPORTER, {"phone": phone, "name": name}).one()
    return Reporter(found.id, found.importance)


def _upsert_reporter() -> ReturningInsert[int, Importance | None]:
    # Built once and sent on the connection: every intake runs it, and building the statement, or the ORM's
    # bulk-insert layer around it, cost more than sending it.
    stmt = insert(Subscriber).values(phone=bindparam("phone"), name=bindparam("name"))
    return stmt.on_conflict_do_update(index_elements=[Subscriber.phone],
                                      set_={"name": func.coalesce(Subscriber.name, stmt.excluded.name)}
                                      ).returning(Subscriber.id, Subscriber.importance)


_UPSERT_REPORTER = _upsert_reporter()


def subscriber_by_phone(session: Session, *, phone: str, name: str | None) -> int:
    """The id of the subscriber with this phone, created on first contact."""
    return reporter_by_phone(session, phone=phone, name=name).id


def mark_subscriber(session: Session, *, actor: Actor, phone: str, importance: Importance | None) -> Subscriber:
    """Mark (or unmark) the subscriber with this phone as important, created when new: an enterprise line is
    registered before it ever reports. Audited."""
    subscriber_id = subscriber_by_phone(session, phone=phone, name=None)
    subscriber = session.get_one(Subscriber, subscriber_id)
    before = subscriber.importance
    subscriber.importance = importance
    record(session, action=AuditAction.SUBSCRIBER_MARKED, actor=actor, target=("subscriber", subscriber_id),
           before=before, after=importance)
    session.flush()
    return subscriber


def subscriber_by_openid(session: Session, *, openid: str) -> Subscriber:
    """The subscriber behind a WeChat openid, created the first time they follow or write."""
    stmt = insert(Subscriber).values(openid=openid)
    # DO UPDATE (a no-op) rather than DO NOTHING: it returns the existing row too.
    upsert = stmt.on_conflict_do_update(index_elements=[Subscriber.openid], set_={"openid": stmt.excluded.openid})
    subscriber_id = session.execute(upsert.returning(Subscriber.id)).scalar_one()
    return session.get_one(Subscriber, subscriber_id)
