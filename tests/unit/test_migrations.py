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
