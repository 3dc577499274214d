"""vacuum and analyze the busy tables by how many rows changed, not by a share of their size

PostgreSQL's defaults vacuum a table once a fifth of it is dead: a deliveries table of a million rows keeps
200,000 dead ones, and the relay's, sweeper's and pages' index scans wade through them. A fixed count keeps
what those scans skip the same however long the history grows. PostgreSQL only; SQLite has no autovacuum.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 20:00:00
"""

from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

TABLES = ("deliveries", "ci_runs", "pull_requests")
BY_CHURN = ("autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000, "
            "autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000")
RESET = ("autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor, "
         "autovacuum_analyze_threshold")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} SET ({BY_CHURN})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} RESET ({RESET})")
