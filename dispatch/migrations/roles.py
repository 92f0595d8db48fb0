"""The app's database role: it owns nothing and may only read and write the tables it uses.

Migrations run as the owner (`MIGRATION_DATABASE_URL`); the API, the worker and
the CLI connect as the role named in `DATABASE_URL`. `fieldpool db upgrade`
calls `provision` after the migrations, so a new table gets its grants in the
same step that creates it. Every run revokes and grants again: the grants are
exactly what this module says, whatever an earlier version granted.
"""

import time
from collections.abc import Iterator

import psycopg
from psycopg import sql
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from dispatch.migrations.metadata import target_metadata

DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
# The history a ticket and its pay are judged by: rows are added, never changed or removed.
APPEND_ONLY = {"ticket_event", "work_adjustment", "ticket_decline"}
# A work record is repriced in place by the follow-up's rating while its month is open
# (`workload.service.rate_visit`); every other column is a snapshot and stays as written.
REPRICED = {"work_record": ("satisfaction", "satisfaction_factor", "points", "pay")}
# Role attributes are cluster-wide: another database's upgrade may alter the role at the same moment.
ATTEMPTS = 5


def provision(owner_url: str, app_url: str) -> str | None:
    """Create or update the app role named in `app_url` and grant it what the app needs; returns its name.

    Nothing to do (None) when both URLs name the same role: a deployment that has not separated them.
    """
    role = make_url(app_url).username
    engine = create_engine(owner_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if role is None or role == conn.execute(text("SELECT current_user")).scalar_one():
                return None
            _refuse_a_powerful_role(conn, role)
        attempt = 1
        while True:
            try:
                with engine.begin() as conn:
                    _provision(conn, role, make_url(app_url).password)
                return role
            except DBAPIError as exc:
                # "tuple concurrently updated": two upgrades altered the role at once; the later one retries.
                if not isinstance(exc.orig, psycopg.errors.InternalError_) or attempt == ATTEMPTS:
                    raise
            time.sleep(0.1 * attempt)
            attempt += 1
    finally:
        engine.dispose()


def _refuse_a_powerful_role(conn: Connection, role: str) -> None:
    """Raises: UnfitRole (a superuser or an owner of tables here: taking its powers away would break more than
    the app; most likely the two URLs were swapped)."""
    found = conn.execute(text(
        "SELECT r.rolsuper, EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = r.oid "
        "  AND c.relnamespace = 'public'::regnamespace) FROM pg_roles r WHERE r.rolname = :role"),
        {"role": role}).first()
    if found is not None and (found[0] or found[1]):
        raise UnfitRole(f"DATABASE_URL's role {role} is a superuser or owns the tables: give the app a role of its "
                        "own (MIGRATION_DATABASE_URL names the owner)")


class UnfitRole(Exception):
    """DATABASE_URL names a role that must not be made the app's restricted role."""


def _provision(conn: Connection, role: str, password: str | None) -> None:
    # psycopg's own cursor: the statements are composed with its quoting (identifiers, the password literal).
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    with raw.cursor() as cursor:
        for statement in _statements(role, password, database=conn.engine.url.database or ""):
            cursor.execute(statement)


def _statements(role: str, password: str | None, *, database: str) -> Iterator[sql.Composed]:
    who = sql.Identifier(role)
    # CREATE ROLE has no IF NOT EXISTS; two first upgrades at once race on the catalog's unique key.
    yield sql.SQL("DO $$ BEGIN CREATE ROLE {} LOGIN; "
                  "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$").format(who)
    attributes: sql.Composable = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
    if password:
        attributes = sql.SQL("{} PASSWORD {}").format(attributes, sql.Literal(password))
    yield sql.SQL("ALTER ROLE {} WITH {}").format(who, attributes)
    yield sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(sql.Identifier(database), who)
    yield sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(who)
    yield sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(who)
    yield sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(who)
    for table in sorted(target_metadata.tables):
        name = sql.Identifier(table)
        if table in APPEND_ONLY:
            yield sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(name, who)
        elif table in REPRICED:
            columns = sql.SQL(", ").join(map(sql.Identifier, REPRICED[table]))
            yield sql.SQL("GRANT SELECT, INSERT, UPDATE ({}) ON {} TO {}").format(columns, name, who)
        else:
            yield sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(", ").join(map(sql.SQL, DML)), name, who)
    # Identity and serial columns draw from sequences; nothing here sets one.
    yield sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(who)
