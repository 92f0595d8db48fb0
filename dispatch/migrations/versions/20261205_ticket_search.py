"""The console's ticket search: trigram indexes on number, address and the subscriber's phone

Revision ID: 3e8a6c1f9b72
Revises: 7c3e9a41b2d8
Create Date: 2026-12-05 12:40:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '3e8a6c1f9b72'
down_revision: str | None = '7c3e9a41b2d8'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ('number', 'address', 'contact_phone')


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")  # there since the gazetteer; said again for a reader
    for column in COLUMNS:
        op.create_index(f'ix_ticket_{column}_trgm', 'ticket', [column], unique=False, postgresql_using='gin',
                        postgresql_ops={column: 'gin_trgm_ops'})


def downgrade() -> None:
    for column in COLUMNS:
        op.drop_index(f'ix_ticket_{column}_trgm', table_name='ticket', postgresql_using='gin',
                      postgresql_ops={column: 'gin_trgm_ops'})
