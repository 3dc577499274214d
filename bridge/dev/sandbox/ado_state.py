"""The sandbox's Azure DevOps: organizations' projects and repositories, pull requests with their iterations,
statuses and threads, service-hook subscriptions, branch policies, and who may do what.

Shapes follow the official Swagger specs (git 7.1 GitPullRequest / GitPullRequestIteration /
GitPullRequestStatus, hooks, policy); ids and names here are the sandbox's own, not the product's constants.
Every method takes the world's one lock.
"""

from __future__ import annotations

import base64
import threading
import uuid

from .values import identity, now_iso, ref, sha_for

DEFAULT_ORG = "fabrikam"
DEFAULT_PROJECT = ("6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c", "Fabrikam-Fiber-Git")
DEFAULT_REPO = ("0f6b0a54-5b14-4c1e-9d2a-6a3bd3f1b2c1", "dbt-analytics")
DEFAULT_PAT = "sandbox-pat"
DEFAULT_PAT_OWNER = "5a5a5a5a-0000-4000-8000-00000000a11e"  # the identity the sandbox's PAT belongs to

# Permission bits the sandbox evaluates (security namespace id, bit) → a name used in ``AzureDevOps.members``.
SERVICE_HOOKS_NAMESPACE = "cb594ebe-87dd-4fc9-ac2c-6a10a4c92046"
GIT_NAMESPACE = "2e9eb7ed-3c0a-47d4-87c1-0ffdd275fd87"
PERMISSION_NAMES = {(SERVICE_HOOKS_NAMESPACE, 1): "ViewSubscriptions",
                    (SERVICE_HOOKS_NAMESPACE, 2): "EditSubscriptions",
                    (SERVICE_HOOKS_NAMESPACE, 4): "DeleteSubscriptions",
                    (GIT_NAMESPACE, 2): "GenericRead", (GIT_NAMESPACE, 2048): "EditPolicies"}
STATUS_POLICY_TYPE = "cbdc66da-9728-4af8-aada-9a5a32e4a226"
TRANSIENT = {408, 502, 503, 504}   # Azure DevOps resends these; any other failure puts a hook on probation


