"""The real stack for the integration suite: PostgreSQL, Redis, the sandbox, gunicorn, a Celery worker and
beat, all private processes started for the session."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest
import requests

from bridge.crypto import generate_key
from bridge.db import Database
from bridge.devstack import Stack, free_port
from bridge.sandbox.control import SandboxControl

HOOK_USER, HOOK_PASSWORD = "ado-fabrikam", "integration-hook-password-42"
DBT_SECRET = "integration-dbt-secret"
CI_JOB, TEARDOWN_JOB = 42, 43
MARTS_REPO = "8d7c2b1a-0000-4000-8000-00000000beef"

CONFIG = textwrap.dedent("""\
    azure_devops:
      organizations:
        - name: fabrikam
          url: ${SANDBOX_URL}/fabrikam
          pat: ${ADO_PAT}
          webhook: {username: ado-fabrikam, password: ${ADO_HOOK_PASSWORD}}
    dbt_cloud:
      accounts:
        - id: 1
          url: ${SANDBOX_URL}
          api_token: ${DBT_CLOUD_TOKEN}
          webhook_secret: ${DBT_CLOUD_WEBHOOK_SECRET}
    repositories:
      - organization: fabrikam
        project: Fabrikam-Fiber-Git
        repository: dbt-analytics
        dbt_account: 1
        ci_job: 42
        target_branches: [main]
        drafts: skip
        status: {genre: dbt-cloud, name: ci}
        teardown_job: 43
      - organization: fabrikam
        project: 6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c
        repository: 8d7c2b1a-0000-4000-8000-00000000beef
        dbt_account: 1
        ci_job: 42
        drafts: run
        status: {genre: analytics, name: dbt-marts}
    """)


@dataclass
class Bridge:
    stack: Stack
    env: dict
    web: str
    sandbox: SandboxControl
    db: Database
    http: requests.Session

    def hooks(self, *targets: str, subscriptions: int = 1) -> None:
        hooks = [{"org": "fabrikam", "url": f"{target}/webhooks/azure-devops", "username": HOOK_USER,
                  "password": HOOK_PASSWORD} for target in targets for _ in range(subscriptions)]
        self.sandbox.setup(hooks=hooks)

    def ci_runs(self, pr: int) -> list[dict]:
        return self.sandbox.runs_for(pr, CI_JOB)

    def dbt_hooks(self, enabled: bool = True) -> None:
        self.sandbox.setup(dbt_webhooks=[{"account_id": 1, "url": f"{self.web}/webhooks/dbt-cloud",
                                          "secret": DBT_SECRET}] if enabled else [])


@pytest.fixture(scope="session")
def bridge(infra, redis_url, postgres_url) -> Bridge:
    sandbox_url = infra.start_sandbox()
    sandbox = SandboxControl(sandbox_url)
    sandbox._post("/repos", {"project": "Fabrikam-Fiber-Git", "name": "dbt-marts", "id": MARTS_REPO})
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    env = {
        "BRIDGE_DATABASE_URL": postgres_url,
        "BRIDGE_BROKER_URL": redis_url,
        "BRIDGE_SECRET_KEY": generate_key(),
        "BRIDGE_PUBLIC_URL": web,
        "BRIDGE_ALLOW_INSECURE_HTTP": "1",
        "BRIDGE_POLL_INTERVAL": "1",
        "BRIDGE_QUIET_AFTER": "3",
        "BRIDGE_SWEEP_INTERVAL": "1",
        "BRIDGE_SWEEP_AFTER": "2",
        "BRIDGE_TASK_MAX_RETRIES": "6",
        "BRIDGE_HTTP_TIMEOUT": "3",
        "BRIDGE_VISIBILITY_TIMEOUT": "15",
        "BRIDGE_REDISPATCH_AFTER": "10",
        "SANDBOX_URL": sandbox_url,
        "ADO_PAT": "sandbox-pat",
        "ADO_HOOK_PASSWORD": HOOK_PASSWORD,
        "DBT_CLOUD_TOKEN": "sandbox-dbt-token",
        "DBT_CLOUD_WEBHOOK_SECRET": DBT_SECRET,
    }
    out = infra.run_cli(env, "db", "upgrade")
    assert out.returncode == 0, out.stderr
    config = infra.workdir / "bridge.yaml"
    config.write_text(CONFIG)
    out = infra.run_cli(env, "config", "apply", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    infra.start_web(env, port=port, workers=2)
    infra.start_worker(env, concurrency=8)
    infra.start_beat(env)
    b = Bridge(stack=infra, env=env, web=web, sandbox=sandbox, db=Database(postgres_url),
               http=requests.Session())
    b.hooks(web)
    b.dbt_hooks()
    sandbox.setup(run_defaults={"seconds": 1.0, "queued": 0.2, "outcome": "success"})
    return b


@pytest.fixture
def clean_faults(bridge):
    yield
    bridge.sandbox.fault(clear=True)
    bridge.hooks(bridge.web)
    bridge.dbt_hooks()
