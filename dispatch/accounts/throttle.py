"""Log-in attempts counted in Redis, per username and per client address, shared by every API process.

If Redis cannot be reached the throttle lets attempts through (logged): log-in must not depend on it,
and the account lock in PostgreSQL still holds.
"""

from dataclasses import dataclass

import structlog
from redis import Redis
from redis.exceptions import RedisError

from dispatch.accounts.errors import TooManyAttempts
from dispatch.kernel.lua import ScriptBook
from dispatch.kernel.settings import LoginSettings

_scripts = ScriptBook("dispatch.accounts")
log = structlog.get_logger()


@dataclass(frozen=True)
class Attempt:
    username: str
    address: str
    # Failures of this username within the lock window, this attempt included (0: Redis was down).
    failures: int

    @property
    def keys(self) -> list[str]:
        return _keys(self.username, self.address)


def _keys(username: str, address: str) -> list[str]:
    return [f"fieldpool:{{login}}:user:{username}", f"fieldpool:{{login}}:address:{address}",
            f"fieldpool:{{login}}:user-lock:{username}"]


def admit(redis: Redis, cfg: LoginSettings, *, username: str, address: str) -> Attempt:
    """Count an attempt before its password is checked.

    Raises:
        TooManyAttempts: the username or the address used up its failures for the window.
    """
    attempt = Attempt(username=username[:64], address=address, failures=0)
    try:
        admitted, value = _scripts.run(redis, "admit", attempt.keys,
                                       [cfg.user_limit, cfg.address_limit, cfg.window_s, cfg.lock_window_s])
    except RedisError as exc:
        _unavailable(exc)
        return attempt
    if not admitted:
        raise TooManyAttempts(retry_after=max(1, -(-int(value) // 1000)))  # a PTTL read as it ran out: 1 s
    return Attempt(username=attempt.username, address=address, failures=int(value))


def succeeded(redis: Redis, attempt: Attempt) -> None:
    """The password was right: the username starts afresh, the address gets its attempt back."""
    try:
        _scripts.run(redis, "succeeded", attempt.keys, [])
    except RedisError as exc:
        _unavailable(exc)


def forget(redis: Redis, username: str) -> None:
    """An admin unlocked the account: its failures so far no longer count."""
    user_window, _, lock_window = _keys(username, "")
    try:
        redis.delete(user_window, lock_window)
    except RedisError as exc:
        _unavailable(exc)


def _unavailable(exc: RedisError) -> None:
    log.warning("login_throttle_unavailable", error=f"{type(exc).__name__}: {exc}")
