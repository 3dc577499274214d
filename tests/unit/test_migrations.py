"""The migrations build exactly the schema the models describe (a column added to one only is caught)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from bridge.db import upgrade
from bridge.models import Base


def test_migrations_match_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_people_named_by_sign_in_name_migrate_to_tenant_and_object_id(tmp_path):
    """0006: an organization acting as a connected user by UPN now names that connection's person; records of
    who connected or asked name session subjects; a name that matches no one (or several) matches no one."""
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'people.db'}"
    upgrade(url, "0005")
    engine = create_engine(url)
    with engine.begin() as c:
        for n, (upn, tid) in enumerate([("ada@fabrikam.example", "t-1"), ("twin@x.example", "t-1"),
                                        ("twin@x.example", "t-2")]):
            c.execute(text("INSERT INTO connections (home_account_id, oid, tenant_id, upn, display_name, "
                           "organizations, status, connected_by, created_at, updated_at) VALUES (:h, :oid, :tid, "
                           ":upn, '', '[]', 'ok', :by, '2026-01-01', '2026-01-01')"),
                      {"h": f"h{n}", "oid": f"O-{n}", "tid": tid, "upn": upn,
                       "by": ["admin", "ADA@fabrikam.example", "nobody@x.example"][n]})
        for name, upn in (("fabrikam", "Ada@Fabrikam.example"), ("contoso", "twin@x.example")):
            c.execute(text("INSERT INTO organizations (name, url, identity_kind, identity_upn, created_at, "
                           "updated_at) VALUES (:n, 'https://dev.azure.com/x', 'user', :u, '2026-01-01', "
                           "'2026-01-01')"), {"n": name, "u": upn})
        c.execute(text("INSERT INTO onboarding_jobs (kind, requested_by, params, state, steps, result, created_at, "
                       "updated_at) VALUES ('projects', 'ada@fabrikam.example', '{}', 'done', '[]', '{}', "
                       "'2026-01-01', '2026-01-01')"))
    engine.dispose()
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as c:
        orgs = dict(c.execute(text("SELECT name, identity_oid || '@' || identity_tid FROM organizations")).all())
        assert orgs == {"fabrikam": "o-0@t-1", "contoso": None}  # one Ada; two twins: an admin must choose
        by = c.execute(text("SELECT connected_by, connected_by_name FROM connections ORDER BY id")).all()
        assert [tuple(r) for r in by] == [("token:admin", "admin"), ("entra:o-0@t-1", "ADA@fabrikam.example"),
                                          ("upn:nobody@x.example", "nobody@x.example")]
        assert c.execute(text("SELECT requested_by FROM onboarding_jobs")).scalar() == "entra:o-0@t-1"
    engine.dispose()
