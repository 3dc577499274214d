"""activity: the append-only record of what the bridge decided and did; deliveries name their pull request

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'activity',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('kind', sa.String(length=30), nullable=False),
        sa.Column('repository_id', sa.Integer(), nullable=True),
        sa.Column('pull_request_id', sa.Integer(), nullable=True),
        sa.Column('delivery_id', sa.BigInteger(), nullable=True),
        sa.Column('ci_run_id', sa.Integer(), nullable=True),
        sa.Column('dbt_run_id', sa.BigInteger(), nullable=True),
        sa.Column('actor', sa.String(length=400), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_activity_at', 'activity', ['at'])
    op.create_index('ix_activity_pull_request', 'activity', ['repository_id', 'pull_request_id', 'id'])
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('pull_request_id', sa.Integer(), nullable=True))
        batch.create_index('ix_deliveries_pull_request', ['repository_id', 'pull_request_id'])
    with op.batch_alter_table('pull_requests') as batch:
        batch.add_column(sa.Column('source_ref', sa.String(length=500), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('pull_requests') as batch:
        batch.drop_column('source_ref')
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_index('ix_deliveries_pull_request')
        batch.drop_column('pull_request_id')
    op.drop_index('ix_activity_pull_request', table_name='activity')
    op.drop_index('ix_activity_at', table_name='activity')
    op.drop_table('activity')
