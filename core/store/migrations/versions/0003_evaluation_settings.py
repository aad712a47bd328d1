"""evaluations record how they were made; classifiers (the feature networks of KID/FID)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 12:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('classifiers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('image_size', sa.Integer(), nullable=False),
    sa.Column('preprocess', sa.String(length=16), nullable=False),
    sa.Column('steps', sa.Integer(), nullable=False),
    sa.Column('accuracy', sa.Float(), nullable=False),
    sa.Column('auc', sa.Float(), nullable=True),
    sa.Column('n_eval', sa.Integer(), nullable=False),
    sa.Column('split', sa.String(length=16), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('checkpoint_step', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sampler', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('steps', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('guidance', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('classifier_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_evaluations_run_metric', ['run_id', 'metric'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.drop_index('ix_evaluations_run_metric')
        batch_op.drop_column('classifier_id')
        batch_op.drop_column('guidance')
        batch_op.drop_column('steps')
        batch_op.drop_column('sampler')
        batch_op.drop_column('checkpoint_step')
    op.drop_table('classifiers')
