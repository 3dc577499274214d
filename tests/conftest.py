"""Shared fixtures: the real payload fixtures and private Redis / PostgreSQL started for the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.dev.stack import Stack

# The specs and real payloads live in shared/, beside the repository (as in CI and every work tree).
SHARED = Path(__file__).resolve().parents[2] / "shared"
if not (SHARED / "fixtures").is_dir():
    raise pytest.UsageError(f"shared/ with the specs and fixtures is expected at {SHARED}")
ADO_FIXTURES = sorted((SHARED / "fixtures" / "azure_devops").glob("*.json"))
DBT_FIXTURES = sorted((SHARED / "fixtures" / "dbt_cloud").glob("*webhook_job.run.*.json"))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def infra(tmp_path_factory):
    """One private stack for the session; services start on first use."""
    stack = Stack.create(tmp_path_factory.mktemp("infra"))
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def redis_url(infra) -> str:
    return infra.redis_url or infra.start_redis()


@pytest.fixture(scope="session")
def postgres_url(infra) -> str:
    return infra.database_url or infra.start_postgres()
