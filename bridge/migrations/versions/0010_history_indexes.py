"""indexes the history needs: live runs (partial), runs by start time, a PR's deliveries newest first

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 03:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

LIVE = "status IS NULL OR status < 10"


def upgrade() -> None:
    op.create_index('ix_ci_runs_live', 'ci_runs', ['updated_at'], postgresql_where=sa.text(LIVE),
                    sqlite_where=sa.text(LIVE))
    op.create_index('ix_ci_runs_created_at', 'ci_runs', ['created_at'])
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_index('ix_deliveries_pull_request')
        batch.create_index('ix_deliveries_pull_request', ['repository_id', 'pull_request_id', 'id'])


def downgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_index('ix_deliveries_pull_request')
        batch.create_index('ix_deliveries_pull_request', ['repository_id', 'pull_request_id'])
    op.drop_index('ix_ci_runs_created_at', table_name='ci_runs')
    op.drop_index('ix_ci_runs_live', table_name='ci_runs')
