"""The sandbox's state: a small Azure DevOps and a small dbt Cloud that move on their own.

Shapes follow the official specs (git 7.1 GitPullRequest / GitPullRequestIteration / GitPullRequestStatus;
dbt v2 RunResponse), and every exchange is logged so a contract test can check both directions.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests

log = logging.getLogger("bridge.dev.sandbox")

DEFAULT_ORG = "fabrikam"
DEFAULT_PROJECT = ("6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c", "Fabrikam-Fiber-Git")
DEFAULT_REPO = ("0f6b0a54-5b14-4c1e-9d2a-6a3bd3f1b2c1", "dbt-analytics")
DEFAULT_PAT = "sandbox-pat"
DEFAULT_PAT_OWNER = "5a5a5a5a-0000-4000-8000-00000000a11e"  # the identity the sandbox's PAT belongs to
DEFAULT_DBT_TOKEN = "sandbox-dbt-token"  # noqa: S105 - a fake credential of the fake service
DBT_ACCOUNT = 1
DBT_PROJECT = 7
DBT_ENVIRONMENT = 9
CI_JOB, TEARDOWN_JOB = 42, 43

STATUS_NAMES = {1: "Queued", 2: "Starting", 3: "Running", 10: "Success", 20: "Error", 30: "Cancelled"}
DBT_PROD_ENVIRONMENT = 8

# Permission bits the sandbox evaluates (security namespace id, bit) → a name used in ``World.members``.
SERVICE_HOOKS_NAMESPACE = "cb594ebe-87dd-4fc9-ac2c-6a10a4c92046"
GIT_NAMESPACE = "2e9eb7ed-3c0a-47d4-87c1-0ffdd275fd87"
PERMISSION_NAMES = {(SERVICE_HOOKS_NAMESPACE, 1): "ViewSubscriptions",
                    (SERVICE_HOOKS_NAMESPACE, 2): "EditSubscriptions",
                    (SERVICE_HOOKS_NAMESPACE, 4): "DeleteSubscriptions",
                    (GIT_NAMESPACE, 2): "GenericRead", (GIT_NAMESPACE, 2048): "EditPolicies"}
STATUS_POLICY_TYPE = "cbdc66da-9728-4af8-aada-9a5a32e4a226"
TRANSIENT = {408, 502, 503, 504}   # Azure DevOps resends these; any other failure puts a hook on probation
DBT_DEACTIVATE_AFTER = 5           # consecutive failed deliveries before dbt Cloud deactivates a webhook


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def sha_for(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - a fake commit id, not security


@dataclass
class Fault:
    service: str          # ado | dbt
    method: str
    path: re.Pattern
    status: int
    times: int
    retry_after: float | None = None
    body: dict | None = None
    delay: float = 0.0
    after: bool = False   # let the request take effect, then lose its answer (an ambiguous failure)


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


class World:
    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.lock = threading.RLock()
        self.pats = {DEFAULT_PAT}
        # Who may do what with an Entra token (PATs may do everything): the Entra tenant each organization is
        # connected to (absent: any), and per person {org: {"projects": [names] | None, "permissions": [...]}}
        # (a person with no entry is a member of every organization of their tenant, with every permission).
        self.org_tenants: dict[str, str] = {}
        self.members: dict[str, dict] = {}
        self.dbt_tokens = {DBT_ACCOUNT: DEFAULT_DBT_TOKEN}
        self.projects: dict[str, dict] = {}
        self.repos: dict[str, dict] = {}
        self.prs: dict[int, dict] = {}
        self.iterations: dict[int, list[dict]] = {}
        self.statuses: dict[int, list[dict]] = {}
        self.threads: dict[int, list[dict]] = {}
        self.hooks: list[dict] = []
        self.dbt_webhooks: list[dict] = []
        self.jobs: dict[int, dict] = {}
        self.runs: dict[int, Run] = {}
        self.events: dict[str, dict] = {}
        self.exchanges: list[dict] = []
        self.deliveries: list[dict] = []
        self.faults: list[Fault] = []
        self.latency = 0.0
        # Azure DevOps resends 408/502/503/504 up to 8 times, waiting ~1, 2, 4 … 60 s; scaled down here.
        self.delivery_attempts = 8
        self.delivery_backoff = 0.25
        self.run_defaults = {"outcome": "success", "seconds": 2.0, "queued": 0.3, "message": ""}
        self.outcomes: dict[str, dict] = {}
        self.require_iteration_status = True
        self._due: list[tuple[float, int]] = []
        self._next_pr = 1
        self._next_run = 1000
        self._next_status = 1
        self._notification = 0
        self._stop = threading.Event()
        self._send_lock = threading.Lock()
        self.add_project(DEFAULT_ORG, *DEFAULT_PROJECT)
        self.add_repo(DEFAULT_ORG, DEFAULT_PROJECT[0], *DEFAULT_REPO)
        self.policies: dict[int, dict] = {}
        self._next_policy = 1
        self._next_job = 100
        self.dbt_projects = {DBT_PROJECT: {"id": DBT_PROJECT, "account_id": DBT_ACCOUNT, "name": "Analytics"}}
        self.dbt_environments = {
            DBT_ENVIRONMENT: {"id": DBT_ENVIRONMENT, "project_id": DBT_PROJECT, "name": "CI", "type": "deployment",
                              "deployment_type": "staging"},
            DBT_PROD_ENVIRONMENT: {"id": DBT_PROD_ENVIRONMENT, "project_id": DBT_PROJECT, "name": "Production",
                                   "type": "deployment", "deployment_type": "production"}}
        self.add_job({"name": "CI", "job_type": "ci", "id": CI_JOB})
        self.add_job({"name": "Drop PR schema", "job_type": "other", "id": TEARDOWN_JOB,
                      "execute_steps": ["dbt run-operation drop_pr_schema"]})

    # -- Azure DevOps objects ---------------------------------------------------------------------

    def allowed(self, who: dict | None, org: str, permission: str, project: str | None = None) -> bool:
        """Whether a caller may do ``permission`` (a name from PERMISSION_NAMES) in ``org`` (and project).
        A PAT (``who`` None) may do anything."""
        if who is None:
            return True
        access = self.access_of(who, org)
        if access is None:
            return False
        projects, permissions = access.get("projects"), access.get("permissions")
        if project is not None and projects is not None:
            found = self.find_project(org, project)
            if found is None or found["name"] not in projects:
                return False
        return permissions is None or permission in permissions

    def sees_project(self, who: dict | None, org: str, project: dict) -> bool:
        if who is None:
            return True
        access = self.access_of(who, org)
        return access is not None and (access.get("projects") is None or project["name"] in access["projects"])

    def access_of(self, who: dict, org: str) -> dict | None:
        """What a token holder may reach in ``org``: None when Azure DevOps would answer 401."""
        with self.lock:
            tenant = self.org_tenants.get(org)
            if tenant and who.get("tid") != tenant:
                return None
            rules = self.members.get(who.get("oid", ""))
            if rules is None:
                return {"projects": None, "permissions": None}
            return rules.get(org)

    def add_project(self, org: str, project_id: str, name: str) -> dict:
        with self.lock:
            project = {"id": project_id, "name": name, "org": org, "state": "wellFormed", "revision": 1,
                       "visibility": "private", "url": f"{self.base_url}/{org}/_apis/projects/{project_id}"}
            self.projects[project_id] = project
            return project

    def add_repo(self, org: str, project_id: str, repo_id: str, name: str) -> dict:
        with self.lock:
            repo = {"id": repo_id, "name": name, "org": org, "project_id": project_id}
            self.repos[repo_id] = repo
            return repo

    def find_project(self, org: str, key: str) -> dict | None:
        for p in self.projects.values():
            if p["org"] == org and key.lower() in (p["id"].lower(), p["name"].lower()):
                return p
        return None

    def find_repo(self, org: str, project_key: str | None, key: str) -> dict | None:
        project = self.find_project(org, project_key) if project_key else None
        for r in self.repos.values():
            if r["org"] != org or (project_key and (project is None or r["project_id"] != project["id"])):
                continue
            if key.lower() in (r["id"].lower(), r["name"].lower()):
                return r
        return None

    def repo_json(self, repo: dict) -> dict:
        project = self.projects[repo["project_id"]]
        org = repo["org"]
        return {
            "id": repo["id"], "name": repo["name"],
            "url": f"{self.base_url}/{org}/{project['id']}/_apis/git/repositories/{repo['id']}",
            "project": {k: project[k] for k in ("id", "name", "url", "state", "revision", "visibility")},
            "remoteUrl": f"{self.base_url}/{org}/{project['name']}/_git/{repo['name']}",
            "webUrl": f"{self.base_url}/{org}/{project['name']}/_git/{repo['name']}",
            "defaultBranch": "refs/heads/main", "size": 1024, "isDisabled": bool(repo.get("disabled")),
        }

    def pr_json(self, pr: dict) -> dict:
        repo = self.repos[pr["repository_id"]]
        org = repo["org"]
        url = f"{self.base_url}/{org}/_apis/git/repositories/{repo['id']}/pullRequests/{pr['id']}"
        body = {
            "repository": self.repo_json(repo), "pullRequestId": pr["id"], "codeReviewId": pr["id"],
            "status": pr["status"], "createdBy": _identity("Ada Developer"),
            "creationDate": pr["created"], "title": pr["title"], "description": pr.get("description", ""),
            "sourceRefName": pr["source"], "targetRefName": pr["target"], "mergeStatus": pr["merge_status"],
            "isDraft": pr["draft"], "mergeId": pr["merge_id"],
            "lastMergeSourceCommit": {"commitId": pr["head"], "url": f"{url}/commits/{pr['head']}"},
            "lastMergeTargetCommit": {"commitId": pr["base"], "url": f"{url}/commits/{pr['base']}"},
            "reviewers": [], "url": url, "supportsIterations": True,
            "artifactId": f"vstfs:///Git/PullRequestId/{repo['project_id']}%2f{repo['id']}%2f{pr['id']}",
            "_links": {"web": {"href": f"{self.base_url}/{org}/_git/{repo['name']}/pullrequest/{pr['id']}"},
                       "statuses": {"href": f"{url}/statuses"}},
        }
        if pr.get("closed"):
            body["closedDate"] = pr["closed"]
            body["closedBy"] = _identity("Ada Developer")
        if pr["status"] == "completed":
            body["lastMergeCommit"] = {"commitId": sha_for(pr["head"] + "merge"), "url": url}
        return body

    # -- pull request life (control API) -------------------------------------------------------------

    def open_pr(self, org: str, repository: str, *, source: str, target: str, title: str, draft: bool) -> dict:
        with self.lock:
            repo = self.find_repo(org, None, repository)
            if repo is None:
                raise KeyError(f"no repository {repository!r} in {org}")
            pr_id = self._next_pr
            self._next_pr += 1
            head = sha_for(f"{repo['id']}:{pr_id}:1")
            pr = {"id": pr_id, "repository_id": repo["id"], "status": "active", "title": title,
                  "source": _ref(source), "target": _ref(target), "draft": draft, "head": head,
                  "base": sha_for(target), "merge_status": "succeeded", "merge_id": str(uuid.uuid4()),
                  "created": now_iso(), "pushes": 1}
            self.prs[pr_id] = pr
            self.iterations[pr_id] = [self._iteration(pr, 1)]
            self.statuses[pr_id] = []
            self.threads[pr_id] = []
            return pr

    def add_thread(self, pr_id: int, content: str, *, author: str = "Ada Developer", status: str = "active") -> dict:
        with self.lock:
            threads = self.threads[pr_id]
            comment_id = sum(len(t["comments"]) for t in threads) + 1
            thread = {"id": len(threads) + 1, "status": status, "publishedDate": now_iso(),
                      "lastUpdatedDate": now_iso(), "isDeleted": False, "properties": {},
                      "comments": [{"id": comment_id, "parentCommentId": 0, "author": _identity(author),
                                    "content": content, "publishedDate": now_iso(), "lastUpdatedDate": now_iso(),
                                    "lastContentUpdatedDate": now_iso(), "commentType": "text",
                                    "isDeleted": False}]}
            threads.append(thread)
            return thread

    def _iteration(self, pr: dict, number: int) -> dict:
        return {"id": number, "sourceRefCommit": {"commitId": pr["head"]},
                "targetRefCommit": {"commitId": pr["base"]}, "createdDate": now_iso(), "updatedDate": now_iso(),
                "author": _identity("Ada Developer"), "hasMoreCommits": False, "reason": "push",
                "description": f"iteration {number}"}

    def push(self, pr_id: int) -> dict:
        with self.lock:
            pr = self.prs[pr_id]
            pr["pushes"] += 1
            pr["head"] = sha_for(f"{pr['repository_id']}:{pr_id}:{pr['pushes']}")
            self.iterations[pr_id].append(self._iteration(pr, len(self.iterations[pr_id]) + 1))
            return pr

    def set_pr(self, pr_id: int, **changes) -> dict:
        with self.lock:
            pr = self.prs[pr_id]
            pr.update(changes)
            if changes.get("status") in ("completed", "abandoned"):
                pr["closed"] = now_iso()
            return pr

    def pr_event(self, pr_id: int, event_type: str, text: str, *, comment: str | None = None) -> dict:
        with self.lock:
            pr = self.prs[pr_id]
            repo = self.repos[pr["repository_id"]]
            resource = self.pr_json(pr)
            version = "1.0"
            if comment is not None:
                thread = self.add_thread(pr_id, comment)
                resource = {"comment": {**thread["comments"][0], "_links": {}}, "pullRequest": resource}
                version = "2.0"
            event = {
                "id": str(uuid.uuid4()), "eventType": event_type, "publisherId": "tfs",
                "message": {"text": text}, "detailedMessage": {"text": text},
                "resource": resource, "resourceVersion": version,
                "resourceContainers": {
                    "collection": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, repo["org"])),
                                   "baseUrl": f"{self.base_url}/{repo['org']}/"},
                    "account": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, repo["org"] + "/a")),
                                "baseUrl": f"{self.base_url}/{repo['org']}/"},
                    "project": {"id": repo["project_id"], "baseUrl": f"{self.base_url}/{repo['org']}/"}},
                "createdDate": now_iso(), "org": repo["org"],
            }
            self.events[event["id"]] = event
            return event

    # -- service hooks ------------------------------------------------------------------------------

    def add_hook(self, org: str, *, url: str, username: str = "", password: str = "", event_type: str | None = None,
                 project_id: str | None = None, repository: str | None = None, created_by: str = "pat",
                 resource_version: str | None = None, subscription_id: str | None = None,
                 consumer_inputs: dict | None = None, publisher_inputs: dict | None = None) -> dict:
        """A Web Hooks subscription. ``event_type`` None: every event of the organization (the legacy setup
        the tests use); otherwise one event type, filtered to a project and repository when given."""
        with self.lock:
            hook = {"subscription_id": subscription_id or str(uuid.uuid4()), "org": org, "url": url,
                    "username": username, "password": password, "event_type": event_type,
                    "project_id": project_id, "repository": repository, "status": "enabled",
                    "created_by": created_by, "resource_version": resource_version, "created": now_iso(),
                    "modified": now_iso(), "consumer_inputs": dict(consumer_inputs or {}),
                    "publisher_inputs": dict(publisher_inputs or {})}
            self.hooks.append(hook)
            return hook

    def find_hook(self, org: str, subscription_id: str) -> dict | None:
        with self.lock:
            return next((h for h in self.hooks if h["org"] == org and
                         h["subscription_id"].lower() == subscription_id.lower()), None)

    def hook_json(self, hook: dict) -> dict:
        consumer = {**hook["consumer_inputs"], "url": hook["url"]}
        if hook["username"]:
            consumer["basicAuthUsername"] = hook["username"]
        if hook["password"]:
            consumer["basicAuthPassword"] = "*" * 8  # confidential inputs are never given back
        publisher = {**hook["publisher_inputs"], "hostId": str(uuid.uuid5(uuid.NAMESPACE_URL, hook["org"])),
                     "tfsSubscriptionId": str(uuid.uuid5(uuid.NAMESPACE_URL, hook["subscription_id"]))}
        if hook["project_id"]:
            publisher["projectId"] = hook["project_id"]
        if hook["repository"]:
            publisher["repository"] = hook["repository"]
        creator = {"id": hook["created_by"] if hook["created_by"] != "pat" else DEFAULT_PAT_OWNER,
                   "displayName": hook["created_by"]}
        return {"id": hook["subscription_id"],
                "url": f"{self.base_url}/{hook['org']}/_apis/hooks/subscriptions/{hook['subscription_id']}",
                "status": hook["status"], "publisherId": "tfs", "eventType": hook["event_type"] or "",
                "resourceVersion": hook["resource_version"] or "1.0", "consumerId": "webHooks",
                "consumerActionId": "httpRequest", "eventDescription": "", "actionDescription": hook["url"],
                "createdBy": creator, "modifiedBy": creator, "createdDate": hook["created"],
                "modifiedDate": hook["modified"], "publisherInputs": publisher, "consumerInputs": consumer}

    def _hooks_for(self, event: dict, org: str) -> list[dict]:
        resource = event["resource"].get("pullRequest", event["resource"])
        repository = (resource.get("repository") or {}).get("id", "")
        project = ((resource.get("repository") or {}).get("project") or {}).get("id", "")
        return [h for h in self.hooks if h["org"] == org and h["status"] in ("enabled", "onProbation")
                and (h["event_type"] is None or h["event_type"] == event["eventType"])
                and (not h["project_id"] or h["project_id"].lower() == project.lower())
                and (not h["repository"] or h["repository"].lower() == repository.lower())]

    def deliver_event(self, event_id: str) -> list[dict]:
        """POST one event to every matching, enabled service hook of its organization, each with its own
        subscription id and credentials; a failing hook goes on probation, a 410 disables it."""
        with self.lock:
            event = dict(self.events[event_id])
            org = event.pop("org")
            targets = self._hooks_for(event, org)
        results = []
        for hook in targets:
            with self.lock:
                self._notification += 1
                body = {"subscriptionId": hook["subscription_id"], "notificationId": self._notification, **event}
                if hook["resource_version"]:
                    body["resourceVersion"] = hook["resource_version"]
            auth = base64.b64encode(f"{hook['username']}:{hook['password']}".encode()).decode()
            result = self._send("ado", hook["url"], body, {"Authorization": f"Basic {auth}"}, retry_on=TRANSIENT)
            with self.lock:
                status = result["status"] or 0
                if 200 <= status < 300:
                    hook["status"] = "enabled" if hook["status"] == "onProbation" else hook["status"]
                elif status == 410:
                    hook["status"] = "disabledBySystem"
                else:
                    hook["status"] = "onProbation"
            results.append(result)
        return results

    # -- branch policies ----------------------------------------------------------------------------

    def add_policy(self, org: str, project_id: str, body: dict, created_by: str) -> dict:
        with self.lock:
            policy = {"id": self._next_policy, "org": org, "project_id": project_id, "revision": 1,
                      "isEnabled": bool(body.get("isEnabled", True)), "isBlocking": bool(body.get("isBlocking", True)),
                      "isDeleted": False, "type": {"id": (body.get("type") or {}).get("id", "")},
                      "settings": body.get("settings") or {}, "createdDate": now_iso(), "created_by": created_by}
            self._next_policy += 1
            self.policies[policy["id"]] = policy
            return policy

    def policy_json(self, policy: dict) -> dict:
        url = f"{self.base_url}/{policy['org']}/{policy['project_id']}/_apis/policy/configurations/{policy['id']}"
        return {"id": policy["id"], "revision": policy["revision"], "url": url,
                "type": {"id": policy["type"]["id"], "displayName": "Status" if policy["type"]["id"] ==
                         STATUS_POLICY_TYPE else "Policy", "url": url},
                "isEnabled": policy["isEnabled"], "isBlocking": policy["isBlocking"], "isDeleted": False,
                "settings": policy["settings"], "createdDate": policy["createdDate"],
                "createdBy": {"id": policy["created_by"], "displayName": policy["created_by"]}}

    def blocking_statuses(self, pr_id: int) -> list[str]:
        """Status policies that keep this PR from completing: their genre/name lacks a succeeded status on the
        latest iteration."""
        with self.lock:
            pr = self.prs[pr_id]
            repo = self.repos[pr["repository_id"]]
            latest = len(self.iterations[pr_id])
            missing = []
            for policy in self.policies.values():
                if policy["type"]["id"] != STATUS_POLICY_TYPE or not policy["isEnabled"] or not policy["isBlocking"]:
                    continue
                settings = policy["settings"]
                scopes = settings.get("scope") or [{}]
                if not any((not sc.get("repositoryId") or sc["repositoryId"].lower() == repo["id"].lower())
                           and (not sc.get("refName") or sc["refName"] == pr["target"]) for sc in scopes):
                    continue
                context = (settings.get("statusGenre") or "", settings.get("statusName") or "")
                states = [st["state"] for st in self.statuses[pr_id]
                          if (st["context"].get("genre") or "", st["context"].get("name") or "") == context
                          and st.get("iterationId") == latest]
                if not states or states[-1] != "succeeded":
                    missing.append("/".join(part for part in context if part))
            return missing

    # -- dbt Cloud objects -------------------------------------------------------------------------

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

    def _dbt_account_ref(self, account_id: int) -> dict:
        return {"id": account_id, "name": f"Sandbox account {account_id}", "state": 1}

    def _dbt_project_ref(self, project: dict) -> dict:
        return {"id": project["id"], "account_id": project["account_id"], "name": project["name"], "state": 1,
                "type": 0}

    def _dbt_environment_ref(self, env: dict, account_id: int) -> dict:
        return {"id": env["id"], "account_id": account_id, "project_id": env["project_id"], "name": env["name"],
                "state": 1, "supports_docs": False, "type": env["type"], "use_custom_branch": False,
                "dbt_version": "latest", "deployment_type": env["deployment_type"]}

    def dbt_environment_json(self, env: dict, account_id: int) -> dict:
        project = self.dbt_projects[env["project_id"]]
        return {**self._dbt_environment_ref(env, account_id), "created_at": now_iso(), "updated_at": now_iso(),
                "credentials": {"account_id": account_id, "default_schema": "dbt_ci", "state": 1,
                                "target_name": "default", "threads": 4, "type": "postgres", "username": "dbt"},
                "fusion_readiness": None, "is_deferrable": True, "project": self._dbt_project_ref(project),
                "raw_dbt_version": "1.9.0"}

    def dbt_project_json(self, project: dict) -> dict:
        account_id = project["account_id"]
        envs = [self._dbt_environment_ref(e, account_id) for e in self.dbt_environments.values()
                if e["project_id"] == project["id"]]
        docs_job = {"account_id": account_id, "environment_id": DBT_PROD_ENVIRONMENT, "execution":
                    {"timeout_seconds": 0}, "generate_docs": True, "name": "Docs", "project_id": project["id"],
                    "run_generate_sources": False, "settings": {"target_name": "default", "threads": 4}, "state": 1}
        return {**self._dbt_project_ref(project), "created_at": now_iso(), "updated_at": now_iso(),
                "connection": {"account_id": account_id, "name": "Warehouse", "project_id": project["id"],
                               "state": 1, "type": "postgres"},
                "default_version": "latest", "docs_job": docs_job, "freshness_job": {**docs_job, "name": "Freshness"},
                "environments": envs, "fusion_readiness": None, "group_permissions": [],
                "repository": {"account_id": account_id, "state": 1, "remote_backend": "ado"}}

    def job_json(self, job: dict) -> dict:
        account_id = job["account_id"]
        env = self.dbt_environments.get(job["environment_id"]) or self.dbt_environments[DBT_ENVIRONMENT]
        body = {k: v for k, v in job.items() if v is not None}
        return {**body, "dbt_version": "latest", "raw_dbt_version": "1.9.0",
                "schedule": {"cron": "0 * * * *", "date": {"type": "every_day"},
                             "time": {"type": "every_hour", "interval": 1}},
                "account": self._dbt_account_ref(account_id),
                "project": self._dbt_project_ref(self.dbt_projects[job["project_id"]]),
                "environment": self._dbt_environment_ref(env, account_id), "fusion_readiness": None,
                "job_completion_trigger_condition": None, "is_deferrable": True, "lifecycle_webhooks": False,
                "lifecycle_webhooks_url": f"{self.base_url}/api/v2/accounts/{account_id}/jobs/{job['id']}/webhooks",
                "run_failure_count": 0}

    def add_dbt_webhook(self, account_id: int, *, url: str, secret: str | None = None, job_ids=(),
                        name: str = "bridge", event_types=("job.run.completed", "job.run.errored"),
                        active: bool = True, webhook_id: str | None = None, description: str = "") -> dict:
        with self.lock:
            hook = {"id": webhook_id or f"wsu_{uuid.uuid4().hex[:12]}", "account_id": account_id, "url": url,
                    "secret": secret or uuid.uuid4().hex, "job_ids": [int(j) for j in job_ids], "name": name,
                    "description": description, "event_types": list(event_types), "active": active,
                    "http_status_code": "0", "dispatched_at": None, "deactivate_reason": None, "failures": 0,
                    "created_at": now_iso(), "updated_at": now_iso()}
            self.dbt_webhooks.append(hook)
            return hook

    def dbt_webhook_json(self, hook: dict, *, with_secret: bool = False) -> dict:
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
                      outcome=20 if plan["outcome"] == "error" else 10, message=plan.get("message") or "")
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

    # -- the clock: runs move on and announce themselves -----------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._tick, name="sandbox-clock", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _tick(self) -> None:
        while not self._stop.wait(0.05):
            due = []
            with self.lock:
                t = time.time()
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
            for run, event_type, status in due:
                self._announce(run, event_type, status)

    def _announce(self, run: Run, event_type: str, status: int) -> None:
        with self.lock:
            hooks = [h for h in self.dbt_webhooks if h["account_id"] == run.account_id and h.get("active", True)
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
        for hook in hooks:
            body = {"accountId": run.account_id, "webhookId": hook["id"], "eventId": f"wev_{uuid.uuid4().hex}",
                    "timestamp": now_iso(), "eventType": event_type, "webhookName": hook.get("name", "bridge"),
                    "data": data}
            raw = json.dumps(body).encode()
            signature = hmac.new(hook["secret"].encode(), raw, hashlib.sha256).hexdigest()
            threading.Thread(target=self._send_dbt, args=(hook, raw, signature), daemon=True).start()

    def _send_dbt(self, hook: dict, raw: bytes, signature: str) -> None:
        """dbt Cloud retries each event, and deactivates a webhook after consecutive failed events."""
        result = self._send("dbt", hook["url"], raw, {"Authorization": signature}, retry_on="any")
        with self.lock:
            hook["http_status_code"], hook["dispatched_at"] = str(result["status"] or 0), now_iso()
            if result["status"] and 200 <= result["status"] < 300:
                hook["failures"] = 0
                return
            hook["failures"] = hook.get("failures", 0) + 1
            if hook["failures"] >= DBT_DEACTIVATE_AFTER:
                hook["active"] = False
                hook["deactivate_reason"] = f"deactivated after {hook['failures']} consecutive failed deliveries"

    def _send(self, service: str, url: str, body, headers: dict, *, retry_on) -> dict:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", **headers}
        result = {"service": service, "url": url, "status": None, "attempts": 0, "sent_at": time.time()}
        for attempt in range(self.delivery_attempts):
            result["attempts"] = attempt + 1
            try:
                response = requests.post(url, data=raw, headers=headers, timeout=10)
                result["status"] = response.status_code
                result["answer"] = response.text[:500]
            except requests.RequestException as exc:
                result["status"], result["answer"] = None, type(exc).__name__
            retry = result["status"] is None or (
                result["status"] >= 300 and (retry_on == "any" or result["status"] in retry_on))
            if not retry or self._stop.is_set():
                break
            time.sleep(self.delivery_backoff * (2 ** attempt))
        with self.lock:
            self.deliveries.append({**result, "body": json.loads(raw)})
        return result

    # -- faults and the exchange log -----------------------------------------------------------------

    def take_fault(self, service: str, method: str, path: str, *, after: bool = False) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.service == service and fault.method in (method, "*") and fault.path.search(path) \
                        and fault.times != 0 and fault.after is after:
                    fault.times -= 1
                    return fault
        return None

    def log_exchange(self, entry: dict) -> None:
        with self.lock:
            entry["seq"] = len(self.exchanges)
            self.exchanges.append(entry)


def _ref(branch: str) -> str:
    return branch if branch.startswith("refs/") else f"refs/heads/{branch}"


def _identity(name: str) -> dict:
    ident = str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
    return {"displayName": name, "id": ident, "uniqueName": f"{name.split(maxsplit=1)[0].lower()}@example.com",
            "url": f"https://example.invalid/_apis/Identities/{ident}"}
