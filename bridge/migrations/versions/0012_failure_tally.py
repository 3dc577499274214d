"""what failed in a CI run, counted from its run_results.json, for the status a developer reads

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


def downgrade() -> None:
    with op.batch_alter_table('ci_runs') as batch:
        batch.drop_column('failure_tally')
