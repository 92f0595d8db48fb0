"""SLA warning times and escalation state on tickets, escalation chains, surge switches

Revision ID: a57ff424efd0
Revises: 486854a0b4c9
Create Date: 2026-11-22 04:30:51.788941
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'a57ff424efd0'
down_revision: str | None = '486854a0b4c9'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('escalation_step',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('region_id', sa.Integer(), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('role', sa.Enum('admin', 'dispatcher', 'clerk', 'payroll', 'technician', 'subscriber', 'api', name='role', native_enum=False, length=16), nullable=True),
    sa.Column('reach', sa.Enum('company', 'branch', 'grid', name='regionkind', native_enum=False, length=16), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('delay_min', sa.Integer(), nullable=False),
    sa.CheckConstraint('(user_id IS NULL) <> (role IS NULL)', name=op.f('ck_escalation_step_user_or_role')),
    sa.ForeignKeyConstraint(['region_id'], ['region.id'], name=op.f('fk_escalation_step_region_id_region'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_escalation_step_user_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_escalation_step')),
    sa.UniqueConstraint('region_id', 'level', name=op.f('uq_escalation_step_region_id_level'))
    )
    op.create_table('surge_switch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('region_id', sa.Integer(), nullable=False),
    sa.Column('on', sa.Boolean(), nullable=False),
    sa.Column('response_factor', sa.Float(), nullable=False),
    sa.Column('resolution_factor', sa.Float(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('actor_role', sa.String(length=16), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('retimed', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['region_id'], ['region.id'], name=op.f('fk_surge_switch_region_id_region')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_surge_switch'))
    )
    op.create_index('ix_surge_switch_latest', 'surge_switch', ['region_id', 'id'], unique=False)
    op.add_column('ticket', sa.Column('response_warn_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('ticket', sa.Column('response_warned_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('ticket', sa.Column('resolution_warn_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('ticket', sa.Column('resolution_warned_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('ticket', sa.Column('sla_breached_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('ticket', sa.Column('escalation_level', sa.Integer(), server_default='0', nullable=False))
    op.add_column('ticket', sa.Column('next_escalation_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('ticket', sa.Column('sla_surge_id', sa.Integer(), nullable=True))
    # Tickets taken in before this revision warn at 80% of their SLA, the default.
    op.execute("UPDATE ticket SET response_warn_at = created_at + (response_due_at - created_at) * 0.8, "
               "resolution_warn_at = created_at + (resolution_due_at - created_at) * 0.8")
    op.create_index('ix_ticket_next_escalation_due', 'ticket', ['next_escalation_at'], unique=False, postgresql_where='next_escalation_at IS NOT NULL')
    op.create_index('ix_ticket_resolution_due', 'ticket', ['resolution_due_at'], unique=False, postgresql_where="state = 'accepted' AND sla_breached_at IS NULL")
    op.create_index('ix_ticket_resolution_warning_due', 'ticket', ['resolution_warn_at'], unique=False, postgresql_where="state = 'accepted' AND resolution_warned_at IS NULL")
    op.create_index('ix_ticket_response_due', 'ticket', ['response_due_at'], unique=False, postgresql_where="state = 'pending'")
    op.create_index('ix_ticket_response_warning_due', 'ticket', ['response_warn_at'], unique=False, postgresql_where="state = 'pending' AND response_warned_at IS NULL")
    op.create_foreign_key(op.f('fk_ticket_sla_surge_id_surge_switch'), 'ticket', 'surge_switch', ['sla_surge_id'], ['id'])


def downgrade() -> None:
    op.drop_constraint(op.f('fk_ticket_sla_surge_id_surge_switch'), 'ticket', type_='foreignkey')
    op.drop_index('ix_ticket_response_warning_due', table_name='ticket', postgresql_where="state = 'pending' AND response_warned_at IS NULL")
    op.drop_index('ix_ticket_response_due', table_name='ticket', postgresql_where="state = 'pending'")
    op.drop_index('ix_ticket_resolution_warning_due', table_name='ticket', postgresql_where="state = 'accepted' AND resolution_warned_at IS NULL")
    op.drop_index('ix_ticket_resolution_due', table_name='ticket', postgresql_where="state = 'accepted' AND sla_breached_at IS NULL")
    op.drop_index('ix_ticket_next_escalation_due', table_name='ticket', postgresql_where='next_escalation_at IS NOT NULL')
    op.drop_column('ticket', 'sla_surge_id')
    op.drop_column('ticket', 'next_escalation_at')
    op.drop_column('ticket', 'escalation_level')
    op.drop_column('ticket', 'sla_breached_at')
    op.drop_column('ticket', 'resolution_warned_at')
    op.drop_column('ticket', 'resolution_warn_at')
    op.drop_column('ticket', 'response_warned_at')
    op.drop_column('ticket', 'response_warn_at')
    op.drop_index('ix_surge_switch_latest', table_name='surge_switch')
    op.drop_table('surge_switch')
    op.drop_table('escalation_step')
