"""ticket numbers from a Redis counter seeded from PostgreSQL: the counter table goes, a prefix index comes

Revision ID: 9d1f2c7a5e30
Revises: 7e3a41c0d2b9
Create Date: 2026-12-05 04:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '9d1f2c7a5e30'
down_revision: str | None = '7e3a41c0d2b9'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_ticket_number_prefix', 'ticket', ['number'], unique=False,
                    postgresql_ops={'number': 'text_pattern_ops'})
    op.drop_table('ticket_counter')


def downgrade() -> None:
    op.create_table('ticket_counter',
    sa.Column('branch_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('last', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['branch_id'], ['region.id'], name=op.f('fk_ticket_counter_branch_id_region')),
    sa.PrimaryKeyConstraint('branch_id', 'day', name=op.f('pk_ticket_counter'))
    )
    op.execute("INSERT INTO ticket_counter (branch_id, day, last) "
               "SELECT branch_id, to_date(split_part(number, '-', 2), 'YYYYMMDD'), "
               "max(split_part(number, '-', 3)::int) FROM ticket GROUP BY 1, 2")
    op.drop_index('ix_ticket_number_prefix', table_name='ticket')
