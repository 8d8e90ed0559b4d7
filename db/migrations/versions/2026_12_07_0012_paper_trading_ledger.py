"""paper trading ledger

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('trading_accounts',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('account_name', sa.String(length=120), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('slippage_bps', db.base.Exact(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_trading_accounts_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trading_accounts'))
    )
    with op.batch_alter_table('trading_accounts', schema=None) as batch_op:
        batch_op.create_index('ix_trading_accounts_user_id_created_at', ['user_id', 'created_at'], unique=False)

    op.create_table('trading_confirmations',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=64), nullable=False),
    sa.Column('token_digest', sa.String(length=64), nullable=False),
    sa.Column('expires_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_trading_confirmations_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trading_confirmations')),
    sa.UniqueConstraint('token_digest', name=op.f('uq_trading_confirmations_token_digest'))
    )
    op.create_table('trading_requests',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('scope', sa.String(length=120), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('response', sa.JSON(), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_trading_requests_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'scope', 'key', name=op.f('pk_trading_requests'))
    )
    op.create_table('trading_daily_stats',
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('cash_balance', db.base.Exact(), nullable=False),
    sa.Column('market_value', db.base.Exact(), nullable=False),
    sa.Column('equity', db.base.Exact(), nullable=False),
    sa.Column('unrealized_pnl', db.base.Exact(), nullable=False),
    sa.Column('realized_pnl', db.base.Exact(), nullable=False),
    sa.Column('trade_count', sa.Integer(), nullable=False),
    sa.Column('turnover', db.base.Exact(), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['trading_accounts.id'], name=op.f('fk_trading_daily_stats_account_id_trading_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'day', name=op.f('pk_trading_daily_stats'))
    )
    with op.batch_alter_table('trading_daily_stats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trading_daily_stats_user_id'), ['user_id'], unique=False)

    op.create_table('trading_orders',
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('order_type', sa.String(length=8), nullable=False),
    sa.Column('quantity', db.base.Exact(), nullable=False),
    sa.Column('price', db.base.Exact(), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('filled_price', db.base.Exact(), nullable=True),
    sa.Column('filled_at', db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failure_reason', sa.String(length=200), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['trading_accounts.id'], name=op.f('fk_trading_orders_account_id_trading_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trading_orders'))
    )
    with op.batch_alter_table('trading_orders', schema=None) as batch_op:
        batch_op.create_index('ix_trading_orders_account_id_created_at', ['account_id', 'created_at'], unique=False)
        batch_op.create_index('ix_trading_orders_status', ['status'], unique=False)

    op.create_table('trading_positions',
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('quantity', db.base.Exact(), nullable=False),
    sa.Column('avg_price', db.base.Exact(), nullable=False),
    sa.Column('last_price', db.base.Exact(), nullable=True),
    sa.Column('realized_pnl', db.base.Exact(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['trading_accounts.id'], name=op.f('fk_trading_positions_account_id_trading_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trading_positions')),
    sa.UniqueConstraint('account_id', 'symbol', name=op.f('uq_trading_positions_account_id'))
    )
    op.create_table('trading_risk_assessments',
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('risk_score', sa.Float(), nullable=False),
    sa.Column('risk_level', sa.String(length=8), nullable=False),
    sa.Column('triggered_rule_ids', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['trading_accounts.id'], name=op.f('fk_trading_risk_assessments_account_id_trading_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trading_risk_assessments'))
    )
    with op.batch_alter_table('trading_risk_assessments', schema=None) as batch_op:
        batch_op.create_index('ix_trading_risk_assessments_account_id_created_at', ['account_id', 'created_at'], unique=False)

    op.create_table('trading_trades',
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('order_id', sa.String(length=36), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('quantity', db.base.Exact(), nullable=False),
    sa.Column('price', db.base.Exact(), nullable=False),
    sa.Column('realized_pnl', db.base.Exact(), nullable=True),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['trading_accounts.id'], name=op.f('fk_trading_trades_account_id_trading_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['order_id'], ['trading_orders.id'], name=op.f('fk_trading_trades_order_id_trading_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trading_trades')),
    sa.UniqueConstraint('order_id', name=op.f('uq_trading_trades_order_id'))
    )
    with op.batch_alter_table('trading_trades', schema=None) as batch_op:
        batch_op.create_index('ix_trading_trades_account_id_created_at', ['account_id', 'created_at'], unique=False)

    op.create_table('trading_cash_flows',
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('amount', db.base.Exact(), nullable=False),
    sa.Column('balance_after', db.base.Exact(), nullable=False),
    sa.Column('flow_type', sa.String(length=16), nullable=False),
    sa.Column('related_trade_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['trading_accounts.id'], name=op.f('fk_trading_cash_flows_account_id_trading_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['related_trade_id'], ['trading_trades.id'], name=op.f('fk_trading_cash_flows_related_trade_id_trading_trades'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trading_cash_flows')),
    sa.UniqueConstraint('account_id', 'sequence', name=op.f('uq_trading_cash_flows_account_id'))
    )


def downgrade() -> None:
    op.drop_table('trading_cash_flows')
    with op.batch_alter_table('trading_trades', schema=None) as batch_op:
        batch_op.drop_index('ix_trading_trades_account_id_created_at')

    op.drop_table('trading_trades')
    with op.batch_alter_table('trading_risk_assessments', schema=None) as batch_op:
        batch_op.drop_index('ix_trading_risk_assessments_account_id_created_at')

    op.drop_table('trading_risk_assessments')
    op.drop_table('trading_positions')
    with op.batch_alter_table('trading_orders', schema=None) as batch_op:
        batch_op.drop_index('ix_trading_orders_status')
        batch_op.drop_index('ix_trading_orders_account_id_created_at')

    op.drop_table('trading_orders')
    with op.batch_alter_table('trading_daily_stats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trading_daily_stats_user_id'))

    op.drop_table('trading_daily_stats')
    op.drop_table('trading_requests')
    op.drop_table('trading_confirmations')
    with op.batch_alter_table('trading_accounts', schema=None) as batch_op:
        batch_op.drop_index('ix_trading_accounts_user_id_created_at')

    op.drop_table('trading_accounts')
