"""A forked process (every rq job) starts with database connections of its own."""

import json
import os
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from dispatch.kernel.db import Database
from dispatch.kernel.settings import Settings

# psycopg prepares a statement on its fifth execution on a connection: a child reusing the parent's
# connection then met `prepared statement "_pg3_0" already exists`, or read the parent's answers.
RUNS = 12
WHO = text("SELECT pg_backend_pid() + :n * 0")


def _backends(database: Database) -> list[int]:
    with database.session_scope() as session:
        return [int(session.execute(WHO, {"n": n}).scalar_one()) for n in range(RUNS)]


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    database = Database(settings)
    yield database
    database.dispose()


def test_a_forked_child_and_its_parent_run_statements_at_once_on_connections_of_their_own(
        database: Database) -> None:
    before = set(_backends(database))  # the parent's pool holds a connection with prepared statements
    start_read, start_write = os.pipe()
    result_read, result_write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover -- the child reports through the pipe and exits at once
        try:
            os.read(start_read, 1)
            reply = {"backends": _backends(database)}
        except BaseException as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(result_write, json.dumps(reply).encode())
        os._exit(0)
    os.close(result_write)
    os.write(start_write, b"go")  # both at once: the child's first statement races the parent's
    in_parent = set(_backends(database))
    with os.fdopen(result_read) as pipe:
        reply = json.loads(pipe.read())
    os.waitpid(child, 0)

    assert "error" not in reply, reply["error"]
    assert set(reply["backends"]).isdisjoint(before | in_parent)
    assert in_parent == before  # the parent's own connection is left to it, open and working
