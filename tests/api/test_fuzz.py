"""Property-based run of every operation of /openapi.json against a live server (Schemathesis).

As an admin, as a technician and with no token: no 5xx, every answer as the
document says (status, media type, headers, body schema), invalid input
refused, and nothing written by a request that answered 4xx. The server runs
on a database of its own (the admin's writes change the demo city) with the
WeChat account on, against the loopback WeChat peer.

Bounded in the suite: Schemathesis's explicit examples and its fuzzing phase,
FUZZ_EXAMPLES cases per operation. `make fuzz` runs longer and adds the
coverage phase (every boundary and type mismatch of every field: some ten
thousand requests, two thirds of a run's time), through FUZZ_PHASES.
"""

import os
from collections.abc import Callable, Iterator

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

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
PHASES = os.environ.get("FUZZ_PHASES", "examples,fuzzing").split(",")
CALLERS = ("admin", "tech01", None)
# Rows written to the fuzz database, one per row any statement inserted, updated or deleted: a trigger on every
# table appends here in the writer's own transaction, so what a request rolled back leaves nothing. Two writes
# of a refused request are the door's, on purpose: the audit trail of a refused log-in, and the lock that
# failed log-ins put on an account (`user_account.locked_at`); they are not counted.
COUNT_WRITES = """
CREATE TABLE fuzz_write (id bigserial PRIMARY KEY);
CREATE FUNCTION fuzz_count_write() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN INSERT INTO fuzz_write DEFAULT VALUES; RETURN NULL; END $$;
DO $$
DECLARE name text; columns text;
BEGIN
  FOR name IN SELECT tablename FROM pg_tables WHERE schemaname = 'public'
                AND tablename NOT IN ('fuzz_write', 'spatial_ref_sys', 'alembic_version', 'audit_event') LOOP
    SELECT string_agg(quote_ident(column_name), ', ') INTO columns FROM information_schema.columns
     WHERE table_schema = 'public' AND table_name = name AND NOT (name = 'user_account' AND column_name = 'locked_at');
    EXECUTE 'CREATE TRIGGER fuzz_count_write AFTER INSERT OR DELETE OR UPDATE OF ' || columns || ' ON '
            || quote_ident(name) || ' FOR EACH ROW EXECUTE FUNCTION fuzz_count_write()';
  END LOOP;
END $$;
"""


def _fuzz_database_url(test_url: str) -> str:
    url = make_url(test_url)
    return url.set(database=f"{url.database}_fuzz").render_as_string(hide_password=False)


def _app_url(fuzz_url: str, app_url: str) -> str:
    """The fuzz database, as the app's role of `app_url` connects."""
    app = make_url(app_url)
    return make_url(fuzz_url).set(username=app.username, password=app.password).render_as_string(hide_password=False)


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
    # As the suite: migrated by the owner, served as the app's role (the write counter runs as its owner).
    url = os.environ.get("FUZZ_DATABASE_URL") or _fuzz_database_url(settings.owner_database_url)
    _create_database(url)
    fuzz = create_engine(url)
    build_demo_database(fuzz, url, _app_url(url, settings.database_url))
    with fuzz.begin() as conn:
        conn.exec_driver_sql(COUNT_WRITES)
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
        app_url = _app_url(fuzz_engine.url.render_as_string(False), settings.database_url)
        app = create_app(settings.model_copy(update={"database_url": app_url, "migration_database_url": None,
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
    loaded = schemathesis.openapi.from_url(f"{fuzz_server}/openapi.json")
    loaded.config.phases.update(phases=PHASES)
    return loaded


@pytest.fixture(scope="module")
def written(fuzz_engine: Engine) -> Callable[[], int]:
    """A number that grows with every row written and committed (one index lookup, not a scan of every table)."""
    def count() -> int:
        with fuzz_engine.connect() as conn:
            return conn.scalar(text("SELECT coalesce(max(id), 0) FROM fuzz_write"))

    return count


@pytest.fixture(params=CALLERS, ids=lambda c: c or "anonymous")
def caller(request: pytest.FixtureRequest, tokens: dict[str | None, dict[str, str]]) -> dict[str, str]:
    """The headers of an admin, a technician, or nobody."""
    return tokens[request.param]


# Filters go here: the lazy schema replaces the fixture's own filters with these.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(
    # Endless by design (server-sent events): tests/api/test_stream.py covers it.
    path="/api/v1/stream")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.usefixtures("caller")
def test_every_operation_answers_as_documented(case: schemathesis.Case, caller: dict[str, str],
                                               written: Callable[[], int]) -> None:
    if caller and case.headers:
        # The caller's own token, not the credentials Schemathesis makes up for the security schemes.
        for name in ("Authorization", "X-API-Key"):
            case.headers.pop(name, None)
    before = written()
    response = case.call(headers=caller, timeout=30)
    # Valid by the schema yet refused by the domain (an unknown region, a taken username) is no defect.
    case.validate_response(response, headers=caller, excluded_checks=[positive_data_acceptance])
    if 400 <= response.status_code < 500:
        assert written() == before, f"{case.method} {case.formatted_path} answered {response.status_code} " \
                                    "but wrote to the database"


def test_the_write_count_sees_what_commits_and_not_what_rolls_back(fuzz_engine: Engine,
                                                                   written: Callable[[], int]) -> None:
    before = written()
    with fuzz_engine.connect() as conn:
        conn.execute(text("UPDATE region SET name = name WHERE id = 1"))
        conn.rollback()
    assert written() == before
    with fuzz_engine.begin() as conn:
        conn.execute(text("UPDATE region SET name = name WHERE id = 1"))
    assert written() > before
