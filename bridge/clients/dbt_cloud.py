"""dbt Cloud Administrative API client: trigger, get, cancel and list runs (v2); and for onboarding jobs (v2),
projects, environments and webhook subscriptions (v3)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from marshmallow import EXCLUDE, Schema, fields, post_load, pre_load

from ..catalog import DbtEnvironment, DbtJob, DbtProject
from ..domain import CAUSE_MAX, CiJobSpec, DbtRun, DbtWebhook, RunStatus
from ..errors import NotFound
from .http import HttpAnswer, JsonApi, Transport, segment

# -- response schema --------------------------------------------------------------------------------

def _when(value) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class _Trigger(Schema):
    class Meta:
        unknown = EXCLUDE

    git_sha = fields.Str(load_default=None, allow_none=True)
    azure_pull_request_id = fields.Int(load_default=None, allow_none=True)
    schema_override = fields.Str(load_default=None, allow_none=True)


class _RunSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.Int(required=True)
    status = fields.Int(required=True)
    href = fields.Str(load_default=None, allow_none=True)
    status_message = fields.Str(load_default=None, allow_none=True)
    started_at = fields.Raw(load_default=None, allow_none=True)
    finished_at = fields.Raw(load_default=None, allow_none=True)
    git_sha = fields.Str(load_default=None, allow_none=True)
    trigger = fields.Nested(_Trigger, load_default=None, allow_none=True)

    @pre_load
    def _unwrap(self, data, **_):
        return data.get("data", data) if isinstance(data, dict) and "status" in data and "data" in data else data

    @post_load
    def _to_domain(self, d, **_):
        return DbtRun.timed(d["id"], RunStatus.parse(d["status"]) or RunStatus.QUEUED,
                            started_at=_when(d.get("started_at")), finished_at=_when(d.get("finished_at")),
                            href=d.get("href"), status_message=d.get("status_message"),
                            git_sha=d.get("git_sha") or (d.get("trigger") or {}).get("git_sha"))


class _WebhookSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.Str(required=True)
    name = fields.Str(load_default="")
    client_url = fields.Str(load_default="")
    event_types = fields.List(fields.Str(), load_default=list)
    job_ids = fields.List(fields.Raw(), load_default=list, allow_none=True)  # ints in the spec, strings in the docs
    active = fields.Bool(load_default=True)
    deactivate_reason = fields.Str(load_default=None, allow_none=True)
    hmac_secret = fields.Str(load_default=None, allow_none=True)

    @post_load
    def _to_domain(self, d, **_):
        return DbtWebhook(webhook_id=d["id"], name=d["name"], url=d["client_url"],
                          event_types=tuple(d["event_types"]),
                          job_ids=tuple(int(j) for j in d["job_ids"] or () if str(j).isdigit()),
                          active=d["active"], deactivate_reason=d["deactivate_reason"], hmac_secret=d["hmac_secret"])


# Schemas hold no per-call state; one instance each serves every call.
_RUNSCHEMA = _RunSchema()
_WEBHOOKSCHEMA = _WebhookSchema()


def _job(raw: dict) -> DbtJob:
    triggers = raw.get("triggers") or {}
    return DbtJob(id=int(raw["id"]), name=raw.get("name") or f"job {raw['id']}", job_type=raw.get("job_type"),
                  project_id=raw.get("project_id"), environment_id=raw.get("environment_id"),
                  execute_steps=tuple(raw.get("execute_steps") or ()),
                  triggers_on=tuple(sorted(str(name) for name, on in triggers.items() if on)),
                  deferring_environment_id=raw.get("deferring_environment_id"))


class DbtCloudClient(JsonApi):
    service = "dbt-cloud"

    def __init__(self, base_url: str, account_id: int, api_token: str, *,
                 transport: Transport | None = None, timeout: float = 10.0):
        super().__init__(base_url, f"Token {api_token}", transport=transport, timeout=timeout)
        self.account_id = int(account_id)

    def describe_error(self, response: HttpAnswer) -> str:
        try:
            status = response.json().get("status") or {}
            return str(status.get("user_message") or status.get("developer_message") or response.text)[:300]
        except (ValueError, AttributeError):
            return response.text[:200]

    @property
    def _account(self) -> str:
        return f"/api/v2/accounts/{self.account_id}"

    def trigger_run(self, job_id: int, *, cause: str, git_sha: str | None = None,
                    pull_request_id: int | None = None, schema_override: str | None = None,
                    steps_override: list[str] | None = None) -> DbtRun:
        body: dict = {"cause": cause[:CAUSE_MAX] or "ado-dbt bridge"}
        if git_sha:
            body["git_sha"] = git_sha  # never together with git_branch
        if pull_request_id is not None:
            body["azure_pull_request_id"] = int(pull_request_id)
        if schema_override:
            body["schema_override"] = schema_override
        if steps_override:
            body["steps_override"] = steps_override
        return _RUNSCHEMA.load(self.call("POST", f"{self._account}/jobs/{int(job_id)}/run/", json=body)["data"])

    def get_run(self, run_id: int) -> DbtRun:
        return _RUNSCHEMA.load(self.call("GET", f"{self._account}/runs/{int(run_id)}/")["data"])

    def run_results(self, run_id: int) -> object | None:
        """The finished run's run_results.json (of its last step) as parsed JSON, or None when it has none (it
        failed before any node ran, or was cancelled); bridge/ci/summary.py decides what it holds."""
        try:
            return self.call("GET", f"{self._account}/runs/{int(run_id)}/artifacts/run_results.json")
        except NotFound:
            return None

    def cancel_run(self, run_id: int) -> DbtRun:
        return _RUNSCHEMA.load(self.call("POST", f"{self._account}/runs/{int(run_id)}/cancel/")["data"])

    def list_runs(self, job_id: int, *, statuses: tuple[RunStatus, ...] = (), page_size: int = 100,
                  include_trigger: bool = True) -> Iterator[tuple[DbtRun, dict]]:
        """Runs of a job, newest first, with their trigger (to find runs started for a PR and commit)."""
        offset = 0
        while True:
            params: dict = {"job_definition_id": int(job_id), "order_by": "-id", "limit": page_size,
                            "offset": offset}
            if statuses:
                params["status__in"] = [int(s) for s in statuses]  # an array: repeated in the query
            if include_trigger:
                params["include_related"] = "trigger"
            page = self.call("GET", f"{self._account}/runs/", params=params) or {}
            values = page.get("data") or []
            for raw in values:
                yield _RUNSCHEMA.load(raw), (raw.get("trigger") or {})
            total = ((page.get("extra") or {}).get("pagination") or {}).get("total_count")
            offset += len(values)
            if not values or len(values) < page_size or (total is not None and offset >= total):
                return

    # -- onboarding: jobs (v2) -------------------------------------------------------------------------

    def _pages(self, path: str, params: dict | None = None, page_size: int = 100) -> Iterator[dict]:
        offset = 0
        while True:
            page = self.call("GET", path, params={**(params or {}), "limit": page_size, "offset": offset}) or {}
            values = page.get("data") or []
            yield from values
            total = ((page.get("extra") or {}).get("pagination") or {}).get("total_count")
            offset += len(values)
            if not values or len(values) < page_size or (total is not None and offset >= total):
                return

    def list_jobs(self, *, project_id: int | None = None) -> list[DbtJob]:
        params = {"project_id": int(project_id)} if project_id else {}
        return [_job(raw) for raw in self._pages(f"{self._account}/jobs/", params)]

    def get_job(self, job_id: int) -> DbtJob:
        return _job(self.call("GET", f"{self._account}/jobs/{int(job_id)}/")["data"])

    def create_job(self, spec: CiJobSpec) -> DbtJob:
        return _job(self.call("POST", f"{self._account}/jobs/", json=ci_job_body(spec))["data"])

    # -- onboarding: projects, environments, webhook subscriptions (v3) ---------------------------------

    @property
    def _v3(self) -> str:
        return f"/api/v3/accounts/{self.account_id}"

    def list_projects(self) -> list[DbtProject]:
        return [DbtProject(id=int(p["id"]), name=p.get("name") or "") for p in self._pages(f"{self._v3}/projects/")]

    def list_environments(self, project: DbtProject) -> list[DbtEnvironment]:
        return [DbtEnvironment(id=int(e["id"]), name=e.get("name") or "", project_id=project.id,
                               project_name=project.name, type=e.get("type"), deployment_type=e.get("deployment_type"))
                for e in self._pages(f"{self._v3}/projects/{int(project.id)}/environments/")]

    def list_webhooks(self) -> list[DbtWebhook]:
        return [_WEBHOOKSCHEMA.load(raw) for raw in self._pages(f"{self._v3}/webhooks/subscriptions")]

    def _webhook_body(self, *, name: str, url: str, job_ids: tuple[int, ...], event_types: tuple[str, ...],
                      active: bool) -> dict:
        return {"name": name, "description": "Run results for the ado-dbt bridge (pull-request CI statuses)",
                "client_url": url, "event_types": list(event_types), "job_ids": [int(j) for j in job_ids],
                "active": active}

    def create_webhook(self, *, name: str, url: str, job_ids: tuple[int, ...],
                       event_types: tuple[str, ...]) -> DbtWebhook:
        """Create a subscription; the answer carries its HMAC secret (shown only this once)."""
        body = self._webhook_body(name=name, url=url, job_ids=job_ids, event_types=event_types, active=True)
        return _WEBHOOKSCHEMA.load(self.call("POST", f"{self._v3}/webhooks/subscriptions", json=body)["data"])

    def update_webhook(self, webhook_id: str, *, name: str, url: str, job_ids: tuple[int, ...],
                       event_types: tuple[str, ...], active: bool = True) -> DbtWebhook:
        body = self._webhook_body(name=name, url=url, job_ids=job_ids, event_types=event_types, active=active)
        return _WEBHOOKSCHEMA.load(self.call("PUT", f"{self._v3}/webhooks/subscription/{segment(webhook_id)}",
                                             json=body)["data"])

    def delete_webhook(self, webhook_id: str) -> None:
        self.call("DELETE", f"{self._v3}/webhooks/subscription/{segment(webhook_id)}")


def ci_job_body(spec: CiJobSpec) -> dict:
    """The job for ``spec``: no Git-provider trigger of its own (or dbt Cloud would run each PR twice), deferring
    to another environment so only what changed is built."""
    return {"account_id": spec.account_id, "project_id": spec.project_id, "environment_id": spec.environment_id,
            "name": spec.name, "description": "Pull-request CI triggered by the ado-dbt bridge", "job_type": "ci",
            "execute_steps": list(spec.steps), "deferring_environment_id": spec.deferring_environment_id,
            "triggers": {"github_webhook": False, "git_provider_webhook": False, "schedule": False,
                         "on_merge": False},
            "settings": {"threads": 4, "target_name": "default"}, "execution": {"timeout_seconds": 0},
            "state": 1, "generate_docs": False, "run_generate_sources": False, "run_lint": False,
            "errors_on_lint_failure": False, "run_compare_changes": False, "lifecycle_webhooks": False,
            "triggers_on_draft_pr": False}
