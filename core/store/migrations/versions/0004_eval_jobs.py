"""eval jobs: evaluations queued for the worker (a sweep's --eval-on-finish)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 13:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('eval_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('metrics', sa.String(length=64), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('nll_timesteps', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'metrics', 'n', 'nll_timesteps', name='uq_eval_job'),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('eval_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_eval_jobs_status', ['status'], unique=False)


def downgrade() -> None:
    op.drop_table('eval_jobs')
