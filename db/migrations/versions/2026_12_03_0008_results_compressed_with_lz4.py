"""backtest results compressed with lz4 on PostgreSQL

A result (equity curve, returns, trades) is some 150 KB of JSON, which PostgreSQL compresses as it stores it
out of line. Its default, pglz, cost the server about 5 ms per stored result; lz4 (PostgreSQL 14 and later,
when built with it) about a fifth of that, for slightly larger rows. Servers without lz4 keep their default;
SQLite stores the text as it is.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 20:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LZ4_AVAILABLE = (
    "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)


def _lz4_available() -> bool:
    bind = op.get_bind()
    return bind.dialect.name == 'postgresql' and bind.exec_driver_sql(_LZ4_AVAILABLE).first() is not None


def upgrade() -> None:
    if _lz4_available():
        op.execute('ALTER TABLE backtests ALTER COLUMN result SET COMPRESSION lz4')


def downgrade() -> None:
    if _lz4_available():
        op.execute('ALTER TABLE backtests ALTER COLUMN result SET COMPRESSION default')
