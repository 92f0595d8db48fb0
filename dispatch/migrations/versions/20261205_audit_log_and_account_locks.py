"""the audit log, and accounts locked after too many failed log-ins

Revision ID: a7d3e9c41b26
Revises: 5c8e0b1d7f42
Create Date: 2026-12-05 07:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'a7d3e9c41b26'
down_revision: str | None = '5c8e0b1d7f42'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('user_account', sa.Column('locked_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('audit_event',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor_kind', sa.String(length=16), nullable=True),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_label', sa.String(length=100), nullable=False),
    sa.Column('action', sa.Enum('login.succeeded', 'login.failed', 'user.locked', 'user.unlocked', 'user.created',
                                'user.changed', 'api_key.created', 'api_key.revoked', 'ticket.assigned',
                                'ticket.invalidated', 'workload.exported', name='auditaction', native_enum=False,
                                create_constraint=False, length=40), nullable=False),
    sa.Column('target_type', sa.String(length=32), nullable=True),
    sa.Column('target_id', sa.Integer(), nullable=True),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_event'))
    )
    op.create_index(op.f('ix_audit_event_at'), 'audit_event', ['at'], unique=False)
    op.create_index('ix_audit_event_actor_label_id', 'audit_event', ['actor_label', 'id'], unique=False)
    op.create_index('ix_audit_event_action_id', 'audit_event', ['action', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_event_action_id', table_name='audit_event')
    op.drop_index('ix_audit_event_actor_label_id', table_name='audit_event')
    op.drop_index(op.f('ix_audit_event_at'), table_name='audit_event')
    op.drop_table('audit_event')
    op.drop_column('user_account', 'locked_at')
