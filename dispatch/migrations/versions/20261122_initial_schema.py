"""initial schema: regions, accounts, technicians, ticket types, tickets and their events

Revision ID: c64ccc017f07
Revises: 
Create Date: 2026-11-22 02:16:33.466902
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = 'c64ccc017f07'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


APPEND_ONLY = """
CREATE FUNCTION ticket_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ticket_event is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER ticket_event_append_only BEFORE UPDATE OR DELETE ON ticket_event
    FOR EACH ROW EXECUTE FUNCTION ticket_event_append_only();
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table('api_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('region_ids', sa.ARRAY(sa.Integer()), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_key')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_key_prefix'))
    )
    op.create_geospatial_table('region',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('path', sa.String(length=255), nullable=False),
    sa.Column('boundary', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['region.id'], name=op.f('fk_region_parent_id_region')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_region')),
    sa.UniqueConstraint('code', name=op.f('uq_region_code'))
    )
    op.create_geospatial_index('idx_region_boundary', 'region', ['boundary'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_region_parent_id'), 'region', ['parent_id'], unique=False)
    op.create_index(op.f('ix_region_path'), 'region', ['path'], unique=False)
    op.create_table('subscriber',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('name', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriber')),
    sa.UniqueConstraint('openid', name=op.f('uq_subscriber_openid')),
    sa.UniqueConstraint('phone', name=op.f('uq_subscriber_phone'))
    )
    op.create_table('ticket_type',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('skills', sa.ARRAY(sa.String(length=32)), nullable=False),
    sa.Column('standard_hours', sa.Numeric(precision=6, scale=2), nullable=False),
    sa.Column('piece_rate', sa.Numeric(precision=10, scale=2), nullable=False),
    sa.Column('response_sla_min', sa.Integer(), nullable=False),
    sa.Column('resolution_sla_min', sa.Integer(), nullable=False),
    sa.Column('tips', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_ticket_type'))
    )
    op.create_table('user_account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('region_ids', sa.ARRAY(sa.Integer()), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_account')),
    sa.UniqueConstraint('username', name=op.f('uq_user_account_username'))
    )
    op.create_geospatial_table('technician',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('skills', sa.ARRAY(sa.String(length=32)), nullable=False),
    sa.Column('region_id', sa.Integer(), nullable=False),
    sa.Column('max_active', sa.Integer(), nullable=False),
    sa.Column('wechat_openid', sa.String(length=64), nullable=True),
    sa.Column('home', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['region_id'], ['region.id'], name=op.f('fk_technician_region_id_region')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_technician_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_technician')),
    sa.UniqueConstraint('user_id', name=op.f('uq_technician_user_id')),
    sa.UniqueConstraint('wechat_openid', name=op.f('uq_technician_wechat_openid'))
    )
    op.create_index(op.f('ix_technician_region_id'), 'technician', ['region_id'], unique=False)
    op.create_table('ticket_counter',
    sa.Column('branch_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('last', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['branch_id'], ['region.id'], name=op.f('fk_ticket_counter_branch_id_region')),
    sa.PrimaryKeyConstraint('branch_id', 'day', name=op.f('pk_ticket_counter'))
    )
    op.create_geospatial_table('ticket',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('type_code', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('location', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('h3', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=300), nullable=True),
    sa.Column('region_id', sa.Integer(), nullable=False),
    sa.Column('branch_id', sa.Integer(), nullable=False),
    sa.Column('outside_area', sa.Boolean(), nullable=False),
    sa.Column('contact_name', sa.String(length=100), nullable=False),
    sa.Column('contact_phone', sa.String(length=32), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('technician_id', sa.Integer(), nullable=True),
    sa.Column('attachment_refs', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('completion_note', sa.Text(), nullable=True),
    sa.Column('materials', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('satisfaction', sa.Integer(), nullable=True),
    sa.Column('followup_comment', sa.Text(), nullable=True),
    sa.Column('invalid_reason', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('response_due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolution_due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('arrived_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('timed_out_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('invalidated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['branch_id'], ['region.id'], name=op.f('fk_ticket_branch_id_region')),
    sa.ForeignKeyConstraint(['region_id'], ['region.id'], name=op.f('fk_ticket_region_id_region')),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscriber.id'], name=op.f('fk_ticket_subscriber_id_subscriber')),
    sa.ForeignKeyConstraint(['technician_id'], ['technician.id'], name=op.f('fk_ticket_technician_id_technician')),
    sa.ForeignKeyConstraint(['type_code'], ['ticket_type.code'], name=op.f('fk_ticket_type_code_ticket_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket')),
    sa.UniqueConstraint('number', name=op.f('uq_ticket_number'))
    )
    op.create_geospatial_index('idx_ticket_location', 'ticket', ['location'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_ticket_branch_id'), 'ticket', ['branch_id'], unique=False)
    op.create_index(op.f('ix_ticket_created_at'), 'ticket', ['created_at'], unique=False)
    op.create_index(op.f('ix_ticket_h3'), 'ticket', ['h3'], unique=False)
    op.create_index('ix_ticket_open_by_subscriber', 'ticket', ['subscriber_id', 'type_code'], unique=False, postgresql_where="state NOT IN ('completed', 'invalid')")
    op.create_index(op.f('ix_ticket_region_id'), 'ticket', ['region_id'], unique=False)
    op.create_index('ix_ticket_state_region', 'ticket', ['state', 'region_id'], unique=False)
    op.create_index(op.f('ix_ticket_technician_id'), 'ticket', ['technician_id'], unique=False)
    op.create_table('attachment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('storage_key', sa.String(length=200), nullable=False),
    sa.Column('uploaded_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_attachment_ticket_id_ticket')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachment')),
    sa.UniqueConstraint('storage_key', name=op.f('uq_attachment_storage_key'))
    )
    op.create_index(op.f('ix_attachment_ticket_id'), 'attachment', ['ticket_id'], unique=False)
    op.create_table('idempotency_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('principal', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('merged', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_idempotency_key_ticket_id_ticket'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_key')),
    sa.UniqueConstraint('principal', 'key', name=op.f('uq_idempotency_key_principal_key'))
    )
    op.create_geospatial_table('ticket_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('actor_role', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('from_state', sa.String(length=20), nullable=True),
    sa.Column('to_state', sa.String(length=20), nullable=False),
    sa.Column('technician_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('location', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.ForeignKeyConstraint(['technician_id'], ['technician.id'], name=op.f('fk_ticket_event_technician_id_technician')),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_ticket_event_ticket_id_ticket')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_event'))
    )
    op.create_index(op.f('ix_ticket_event_ticket_id'), 'ticket_event', ['ticket_id'], unique=False)
    # Events are the audit trail: history is appended, never rewritten.
    op.execute(APPEND_ONLY)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS ticket_event_append_only ON ticket_event")
    op.execute("DROP FUNCTION IF EXISTS ticket_event_append_only()")
    op.drop_index(op.f('ix_ticket_event_ticket_id'), table_name='ticket_event')
    op.drop_geospatial_table('ticket_event')
    op.drop_table('idempotency_key')
    op.drop_index(op.f('ix_attachment_ticket_id'), table_name='attachment')
    op.drop_table('attachment')
    op.drop_index(op.f('ix_ticket_technician_id'), table_name='ticket')
    op.drop_index('ix_ticket_state_region', table_name='ticket')
    op.drop_index(op.f('ix_ticket_region_id'), table_name='ticket')
    op.drop_index('ix_ticket_open_by_subscriber', table_name='ticket', postgresql_where="state NOT IN ('completed', 'invalid')")
    op.drop_index(op.f('ix_ticket_h3'), table_name='ticket')
    op.drop_index(op.f('ix_ticket_created_at'), table_name='ticket')
    op.drop_index(op.f('ix_ticket_branch_id'), table_name='ticket')
    op.drop_geospatial_index('idx_ticket_location', table_name='ticket', postgresql_using='gist', column_name='location')
    op.drop_geospatial_table('ticket')
    op.drop_table('ticket_counter')
    op.drop_index(op.f('ix_technician_region_id'), table_name='technician')
    op.drop_geospatial_table('technician')
    op.drop_table('user_account')
    op.drop_table('ticket_type')
    op.drop_table('subscriber')
    op.drop_index(op.f('ix_region_path'), table_name='region')
    op.drop_index(op.f('ix_region_parent_id'), table_name='region')
    op.drop_geospatial_index('idx_region_boundary', table_name='region', postgresql_using='gist', column_name='boundary')
    op.drop_geospatial_table('region')
    op.drop_table('api_key')
