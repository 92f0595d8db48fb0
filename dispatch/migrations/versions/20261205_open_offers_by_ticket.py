"""a ticket's open offers by their own index: closing them no longer depends on fresh statistics

Revision ID: 5c8e0b1d7f42
Revises: 9d1f2c7a5e30
Create Date: 2026-12-05 04:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '5c8e0b1d7f42'
down_revision: str | None = '9d1f2c7a5e30'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_ticket_offer_open_by_ticket', 'ticket_offer', ['ticket_id'], unique=False,
                    postgresql_where=sa.text("outcome = 'open'"))


def downgrade() -> None:
    op.drop_index('ix_ticket_offer_open_by_ticket', table_name='ticket_offer',
                  postgresql_where=sa.text("outcome = 'open'"))
