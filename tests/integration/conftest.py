"""The real stack for the integration suite: PostgreSQL, Redis, the sandbox, gunicorn, a Celery worker and
beat, all private processes started for the session (``bridge.dev.stack.start_bridge``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from bridge.db import Database
from bridge.dev.person import Person
from bridge.dev.sandbox.control import SandboxControl
from bridge.dev.stack import (
    ADMIN_TOKEN,
    CI_JOB,
    DBT_WEBHOOK_SECRET,
    HOOK_PASSWORD,
    HOOK_USER,
    METRICS_TOKEN,
    SANDBOX_CONFIG,
    TEARDOWN_JOB,
    RunningBridge,
    Stack,
    free_port,
    start_bridge,
)

DBT_SECRET = DBT_WEBHOOK_SECRET
MARTS_REPO = "8d7c2b1a-0000-4000-8000-00000000beef"
__all__ = ["CI_JOB", "DBT_SECRET", "HOOK_PASSWORD", "HOOK_USER", "MARTS_REPO", "TEARDOWN_JOB"]

# The sandbox repository plus a second one given by ids, building drafts, with its own status context.
CONFIG = SANDBOX_CONFIG + """\
  - organization: fabrikam
    project: 6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c
    repository: 8d7c2b1a-0000-4000-8000-00000000beef
    dbt_account: 1
    ci_job: 42
    drafts: run
    status: {genre: analytics, name: dbt-marts}
"""


WORKER_METRICS_PORT = free_port()  # where the session's worker serves its counters


@dataclass
class Bridge:
    running: RunningBridge
    db: Database
    http: requests.Session

    @property
    def stack(self) -> Stack:
        return self.running.stack

    @property
    def env(self) -> dict:
        return self.running.env

    @property
    def web(self) -> str:
        return self.running.web

    @property
    def sandbox(self) -> SandboxControl:
        return self.running.sandbox

    def hooks(self, *targets: str, subscriptions: int = 1) -> None:
        self.running.hooks(*targets, subscriptions=subscriptions)

    def dbt_hooks(self, enabled: bool = True) -> None:
        self.running.dbt_hooks(enabled)

    def ci_runs(self, pr: int) -> list[dict]:
        return self.sandbox.runs_for(pr, CI_JOB)

    def metrics(self, web: str | None = None) -> str:
        """/metrics as Prometheus scrapes it, with the bearer token."""
        answer = self.http.get(f"{web or self.web}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                               timeout=10)
        answer.raise_for_status()
        return answer.text

    def readiness(self, web: str | None = None) -> dict:
        """/readyz as a signed-in admin sees it: what is wrong, and the warnings."""
        admin = Person(web or self.web, self.sandbox.url)
        assert admin.sign_in_with_token(ADMIN_TOKEN).status_code == 200
        return admin.get("/readyz").json()

    def warnings(self, web: str | None = None) -> dict[str, list[str]]:
        """/readyz's warnings as an admin sees them: their messages by name."""
        named: dict[str, list[str]] = {}
        for warning in self.readiness(web).get("warnings", []):
            named.setdefault(warning["name"], []).append(warning["message"])
        return named


@pytest.fixture(scope="session")
def bridge(infra, redis_url, postgres_url) -> Bridge:
    def add_marts_repo(sandbox: SandboxControl) -> None:
        sandbox._post("/repos", {"project": "Fabrikam-Fiber-Git", "name": "dbt-marts", "id": MARTS_REPO})

    running = start_bridge(infra, database_url=postgres_url, config=CONFIG, worker_concurrency=8, entra=True,
                           before_config=add_marts_repo, extra_env={
                               "BRIDGE_POLL_INTERVAL": "1", "BRIDGE_QUIET_AFTER": "3",
                               "BRIDGE_SWEEP_INTERVAL": "1", "BRIDGE_SWEEP_AFTER": "2",
                               "BRIDGE_TASK_MAX_RETRIES": "6", "BRIDGE_HTTP_TIMEOUT": "3",
                               "BRIDGE_VISIBILITY_TIMEOUT": "15", "BRIDGE_REDISPATCH_AFTER": "10",
                               "BRIDGE_HEARTBEAT_TIMEOUT": "6",
                               "BRIDGE_WORKER_METRICS_BIND": f"127.0.0.1:{WORKER_METRICS_PORT}",
                               "BRIDGE_PR_SWEEP_INTERVAL": "0"})  # tests run it on demand
    return Bridge(running=running, db=Database(postgres_url), http=_client())


def _client() -> requests.Session:
    """The tests' HTTP client. A kept-alive connection can be closed by the server just as a request is
    sent on it (its keep-alive timeout); like any production client, retry that — deliveries are deduped."""
    session = requests.Session()
    retry = Retry(total=2, connect=2, read=2, status=0, allowed_methods=None, backoff_factor=0.1,
                  respect_retry_after_header=False, raise_on_status=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


@pytest.fixture
def clean_faults(bridge):
    yield
    bridge.sandbox.fault(clear=True)
    bridge.hooks(bridge.web)
    bridge.dbt_hooks()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (``rep_call``…), so a fixture can tell that its test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
