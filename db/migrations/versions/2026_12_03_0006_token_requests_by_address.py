"""token requests by address: a row for every reset/resend request, resolved to an account by the worker

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('auth_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refused_at', db.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('client_address', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('user_agent', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('request_id', sa.String(length=64), nullable=True))
        batch_op.alter_column('user_id', existing_type=sa.String(length=36), nullable=True)
        batch_op.alter_column('email', existing_type=sa.String(length=320), nullable=True)


def downgrade() -> None:
    # Rows of requests that never found an account have neither user nor address; they cannot go back.
    op.execute("DELETE FROM auth_tokens WHERE user_id IS NULL OR email IS NULL")
    with op.batch_alter_table('auth_tokens', schema=None) as batch_op:
        batch_op.alter_column('email', existing_type=sa.String(length=320), nullable=False)
        batch_op.alter_column('user_id', existing_type=sa.String(length=36), nullable=False)
        batch_op.drop_column('request_id')
        batch_op.drop_column('user_agent')
        batch_op.drop_column('client_address')
        batch_op.drop_column('refused_at')
