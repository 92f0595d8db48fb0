"""Test set-up on real services: PostgreSQL+PostGIS and Redis, started by the project's own script.

The test database is rebuilt with the real Alembic chain once per run and the
demo city committed once; each `db` test then runs inside an outer transaction
that is rolled back, so the app's commits only release savepoints.
"""

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from dispatch.accounts.service import subscriber_by_phone, token_for
from dispatch.app import create_app
from dispatch.kernel.cache import Remembered
from dispatch.kernel.db import UnitOfWork, get_database, get_session, get_unit_of_work
from dispatch.kernel.queues import queue
from dispatch.kernel.settings import Settings, get_settings
from dispatch.migrations import roles, runner
from dispatch.seed import seed_demo
from technicians import replica

ROOT = Path(__file__).resolve().parents[1]
# The owner's URL: the schema is dropped and migrated with it.
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL",
                                   "postgresql+psycopg://postgres@127.0.0.1:5432/fieldpool_test")
# The app's role, as `fieldpool db upgrade` provisions it: the suite, its servers and workers run as it.
TEST_APP_DATABASE_URL = os.environ.get("TEST_APP_DATABASE_URL", make_url(TEST_DATABASE_URL).set(
    username="fieldpool_app", password="fieldpool_app").render_as_string(hide_password=False))
# A Redis database of its own, flushed around every test.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DEMO_PASSWORD = "demo-test-pw"
# Tables written by tests that commit for real; the demo city is left in place.
TRANSIENT_TABLES = ("work_adjustment, work_record, pay_period, ticket_event, attachment, idempotency_key, "
                    "ticket_offer, outbox, track_point, ticket, subscriber, api_key, tip_outcome, audit_event, "
                    "incident, notice_attempt, notice, notice_route, notice_preference, webhook_delivery, webhook, "
                    "ticket_decline, branch_dispatch")


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    # Jobs and queues read the process settings (a worker has nothing else):
    # point those at the test database and Redis too.
    saved = {name: os.environ.get(name)
             for name in ("DATABASE_URL", "MIGRATION_DATABASE_URL", "REDIS_URL", "REDIS_QUEUE_URL")}
    os.environ.update(DATABASE_URL=TEST_APP_DATABASE_URL, MIGRATION_DATABASE_URL=TEST_DATABASE_URL,
                      REDIS_URL=TEST_REDIS_URL, REDIS_QUEUE_URL=TEST_REDIS_URL)
    _forget_process_settings()
    yield Settings(database_url=TEST_APP_DATABASE_URL, migration_database_url=TEST_DATABASE_URL,
                   redis_url=TEST_REDIS_URL, log_json=False,
                    log_level="WARNING", media_dir=tmp_path_factory.mktemp("media"),
                    secret_key="test-secret-key-0123456789-0123456789-abcdef", db_pool_size=20)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _forget_process_settings()


def _forget_process_settings() -> None:
    if get_database.cache_info().currsize:  # jobs ran in this process: close their pool
        get_database().dispose()
    get_settings.cache_clear()
    queue.cache_clear()
    get_database.cache_clear()


def _services_up(settings: Settings) -> bool:
    try:
        probe = create_engine(settings.owner_database_url, poolclass=NullPool)
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
        probe.dispose()
        with Redis.from_url(settings.redis_url, socket_connect_timeout=1) as client:
            client.ping()
    except (OperationalError, RedisError):
        return False
    return True


