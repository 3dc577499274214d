"""A small client for the sandbox's control API, shared by the demo, the tests and the benchmark."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests


class SandboxControl:
    def __init__(self, url: str, *, session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.http = session or requests.Session()

    def _post(self, path: str, body: dict | None = None) -> dict:
        response = self.http.post(f"{self.url}/_sandbox{path}", json=body or {}, timeout=30)
        response.raise_for_status()
        return response.json()

    def _get(self, path: str, **params):
        response = self.http.get(f"{self.url}/_sandbox{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def setup(self, **body) -> dict:
        return self._post("/setup", body)

    def chat(self, name: str) -> list[dict]:
        """What was posted to the incoming webhook ``/_sandbox/chat/<name>``."""
        return self._get(f"/chat/{name}")

    def fail_chat(self, name: str, times: int = 1) -> None:
        self._post(f"/chat/{name}/fail", {"times": times})

    def open_pr(self, *, repository: str = "dbt-analytics", title: str = "A change", draft: bool = False,
                target: str = "main", source: str = "feature/x", deliver: bool = True, org: str = "fabrikam") -> dict:
        return self._post("/prs", {"org": org, "repository": repository, "title": title, "draft": draft,
                                   "target": target, "source": source, "deliver": deliver})

    def act(self, pr: int, action: str, *, deliver: bool = True, **body) -> dict:
        return self._post(f"/prs/{pr}/{action}", {"deliver": deliver, **body})

    def deliver(self, event_id: str) -> dict:
        return self._post(f"/events/{event_id}/deliver")

    def outcome(self, *, sha: str | None = None, job_id: int | None = None, **plan) -> dict:
        return self._post("/outcomes", {"sha": sha, "job_id": job_id, **plan})

    def fault(self, **body) -> dict:
        return self._post("/faults", body)

    def cancel_run(self, run_id: int) -> dict:
        return self._post(f"/runs/{run_id}/cancel")

    def pr(self, pr: int) -> dict:
        return self._get(f"/prs/{pr}")

    def runs(self) -> list[dict]:
        return self._get("/runs")

    def exchanges(self, since: int = 0) -> list[dict]:
        return self._get("/exchanges", since=since)

    def deliveries(self) -> list[dict]:
        return self._get("/deliveries")

    def statuses(self, pr: int) -> list[dict]:
        return self.pr(pr)["statuses"]

    def latest_state(self, pr: int, iteration: int) -> str | None:
        """The state Azure DevOps shows for the bridge's context on one iteration (latest post wins)."""
        states = [s["state"] for s in self.statuses(pr) if s.get("iterationId") == iteration]
        return states[-1] if states else None

    def complete(self, pr: int) -> tuple[bool, list[str]]:
        """Press "Complete" on a PR: (completed, the required statuses that block it)."""
        response = self.http.post(f"{self.url}/_sandbox/prs/{pr}/complete", json={}, timeout=30)
        if response.status_code == 409:
            return False, response.json()["blocking"]
        response.raise_for_status()
        return True, []

    def hooks(self) -> list[dict]:
        """Every service-hook subscription, as Azure DevOps lists it (plus the stored password)."""
        return self._get("/hooks")

    def set_hook_status(self, subscription_id: str, status: str) -> dict:
        return self._post(f"/hooks/{subscription_id}/status", {"status": status})

    def dbt_webhooks(self) -> list[dict]:
        return self._get("/dbt-webhooks")

    def deactivate_dbt_webhook(self, webhook_id: str) -> dict:
        return self._post(f"/dbt-webhooks/{webhook_id}/deactivate")

    def policies(self) -> list[dict]:
        return self._get("/policies")

    def runs_for(self, pr: int, job_id: int | None = None) -> list[dict]:
        return [r for r in self.runs() if r.get("trigger", {}).get("azure_pull_request_id") == pr
                and (job_id is None or r["job_definition_id"] == job_id)]


def wait_until(check: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.2,
               what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
