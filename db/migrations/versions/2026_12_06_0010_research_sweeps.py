"""research sweeps and their trials

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('research_sweeps',
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('strategy_id', sa.String(length=80), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('plan', sa.JSON(), nullable=False),
    sa.Column('trials_planned', sa.Integer(), nullable=False),
    sa.Column('trials_done', sa.Integer(), nullable=False),
    sa.Column('best_score', sa.Float(), nullable=True),
    sa.Column('best_trial', sa.String(length=32), nullable=True),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_research_sweeps_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['strategy_id'], ['strategies.id'], name=op.f('fk_research_sweeps_strategy_id_strategies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_research_sweeps_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', name=op.f('pk_research_sweeps'))
    )
    with op.batch_alter_table('research_sweeps', schema=None) as batch_op:
        batch_op.create_index('ix_research_sweeps_strategy_id_created_at', ['strategy_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_research_sweeps_user_id'), ['user_id'], unique=False)

    op.create_table('research_trials',
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('window', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('batch', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('point', sa.JSON(), nullable=False),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('feasible', sa.Boolean(), nullable=False),
    sa.Column('violations', sa.JSON(), nullable=False),
    sa.Column('constraint_values', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('test_metrics', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('blocks', sa.JSON(), nullable=True),
    sa.Column('system_attrs', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_research_trials_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'window', 'number', name=op.f('pk_research_trials'))
    )
    with op.batch_alter_table('research_trials', schema=None) as batch_op:
        batch_op.create_index('ix_research_trials_job_id_window_score', ['job_id', 'window', 'score'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('research_trials', schema=None) as batch_op:
        batch_op.drop_index('ix_research_trials_job_id_window_score')
    op.drop_table('research_trials')
    with op.batch_alter_table('research_sweeps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_research_sweeps_user_id'))
        batch_op.drop_index('ix_research_sweeps_strategy_id_created_at')
    op.drop_table('research_sweeps')
