"""people by tenant and object id: an organization's connected identity, who connected what, who asked

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 08:20:00

An organization that acted as a connected user named by sign-in name now names that user's connection's
tenant and object id (when exactly one connection has that name; otherwise it waits for an admin to choose,
`bridge orgs identity`). Records of who connected or asked name a session subject (``entra:<oid>@<tid>``,
``token:admin``); names that match no connection keep their text under ``upn:`` and match no one.
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _subject(connection, name: str | None) -> str | None:
    if not name:
        return name
    if name == "admin":
        return "token:admin"
    found = connection.execute(sa.text("SELECT oid, tenant_id FROM connections WHERE lower(upn) = :upn"),
                               {"upn": name.lower()}).all()
    return f"entra:{found[0][0].lower()}@{found[0][1].lower()}" if len(found) == 1 else f"upn:{name}"


def upgrade() -> None:
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('identity_tid', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('identity_oid', sa.String(length=64), nullable=True))
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('connected_by_name', sa.String(length=320), nullable=True))
        batch_op.alter_column('connected_by', type_=sa.String(length=400), existing_type=sa.String(length=320))
    with op.batch_alter_table('onboarding_jobs', schema=None) as batch_op:
        batch_op.alter_column('requested_by', type_=sa.String(length=400), existing_type=sa.String(length=320))
    with op.batch_alter_table('auth_flows', schema=None) as batch_op:
        batch_op.alter_column('started_by', type_=sa.String(length=400), existing_type=sa.String(length=320))

    connection = op.get_bind()
    for org_id, upn in connection.execute(sa.text(
            "SELECT id, identity_upn FROM organizations WHERE identity_kind = 'user'")).all():
        found = connection.execute(sa.text("SELECT oid, tenant_id FROM connections WHERE lower(upn) = :upn"),
                                   {"upn": (upn or "").lower()}).all()
        if len(found) == 1:
            connection.execute(sa.text("UPDATE organizations SET identity_oid = :oid, identity_tid = :tid "
                                       "WHERE id = :id"),
                               {"oid": found[0][0].lower(), "tid": found[0][1].lower(), "id": org_id})
    for row_id, by in connection.execute(sa.text("SELECT id, connected_by FROM connections")).all():
        connection.execute(sa.text("UPDATE connections SET connected_by = :by, connected_by_name = :name "
                                   "WHERE id = :id"), {"by": _subject(connection, by), "name": by, "id": row_id})
    for row_id, by in connection.execute(sa.text("SELECT id, requested_by FROM onboarding_jobs")).all():
        connection.execute(sa.text("UPDATE onboarding_jobs SET requested_by = :by WHERE id = :id"),
                           {"by": _subject(connection, by) or "", "id": row_id})
    connection.execute(sa.text("DELETE FROM auth_flows"))  # flows in progress: a few minutes' worth, started again

    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.drop_column('identity_upn')


def downgrade() -> None:
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('identity_upn', sa.String(length=320), nullable=True))
    connection = op.get_bind()
    connection.execute(sa.text(
        "UPDATE organizations SET identity_upn = (SELECT c.upn FROM connections c WHERE c.oid = "
        "organizations.identity_oid AND c.tenant_id = organizations.identity_tid) WHERE identity_kind = 'user'"))
    connection.execute(sa.text("UPDATE connections SET connected_by = connected_by_name"))
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.drop_column('identity_oid')
        batch_op.drop_column('identity_tid')
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('connected_by_name')
