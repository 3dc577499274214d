"""connections remember the tenant they signed in through (guests of another tenant)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 01:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sign_in_tenant', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('sign_in_tenant')
