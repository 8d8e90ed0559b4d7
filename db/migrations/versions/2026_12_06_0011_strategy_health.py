"""strategy health reports; a research sweep without a strategy (a health report's)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('health_reports',
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('strategy_id', sa.String(length=80), nullable=True),
    sa.Column('template', sa.String(length=32), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('perturbations', sa.JSON(), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_health_reports_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['strategy_id'], ['strategies.id'], name=op.f('fk_health_reports_strategy_id_strategies'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_health_reports_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', name=op.f('pk_health_reports'))
    )
    with op.batch_alter_table('health_reports', schema=None) as batch_op:
        batch_op.create_index('ix_health_reports_user_id_created_at', ['user_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_health_reports_strategy_id'), ['strategy_id'], unique=False)

    with op.batch_alter_table('research_sweeps', schema=None) as batch_op:
        batch_op.alter_column('strategy_id', existing_type=sa.String(length=80), nullable=True)


def downgrade() -> None:
    # Health reports go with their jobs, sweeps and trials: a sweep without a strategy cannot stay. Each table
    # by name, since SQLite migrations run without foreign-key enforcement (no cascades).
    health = "SELECT id FROM jobs WHERE task_type = 'strategy_health_analyze'"
    for table in ('research_trials', 'research_sweeps', 'job_logs', 'health_reports'):
        op.execute(f"DELETE FROM {table} WHERE job_id IN ({health})")
    op.execute(f"DELETE FROM jobs WHERE id IN ({health})")
    with op.batch_alter_table('research_sweeps', schema=None) as batch_op:
        batch_op.alter_column('strategy_id', existing_type=sa.String(length=80), nullable=False)

    with op.batch_alter_table('health_reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_health_reports_strategy_id'))
        batch_op.drop_index('ix_health_reports_user_id_created_at')
    op.drop_table('health_reports')
