"""organizations: the REST API version their server serves, and a CA bundle to trust

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 08:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('api_version', sa.String(length=10), server_default='7.1', nullable=False))
        batch_op.add_column(sa.Column('ca_bundle', sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.drop_column('ca_bundle')
        batch_op.drop_column('api_version')