def _ensure_services() -> None:
    env = {**os.environ, "TEST_DATABASE_URL": TEST_DATABASE_URL}
    done = subprocess.run(["bash", str(ROOT / "scripts/ensure-services.sh")], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.exit(f"PostgreSQL+PostGIS or Redis is not available:\n{done.stderr}", returncode=3)


@pytest.fixture(scope="session")
def owner_engine(settings: Settings) -> Iterator[Engine]:
    """The tables' owner: migrates, and empties tables the app's role may only add to."""
    if not _services_up(settings):
        _ensure_services()
    owner = create_engine(settings.owner_database_url)
    # Two test runs on one machine share the test database and Redis number:
    # the second waits here for the first instead of dropping its schema.
    with owner.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(hashtext('fieldpool test run'))"))
        build_demo_database(owner, settings.owner_database_url, settings.database_url)
        yield owner
    owner.dispose()


@pytest.fixture(scope="session")
def engine(settings: Settings, owner_engine: Engine) -> Iterator[Engine]:
    """The app's role, as the API and the worker connect."""
    engine = create_engine(settings.database_url)
    yield engine
    engine.dispose()


def build_demo_database(owner: Engine, owner_url: str, app_url: str) -> None:
    """Empty the database, migrate it as its owner with the real Alembic chain, grant the app's role what
    it needs, and commit the demo city through that role."""
    with owner.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    runner.upgrade(owner_url)
    roles.provision(owner_url, app_url)
    app = create_engine(app_url, poolclass=NullPool)
    with Session(app) as session, session.begin():
        seed_demo(session, password=DEMO_PASSWORD)
    app.dispose()


@pytest.fixture(autouse=True)
def _forget_reference_data() -> Iterator[None]:
    """Grids, types and names remembered by this process came from a test whose writes were rolled back."""
    Remembered.forget_everything()
    yield
    Remembered.forget_everything()


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    """A session whose work is rolled back after the test."""
    with engine.connect() as conn:
        outer = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        yield session
        session.close()
        outer.rollback()


def truncate_transient(owner: Engine) -> None:
    """Empty what tests committed (the app's role may not: ticket_event is append-only to it)."""
    with owner.begin() as conn:
        conn.execute(text(f"TRUNCATE {TRANSIENT_TABLES} RESTART IDENTITY CASCADE"))


@pytest.fixture
def committed_db(engine: Engine, owner_engine: Engine) -> Iterator[Engine]:
    """For races between connections: real commits, transient tables truncated afterwards."""
    yield engine
    truncate_transient(owner_engine)


# Columns that a worker's write-through and the duty switch change on committed demo technicians.
TECHNICIAN_STATE = "on_duty, last_location, last_seen_at, last_accuracy_m"


@pytest.fixture
def demo_technicians_restored(committed_db: Engine) -> Iterator[None]:
    """For tests whose server and worker processes put demo technicians on duty: the demo city is
    shared by every test, so their state is put back afterwards."""
    with committed_db.connect() as conn:
        saved = conn.execute(text(f"SELECT id, {TECHNICIAN_STATE} FROM technician")).all()
    yield
    with committed_db.begin() as conn:
        for row in saved:
            conn.execute(text("UPDATE technician SET on_duty = :on_duty, last_location = :last_location, "
                              "last_seen_at = :last_seen_at, last_accuracy_m = :last_accuracy_m WHERE id = :id"),
                         row._asdict())


@pytest.fixture
def redis() -> Iterator[Redis]:
    client = Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    # This process's copies of the open sets would see the flush only after the follower's next read:
    # each test starts with none.
    replica.forget()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def whole_first_ring(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """No lead ring (OFFER__LEAD_K=0): the first ring's K at once, for tests of what a ring of K does."""
    monkeypatch.setattr(settings, "offer", settings.offer.model_copy(update={"lead_k": 0}))
    return settings


@pytest.fixture
def app(settings: Settings, db: Session, redis: Redis) -> FastAPI:
    return in_test_transaction(create_app(settings), db)


def in_test_transaction(app: FastAPI, db: Session) -> FastAPI:
    """The app with its sessions and units of work inside the test's rolled-back transaction."""

    def test_session() -> Iterator[Session]:
        with db.begin_nested():
            yield db

    @contextmanager
    def test_unit() -> Iterator[Session]:
        with db.begin_nested():
            yield db

    async def test_unit_of_work() -> UnitOfWork:
        return test_unit

    app.dependency_overrides[get_session] = test_session
    app.dependency_overrides[get_unit_of_work] = test_unit_of_work
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


_tokens: dict[str, str] = {}


def log_in(client: TestClient | httpx.Client, username: str, password: str = DEMO_PASSWORD) -> dict[str, str]:
    """Authorization headers for a demo user (tokens cached: the demo users persist all run)."""
    if username not in _tokens:
        reply = client.post("/api/v1/auth/token", data={"username": username, "password": password})
        assert reply.status_code == 200, reply.text
        _tokens[username] = reply.json()["access_token"]
    return {"Authorization": f"Bearer {_tokens[username]}"}


XL_CENTRE = {"lat": 43.935, "lng": 116.08}  # in Xilinhot's grids


def on_duty(client: TestClient | httpx.Client, headers: dict[str, str],
            at: dict[str, float] | None = XL_CENTRE) -> dict[str, str]:
    """The technician on duty with a fresh position at `at` (None: not located yet), as a grab needs them;
    returns their headers."""
    duty = client.put("/api/v1/me/duty", json={"on_duty": True}, headers=headers)
    assert duty.status_code < 300, duty.text
    if at is not None:
        located = client.put("/api/v1/me/location", json={**at, "accuracy_m": 10}, headers=headers)
        assert located.status_code < 300, located.text
    return headers


def local_day(settings: Settings, at: str) -> str:
    """The day of an API timestamp as the statistics count it, local: after 16:00 UTC a Shanghai day is the next
    UTC date's."""
    return datetime.fromisoformat(at).astimezone(ZoneInfo(settings.timezone)).date().isoformat()


def subscriber_headers(db: Session, settings: Settings, *, phone: str = "13800001234",
                       name: str = "李四") -> dict[str, str]:
    """What WeChat OAuth hands a subscriber: a bearer token for `subscriber:<id>`."""
    subscriber_id = subscriber_by_phone(db, phone=phone, name=name)
    token = token_for(f"subscriber:{subscriber_id}", secret=settings.secret_key, ttl_min=5)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def as_user(client: TestClient) -> Callable[[str], dict[str, str]]:
    """`as_user("dispatcher.xl")` → headers for that demo user."""
    return lambda username: log_in(client, username)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """A real uvicorn serving `app` on loopback in a thread of this process; its base URL."""
    # Idle connections kept as `fieldpool serve` keeps them (75 s): with uvicorn's 5 s, a client reusing one
    # after a pause on a loaded machine met a server closing it ("Server disconnected without a response").
    config = uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning", access_log=False,
                            timeout_keep_alive=75)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the live server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_server(settings: Settings, committed_db: Engine, redis: Redis) -> Iterator[str]:
    """A real uvicorn serving the app on loopback, committing to the test database."""
    with serving(create_app(settings)) as url:
        yield url


# --- commands in processes of their own ------------------------------------------------

PROCESS_START_S = 60.0  # generous: the machine is shared, and a process starts from cold


@contextmanager
def fieldpool_process(args: list[str], env: dict[str, str], log: Path,
                      ready: Callable[[], bool] = lambda: True) -> Iterator[subprocess.Popen[bytes]]:
    """A `fieldpool` command in a process of its own, stopped (SIGTERM, as a deployment does) afterwards."""
    with log.open("wb") as out:
        child = subprocess.Popen([sys.executable, "-m", "dispatch.cli", *args], cwd=ROOT, env={**os.environ, **env},
                                 stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + PROCESS_START_S
            while not ready():  # polling with a deadline: the process starts on its own
                if child.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"fieldpool {args[0]} did not start: {log.read_text()}")
                time.sleep(0.05)
            yield child
        finally:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def answers(base_url: str) -> Callable[[], bool]:
    """Ready once the server answers its health check."""
    def ready() -> bool:
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
        return False
    return ready
