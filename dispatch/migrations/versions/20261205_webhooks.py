"""webhooks for other systems and their deliveries

Revision ID: b41e7c9a2d55
Revises: 5d1f3a9c7e21
Create Date: 2026-12-05 10:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'b41e7c9a2d55'
down_revision: str | None = '5d1f3a9c7e21'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'webhook',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('description', sa.String(length=200), nullable=True),
        sa.Column('event_types', postgresql.ARRAY(sa.String(length=40)), nullable=False),
        sa.Column('region_ids', postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column('secret', sa.String(length=200), nullable=False),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('consecutive_failures', sa.Integer(), nullable=False),
        sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True),
        sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('disabled_reason', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook')),
    )
    op.create_table(
        'webhook_delivery',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('webhook_id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.String(length=64), nullable=False),
        sa.Column('event_type', sa.String(length=40), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('state', sa.Enum('pending', 'delivered', 'failed', name='deliverystate', native_enum=False,
                                   create_constraint=False, length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_status', sa.SmallInteger(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('redelivery_of', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['webhook_id'], ['webhook.id'], name=op.f('fk_webhook_delivery_webhook_id_webhook'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery')),
    )
    op.create_index('uq_webhook_delivery_event', 'webhook_delivery', ['webhook_id', 'event_id'], unique=True,
                    postgresql_where='redelivery_of IS NULL')
    op.create_index('ix_webhook_delivery_pending', 'webhook_delivery', ['id'], unique=False,
                    postgresql_where="state = 'pending'")
    op.create_index('ix_webhook_delivery_pending_ticket', 'webhook_delivery', ['webhook_id', 'ticket_id', 'id'],
                    unique=False, postgresql_where="state = 'pending' AND redelivery_of IS NULL")
    op.create_index('ix_webhook_delivery_webhook_id', 'webhook_delivery', ['webhook_id', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_webhook_delivery_webhook_id', table_name='webhook_delivery')
    op.drop_index('ix_webhook_delivery_pending_ticket', table_name='webhook_delivery')
    op.drop_index('ix_webhook_delivery_pending', table_name='webhook_delivery')
    op.drop_index('uq_webhook_delivery_event', table_name='webhook_delivery')
    op.drop_table('webhook_delivery')
    op.drop_table('webhook')
