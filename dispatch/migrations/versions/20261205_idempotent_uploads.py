"""an Idempotency-Key may answer with the attachment its first upload stored

Revision ID: 7c3e9a41b2d8
Revises: e2a6c4f81b37
Create Date: 2026-12-05 12:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '7c3e9a41b2d8'
down_revision: str | None = 'e2a6c4f81b37'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('idempotency_key', sa.Column('attachment_id', sa.Integer(), nullable=True))
    op.create_foreign_key(op.f('fk_idempotency_key_attachment_id_attachment'), 'idempotency_key', 'attachment',
                          ['attachment_id'], ['id'], ondelete='CASCADE')


def downgrade() -> None:
    op.drop_constraint(op.f('fk_idempotency_key_attachment_id_attachment'), 'idempotency_key', type_='foreignkey')
    op.drop_column('idempotency_key', 'attachment_id')