class AzureDevOps:
    def __init__(self, base_url: str, lock: threading.RLock):
        self.base_url = base_url
        self.lock = lock
        self.pats = {DEFAULT_PAT}
        # Who may do what with an Entra token (PATs may do everything): the Entra tenant each organization is
        # connected to (absent: any), and per person {org: {"projects": [names] | None, "permissions": [...]}}
        # (a person with no entry is a member of every organization of their tenant, with every permission).
        self.org_tenants: dict[str, str] = {}
        self.members: dict[str, dict] = {}
        self.projects: dict[str, dict] = {}
        self.repos: dict[str, dict] = {}
        self.prs: dict[int, dict] = {}
        self.iterations: dict[int, list[dict]] = {}
        self.statuses: dict[int, list[dict]] = {}
        self.threads: dict[int, list[dict]] = {}
        self.hooks: list[dict] = []
        self.events: dict[str, dict] = {}
        self.policies: dict[int, dict] = {}
        self.require_iteration_status = True
        # Azure DevOps Server collections (served under /tfs/<collection>): collection → newest API version
        self.servers: dict[str, str] = {}
        self._next_pr = 1
        self._next_status = 1
        self._next_policy = 1
        self._notification = 0
        self.add_project(DEFAULT_ORG, *DEFAULT_PROJECT)
        self.add_repo(DEFAULT_ORG, DEFAULT_PROJECT[0], *DEFAULT_REPO)

    def org_base(self, org: str) -> str:
        """An organization's URL, or a Server collection's (with the /tfs virtual directory)."""
        return f"{self.base_url}/tfs/{org}" if org in self.servers else f"{self.base_url}/{org}"

    def refuses_version(self, org: str, requested: str) -> str | None:
        """The server's own message when a collection is asked for a REST API version newer than it serves."""
        newest = self.servers.get(org)
        if newest is None or not requested:
            return None
        asked = requested.split("-", 1)[0]
        try:
            too_new = tuple(map(int, asked.split("."))) > tuple(map(int, newest.split(".")))
        except ValueError:
            return f"The requested REST API version of {requested} is not valid."
        if not too_new:
            return None
        return (f"The requested REST API version of {asked} is out of range for this server. The latest REST API "
                f"version this server supports is {newest}.")

    # -- projects and repositories ---------------------------------------------------------------------

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
                       "visibility": "private", "url": f"{self.org_base(org)}/_apis/projects/{project_id}"}
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
            "url": f"{self.org_base(org)}/{project['id']}/_apis/git/repositories/{repo['id']}",
            "project": {k: project[k] for k in ("id", "name", "url", "state", "revision", "visibility")},
            "remoteUrl": f"{self.org_base(org)}/{project['name']}/_git/{repo['name']}",
            "webUrl": f"{self.org_base(org)}/{project['name']}/_git/{repo['name']}",
            "defaultBranch": "refs/heads/main", "size": 1024, "isDisabled": bool(repo.get("disabled")),
        }

    def pr_json(self, pr: dict) -> dict:
        repo = self.repos[pr["repository_id"]]
        org = repo["org"]
        url = f"{self.org_base(org)}/_apis/git/repositories/{repo['id']}/pullRequests/{pr['id']}"
        body = {
            "repository": self.repo_json(repo), "pullRequestId": pr["id"], "codeReviewId": pr["id"],
            "status": pr["status"], "createdBy": identity("Ada Developer"),
            "creationDate": pr["created"], "title": pr["title"], "description": pr.get("description", ""),
            "sourceRefName": pr["source"], "targetRefName": pr["target"], "mergeStatus": pr["merge_status"],
            "isDraft": pr["draft"], "mergeId": pr["merge_id"],
            "lastMergeSourceCommit": {"commitId": pr["head"], "url": f"{url}/commits/{pr['head']}"},
            "lastMergeTargetCommit": {"commitId": pr["base"], "url": f"{url}/commits/{pr['base']}"},
            "reviewers": [], "url": url, "supportsIterations": True,
            "artifactId": f"vstfs:///Git/PullRequestId/{repo['project_id']}%2f{repo['id']}%2f{pr['id']}",
            "_links": {"web": {"href": f"{self.org_base(org)}/_git/{repo['name']}/pullrequest/{pr['id']}"},
                       "statuses": {"href": f"{url}/statuses"}},
        }
        if pr.get("closed"):
            body["closedDate"] = pr["closed"]
            body["closedBy"] = identity("Ada Developer")
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
                  "source": ref(source), "target": ref(target), "draft": draft, "head": head,
                  "base": sha_for(target), "merge_status": "succeeded", "merge_id": str(uuid.uuid4()),
                  "created": now_iso(), "pushes": 1}
            self.prs[pr_id] = pr
            self.iterations[pr_id] = [self._iteration(pr, 1)]
            self.statuses[pr_id] = []
            self.threads[pr_id] = []
            return pr

    def add_thread(self, pr_id: int, content: str, *, author: str = "Ada Developer", status: str = "active",
                   properties: dict | None = None) -> dict:
        with self.lock:
            threads = self.threads[pr_id]
            thread = {"id": len(threads) + 1, "status": status, "publishedDate": now_iso(),
                      "lastUpdatedDate": now_iso(), "isDeleted": False, "properties": typed(properties or {}),
                      "comments": []}
            threads.append(thread)
            self.add_comment(pr_id, thread["id"], content, author=author)
            return thread

    def thread(self, pr_id: int, thread_id: int) -> dict | None:
        threads = self.threads.get(pr_id, [])
        return threads[thread_id - 1] if 0 < thread_id <= len(threads) else None

    def update_thread(self, pr_id: int, thread_id: int, body: dict) -> dict:
        """Azure DevOps' PATCH of a thread: its status, and properties merged into what it has."""
        with self.lock:
            thread = self.thread(pr_id, thread_id)
            if "status" in body:
                thread["status"] = body["status"]
            thread["properties"].update(typed(body.get("properties") or {}))
            thread["lastUpdatedDate"] = now_iso()
            return thread

    def add_comment(self, pr_id: int, thread_id: int, content: str, *, author: str = "Ada Developer",
                    parent: int = 0) -> dict:
        """Comment ids count within their thread (its first comment is 1), as Azure DevOps numbers them."""
        with self.lock:
            thread = self.thread(pr_id, thread_id)
            comment = {"id": len(thread["comments"]) + 1, "parentCommentId": parent, "author": identity(author),
                       "content": content, "publishedDate": now_iso(), "lastUpdatedDate": now_iso(),
                       "lastContentUpdatedDate": now_iso(), "commentType": "text", "isDeleted": False}
            thread["comments"].append(comment)
            thread["lastUpdatedDate"] = now_iso()
            return comment

    def edit_comment(self, pr_id: int, thread_id: int, comment_id: int, content: str) -> dict | None:
        with self.lock:
            thread = self.thread(pr_id, thread_id)
            if thread is None or not 0 < comment_id <= len(thread["comments"]):
                return None
            comment = thread["comments"][comment_id - 1]
            comment.update(content=content, lastUpdatedDate=now_iso(), lastContentUpdatedDate=now_iso())
            return comment

    def _iteration(self, pr: dict, number: int) -> dict:
        return {"id": number, "sourceRefCommit": {"commitId": pr["head"]},
                "targetRefCommit": {"commitId": pr["base"]}, "createdDate": now_iso(), "updatedDate": now_iso(),
                "author": identity("Ada Developer"), "hasMoreCommits": False, "reason": "push",
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
                                   "baseUrl": f"{self.org_base(repo['org'])}/"},
                    "account": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, repo["org"] + "/a")),
                                "baseUrl": f"{self.org_base(repo['org'])}/"},
                    "project": {"id": repo["project_id"], "baseUrl": f"{self.org_base(repo['org'])}/"}},
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
                "url": f"{self.org_base(hook['org'])}/_apis/hooks/subscriptions/{hook['subscription_id']}",
                "status": hook["status"], "publisherId": "tfs", "eventType": hook["event_type"] or "",
                "resourceVersion": hook["resource_version"] or "1.0", "consumerId": "webHooks",
                "consumerActionId": "httpRequest", "eventDescription": "", "actionDescription": hook["url"],
                "createdBy": creator, "modifiedBy": creator, "createdDate": hook["created"],
                "modifiedDate": hook["modified"], "publisherInputs": publisher, "consumerInputs": consumer}

    def hooks_for(self, event: dict, org: str) -> list[dict]:
        resource = event["resource"].get("pullRequest", event["resource"])
        repository = (resource.get("repository") or {}).get("id", "")
        project = ((resource.get("repository") or {}).get("project") or {}).get("id", "")
        return [h for h in self.hooks if h["org"] == org and h["status"] in ("enabled", "onProbation")
                and (h["event_type"] is None or h["event_type"] == event["eventType"])
                and (not h["project_id"] or h["project_id"].lower() == project.lower())
                and (not h["repository"] or h["repository"].lower() == repository.lower())]

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
        url = f"{self.org_base(policy['org'])}/{policy['project_id']}/_apis/policy/configurations/{policy['id']}"
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


    def add_status(self, pr_id: int, body: dict) -> dict:
        """Record a status as Azure DevOps would after validating it (``body`` as posted)."""
        with self.lock:
            status = {"id": self._next_status, "state": body.get("state", "notSet"),
                      "description": body.get("description", ""), "context": body["context"],
                      "creationDate": now_iso(), "updatedDate": now_iso(),
                      "createdBy": {"displayName": "bridge", "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, "bridge"))}}
            if body.get("targetUrl"):
                status["targetUrl"] = body["targetUrl"]
            if body.get("iterationId") is not None:
                status["iterationId"] = body["iterationId"]
            self._next_status += 1
            self.statuses[pr_id].append(status)
            return status

    # -- deliveries of service-hook events -------------------------------------------------------------

    def notifications(self, event_id: str) -> list[tuple[dict, dict, dict]]:
        """(hook, body, headers) for each matching, enabled service hook of the event's organization, each with
        its own subscription id and credentials."""
        with self.lock:
            event = dict(self.events[event_id])
            org = event.pop("org")
            found = []
            for hook in self.hooks_for(event, org):
                self._notification += 1
                body = {"subscriptionId": hook["subscription_id"], "notificationId": self._notification, **event}
                if hook["resource_version"]:
                    body["resourceVersion"] = hook["resource_version"]
                auth = base64.b64encode(f"{hook['username']}:{hook['password']}".encode()).decode()
                found.append((hook, body, {"Authorization": f"Basic {auth}"}))
            return found

    def delivered(self, hook: dict, status: int | None) -> None:
        """A failing hook goes on probation, a 410 disables it, a success takes it off probation."""
        with self.lock:
            status = status or 0
            if 200 <= status < 300:
                hook["status"] = "enabled" if hook["status"] == "onProbation" else hook["status"]
            elif status == 410:
                hook["status"] = "disabledBySystem"
            else:
                hook["status"] = "onProbation"


def typed(properties: dict) -> dict:
    """A thread's properties as Azure DevOps answers them: each value under $type and $value."""
    out = {}
    for key, given in properties.items():
        value = given["$value"] if isinstance(given, dict) and "$value" in given else given
        kind = "System.Int32" if isinstance(value, int) and not isinstance(value, bool) else "System.String"
        out[key] = {"$type": kind, "$value": value if kind == "System.Int32" else str(value)}
    return out
