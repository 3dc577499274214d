"""run summaries: what failed in a CI run (counted from its run_results.json), whether the run has been summed
up on its pull request, and the summary thread there with the comment edited in place

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ci_runs') as batch:
        batch.add_column(sa.Column('failure_tally', sa.String(length=300), nullable=True))
        batch.add_column(sa.Column('summary_posted', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('pull_requests') as batch:
        batch.add_column(sa.Column('summary_thread_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('summary_comment_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('pull_requests') as batch:
        batch.drop_column('summary_comment_id')
        batch.drop_column('summary_thread_id')
    with op.batch_alter_table('ci_runs') as batch:
        batch.drop_column('summary_posted')
        batch.drop_column('failure_tally')
