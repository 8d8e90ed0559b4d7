"""job schedules: a user's recurring jobs, and the schedule each job was started by

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.base


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('job_schedules',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('namespace', sa.String(length=64), nullable=False),
    sa.Column('task_type', sa.String(length=64), nullable=False),
    sa.Column('schedule_type', sa.String(length=16), nullable=False),
    sa.Column('expression', sa.String(length=128), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('stopped_at', db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_job_schedules_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_schedules'))
    )
    with op.batch_alter_table('job_schedules', schema=None) as batch_op:
        batch_op.create_index('ix_job_schedules_user_id_created_at', ['user_id', 'created_at'], unique=False)

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('schedule_id', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_schedule_id'), ['schedule_id'], unique=False)
        batch_op.alter_column('user_id', existing_type=sa.String(length=36), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('user_id', existing_type=sa.String(length=36), nullable=False)
        batch_op.drop_index(batch_op.f('ix_jobs_schedule_id'))
        batch_op.drop_column('schedule_id')

    with op.batch_alter_table('job_schedules', schema=None) as batch_op:
        batch_op.drop_index('ix_job_schedules_user_id_created_at')

    op.drop_table('job_schedules')
