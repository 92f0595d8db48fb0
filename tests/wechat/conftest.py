"""The WeChat layer against a loopback WeChat peer, the real app, PostgreSQL and Redis.

Jobs and notifier channels open `session_scope()`: here it yields the test's
own session (in a savepoint), so everything a test does is rolled back; the
outbox is drained by calling the drain job, since the after-commit hook never
fires inside the test's outer transaction.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy.orm import Session

from dispatch.app import create_app
from dispatch.kernel import db as kernel_db
from dispatch.kernel.db import UnitOfWork, get_session, get_unit_of_work
from dispatch.kernel.settings import Settings, WechatSettings, get_settings
from dispatch.tickets import notify
from tests.wechat.peer import APP_ID, SECRET, WechatPeer
from tests.wechat.wire import AES_KEY, PUBLIC, TEMPLATES, TOKEN


@pytest.fixture
def peer() -> Iterator[WechatPeer]:
    with WechatPeer() as running:
        yield running


@pytest.fixture
def wechat_cfg(peer: WechatPeer) -> WechatSettings:
    return WechatSettings(app_id=APP_ID, secret=SECRET, token=TOKEN, encoding_aes_key=AES_KEY,
                          api_base_url=peer.url, oauth_base_url=f"{peer.url}connect/", public_base_url=PUBLIC,
                          timeout_s=3.0, **TEMPLATES)


@pytest.fixture
def wx_settings(settings: Settings, wechat_cfg: WechatSettings, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The app's settings with the account on; jobs read the same from the environment."""
    for name, value in wechat_cfg.model_dump().items():
        monkeypatch.setenv(f"WECHAT__{name.upper()}", str(value))
    monkeypatch.setenv("MEDIA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield settings.model_copy(update={"wechat": wechat_cfg, "media_dir": tmp_path})
    get_settings.cache_clear()


class SavepointDatabase:
    """Units of work as savepoints of the test's session."""

    def __init__(self, db: Session) -> None:
        self._db = db

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        with self._db.begin_nested():
            yield self._db


@pytest.fixture
def in_test_transaction(db: Session, monkeypatch: pytest.MonkeyPatch) -> Session:
    """`session_scope()` of jobs and channels yields the test's session, in a savepoint of its own."""

    monkeypatch.setattr(kernel_db, "get_database", lambda: SavepointDatabase(db))
    return db


@pytest.fixture
def wx_app(wx_settings: Settings, in_test_transaction: Session, redis: Redis,
           monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setattr(notify, "_CHANNELS", {})  # the app's lifespan registers into a registry of this test
    app = create_app(wx_settings)

    def test_session() -> Iterator[Session]:
        with in_test_transaction.begin_nested():
            yield in_test_transaction

    async def test_unit_of_work() -> UnitOfWork:
        return SavepointDatabase(in_test_transaction).session_scope

    app.dependency_overrides[get_session] = test_session
    app.dependency_overrides[get_unit_of_work] = test_unit_of_work
    return app


@pytest.fixture
def wx(wx_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(wx_app, base_url="https://testserver", raise_server_exceptions=False,
                    follow_redirects=False) as client:
        yield client
