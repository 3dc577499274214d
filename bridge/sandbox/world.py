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

log = logging.getLogger("bridge.sandbox")

DEFAULT_ORG = "fabrikam"
DEFAULT_PROJECT = ("6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c", "Fabrikam-Fiber-Git")
DEFAULT_REPO = ("0f6b0a54-5b14-4c1e-9d2a-6a3bd3f1b2c1", "dbt-analytics")
DEFAULT_PAT = "sandbox-pat"
DEFAULT_DBT_TOKEN = "sandbox-dbt-token"  # noqa: S105 - a fake credential of the fake service
DBT_ACCOUNT = 1
DBT_PROJECT = 7
DBT_ENVIRONMENT = 9
CI_JOB, TEARDOWN_JOB = 42, 43

STATUS_NAMES = {1: "Queued", 2: "Starting", 3: "Running", 10: "Success", 20: "Error", 30: "Cancelled"}


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
        self.jobs[CI_JOB] = {"id": CI_JOB, "name": "CI", "job_type": "ci"}
        self.jobs[TEARDOWN_JOB] = {"id": TEARDOWN_JOB, "name": "Drop PR schema", "job_type": "other"}

    # -- Azure DevOps objects ---------------------------------------------------------------------

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
            "defaultBranch": "refs/heads/main", "size": 1024, "isDisabled": False,
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

    def deliver_event(self, event_id: str) -> list[dict]:
        """POST one event to every service hook of its organization, each with its own subscription id."""
        with self.lock:
            event = dict(self.events[event_id])
            org = event.pop("org")
            targets = [h for h in self.hooks if h["org"] == org]
        results = []
        for hook in targets:
            with self.lock:
                self._notification += 1
                body = {"subscriptionId": hook["subscription_id"], "notificationId": self._notification, **event}
            auth = base64.b64encode(f"{hook['username']}:{hook['password']}".encode()).decode()
            results.append(self._send("ado", hook["url"], body, {"Authorization": f"Basic {auth}"},
                                      retry_on={408, 502, 503, 504}))
        return results

    # -- dbt Cloud objects -------------------------------------------------------------------------

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
            hooks = [h for h in self.dbt_webhooks if h["account_id"] == run.account_id
                     and (not h.get("job_ids") or run.job_id in h["job_ids"])]
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
            threading.Thread(target=self._send, args=("dbt", hook["url"], raw, {"Authorization": signature}),
                             kwargs={"retry_on": "any"}, daemon=True).start()

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
