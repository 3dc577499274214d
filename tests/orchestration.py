"""The bridge's orchestration (the reconciler, onboarding) assembled in one process on SQLite, over any
transport: the sandbox (to record its answers) or recorded answers (tests/unit/test_reconcile.py,
test_setup.py). No broker, no worker, no web process."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from bridge import config_file
from bridge.catalog import AdoRepository
from bridge.ci.reconcile import Reconciler
from bridge.clients.http import Transport
from bridge.crypto import SecretBox, generate_key
from bridge.db import Database, upgrade
from bridge.dev.stack import CI_JOB, DBT_WEBHOOK_SECRET, HOOK_PASSWORD, SANDBOX_CONFIG, TEARDOWN_JOB
from bridge.locks import Lease
from bridge.metrics import Metrics
from bridge.models import Repository
from bridge.onboarding import Onboarding
from bridge.services.connections import Connections
from bridge.settings import Settings

# The sandbox's first repository (bridge/dev/sandbox/ado_state.py) as the configuration resolves it.
PROJECT_ID = "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c"
REPOSITORY_ID = "0f6b0a54-5b14-4c1e-9d2a-6a3bd3f1b2c1"
MARTS_REPOSITORY_ID = "8d7c2b1a-0000-4000-8000-00000000beef"  # one more repository the set-up scenarios add
__all__ = ["CI_JOB", "MARTS_REPOSITORY_ID", "TEARDOWN_JOB", "Orchestration", "assemble"]

@dataclass
class Orchestration:
    db: Database
    reconciler: Reconciler
    onboarding: Onboarding
    repository_id: int


def resolve(_org, repo) -> AdoRepository:
    return AdoRepository(id=REPOSITORY_ID, name=repo["repository"], project_id=PROJECT_ID,
                         project_name=repo["project"])


def assemble(workdir: Path, transport: Transport, *, sandbox: str = "https://sandbox.example") -> Orchestration:
    """The dev stack's configuration (one organization, one dbt Cloud account, dbt-analytics) with both
    services at ``sandbox``; recorded answers ignore the host."""
    url = f"sqlite:///{workdir / 'bridge.db'}"
    upgrade(url)
    key = generate_key()
    db, box = Database(url), SecretBox((key,))
    settings = Settings(database_url=url, secret_keys=(key,), allow_insecure_http=sandbox.startswith("http:"))
    env = {"SANDBOX_URL": sandbox, "ADO_PAT": "sandbox-pat", "ADO_HOOK_PASSWORD": HOOK_PASSWORD,
           "DBT_CLOUD_TOKEN": "sandbox-dbt-token", "DBT_CLOUD_WEBHOOK_SECRET": DBT_WEBHOOK_SECRET}
    with db.session() as s:
        config_file.apply(s, config_file.load(SANDBOX_CONFIG, env=env, allow_insecure_http=True), box, resolve)
    with db.session() as s:
        repository_id = s.query(Repository.id).scalar()
    connections = Connections(settings, box, db=db, transport=transport)
    lock = lambda key: contextlib.nullcontext(Lease(key))  # noqa: E731 - one process: nothing to exclude
    return Orchestration(db=db, reconciler=Reconciler(db, connections, lock, Metrics()),
                         onboarding=Onboarding(settings, db, box, connections, lock), repository_id=repository_id)
