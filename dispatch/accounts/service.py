"""Log-in, users, subscribers and API keys: how credentials become an Actor."""

import hashlib
import hmac
import secrets
import threading
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cachetools import TTLCache
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dispatch.accounts.errors import BadCredentials
from dispatch.accounts.models import ApiKey, Subscriber, User
from dispatch.kernel.auth import (
    Actor,
    PrincipalKind,
    Role,
    issue_token,
    read_token,
)
from dispatch.kernel.errors import InvalidInput, NotFound, Unauthorized
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


def _check_regions(session: Session, region_ids: list[int]) -> None:
    known = set(session.scalars(select(Region.id).where(Region.id.in_(region_ids))))
    missing = sorted(set(region_ids) - known)
    if missing:
        raise InvalidInput("region_ids", f"unknown regions {missing}")


def create_user(session: Session, *, username: str, password: str, role: Role, name: str | None = None,
                region_ids: list[int] | None = None) -> User:
    """Add a log-in.

    Raises:
        InvalidInput: username taken, unknown region, or a regional role without regions.
    """
    region_ids = region_ids or []
    _check_regions(session, region_ids)
    if role not in {Role.ADMIN, Role.SUBSCRIBER} and not region_ids:
        raise InvalidInput("region_ids", f"a {role} must be bound to at least one region")
    if role in {Role.SUBSCRIBER, Role.API}:
        raise InvalidInput("role", f"{role} is not a log-in role")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise InvalidInput("username", f"{username!r} is taken")
    user = User(username=username, name=name or username, password_hash=hash_password(password),
                role=role, region_ids=region_ids)
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def log_in(session: Session, *, username: str, password: str) -> User:
    """The active user with these credentials.

    Raises:
        BadCredentials: unknown user, wrong password or deactivated.
    """
    user = find_user(session, username)
    if not _password_matches(user.password_hash if user else _DUMMY_HASH, password) or user is None:
        raise BadCredentials("wrong username or password")
    if not user.active:
        raise BadCredentials("this account is deactivated")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def token_for(principal: str, *, secret: str, ttl_min: int) -> str:
    return issue_token(principal, secret=secret, ttl=timedelta(minutes=ttl_min))


def actor_of_user(user: User) -> Actor:
    return Actor(kind=PrincipalKind.USER, id=user.id, role=user.role, label=user.username,
                 region_ids=tuple(user.region_ids))


def actor_of_subscriber(subscriber: Subscriber) -> Actor:
    return Actor(kind=PrincipalKind.SUBSCRIBER, id=subscriber.id, role=Role.SUBSCRIBER,
                 label=subscriber.name or f"subscriber {subscriber.id}")


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


def create_api_key(session: Session, *, name: str, region_ids: list[int], created_by: int) -> tuple[ApiKey, str]:
    """A new API key and its secret, which is never stored.

    Raises:
        InvalidInput: unknown region.
    """
    _check_regions(session, region_ids)
    prefix = secrets.token_hex(4)
    secret = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(name=name, prefix=prefix, key_hash=_digest(secret), region_ids=region_ids,
                 created_by=created_by)
    session.add(key)
    session.flush()
    return key, secret


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_api_key(session: Session, *, key_id: int) -> ApiKey:
    """Raises: NotFound."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} does not exist")
    key.revoked_at = key.revoked_at or func.now()
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
        if api_key:
            return _actor_from_api_key(session, api_key)
        if not token:
            raise Unauthorized("send a bearer token or an X-API-Key")
        actor = self.cached(token)
        if actor is None:
            actor = _actor_from_token(session, token, self._secret)
            with self._lock:
                self._remembered[token] = actor
        return actor


def subscriber_by_phone(session: Session, *, phone: str, name: str | None) -> int:
    """The id of the subscriber with this phone, created on first contact.

    The upsert takes the row lock (held to commit) in the same statement, so
    concurrent reports from one phone are serialised without a second query.
    """
    stmt = insert(Subscriber).values(phone=phone, name=name)
    upsert = stmt.on_conflict_do_update(index_elements=[Subscriber.phone],
                                        set_={"name": func.coalesce(Subscriber.name, stmt.excluded.name)})
    return session.execute(upsert.returning(Subscriber.id)).scalar_one()


def subscriber_by_openid(session: Session, *, openid: str) -> Subscriber:
    """The subscriber behind a WeChat openid, created the first time they follow or write."""
    stmt = insert(Subscriber).values(openid=openid)
    # DO UPDATE (a no-op) rather than DO NOTHING: it returns the existing row too.
    upsert = stmt.on_conflict_do_update(index_elements=[Subscriber.openid], set_={"openid": stmt.excluded.openid})
    subscriber_id = session.execute(upsert.returning(Subscriber.id)).scalar_one()
    return session.get_one(Subscriber, subscriber_id)
