"""Property-based run of every operation of /openapi.json against a live server (Schemathesis).

As an admin, as a technician and with no token: no 5xx, every answer as the
document says (status, media type, headers, body schema), invalid input
refused, and nothing written by a request that answered 4xx. The server runs
on a database of its own (the admin's writes change the demo city) with the
WeChat account on, against the loopback WeChat peer. `make fuzz` raises the
examples per operation (FUZZ_EXAMPLES).
"""

import os
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from redis import Redis
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from dispatch.app import create_app
from dispatch.kernel.settings import Settings, WechatSettings
from technicians import replica
from tests.conftest import TEST_REDIS_URL, build_demo_database, log_in, serving
from tests.wechat.peer import APP_ID, SECRET, WechatPeer
from tests.wechat.wire import AES_KEY, PUBLIC, TEMPLATES, TOKEN

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))
CALLERS = ("admin", "tech01", None)
# Tables the schema owns but the app never writes.
UNWRITTEN = {"spatial_ref_sys", "alembic_version"}


def _fuzz_database_url(test_url: str) -> str:
    url = make_url(test_url)
    return url.set(database=f"{url.database}_fuzz").render_as_string(hide_password=False)


def _create_database(url: str) -> None:
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}) is None:
            conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


@pytest.fixture(scope="module")
def fuzz_engine(engine: Engine, settings: Settings) -> Iterator[Engine]:
    """The demo city in a database of its own, rebuilt for every run (`engine` holds the run's lock)."""
    url = os.environ.get("FUZZ_DATABASE_URL") or _fuzz_database_url(settings.database_url)
    _create_database(url)
    fuzz = create_engine(url)
    build_demo_database(fuzz, url)
    yield fuzz
    fuzz.dispose()


@pytest.fixture(scope="module")
def fuzz_server(fuzz_engine: Engine, settings: Settings) -> Iterator[str]:
    with WechatPeer() as peer:
        wechat = WechatSettings(app_id=APP_ID, secret=SECRET, token=TOKEN, encoding_aes_key=AES_KEY,
                                api_base_url=peer.url, oauth_base_url=f"{peer.url}connect/", public_base_url=PUBLIC,
                                timeout_s=3.0, **TEMPLATES)
        redis = Redis.from_url(TEST_REDIS_URL)
        redis.flushdb()
        replica.forget()
        app = create_app(settings.model_copy(update={"database_url": fuzz_engine.url.render_as_string(False),
                                                     "wechat": wechat}))
        with serving(app) as url:
            yield url
        redis.flushdb()
        redis.close()
        replica.forget()


@pytest.fixture(scope="module")
def tokens(fuzz_server: str) -> dict[str | None, dict[str, str]]:
    with httpx.Client(base_url=fuzz_server) as client:
        return {None: {}, **{name: log_in(client, name) for name in CALLERS if name}}


@pytest.fixture(scope="module")
def api_schema(fuzz_server: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzz_server}/openapi.json").exclude(
        # Endless by design (server-sent events): tests/api/test_stream.py covers it.
        path="/api/v1/stream")


@pytest.fixture(scope="module")
def fingerprint(fuzz_engine: Engine) -> Iterator[callable]:
    """Rows and the newest row version of every table: any insert, update or delete changes it."""
    with fuzz_engine.connect() as conn:
        tables = [t for t in conn.scalars(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"))
            if t not in UNWRITTEN]
    query = text(" UNION ALL ".join(
        f"SELECT '{t}', count(*), coalesce(max(xmin::text::bigint), 0) FROM \"{t}\"" for t in tables))

    def take() -> dict[str, tuple[int, int]]:
        with fuzz_engine.connect() as conn:
            return {name: (rows, newest) for name, rows, newest in conn.execute(query)}

    yield take


@pytest.fixture(params=CALLERS, ids=lambda c: c or "anonymous")
def caller(request: pytest.FixtureRequest, tokens: dict[str | None, dict[str, str]]) -> dict[str, str]:
    """The headers of an admin, a technician, or nobody."""
    return tokens[request.param]


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.usefixtures("caller")
def test_every_operation_answers_as_documented(case: schemathesis.Case, caller: dict[str, str], fingerprint) -> None:
    if caller and case.headers:
        # The caller's own token, not the credentials Schemathesis makes up for the security schemes.
        for name in ("Authorization", "X-API-Key"):
            case.headers.pop(name, None)
    before = fingerprint()
    response = case.call(headers=caller, timeout=30)
    # Valid by the schema yet refused by the domain (an unknown region, a taken username) is no defect.
    case.validate_response(response, headers=caller, excluded_checks=[positive_data_acceptance])
    if 400 <= response.status_code < 500:
        assert fingerprint() == before, f"{case.method} {case.formatted_path} answered {response.status_code} " \
                                        "but wrote to the database"
