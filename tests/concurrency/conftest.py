"""Fixtures for storms against three API processes: a minted crowd, the server, a private Redis."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import text
from sqlalchemy.engine import Engine

from dispatch.app import create_app
from dispatch.kernel.settings import Settings
from tests.concurrency.storms import ApiServer, Crowd, PrivateRedis
from tests.conftest import TEST_REDIS_URL, serving


@pytest.fixture
def live_server(settings: Settings, committed_db: Engine, redis: Redis) -> Iterator[str]:
    """The live server with the storms' allowances: they test who wins, and the crowd, minted off duty,
    taps like a script (the duty and tap rules have their tests in tests/api/test_grab_pool_api.py)."""
    with committed_db.connect() as conn:
        branches = frozenset(conn.execute(text("SELECT id FROM region WHERE kind = 'branch'")).scalars())
    storms = settings.pool.model_copy(update={"grab_taps": 1_000_000, "grab_anywhere_branch_ids": branches})
    with serving(create_app(settings.model_copy(update={"pool": storms}))) as url:
        yield url


@pytest.fixture
def crowd(committed_db: Engine, owner_engine: Engine, settings: Settings) -> Iterator[Crowd]:
    crowd = Crowd(committed_db, settings.secret_key, owner=owner_engine)
    yield crowd
    crowd.disband()


@pytest.fixture
def start_api(settings: Settings, crowd: Crowd, redis: Redis, tmp_path: Path) -> Iterator[Callable[[str], ApiServer]]:
    """Starts three API processes on a given Redis; stopped before the crowd and the tables go."""
    started: list[ApiServer] = []

    def start(redis_url: str) -> ApiServer:
        server = ApiServer(redis_url=redis_url, secret=settings.secret_key, log=tmp_path / f"api{len(started)}.log")
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def api_server(start_api: Callable[[str], ApiServer]) -> ApiServer:
    return start_api(TEST_REDIS_URL)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.kill()
