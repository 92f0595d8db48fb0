"""staff notices: each person's channels and quiet hours, notices and their delivery log; escalation steps name
channels; staff bind their WeChat

Revision ID: 5d1f3a9c7e21
Revises: 5d7f9a1c2e46
Create Date: 2026-12-05 10:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '5d1f3a9c7e21'
down_revision: str | None = '5d7f9a1c2e46'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('user_account', sa.Column('wechat_openid', sa.String(length=64), nullable=True))
    op.create_unique_constraint(op.f('uq_user_account_wechat_openid'), 'user_account', ['wechat_openid'])
    op.add_column('escalation_step', sa.Column('channels', sa.ARRAY(sa.String(length=16)), server_default='{}',
                                               nullable=False))
    op.create_table(
        'notice_route',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('channel', sa.Enum('wecom', 'dingtalk', 'feishu', 'sms', 'email', 'wechat', name='noticechannel',
                                     native_enum=False, create_constraint=False, length=16), nullable=False),
        sa.Column('target', sa.String(length=320), nullable=False),
        sa.Column('secret', sa.String(length=200), nullable=True),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_notice_route_user_id_user_account'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notice_route')),
        sa.UniqueConstraint('user_id', 'channel', name=op.f('uq_notice_route_user_id_channel')),
    )
    op.create_table(
        'notice_preference',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('quiet_start', sa.Time(), nullable=True),
        sa.Column('quiet_end', sa.Time(), nullable=True),
        sa.Column('digest_min', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['user_account.id'],
                                name=op.f('fk_notice_preference_user_id_user_account'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', name=op.f('pk_notice_preference')),
    )
    op.create_table(
        'notice',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=True),
        sa.Column('kind', sa.Enum('escalation', 'warning', 'digest', 'test', name='noticekind', native_enum=False,
                                  create_constraint=False, length=16), nullable=False),
        sa.Column('channel', sa.Enum('wecom', 'dingtalk', 'feishu', 'sms', 'email', 'wechat', name='noticechannel',
                                     native_enum=False, create_constraint=False, length=16), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('link', sa.String(length=500), nullable=True),
        sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column('status', sa.Enum('queued', 'held', 'digested', 'sent', 'undeliverable', name='noticestatus',
                                    native_enum=False, create_constraint=False, length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('digest_id', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['digest_id'], ['notice.id'], name=op.f('fk_notice_digest_id_notice')),
        sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_notice_ticket_id_ticket')),
        sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_notice_user_id_user_account'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notice')),
    )
    op.create_index(op.f('ix_notice_ticket_id'), 'notice', ['ticket_id'], unique=False)
    op.create_index('ix_notice_user_channel_created', 'notice', ['user_id', 'channel', 'created_at'], unique=False)
    op.create_index('ix_notice_held', 'notice', ['user_id'], unique=False, postgresql_where="status = 'held'")
    op.create_table(
        'notice_attempt',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('notice_id', sa.BigInteger(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('ok', sa.Boolean(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['notice_id'], ['notice.id'], name=op.f('fk_notice_attempt_notice_id_notice'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notice_attempt')),
    )
    op.create_index(op.f('ix_notice_attempt_notice_id'), 'notice_attempt', ['notice_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_notice_attempt_notice_id'), table_name='notice_attempt')
    op.drop_table('notice_attempt')
    op.drop_index('ix_notice_held', table_name='notice', postgresql_where="status = 'held'")
    op.drop_index('ix_notice_user_channel_created', table_name='notice')
    op.drop_index(op.f('ix_notice_ticket_id'), table_name='notice')
    op.drop_table('notice')
    op.drop_table('notice_preference')
    op.drop_table('notice_route')
    op.drop_column('escalation_step', 'channels')
    op.drop_constraint(op.f('uq_user_account_wechat_openid'), 'user_account', type_='unique')
    op.drop_column('user_account', 'wechat_openid')
