"""Ticket types that can be retired: refused at intake, hidden from subscribers, kept for their tickets

Revision ID: e2a6c4f81b37
Revises: b41e7c9a2d55
Create Date: 2026-12-05 12:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'e2a6c4f81b37'
down_revision: str | None = 'b41e7c9a2d55'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('ticket_type', sa.Column('retired', sa.Boolean(), server_default='false', nullable=False))


def downgrade() -> None:
    op.drop_column('ticket_type', 'retired')
