"""The sandbox's dbt Cloud: one account's jobs, projects, environments and webhook subscriptions, and runs that
move from queued to a chosen outcome on their own clock.

Shapes follow the official OpenAPI spec (v2 RunResponse and jobs, v3 projects, environments, webhooks); ids
here are the sandbox's own, not the product's constants. Every method takes the world's one lock.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .values import now_iso, sha_for

DEFAULT_DBT_TOKEN = "sandbox-dbt-token"  # noqa: S105 - a fake credential of the fake service
DBT_ACCOUNT = 1
DBT_PROJECT = 7
DBT_ENVIRONMENT = 9
DBT_PROD_ENVIRONMENT = 8
CI_JOB, TEARDOWN_JOB = 42, 43
STATUS_NAMES = {1: "Queued", 2: "Starting", 3: "Running", 10: "Success", 20: "Error", 30: "Cancelled"}
DBT_DEACTIVATE_AFTER = 5           # consecutive failed deliveries before dbt Cloud deactivates a webhook


@dataclass
class Run:
    id: int
    account_id: int
    job_id: int
    trigger: dict
    created: float
    queued_for: float
    run_for: float
    outcome: int
    message: str
    cancelled_at: float | None = None
    cancel_message: str = ""
    announced: set = field(default_factory=set)
    run_results: dict | None = None  # what the plan gave; else made up from the outcome when asked

    def status_at(self, t: float) -> int:
        if self.cancelled_at is not None and self.cancelled_at <= t:
            return 30
        elapsed = t - self.created
        if elapsed < self.queued_for / 2:
            return 1
        if elapsed < self.queued_for:
            return 2
        if elapsed < self.queued_for + self.run_for:
            return 3
        return self.outcome



class DbtCloud:
    def __init__(self, base_url: str, lock: threading.RLock):
        self.base_url = base_url
        self.lock = lock
        self.tokens = {DBT_ACCOUNT: DEFAULT_DBT_TOKEN}
        self.webhooks: list[dict] = []
        self.jobs: dict[int, dict] = {}
        self.runs: dict[int, Run] = {}
        self.run_defaults = {"outcome": "success", "seconds": 2.0, "queued": 0.3, "message": ""}
        self.outcomes: dict[str, dict] = {}
        self._due: list[tuple[float, int]] = []
        self._next_run = 1000
        self._next_job = 100
        self.projects = {DBT_PROJECT: {"id": DBT_PROJECT, "account_id": DBT_ACCOUNT, "name": "Analytics"}}
        self.environments = {
            DBT_ENVIRONMENT: {"id": DBT_ENVIRONMENT, "project_id": DBT_PROJECT, "name": "CI", "type": "deployment",
                              "deployment_type": "staging"},
            DBT_PROD_ENVIRONMENT: {"id": DBT_PROD_ENVIRONMENT, "project_id": DBT_PROJECT, "name": "Production",
                                   "type": "deployment", "deployment_type": "production"}}
        self.add_job({"name": "CI", "job_type": "ci", "id": CI_JOB})
        self.add_job({"name": "Drop PR schema", "job_type": "other", "id": TEARDOWN_JOB,
                      "execute_steps": ["dbt run-operation drop_pr_schema"]})

    # -- jobs, projects, environments, webhooks --------------------------------------------------------

    def add_job(self, body: dict, account_id: int = DBT_ACCOUNT) -> dict:
        with self.lock:
            job_id = int(body.get("id") or self._next_job)
            self._next_job = max(self._next_job, job_id) + 1
            job = {"id": job_id, "account_id": account_id, "project_id": int(body.get("project_id") or DBT_PROJECT),
                   "environment_id": int(body.get("environment_id") or DBT_ENVIRONMENT),
                   "name": body.get("name", f"job {job_id}"), "description": body.get("description") or "",
                   "job_type": body.get("job_type", "other"), "state": 1,
                   "execute_steps": list(body.get("execute_steps") or ["dbt build --select state:modified+"]),
                   "deferring_environment_id": body.get("deferring_environment_id"),
                   "triggers": body.get("triggers") or {"github_webhook": False, "schedule": False,
                                                        "git_provider_webhook": False},
                   "settings": body.get("settings") or {"threads": 4, "target_name": "default"},
                   "execution": body.get("execution") or {"timeout_seconds": 0},
                   "generate_docs": bool(body.get("generate_docs", False)),
                   "run_generate_sources": bool(body.get("run_generate_sources", False)),
                   "created_at": now_iso(), "updated_at": now_iso()}
            self.jobs[job_id] = job
            return job

    # dbt Cloud's serializers nest the account, project and environment in each job, environment and project;
    # the sandbox fills every field the OpenAPI specs call required.

    def _account_ref(self, account_id: int) -> dict:
        return {"id": account_id, "name": f"Sandbox account {account_id}", "state": 1}

    def _project_ref(self, project: dict) -> dict:
        return {"id": project["id"], "account_id": project["account_id"], "name": project["name"], "state": 1,
                "type": 0}

    def _environment_ref(self, env: dict, account_id: int) -> dict:
        return {"id": env["id"], "account_id": account_id, "project_id": env["project_id"], "name": env["name"],
                "state": 1, "supports_docs": False, "type": env["type"], "use_custom_branch": False,
                "dbt_version": "latest", "deployment_type": env["deployment_type"]}

    def environment_json(self, env: dict, account_id: int) -> dict:
        project = self.projects[env["project_id"]]
        return {**self._environment_ref(env, account_id), "created_at": now_iso(), "updated_at": now_iso(),
                "credentials": {"account_id": account_id, "default_schema": "dbt_ci", "state": 1,
                                "target_name": "default", "threads": 4, "type": "postgres", "username": "dbt"},
                "fusion_readiness": None, "is_deferrable": True, "project": self._project_ref(project),
                "raw_dbt_version": "1.9.0"}

    def project_json(self, project: dict) -> dict:
        account_id = project["account_id"]
        envs = [self._environment_ref(e, account_id) for e in self.environments.values()
                if e["project_id"] == project["id"]]
        docs_job = {"account_id": account_id, "environment_id": DBT_PROD_ENVIRONMENT, "execution":
                    {"timeout_seconds": 0}, "generate_docs": True, "name": "Docs", "project_id": project["id"],
                    "run_generate_sources": False, "settings": {"target_name": "default", "threads": 4}, "state": 1}
        return {**self._project_ref(project), "created_at": now_iso(), "updated_at": now_iso(),
                "connection": {"account_id": account_id, "name": "Warehouse", "project_id": project["id"],
                               "state": 1, "type": "postgres"},
                "default_version": "latest", "docs_job": docs_job, "freshness_job": {**docs_job, "name": "Freshness"},
                "environments": envs, "fusion_readiness": None, "group_permissions": [],
                "repository": {"account_id": account_id, "state": 1, "remote_backend": "ado"}}

    def job_json(self, job: dict) -> dict:
        account_id = job["account_id"]
        env = self.environments.get(job["environment_id"]) or self.environments[DBT_ENVIRONMENT]
        body = {k: v for k, v in job.items() if v is not None}
        return {**body, "dbt_version": "latest", "raw_dbt_version": "1.9.0",
                "schedule": {"cron": "0 * * * *", "date": {"type": "every_day"},
                             "time": {"type": "every_hour", "interval": 1}},
                "account": self._account_ref(account_id),
                "project": self._project_ref(self.projects[job["project_id"]]),
                "environment": self._environment_ref(env, account_id), "fusion_readiness": None,
                "job_completion_trigger_condition": None, "is_deferrable": True, "lifecycle_webhooks": False,
                "lifecycle_webhooks_url": f"{self.base_url}/api/v2/accounts/{account_id}/jobs/{job['id']}/webhooks",
                "run_failure_count": 0}

    def add_webhook(self, account_id: int, *, url: str, secret: str | None = None, job_ids=(),
                        name: str = "bridge", event_types=("job.run.completed", "job.run.errored"),
                        active: bool = True, webhook_id: str | None = None, description: str = "") -> dict:
        with self.lock:
            hook = {"id": webhook_id or f"wsu_{uuid.uuid4().hex[:12]}", "account_id": account_id, "url": url,
                    "secret": secret or uuid.uuid4().hex, "job_ids": [int(j) for j in job_ids], "name": name,
                    "description": description, "event_types": list(event_types), "active": active,
                    "http_status_code": "0", "dispatched_at": None, "deactivate_reason": None, "failures": 0,
                    "created_at": now_iso(), "updated_at": now_iso()}
            self.webhooks.append(hook)
            return hook

    def webhook_json(self, hook: dict, *, with_secret: bool = False) -> dict:
        body = {"id": hook["id"], "account_id": hook["account_id"], "account_identifier": f"act_{hook['account_id']}",
                "name": hook["name"], "description": hook["description"] or hook["name"],
                "event_types": hook["event_types"], "job_ids": hook["job_ids"], "client_url": hook["url"],
                "active": hook["active"], "http_status_code": hook["http_status_code"],
                "created_at": hook["created_at"], "updated_at": hook["updated_at"]}
        if hook["dispatched_at"]:
            body["dispatched_at"] = hook["dispatched_at"]
        if hook["deactivate_reason"]:
            body["deactivate_reason"] = hook["deactivate_reason"]
        if with_secret:
            body["hmac_secret"] = hook["secret"]  # only when created (as dbt Cloud's docs show)
        return body

    def trigger(self, account_id: int, job_id: int, body: dict) -> Run:
        with self.lock:
            sha = body.get("git_sha") or ""
            plan = {**self.run_defaults, **self.outcomes.get(f"job:{job_id}", {}), **self.outcomes.get(sha, {})}
            run = Run(id=self._next_run, account_id=account_id, job_id=job_id,
                      trigger={k: body[k] for k in ("cause", "git_sha", "git_branch", "azure_pull_request_id",
                                                    "schema_override", "steps_override") if k in body},
                      created=time.time(), queued_for=float(plan["queued"]), run_for=float(plan["seconds"]),
                      outcome=20 if plan["outcome"] == "error" else 10, message=plan.get("message") or "",
                      run_results=plan.get("run_results"))
            self._next_run += 1
            self.runs[run.id] = run
            # the clock only looks at runs with something due (thousands of runs stay cheap)
            heapq.heappush(self._due, (run.created + run.queued_for, run.id))
            heapq.heappush(self._due, (run.created + run.queued_for + run.run_for, run.id))
            return run

    def cancel(self, run_id: int, message: str = "Cancelled by user.") -> Run:
        with self.lock:
            run = self.runs[run_id]
            if run.status_at(time.time()) < 10:
                run.cancelled_at = time.time()
                run.cancel_message = message
            return run

    def run_json(self, run: Run, *, include_trigger: bool = False) -> dict:
        t = time.time()
        status = run.status_at(t)
        created = datetime.fromtimestamp(run.created, UTC)
        started_ts = run.created + run.queued_for
        body = {
            "id": run.id, "trigger_id": run.id, "account_id": run.account_id, "environment_id": DBT_ENVIRONMENT,
            "project_id": DBT_PROJECT, "job_definition_id": run.job_id, "job_id": run.job_id,
            "status": status, "status_humanized": STATUS_NAMES[status], "dbt_version": "1.9.0",
            "git_sha": run.trigger.get("git_sha") or sha_for("main"),
            "created_at": created.isoformat(), "updated_at": datetime.fromtimestamp(t, UTC).isoformat(),
            "in_progress": status < 10, "is_complete": status >= 10, "is_success": status == 10,
            "is_error": status == 20, "is_cancelled": status == 30, "is_running": status == 3,
            "href": f"{self.base_url}/deploy/{run.account_id}/projects/{DBT_PROJECT}/runs/{run.id}/",
            "status_message": "",
        }
        if status >= 3 or (status == 30 and t >= started_ts):
            body["started_at"] = datetime.fromtimestamp(started_ts, UTC).isoformat()
        if status >= 10:
            if status == 30:
                finished = run.cancelled_at or t
                body["status_message"] = run.cancel_message
            else:
                finished = run.created + run.queued_for + run.run_for
                body["status_message"] = run.message if status == 20 else ""
            body["finished_at"] = datetime.fromtimestamp(finished, UTC).isoformat()
            body["duration"] = f"{finished - run.created:.0f}"
        if include_trigger:
            body["trigger"] = {"id": run.id, "job_definition_id": run.job_id, "cause_category": "api",
                               **run.trigger}
        return body

    def run_results(self, run: Run) -> dict | None:
        """The finished run's run_results.json (its last step's), or None while it runs or when cancelled."""
        if run.status_at(time.time()) not in (10, 20):
            return None
        if run.run_results is not None:
            return run.run_results
        failed = run.outcome == 20
        node = {"unique_id": "model.analytics.my_first_model", "status": "error" if failed else "success",
                "message": run.message or ("Database Error" if failed else "OK"), "execution_time": run.run_for,
                "thread_id": "Thread-1", "timing": [], "adapter_response": {}, "failures": None,
                "compiled": True, "compiled_code": "select 1", "relation_name": '"analytics"."my_first_model"',
                "batch_results": None}
        return {"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
                             "dbt_version": "1.10.0", "generated_at": datetime.fromtimestamp(run.created, UTC)
                             .isoformat().replace("+00:00", "Z"), "invocation_id": f"sandbox-{run.id}", "env": {}},
                "results": [node], "elapsed_time": run.run_for, "args": {}}

    # -- runs announce themselves -----------------------------------------------------------------------

    def announcements_due(self, t: float) -> list[tuple[Run, str, int]]:
        """(run, event type, status) for each webhook event that runs reaching a new state by ``t`` owe."""
        due = []
        with self.lock:
            ready = []
            while self._due and self._due[0][0] <= t:
                ready.append(self.runs[heapq.heappop(self._due)[1]])
            for run in ready:
                status = run.status_at(t)
                if status >= 3 and "started" not in run.announced and status != 30:
                    run.announced.add("started")
                    due.append((run, "job.run.started", 3))
                if status in (10, 20) and "completed" not in run.announced:
                    run.announced.add("completed")
                    due.append((run, "job.run.completed", status))
                    if status == 20:
                        due.append((run, "job.run.errored", status))
        return due

    def notifications(self, run: Run, event_type: str, status: int) -> list[tuple[dict, bytes, str]]:
        """(hook, body, signature) for each active webhook subscribed to this event of this run's job."""
        with self.lock:
            hooks = [h for h in self.webhooks if h["account_id"] == run.account_id and h.get("active", True)
                     and event_type in h.get("event_types", (event_type,))
                     and (not h.get("job_ids") or run.job_id in [int(j) for j in h["job_ids"]])]
        started = datetime.fromtimestamp(run.created + run.queued_for, UTC)
        finished = datetime.fromtimestamp(run.created + run.queued_for + run.run_for, UTC)
        data = {"jobId": str(run.job_id), "jobName": self.jobs.get(run.job_id, {}).get("name", "job"),
                "runId": str(run.id), "environmentId": str(DBT_ENVIRONMENT), "environmentName": "CI",
                "dbtVersion": "1.9.0", "projectName": "Analytics", "projectId": str(DBT_PROJECT),
                "runStatus": {3: "Running", 10: "Success", 20: "Errored"}[status], "runStatusCode": status,
                "runStatusMessage": run.message if status == 20 and run.message else "None",
                "runReason": run.trigger.get("cause", ""),
                "runStartedAt": started.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")}
        if event_type == "job.run.completed":
            data["runFinishedAt"] = finished.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        elif event_type == "job.run.errored":
            data["runErroredAt"] = finished.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        found = []
        for hook in hooks:
            body = {"accountId": run.account_id, "webhookId": hook["id"], "eventId": f"wev_{uuid.uuid4().hex}",
                    "timestamp": now_iso(), "eventType": event_type, "webhookName": hook.get("name", "bridge"),
                    "data": data}
            raw = json.dumps(body).encode()
            found.append((hook, raw, hmac.new(hook["secret"].encode(), raw, hashlib.sha256).hexdigest()))
        return found


    def delivered(self, hook: dict, status: int | None) -> None:
        """dbt Cloud deactivates a webhook after consecutive failed events."""
        with self.lock:
            hook["http_status_code"], hook["dispatched_at"] = str(status or 0), now_iso()
            if status and 200 <= status < 300:
                hook["failures"] = 0
                return
            hook["failures"] = hook.get("failures", 0) + 1
            if hook["failures"] >= DBT_DEACTIVATE_AFTER:
                hook["active"] = False
                hook["deactivate_reason"] = f"deactivated after {hook['failures']} consecutive failed deliveries"
