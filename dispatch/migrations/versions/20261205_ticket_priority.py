"""ticket priority P1-P4: on types (with SLA minutes per priority) and tickets; important subscribers and sites

Revision ID: 3f6b8d2e1a94
Revises: a7d3e9c41b26
Create Date: 2026-12-05 09:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = '3f6b8d2e1a94'
down_revision: str | None = 'a7d3e9c41b26'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRIORITY = sa.Enum('P1', 'P2', 'P3', 'P4', name='priority', native_enum=False, create_constraint=False, length=2)
IMPORTANCE = sa.Enum('vip', 'enterprise', 'hospital', name='importance', native_enum=False,
                     create_constraint=False, length=16)


def upgrade() -> None:
    op.add_column('ticket_type', sa.Column('priority', PRIORITY, server_default='P3', nullable=False))
    op.add_column('ticket_type', sa.Column('sla_by_priority', postgresql.JSONB(astext_type=sa.Text()),
                                           server_default='{}', nullable=False))
    op.add_column('ticket_type', sa.Column('urgent_over_limit', sa.Boolean(), server_default='false',
                                           nullable=False))
    op.add_column('ticket', sa.Column('priority', PRIORITY, server_default='P3', nullable=False))
    op.add_column('subscriber', sa.Column('importance', IMPORTANCE, nullable=True))
    op.create_table(
        'important_site',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('importance', IMPORTANCE, nullable=False),
        sa.Column('location', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False,
                                       from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
        sa.Column('radius_m', sa.Integer(), nullable=False),
        sa.Column('branch_id', sa.Integer(), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['branch_id'], ['region.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_geospatial_index('idx_important_site_location', 'important_site', ['location'], unique=False,
                               postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_important_site_branch_id'), 'important_site', ['branch_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_important_site_branch_id'), table_name='important_site')
    op.drop_geospatial_index('idx_important_site_location', table_name='important_site', postgresql_using='gist',
                             column_name='location')
    op.drop_table('important_site')
    op.drop_column('subscriber', 'importance')
    op.drop_column('ticket', 'priority')
    op.drop_column('ticket_type', 'urgent_over_limit')
    op.drop_column('ticket_type', 'sla_by_priority')
    op.drop_column('ticket_type', 'priority')
