"""dispatch modes per branch, system assignment on tickets, and declined assignments

Revision ID: e3a9c5d71f08
Revises: 3e8a6c1f9b72
Create Date: 2026-12-05 12:15:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'e3a9c5d71f08'
down_revision: str | None = '3e8a6c1f9b72'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('ticket', sa.Column('system_assigned', sa.Boolean(), server_default='false', nullable=False))
    op.add_column('ticket', sa.Column('system_assign_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_ticket_system_assign_due', 'ticket', ['system_assign_at'], unique=False,
                    postgresql_where='system_assign_at IS NOT NULL')
    op.create_table(
        'branch_dispatch',
        sa.Column('region_id', sa.Integer(), nullable=False),
        sa.Column('mode', sa.Enum('grab', 'assign', 'hybrid', name='dispatchmode', native_enum=False,
                                  create_constraint=False, length=10), nullable=False),
        sa.Column('hybrid_after_s', sa.Integer(), nullable=True),
        sa.Column('changed_by', sa.String(length=100), nullable=False),
        sa.Column('changed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['region_id'], ['region.id'], name=op.f('fk_branch_dispatch_region_id_region'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('region_id', name=op.f('pk_branch_dispatch')),
    )
    op.create_table(
        'ticket_decline',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('technician_id', sa.Integer(), nullable=False),
        sa.Column('branch_id', sa.Integer(), nullable=False),
        sa.Column('reason_code', sa.Enum('too_far', 'busy', 'no_skill', 'off_shift', 'other', name='declinereason',
                                         native_enum=False, create_constraint=False, length=16), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_ticket_decline_ticket_id_ticket')),
        sa.ForeignKeyConstraint(['technician_id'], ['technician.id'],
                                name=op.f('fk_ticket_decline_technician_id_technician')),
        sa.ForeignKeyConstraint(['branch_id'], ['region.id'], name=op.f('fk_ticket_decline_branch_id_region')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_decline')),
    )
    op.create_index('ix_ticket_decline_at', 'ticket_decline', ['at'], unique=False)
    op.create_index(op.f('ix_ticket_decline_ticket_id'), 'ticket_decline', ['ticket_id'], unique=False)
    op.create_index(op.f('ix_ticket_decline_technician_id'), 'ticket_decline', ['technician_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_ticket_decline_technician_id'), table_name='ticket_decline')
    op.drop_index(op.f('ix_ticket_decline_ticket_id'), table_name='ticket_decline')
    op.drop_index('ix_ticket_decline_at', table_name='ticket_decline')
    op.drop_table('ticket_decline')
    op.drop_table('branch_dispatch')
    op.drop_index('ix_ticket_system_assign_due', table_name='ticket')
    op.drop_column('ticket', 'system_assign_at')
    op.drop_column('ticket', 'system_assigned')
