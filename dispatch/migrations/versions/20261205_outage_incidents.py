"""outage incidents: many reports of one fault in one place grouped under one ticket; types' detection settings

Revision ID: 8c2e5a7d3f10
Revises: 3f6b8d2e1a94
Create Date: 2026-12-05 09:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '8c2e5a7d3f10'
down_revision: str | None = '3f6b8d2e1a94'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('ticket_type', sa.Column('incident_reports', sa.Integer(), nullable=True))
    op.add_column('ticket_type', sa.Column('incident_radius_m', sa.Integer(), server_default='300', nullable=False))
    op.add_column('ticket_type', sa.Column('incident_window_min', sa.Integer(), server_default='10', nullable=False))
    op.add_column('ticket_type', sa.Column('visit_rate', sa.Numeric(precision=10, scale=2), server_default='0',
                                           nullable=False))
    op.create_table(
        'incident',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('type_code', sa.String(length=32), nullable=False),
        sa.Column('branch_id', sa.Integer(), nullable=False),
        sa.Column('cells', sa.ARRAY(sa.String(length=16)), nullable=False),
        sa.Column('last_report_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('opened_by', sa.String(length=100), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['branch_id'], ['region.id']),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id']),
        sa.ForeignKeyConstraint(['type_code'], ['ticket_type.code']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('ticket_id'),
    )
    op.create_index(op.f('ix_incident_branch_id'), 'incident', ['branch_id'], unique=False)
    op.add_column('ticket', sa.Column('incident_id', sa.Integer(), nullable=True))
    op.create_index(op.f('ix_ticket_incident_id'), 'ticket', ['incident_id'], unique=False)
    op.create_foreign_key('ticket_incident_id_fkey', 'ticket', 'incident', ['incident_id'], ['id'])


def downgrade() -> None:
    op.drop_constraint('ticket_incident_id_fkey', 'ticket', type_='foreignkey')
    op.drop_index(op.f('ix_ticket_incident_id'), table_name='ticket')
    op.drop_column('ticket', 'incident_id')
    op.drop_index(op.f('ix_incident_branch_id'), table_name='incident')
    op.drop_table('incident')
    op.drop_column('ticket_type', 'visit_rate')
    op.drop_column('ticket_type', 'incident_window_min')
    op.drop_column('ticket_type', 'incident_radius_m')
    op.drop_column('ticket_type', 'incident_reports')
