"""Log-in throttled per username and per client address, accounts locked after failures, unlocked by an admin."""

import threading
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dispatch.accounts.models import User
from dispatch.accounts.service import create_user
from dispatch.app import create_app
from dispatch.kernel.auth import Role
from dispatch.kernel.settings import LoginSettings, Settings
from tests.conftest import in_test_transaction, log_in, serving

TOKEN = "/api/v1/auth/token"
PASSWORD = "right-password-1"


def strict(settings: Settings, **login: int) -> Settings:
    return settings.model_copy(update={"login": LoginSettings(**login)})


@pytest.fixture
def door(settings: Settings, db: Session, redis) -> Callable[..., TestClient]:
    """`door(user_limit=3, ...)` → a client of an app with those log-in limits, in the test's transaction."""
    clients: list[TestClient] = []

    def door(address: str = "203.0.113.7", **login: int) -> TestClient:
        app = in_test_transaction(create_app(strict(settings, **login)), db)
        client = TestClient(app, raise_server_exceptions=False, client=(address, 40000))
        clients.append(client.__enter__())
        return client

    yield door
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def clerk(db: Session) -> User:
    xl = db.scalar(text("SELECT id FROM region WHERE code = 'XL'"))
    return create_user(db, username="clerk.lock", password=PASSWORD, role=Role.CLERK, region_ids=[xl])


def attempt(client: TestClient | httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post(TOKEN, data={"username": username, "password": password})


def test_failures_past_the_username_limit_get_429_with_retry_after(door, clerk: User) -> None:
    client = door(user_limit=3, window_s=120)
    assert [attempt(client, "clerk.lock", "nope").status_code for _ in range(3)] == [401, 401, 401]
    refused = attempt(client, "clerk.lock", PASSWORD)  # the right password does not get past the throttle
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 120
    # Another username from another address is not held back by this one's failures.
    assert attempt(door(address="198.51.100.2", user_limit=3), "dispatcher.xl", "demo-test-pw").status_code == 200


def test_failures_from_one_address_over_many_usernames_get_429(door, clerk: User) -> None:
    client = door(address_limit=3, user_limit=100)
    for username in ("clerk.lock", "dispatcher.xl", "nobody.here"):
        assert attempt(client, username, "nope").status_code == 401
    refused = attempt(client, "payroll", "demo-test-pw")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert attempt(door(address="198.51.100.9", address_limit=3), "payroll", "demo-test-pw").status_code == 200


def test_a_right_password_forgets_the_usernames_failures(door, clerk: User) -> None:
    client = door(user_limit=3)
    for _ in range(2):
        assert attempt(client, "clerk.lock", "nope").status_code == 401
    assert attempt(client, "clerk.lock", PASSWORD).status_code == 200
    assert [attempt(client, "clerk.lock", "nope").status_code for _ in range(3)] == [401, 401, 401]


def test_account_locks_after_n_failures_and_refuses_even_the_right_password_until_an_admin_unlocks(
        door, clerk: User, db: Session) -> None:
    client = door(user_limit=100, lock_after=3)
    assert [attempt(client, "clerk.lock", "nope").status_code for _ in range(2)] == [401, 401]
    locking = attempt(client, "clerk.lock", "nope")
    assert locking.status_code == 403 and locking.json()["code"] == "account_locked"
    right = attempt(client, "clerk.lock", PASSWORD)
    assert right.status_code == 403 and right.json()["code"] == "account_locked"
    assert "access_token" not in right.json()

    admin = log_in(client, "admin")
    assert client.post(f"/api/v1/users/{clerk.id}/unlock", headers=log_in(client, "dispatcher.xl")).status_code == 403
    unlocked = client.post(f"/api/v1/users/{clerk.id}/unlock", headers=admin)
    assert unlocked.status_code == 200 and unlocked.json()["locked_at"] is None
    assert attempt(client, "clerk.lock", PASSWORD).status_code == 200
    # The failures before the unlock no longer count towards the next lock.
    assert [attempt(client, "clerk.lock", "nope").status_code for _ in range(2)] == [401, 401]

    audit = client.get("/api/v1/audit", params={"actor": "clerk.lock"}, headers=admin).json()["items"]
    actions = [event["action"] for event in reversed(audit)]
    assert actions == ["login.failed"] * 3 + ["user.locked", "login.failed", "login.succeeded", "login.failed",
                                                "login.failed"]
    unlock = client.get("/api/v1/audit", params={"action": "user.unlocked"}, headers=admin).json()["items"]
    assert [(e["actor_label"], e["target_id"]) for e in unlock] == [("admin", clerk.id)]


def test_an_unknown_username_locks_like_a_real_one(door) -> None:
    client = door(user_limit=100, lock_after=2)
    replies = [attempt(client, name, "nope").json() for name in ("clerk.xl", "clerk.xl", "no.such", "no.such")]
    assert replies[0] == replies[2] and replies[1] == replies[3]
    assert replies[1]["code"] == "account_locked"


# --- real concurrency: a burst of guesses at a live server --------------------------------

@pytest.fixture
def storm_user_id(committed_db: Engine) -> Iterator[int]:
    with Session(committed_db) as session, session.begin():
        xl = session.scalar(text("SELECT id FROM region WHERE code = 'XL'"))
        user_id = create_user(session, username="clerk.storm", password=PASSWORD, role=Role.CLERK,
                              region_ids=[xl]).id
    yield user_id
    with committed_db.begin() as conn:
        conn.execute(delete(User).where(User.id == user_id))


def test_a_burst_of_concurrent_guesses_gets_exactly_the_limit_of_checks_and_one_lock(
        settings: Settings, committed_db: Engine, redis, storm_user_id: int) -> None:
    racers = 24
    app = create_app(strict(settings, user_limit=6, lock_after=4, address_limit=1000))
    with serving(app) as base_url:
        start = threading.Barrier(racers)
        replies: list[httpx.Response] = []

        def guess(n: int) -> None:
            with httpx.Client(base_url=base_url, timeout=30) as client:
                start.wait()
                replies.append(attempt(client, "clerk.storm", f"guess-{n}"))

        threads = [threading.Thread(target=guess, args=(n,)) for n in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = Counter(reply.status_code for reply in replies)
        assert statuses[429] == racers - 6, statuses  # only six guesses were checked at all
        assert statuses[401] + statuses[403] == 6, statuses
        assert all(int(r.headers["Retry-After"]) > 0 for r in replies if r.status_code == 429)

        with httpx.Client(base_url=base_url, timeout=30) as client:
            assert attempt(client, "clerk.storm", PASSWORD).status_code == 429  # locked, and throttled first
            admin = log_in(client, "admin")
            assert client.post(f"/api/v1/users/{storm_user_id}/unlock", headers=admin).status_code == 200
            assert attempt(client, "clerk.storm", PASSWORD).status_code == 200

    with Session(committed_db) as session:
        locks = session.execute(text("SELECT count(*) FROM audit_event WHERE action = 'user.locked' "
                                     "AND target_id = :id"), {"id": storm_user_id}).scalar_one()
        failed = session.execute(text("SELECT count(*) FROM audit_event WHERE action = 'login.failed' "
                                      "AND actor_label = 'clerk.storm'")).scalar_one()
        assert session.scalar(select(User.locked_at).where(User.id == storm_user_id)) is None
    assert locks == 1 and failed == 6  # a throttled attempt is not audited: a flood must not fill the table
