"""Fixtures for storms against `fieldpool serve --workers 3`: a minted crowd, the server, a private Redis."""

from collections.abc import Iterator

import pytest
from redis import Redis
from sqlalchemy.engine import Engine

from dispatch.kernel.settings import Settings
from tests.concurrency.storms import ApiServer, Crowd, PrivateRedis
from tests.conftest import TEST_REDIS_URL


@pytest.fixture
def crowd(committed_db: Engine, settings: Settings) -> Iterator[Crowd]:
    crowd = Crowd(committed_db, settings.secret_key)
    yield crowd
    crowd.disband()


@pytest.fixture
def api_server(settings: Settings, crowd: Crowd, redis: Redis) -> Iterator[ApiServer]:
    """Three API processes on the test Redis (torn down before the crowd and the tables)."""
    server = ApiServer(redis_url=TEST_REDIS_URL, secret=settings.secret_key)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.kill()
