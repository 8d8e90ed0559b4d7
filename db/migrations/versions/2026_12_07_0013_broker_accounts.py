"""broker accounts

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 04:11:33.265233
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('trading_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('broker', sa.String(length=16), server_default='paper', nullable=False))
        batch_op.add_column(sa.Column('broker_credentials', sa.Text(), nullable=True))

    with op.batch_alter_table('trading_orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('broker_order_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('broker_status', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('estimated_price', db.base.Exact(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('trading_orders', schema=None) as batch_op:
        batch_op.drop_column('estimated_price')
        batch_op.drop_column('broker_status')
        batch_op.drop_column('broker_order_id')

    with op.batch_alter_table('trading_accounts', schema=None) as batch_op:
        batch_op.drop_column('broker_credentials')
        batch_op.drop_column('broker')

