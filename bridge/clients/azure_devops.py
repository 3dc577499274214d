"""Azure DevOps REST client: pull requests, iterations, statuses, repositories; and for onboarding projects,
service-hook subscriptions, permission evaluation and branch policies.

Every call asks for the organization's REST API version: 7.1 on Azure DevOps Services, at most 7.0 on Azure
DevOps Server 2022, 6.0 on Server 2020 (``SERVER_VERSIONS``); a server refusing the version raises
``errors.VersionOutOfRange``. The organization URL may be a collection URL (``https://tfs.example.com/tfs/Coll``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Protocol

from marshmallow import EXCLUDE, Schema, fields, post_load

from .. import errors
from ..catalog import AdoProject, AdoRepository
from ..domain import (
    SERVICES_API_VERSION,
    HookStatus,
    HookSubscription,
    Iteration,
    PrThread,
    PullRequest,
    PullRequestStatus,
    StatusContext,
    StatusPolicy,
    StatusUpdate,
)
from .http import HttpAnswer, JsonApi, Transport, segment

API_VERSION = SERVICES_API_VERSION
SERVER_VERSIONS = {"Azure DevOps Server 2022": "7.0", "Azure DevOps Server 2020": "6.0"}  # the newest each serves

# Security namespaces and bits checked before onboarding acts (reference/azure_devops.md §3, §5).
SERVICE_HOOKS_NAMESPACE = "cb594ebe-87dd-4fc9-ac2c-6a10a4c92046"
EDIT_SUBSCRIPTIONS = 2
GIT_REPOSITORIES_NAMESPACE = "2e9eb7ed-3c0a-47d4-87c1-0ffdd275fd87"
EDIT_POLICIES = 2048
STATUS_POLICY_TYPE = "cbdc66da-9728-4af8-aada-9a5a32e4a226"


# -- credentials ------------------------------------------------------------------------------------

class Credentials(Protocol):
    """Whatever the workers act as in an organization: a PAT, a connected person or a service principal."""

    def authorization(self) -> str: ...


class PersonalAccessToken:
    def __init__(self, token: str):
        self._token = token

    def authorization(self) -> str:
        return "Basic " + base64.b64encode(f":{self._token}".encode()).decode()

    def __repr__(self) -> str:  # never show the token
        return "PersonalAccessToken(***)"


# -- response schemas ---------------------------------------------------------------------------------

class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


class _Commit(_Lenient):
    commit_id = fields.Str(data_key="commitId", load_default=None)


class _RepoRef(_Lenient):
    id = fields.Str(required=True)


class _PullRequestSchema(_Lenient):
    pull_request_id = fields.Int(data_key="pullRequestId", required=True)
    repository = fields.Nested(_RepoRef, required=True)
    status = fields.Str(load_default="notSet")
    is_draft = fields.Bool(data_key="isDraft", load_default=False)
    source_ref = fields.Str(data_key="sourceRefName", load_default="")
    target_ref = fields.Str(data_key="targetRefName", load_default="")
    title = fields.Str(load_default="")
    merge_status = fields.Str(data_key="mergeStatus", load_default=None)
    last_merge_source_commit = fields.Nested(_Commit, data_key="lastMergeSourceCommit", load_default=None,
                                             allow_none=True)

    @post_load
    def _to_domain(self, d, **_):
        try:
            status = PullRequestStatus(d["status"])
        except ValueError:
            status = PullRequestStatus.NOT_SET
        return PullRequest(
            pull_request_id=d["pull_request_id"], repository_id=d["repository"]["id"].lower(), status=status,
            is_draft=d["is_draft"], source_ref=d["source_ref"], target_ref=d["target_ref"],
            head_commit=(d.get("last_merge_source_commit") or {}).get("commit_id"), title=d["title"],
            merge_status=d.get("merge_status"))


class _IterationSchema(_Lenient):
    id = fields.Int(required=True)
    source_ref_commit = fields.Nested(_Commit, data_key="sourceRefCommit", load_default=None, allow_none=True)

    @post_load
    def _to_domain(self, d, **_):
        return Iteration(d["id"], (d.get("source_ref_commit") or {}).get("commit_id"))


class _ProjectRef(_Lenient):
    id = fields.Str(required=True)
    name = fields.Str(required=True)


class _RepositorySchema(_Lenient):
    id = fields.Str(required=True)
    name = fields.Str(required=True)
    project = fields.Nested(_ProjectRef, required=True)
    is_disabled = fields.Bool(data_key="isDisabled", load_default=False)

    @post_load
    def _make(self, d, **_) -> AdoRepository:
        return AdoRepository(id=d["id"].lower(), name=d["name"], project_id=d["project"]["id"],
                             project_name=d["project"]["name"], is_disabled=d["is_disabled"])


class _SubscriptionSchema(_Lenient):
    id = fields.Str(required=True)
    event_type = fields.Str(data_key="eventType", load_default="")
    status = fields.Str(load_default="enabled", allow_none=True)
    resource_version = fields.Str(data_key="resourceVersion", load_default=None, allow_none=True)
    publisher_inputs = fields.Dict(data_key="publisherInputs", load_default=dict)
    consumer_inputs = fields.Dict(data_key="consumerInputs", load_default=dict)
    consumer_id = fields.Str(data_key="consumerId", load_default="")
    created_by = fields.Dict(data_key="createdBy", load_default=dict)

    @post_load
    def _to_domain(self, d, **_):
        consumer, publisher = d["consumer_inputs"] or {}, d["publisher_inputs"] or {}
        return HookSubscription(
            subscription_id=d["id"].lower(), event_type=d["event_type"], status=HookStatus.parse(d["status"]),
            url=consumer.get("url", ""), username=consumer.get("basicAuthUsername", ""),
            project_id=(publisher.get("projectId") or "").lower() or None,
            repository_id=(publisher.get("repository") or "").lower() or None,
            resource_version=d["resource_version"], created_by=(d["created_by"] or {}).get("id"))


# -- client -----------------------------------------------------------------------------------------

# Schemas hold no per-call state; one instance each serves every call.
_REPOSITORYSCHEMA = _RepositorySchema()
_PULLREQUESTSCHEMA = _PullRequestSchema()
_ITERATIONSCHEMA = _IterationSchema()
_SUBSCRIPTIONSCHEMA = _SubscriptionSchema()


class AzureDevOpsClient(JsonApi):
    service = "azure-devops"

    def __init__(self, organization_url: str, credentials: Credentials, *, api_version: str = API_VERSION,
                 transport: Transport | None = None, timeout: float = 10.0):
        super().__init__(organization_url, "", transport=transport, timeout=timeout)  # asked per request
        self._credentials = credentials
        self.api_version = api_version

    def _headers(self) -> dict[str, str]:
        headers = super()._headers()
        headers["Authorization"] = self._credentials.authorization()
        headers["X-TFS-FedAuthRedirect"] = "Suppress"  # a 401, not an HTML sign-in page
        return headers

    def describe_error(self, response: HttpAnswer) -> str:
        try:
            body = response.json()
            return str(body.get("message") or body)[:300]
        except ValueError:
            return response.text[:200]

    def error_class(self, kind, response):
        if kind is errors.Forbidden and "StatusRejectedByPolicy" in response.text:
            return errors.StatusRejectedByPolicy
        if "VssVersionOutOfRangeException" in response.text:
            return errors.VersionOutOfRange
        return super().error_class(kind, response)

    def _call(self, method: str, path: str, *, params: dict | None = None, json: object = None):
        return self.call(method, path, params={**(params or {}), "api-version": self.api_version}, json=json)

    def connection_data(self) -> dict:
        """Who the caller is here and what the server is: ``{deployment, instance_id, user_id}``, deployment
        being "hosted" (Azure DevOps Services) or "onPremises" (Azure DevOps Server). A cheap call that every
        version answers; a server too old for ``api_version`` raises ``errors.VersionOutOfRange``."""
        found = self.call("GET", "/_apis/connectionData", params={"api-version": f"{self.api_version}-preview"})
        found = found if isinstance(found, dict) else {}
        return {"deployment": str(found.get("deploymentType") or "unknown"),
                "instance_id": str(found.get("instanceId") or ""),
                "user_id": str((found.get("authenticatedUser") or {}).get("id") or "")}

    @staticmethod
    def _repo_path(project: str, repository_id: str) -> str:
        return f"/{segment(project)}/_apis/git/repositories/{segment(repository_id)}"

    def get_repository(self, project: str, repository: str) -> AdoRepository:
        return _REPOSITORYSCHEMA.load(self._call("GET", self._repo_path(project, repository)))

    def get_pull_request(self, project: str, repository_id: str, pull_request_id: int) -> PullRequest:
        path = f"{self._repo_path(project, repository_id)}/pullrequests/{int(pull_request_id)}"
        return _PULLREQUESTSCHEMA.load(self._call("GET", path))

    def list_project_pull_requests(self, project: str, *, status: str = "active",
                                   page_size: int = 500) -> Iterator[PullRequest]:
        """The pull requests of every repository of a project: one call a page (the PR sweep's budget)."""
        path = f"/{segment(project)}/_apis/git/pullrequests"
        skip = 0
        while True:
            page = self._call("GET", path, params={"searchCriteria.status": status, "$top": page_size,
                                                   "$skip": skip})
            values = (page or {}).get("value", [])
            yield from (_PULLREQUESTSCHEMA.load(v) for v in values)
            if len(values) < page_size:
                return
            skip += page_size

    def list_iterations(self, project: str, repository_id: str, pull_request_id: int) -> list[Iteration]:
        path = f"{self._repo_path(project, repository_id)}/pullRequests/{int(pull_request_id)}/iterations"
        page = self._call("GET", path)
        return [_ITERATIONSCHEMA.load(v) for v in (page or {}).get("value", [])]

    def post_status(self, project: str, repository_id: str, pull_request_id: int, context: StatusContext,
                    update: StatusUpdate) -> int | None:
        path = f"{self._repo_path(project, repository_id)}/pullRequests/{int(pull_request_id)}/statuses"
        body = {"state": update.state.value, "description": update.description,
                "context": {"genre": context.genre, "name": context.name},
                "iterationId": update.iteration_id}
        if update.target_url:
            body["targetUrl"] = update.target_url
        answer = self._call("POST", path, json=body)
        return (answer or {}).get("id")

    # -- comment threads ----------------------------------------------------------------------------------

    def _threads(self, project: str, repository_id: str, pull_request_id: int) -> str:
        return f"{self._repo_path(project, repository_id)}/pullRequests/{int(pull_request_id)}/threads"

    def list_threads(self, project: str, repository_id: str, pull_request_id: int) -> list[PrThread]:
        page = self._call("GET", self._threads(project, repository_id, pull_request_id)) or {}
        return [_thread(raw) for raw in page.get("value", []) if not raw.get("isDeleted")]

    def create_thread(self, project: str, repository_id: str, pull_request_id: int, *, content: str,
                      status: str = "active", properties: dict[str, str] | None = None) -> PrThread:
        body = {"comments": [{"parentCommentId": 0, "content": content, "commentType": "text"}], "status": status,
                "properties": {key: {"$type": "System.String", "$value": str(value)}
                               for key, value in (properties or {}).items()}}
        return _thread(self._call("POST", self._threads(project, repository_id, pull_request_id), json=body))

    def set_thread_status(self, project: str, repository_id: str, pull_request_id: int, *, thread_id: int,
                          status: str) -> None:
        self._call("PATCH", f"{self._threads(project, repository_id, pull_request_id)}/{int(thread_id)}",
                   json={"status": status})

    def edit_comment(self, project: str, repository_id: str, pull_request_id: int, *, thread_id: int,
                     comment_id: int, content: str) -> None:
        path = f"{self._threads(project, repository_id, pull_request_id)}/{int(thread_id)}/comments/{int(comment_id)}"
        self._call("PATCH", path, json={"content": content})

    def reply(self, project: str, repository_id: str, pull_request_id: int, *, thread_id: int, content: str) -> int:
        path = f"{self._threads(project, repository_id, pull_request_id)}/{int(thread_id)}/comments"
        answer = self._call("POST", path, json={"content": content, "parentCommentId": 1, "commentType": "text"})
        return int((answer or {})["id"])

    def list_statuses(self, project: str, repository_id: str, pull_request_id: int) -> list[dict]:
        path = f"{self._repo_path(project, repository_id)}/pullRequests/{int(pull_request_id)}/statuses"
        return (self._call("GET", path) or {}).get("value", [])

    # -- discovery ------------------------------------------------------------------------------------

    def list_projects(self, *, page_size: int = 100) -> Iterator[AdoProject]:
        """Every project the caller can see (paged by continuation token)."""
        token = None
        while True:
            params: dict = {"$top": page_size, "api-version": self.api_version}
            if token:
                params["continuationToken"] = token
            page, headers = self.call_with_headers("GET", "/_apis/projects", params=params)
            for p in (page or {}).get("value", []):
                yield AdoProject(id=p["id"].lower(), name=p["name"])
            token = headers.get("x-ms-continuationtoken")
            if not token:
                return

    def list_repositories(self, project: str) -> list[AdoRepository]:
        page = self._call("GET", f"/{segment(project)}/_apis/git/repositories") or {}
        found = [_REPOSITORYSCHEMA.load(raw) for raw in page.get("value", [])]
        return sorted(found, key=lambda r: r.name.lower())

    # -- permissions ------------------------------------------------------------------------------------

    def has_permissions(self, checks: list[tuple[str, str, int]]) -> list[bool]:
        """Whether the caller holds each (namespace, token, bit), administrators not excepted."""
        body = {"alwaysAllowAdministrators": False, "evaluations": [
            {"securityNamespaceId": ns, "token": token, "permissions": bit} for ns, token, bit in checks]}
        answer = self._call("POST", "/_apis/security/permissionevaluationbatch", json=body) or {}
        return [bool(e.get("value")) for e in answer.get("evaluations", [])]

    # -- service-hook subscriptions -------------------------------------------------------------------------

    def list_subscriptions(self) -> list[HookSubscription]:
        page = self._call("GET", "/_apis/hooks/subscriptions", params={"publisherId": "tfs",
                                                                      "consumerId": "webHooks"}) or {}
        return [_SUBSCRIPTIONSCHEMA.load(v) for v in page.get("value", [])]

    def get_subscription(self, subscription_id: str) -> HookSubscription:
        return _SUBSCRIPTIONSCHEMA.load(self._call("GET", f"/_apis/hooks/subscriptions/{segment(subscription_id)}"))

    @staticmethod
    def _subscription_body(*, event_type: str, resource_version: str, project_id: str, repository_id: str,
                           url: str, username: str, password: str | None, status: str | None) -> dict:
        consumer = {"url": url, "basicAuthUsername": username, "resourceDetailsToSend": "all",
                    "messagesToSend": "none", "detailedMessagesToSend": "none"}
        if password is not None:
            consumer["basicAuthPassword"] = password
        body = {"publisherId": "tfs", "eventType": event_type, "resourceVersion": resource_version,
                "consumerId": "webHooks", "consumerActionId": "httpRequest",
                "publisherInputs": {"projectId": project_id, "repository": repository_id},
                "consumerInputs": consumer}
        if status is not None:
            body["status"] = status
        return body

    def create_subscription(self, *, event_type: str, resource_version: str, project_id: str, repository_id: str,
                            url: str, username: str, password: str) -> HookSubscription:
        body = self._subscription_body(event_type=event_type, resource_version=resource_version,
                                       project_id=project_id, repository_id=repository_id, url=url,
                                       username=username, password=password, status=None)
        return _SUBSCRIPTIONSCHEMA.load(self._call("POST", "/_apis/hooks/subscriptions", json=body))

    def replace_subscription(self, subscription_id: str, *, event_type: str, resource_version: str,
                             project_id: str, repository_id: str, url: str, username: str,
                             password: str | None = None, status: str = "enabled") -> HookSubscription:
        """Change a subscription in place (URL, credentials, re-enable). ``password`` None keeps the stored one."""
        body = self._subscription_body(event_type=event_type, resource_version=resource_version,
                                       project_id=project_id, repository_id=repository_id, url=url,
                                       username=username, password=password, status=status)
        path = f"/_apis/hooks/subscriptions/{segment(subscription_id)}"
        return _SUBSCRIPTIONSCHEMA.load(self._call("PUT", path, json=body))

    def delete_subscription(self, subscription_id: str) -> None:
        self._call("DELETE", f"/_apis/hooks/subscriptions/{segment(subscription_id)}")

    # -- branch policies ----------------------------------------------------------------------------------

    def list_status_policies(self, project: str) -> list[dict]:
        page = self._call("GET", f"/{segment(project)}/_apis/policy/configurations",
                          params={"policyType": STATUS_POLICY_TYPE}) or {}
        return [{"id": p["id"], "settings": p.get("settings") or {}, "enabled": p.get("isEnabled", True),
                 "blocking": p.get("isBlocking", True)} for p in page.get("value", [])]

    def find_status_policy(self, project: str, policy: StatusPolicy) -> int | None:
        """An existing policy that already requires ``policy``'s status on its branch, if any."""
        wanted = status_policy_settings(policy)
        return next((p["id"] for p in self.list_status_policies(project)
                     if _same_policy(p["settings"], wanted)), None)

    def create_status_policy(self, project: str, policy: StatusPolicy) -> int:
        body = {"isEnabled": True, "isBlocking": True, "type": {"id": STATUS_POLICY_TYPE},
                "settings": status_policy_settings(policy)}
        return int(self._call("POST", f"/{segment(project)}/_apis/policy/configurations", json=body)["id"])

    def delete_policy(self, project: str, configuration_id: int) -> None:
        self._call("DELETE", f"/{segment(project)}/_apis/policy/configurations/{int(configuration_id)}")


def status_policy_settings(policy: StatusPolicy) -> dict:
    """The "Status" policy type's settings for ``policy`` (policy configurations API)."""
    context = policy.context
    return {"statusGenre": context.genre, "statusName": context.name,
            "invalidateOnSourceUpdate": policy.reset_on_new_changes,
            "defaultDisplayName": f"dbt Cloud CI ({context.genre}/{context.name})",
            "scope": [{"repositoryId": policy.repository_id, "refName": policy.target_ref, "matchKind": "exact"}]}


def _same_policy(existing: dict, wanted: dict) -> bool:
    def scope(settings: dict) -> set:
        return {(sc.get("repositoryId", "").lower(), sc.get("refName")) for sc in settings.get("scope") or []}

    return (existing.get("statusGenre") == wanted["statusGenre"] and existing.get("statusName") == wanted["statusName"]
            and scope(wanted) <= scope(existing))


# -- who the user is and where (app.vssps.visualstudio.com) ----------------------------------------------

PROFILE_HOST = "https://app.vssps.visualstudio.com"


class ProfileClient(AzureDevOpsClient):
    """The user's own profile and organizations, always with that user's own token."""

    def __init__(self, credentials: Credentials, *, transport: Transport | None = None,
                 timeout: float = 10.0):
        super().__init__(PROFILE_HOST, credentials, transport=transport, timeout=timeout)

    def me(self) -> dict:
        data = self._call("GET", "/_apis/profile/profiles/me") or {}
        return {"id": data.get("id"), "display_name": data.get("displayName", ""),
                "email": data.get("emailAddress", "")}

    def organizations(self, member_id: str) -> list[str]:
        page = self._call("GET", "/_apis/accounts", params={"memberId": member_id}) or {}
        return sorted(a["accountName"] for a in page.get("value", []) if a.get("accountName"))


def _thread(raw: dict) -> PrThread:
    """A thread from Azure DevOps' JSON; a property's value may come bare or under $value."""
    properties = {}
    for key, given in (raw.get("properties") or {}).items():
        value = given.get("$value") if isinstance(given, dict) else given
        properties[str(key)] = "" if value is None else str(value)
    comments = [c for c in raw.get("comments") or [] if isinstance(c, dict)]
    first = comments[0] if comments else {}
    return PrThread(id=int(raw["id"]), status=str(raw.get("status") or "unknown"), properties=properties,
                    first_comment_id=first.get("id"), first_comment=str(first.get("content") or ""))
