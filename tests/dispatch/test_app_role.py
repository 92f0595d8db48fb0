"""Least privilege: the app's role owns nothing, keeps the history append-only and cannot change the schema.

The whole suite connects as this role (`engine`, the servers and workers it starts); these tests show
what it is refused, each statement in a savepoint of its own so the refusal is all that happens.
"""

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session

from dispatch.kernel.settings import Settings
from dispatch.migrations import roles
from tests.conftest import TEST_APP_DATABASE_URL

APP_ROLE = make_url(TEST_APP_DATABASE_URL).username

REFUSED = [
    "UPDATE ticket_event SET note = 'rewritten'",
    "DELETE FROM ticket_event",
    "TRUNCATE ticket_event",
    "UPDATE work_adjustment SET amount = 0",
    "DELETE FROM work_adjustment",
    "UPDATE work_record SET technician_id = technician_id",
    "DELETE FROM work_record",
    "DROP TABLE ticket",
    "ALTER TABLE ticket ADD COLUMN sneaked text",
    "ALTER TABLE ticket_event DISABLE TRIGGER ALL",
    "CREATE TABLE sneaked (id int)",
    "CREATE INDEX sneaked ON ticket (description)",
    f"ALTER TABLE ticket_event OWNER TO {APP_ROLE}",
    "UPDATE alembic_version SET version_num = 'x'",
    "CREATE ROLE sneaked",
]


@pytest.mark.parametrize("statement", REFUSED)
def test_the_app_role_is_refused(db: Session, statement: str) -> None:
    with pytest.raises(ProgrammingError, match=r"permission denied|must be owner"), db.begin_nested():
        db.execute(text(statement))


def test_the_app_role_owns_nothing_and_has_no_attributes(engine: Engine) -> None:
    with engine.connect() as conn:
        role = conn.execute(text("SELECT current_user")).scalar_one()
        owned = conn.execute(text(
            "SELECT relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = current_user "
            "UNION ALL SELECT nspname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner "
            "WHERE r.rolname = current_user")).scalars().all()
        attributes = conn.execute(text(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles "
            "WHERE rolname = current_user")).one()
    assert role == APP_ROLE
    assert owned == []
    assert tuple(attributes) == (False, False, False, False, False)


def test_provisioning_again_changes_nothing(owner_engine: Engine, settings: Settings) -> None:
    def grants() -> list[tuple[str, str, str | None]]:
        with owner_engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT table_name, privilege_type, NULL FROM information_schema.role_table_grants "
                "WHERE grantee = :role UNION ALL "
                "SELECT table_name, privilege_type, column_name FROM information_schema.column_privileges "
                "WHERE grantee = :role ORDER BY 1, 2, 3"), {"role": APP_ROLE})]

    before = grants()
    assert roles.provision(settings.owner_database_url, TEST_APP_DATABASE_URL) == APP_ROLE
    assert grants() == before
    assert ("ticket_event", "INSERT", None) in before and ("ticket_event", "UPDATE", None) not in before
    assert ("work_record", "UPDATE", "pay") in before and ("work_record", "UPDATE", "technician_id") not in before


def test_a_superuser_or_the_owner_is_never_made_the_app_role(settings: Settings) -> None:
    # Swapped URLs: "provisioning" the owner as the app's role would strip it of its powers.
    with pytest.raises(roles.UnfitRole, match="superuser or owns the tables"):
        roles.provision(settings.database_url, settings.owner_database_url)
    assert roles.provision(settings.owner_database_url, settings.owner_database_url) is None  # one role: nothing to do
