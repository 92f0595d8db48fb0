"""催办: how often a ticket was urged, and when last

Revision ID: 5d7f9a1c2e46
Revises: 8c2e5a7d3f10
Create Date: 2026-12-05 09:50:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '5d7f9a1c2e46'
down_revision: str | None = '8c2e5a7d3f10'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('ticket', sa.Column('urge_count', sa.Integer(), server_default='0', nullable=False))
    op.add_column('ticket', sa.Column('urged_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('ticket', 'urged_at')
    op.drop_column('ticket', 'urge_count')
