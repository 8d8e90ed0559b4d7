"""market sync coverage

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 00:40:57.314506
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('market_sync_coverage',
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('start', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('end', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('symbol', 'timeframe', 'source', 'start', name=op.f('pk_market_sync_coverage'))
    )


def downgrade() -> None:
    op.drop_table('market_sync_coverage')
