"""the run summary's thread on each pull request, and which runs have been summed up in it

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 21:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('pull_requests') as batch:
        batch.add_column(sa.Column('summary_thread_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('summary_comment_id', sa.Integer(), nullable=True))
    with op.batch_alter_table('ci_runs') as batch:
        batch.add_column(sa.Column('summary_posted', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('ci_runs') as batch:
        batch.drop_column('summary_posted')
    with op.batch_alter_table('pull_requests') as batch:
        batch.drop_column('summary_comment_id')
        batch.drop_column('summary_thread_id')
