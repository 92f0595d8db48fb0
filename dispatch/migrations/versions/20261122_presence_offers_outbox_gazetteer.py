"""presence, roster, track, offers and rings, outbox, gazetteer

Revision ID: 486854a0b4c9
Revises: c64ccc017f07
Create Date: 2026-11-22 02:57:22.498800
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = '486854a0b4c9'
down_revision: str | None = 'c64ccc017f07'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Trigram search over place names (the console's address search).
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('topic', sa.String(length=40), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    op.create_index('ix_outbox_unsent', 'outbox', ['available_at'], unique=False, postgresql_where='sent_at IS NULL')
    op.create_geospatial_table('place',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('address', sa.String(length=300), nullable=True),
    sa.Column('region_id', sa.Integer(), nullable=True),
    sa.Column('location', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.ForeignKeyConstraint(['region_id'], ['region.id'], name=op.f('fk_place_region_id_region')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_place'))
    )
    op.create_geospatial_index('idx_place_location', 'place', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ix_place_name_trgm', 'place', ['name'], unique=False, postgresql_using='gin', postgresql_ops={'name': 'gin_trgm_ops'})
    op.create_table('roster_shift',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('technician_id', sa.Integer(), nullable=False),
    sa.Column('weekday', sa.SmallInteger(), nullable=False),
    sa.Column('starts', sa.Time(), nullable=False),
    sa.Column('ends', sa.Time(), nullable=False),
    sa.ForeignKeyConstraint(['technician_id'], ['technician.id'], name=op.f('fk_roster_shift_technician_id_technician'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_roster_shift'))
    )
    op.create_index(op.f('ix_roster_shift_technician_id'), 'roster_shift', ['technician_id'], unique=False)
    op.create_geospatial_table('track_point',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('technician_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('location', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('accuracy_m', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['technician_id'], ['technician.id'], name=op.f('fk_track_point_technician_id_technician')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_track_point'))
    )
    op.create_index('ix_track_point_technician_at', 'track_point', ['technician_id', 'at'], unique=False)
    op.create_table('ticket_offer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('technician_id', sa.Integer(), nullable=False),
    sa.Column('ring', sa.Integer(), nullable=False),
    sa.Column('distance_m', sa.Float(), nullable=False),
    sa.Column('offered_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('outcome', sa.Enum('open', 'taken', 'closed', name='offeroutcome', native_enum=False, length=10), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['technician_id'], ['technician.id'], name=op.f('fk_ticket_offer_technician_id_technician')),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_ticket_offer_ticket_id_ticket')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_offer')),
    sa.UniqueConstraint('ticket_id', 'technician_id', name=op.f('uq_ticket_offer_ticket_id_technician_id'))
    )
    op.create_index('ix_ticket_offer_open_by_technician', 'ticket_offer', ['technician_id'], unique=False, postgresql_where="outcome = 'open'")
    op.add_column('technician', sa.Column('on_duty', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_geospatial_column('technician', sa.Column('last_location', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True))
    op.add_column('technician', sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('technician', sa.Column('last_accuracy_m', sa.Float(), nullable=True))
    op.add_column('ticket', sa.Column('ring', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('ticket', sa.Column('ring_radius_m', sa.Integer(), nullable=True))
    op.add_column('ticket', sa.Column('next_ring_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_ticket_next_ring_due', 'ticket', ['next_ring_at'], unique=False, postgresql_where='next_ring_at IS NOT NULL')


def downgrade() -> None:
    op.drop_index('ix_ticket_next_ring_due', table_name='ticket', postgresql_where='next_ring_at IS NOT NULL')
    op.drop_column('ticket', 'next_ring_at')
    op.drop_column('ticket', 'ring_radius_m')
    op.drop_column('ticket', 'ring')
    op.drop_column('technician', 'last_accuracy_m')
    op.drop_column('technician', 'last_seen_at')
    op.drop_geospatial_column('technician', 'last_location')
    op.drop_column('technician', 'on_duty')
    op.drop_index('ix_ticket_offer_open_by_technician', table_name='ticket_offer', postgresql_where="outcome = 'open'")
    op.drop_table('ticket_offer')
    op.drop_index('ix_track_point_technician_at', table_name='track_point')
    op.drop_geospatial_table('track_point')
    op.drop_index(op.f('ix_roster_shift_technician_id'), table_name='roster_shift')
    op.drop_table('roster_shift')
    op.drop_index('ix_place_name_trgm', table_name='place', postgresql_using='gin', postgresql_ops={'name': 'gin_trgm_ops'})
    op.drop_geospatial_index('idx_place_location', table_name='place', postgresql_using='gist', column_name='location')
    op.drop_geospatial_table('place')
    op.drop_index('ix_outbox_unsent', table_name='outbox', postgresql_where='sent_at IS NULL')
    op.drop_table('outbox')
