"""backtests

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 01:51:09.026235
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('backtests',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('strategy_id', sa.String(length=80), nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('template', sa.String(length=32), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=128), nullable=True),
    sa.Column('request_digest', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=120), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_backtests_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['strategy_id'], ['strategies.id'], name=op.f('fk_backtests_strategy_id_strategies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_backtests_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backtests')),
    sa.UniqueConstraint('user_id', 'idempotency_key', name='uq_backtests_user_id_idempotency_key')
    )
    with op.batch_alter_table('backtests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_backtests_job_id'), ['job_id'], unique=False)
        batch_op.create_index('ix_backtests_strategy_id_created_at', ['strategy_id', 'created_at'], unique=False)
        batch_op.create_index('ix_backtests_user_id_created_at', ['user_id', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('backtests', schema=None) as batch_op:
        batch_op.drop_index('ix_backtests_user_id_created_at')
        batch_op.drop_index('ix_backtests_strategy_id_created_at')
        batch_op.drop_index(batch_op.f('ix_backtests_job_id'))

    op.drop_table('backtests')
