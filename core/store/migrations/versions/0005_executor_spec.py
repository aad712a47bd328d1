"""executor spec: what a run asked its cluster for (Kubernetes placement, SLURM allocation), so a
resume submits it again the same way

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 12:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('executor_spec', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('executor_spec')
