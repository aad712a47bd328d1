"""blind tests: one row per person's blind test of a run (TUI mode 5)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blind_tests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=32), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('correct', sa.Integer(), nullable=False),
    sa.Column('p_value', sa.Float(), nullable=False),
    sa.Column('answers', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('blind_tests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_blind_tests_run_id'), ['run_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('blind_tests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_blind_tests_run_id'))

    op.drop_table('blind_tests')
