"""portfolios and their members

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('portfolios',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('max_total_weight', sa.Float(), nullable=False),
    sa.Column('max_single_weight', sa.Float(), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_portfolios_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portfolios'))
    )
    with op.batch_alter_table('portfolios', schema=None) as batch_op:
        batch_op.create_index('ix_portfolios_user_id_created_at', ['user_id', 'created_at'], unique=False)

    op.create_table('portfolio_members',
    sa.Column('portfolio_id', sa.String(length=100), nullable=False),
    sa.Column('strategy_id', sa.String(length=80), nullable=False),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['portfolio_id'], ['portfolios.id'], name=op.f('fk_portfolio_members_portfolio_id_portfolios'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['strategy_id'], ['strategies.id'], name=op.f('fk_portfolio_members_strategy_id_strategies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('portfolio_id', 'strategy_id', name=op.f('pk_portfolio_members'))
    )
    with op.batch_alter_table('portfolio_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_portfolio_members_strategy_id'), ['strategy_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('portfolio_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portfolio_members_strategy_id'))

    op.drop_table('portfolio_members')
    with op.batch_alter_table('portfolios', schema=None) as batch_op:
        batch_op.drop_index('ix_portfolios_user_id_created_at')

    op.drop_table('portfolios')
