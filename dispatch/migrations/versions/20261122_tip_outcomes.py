"""self-help tip outcomes: whether a ticket type's tips solved the problem (visits saved)

Revision ID: 7e3a41c0d2b9
Revises: 4b2b28196763
Create Date: 2026-11-22 04:45:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '7e3a41c0d2b9'
down_revision: str | None = '4b2b28196763'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('tip_outcome',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('type_code', sa.String(length=32), nullable=False),
    sa.Column('solved', sa.Boolean(), nullable=False),
    sa.Column('reported_by', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['type_code'], ['ticket_type.code'], name=op.f('fk_tip_outcome_type_code_ticket_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_outcome'))
    )
    op.create_index(op.f('ix_tip_outcome_at'), 'tip_outcome', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_tip_outcome_at'), table_name='tip_outcome')
    op.drop_table('tip_outcome')
