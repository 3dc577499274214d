"""The sandbox's Azure DevOps administration APIs that onboarding uses: projects, repositories, permission
evaluation, service-hook subscriptions and branch policies. Shapes follow ../shared/specs; a person's Entra
token sees and may do only what ``AzureDevOps.members`` grants (a PAT may do everything)."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request

from .ado_state import DEFAULT_PAT_OWNER, PERMISSION_NAMES
from .answers import ado_error, bearer_identity, listing
from .identity import IdentityState
from .values import now_iso
from .world import World

PR_EVENT_TYPES = {"git.pullrequest.created", "git.pullrequest.updated", "git.pullrequest.merged",
                  "ms.vss-code.git-pullrequest-comment-event", "git.push"}
MASK = "*" * 8  # how Azure DevOps shows a confidential input


def create_ado_admin_blueprint(world: World, identity: IdentityState) -> Blueprint:
    bp = Blueprint("sandbox-ado-admin", __name__)

    def who() -> dict | None:
        return bearer_identity(identity)

    def denied(action: str):
        caller = who()
        name = caller["upn"] if caller else "this identity"
        return ado_error(403, f"Access denied. {name} needs {action} permissions to perform the action. "
                              "For more information, contact the Azure DevOps Server administrator.",
                         "UnauthorizedRequestException")

    # -- who am I here, and what is this server (not in the specs; every version answers it) ----------------

    @bp.get("/<org>/_apis/connectionData")
    def connection_data(org):
        caller = who()
        me = {"id": caller["oid"] if caller else DEFAULT_PAT_OWNER, "providerDisplayName": caller["upn"] if caller
              else "Sandbox PAT owner", "isActive": True}
        return jsonify({"authenticatedUser": me, "authorizedUser": me,
                        "instanceId": str(uuid.uuid5(uuid.NAMESPACE_URL, org)),
                        "deploymentId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{org}/deployment")),
                        "deploymentType": "onPremises" if org in world.ado.servers else "hosted",
                        "locationServiceData": {"defaultAccessMappingMoniker": "PublicAccessMapping"}})

    # -- projects and repositories ---------------------------------------------------------------------

    @bp.get("/<org>/_apis/projects")
    def projects(org):
        with world.lock:
            visible = sorted((p for p in world.ado.projects.values()
                              if p["org"] == org and world.ado.sees_project(who(), org, p)), key=lambda p: p["name"])
        top = request.args.get("$top", 100, type=int)
        start = request.args.get("continuationToken", type=int) or request.args.get("$skip", 0, type=int)
        page = visible[start:start + top]
        more = str(start + top) if start + top < len(visible) else None
        return listing([{k: p[k] for k in ("id", "name", "url", "state", "revision", "visibility")} | {
            "lastUpdateTime": now_iso()} for p in page], continuation=more)

    @bp.get("/<org>/<project>/_apis/git/repositories")
    def repositories(org, project):
        with world.lock:
            found = world.ado.find_project(org, project)
            if found is None or not world.ado.sees_project(who(), org, found):
                return ado_error(404, f"TF200016: The following project does not exist: {project}. Verify that "
                                      "the name of the project is correct and that the project exists on the "
                                      "specified Azure DevOps Server.", "ProjectDoesNotExistWithNameException")
            repos = sorted((world.ado.repo_json(r) for r in world.ado.repos.values()
                            if r["org"] == org and r["project_id"] == found["id"]), key=lambda r: r["name"])
        return listing(repos)

    # -- permissions ----------------------------------------------------------------------------------------

    @bp.post("/<org>/_apis/security/permissionevaluationbatch")
    def evaluate(org):
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("evaluations"), list):
            return ado_error(400, "The evaluations list is required.")
        caller = who()
        answers = []
        for ev in body["evaluations"]:
            name = PERMISSION_NAMES.get((str(ev.get("securityNamespaceId", "")).lower(),
                                         int(ev.get("permissions", 0))))
            parts = str(ev.get("token", "")).split("/")  # PublisherSecurity/{project} or repoV2/{project}/{repo}
            project_id = parts[1] if len(parts) > 1 and parts[1] else None
            allowed = name is not None and world.ado.allowed(caller, org, name, project_id)
            answers.append({**ev, "value": allowed})
        return jsonify({"alwaysAllowAdministrators": bool(body.get("alwaysAllowAdministrators")),
                        "evaluations": answers})

    # -- service-hook subscriptions -------------------------------------------------------------------------

    def check_subscription(body) -> str | None:
        if not isinstance(body, dict):
            return "A subscription is required."
        if (body.get("publisherId"), body.get("consumerId"), body.get("consumerActionId")) != (
                "tfs", "webHooks", "httpRequest"):
            return "The sandbox plays only tfs → webHooks/httpRequest subscriptions."
        if body.get("eventType") not in PR_EVENT_TYPES:
            return f"Event type {body.get('eventType')!r} is not supported by publisher tfs."
        url = (body.get("consumerInputs") or {}).get("url") or ""
        if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            return "The URL must be an absolute https URL."
        project_id = (body.get("publisherInputs") or {}).get("projectId")
        if not project_id:
            return "publisherInputs.projectId is required."
        return None

    def project_of(org: str, body: dict) -> dict | None:
        return world.ado.find_project(org, (body.get("publisherInputs") or {}).get("projectId", ""))

    @bp.get("/<org>/_apis/hooks/subscriptions")
    def list_subscriptions(org):
        with world.lock:
            hooks = [h for h in world.ado.hooks if h["org"] == org]
            wanted = {k: request.args.get(k) for k in ("publisherId", "eventType", "consumerId", "consumerActionId")}
            caller = who()
            answer = []
            for hook in hooks:
                shown = world.ado.hook_json(hook)
                if any(v and shown.get(k) != v for k, v in wanted.items()):
                    continue
                if caller is not None and not world.ado.allowed(caller, org, "ViewSubscriptions", hook["project_id"]):
                    continue
                answer.append(shown)
        return listing(answer)

    @bp.post("/<org>/_apis/hooks/subscriptions")
    def create_subscription(org):
        body = request.get_json(silent=True)
        problem = check_subscription(body)
        if problem:
            return ado_error(400, problem)
        with world.lock:
            project = project_of(org, body)
            if project is None:
                return ado_error(400, "The project in publisherInputs.projectId does not exist.")
            if not world.ado.allowed(who(), org, "EditSubscriptions", project["id"]):
                return denied("Edit subscriptions")
            consumer = dict(body.get("consumerInputs") or {})
            publisher = dict(body.get("publisherInputs") or {})
            caller = who()
            hook = world.ado.add_hook(org, url=consumer.pop("url"), username=consumer.pop("basicAuthUsername", ""),
                                  password=consumer.pop("basicAuthPassword", ""), event_type=body["eventType"],
                                  project_id=publisher.pop("projectId"), repository=publisher.pop("repository", None),
                                  created_by=caller["oid"] if caller else "pat",
                                  resource_version=body.get("resourceVersion"), consumer_inputs=consumer,
                                  publisher_inputs=publisher)
            return jsonify(world.ado.hook_json(hook))

    @bp.route("/<org>/_apis/hooks/subscriptions/<subscription_id>", methods=["GET", "PUT", "DELETE"])
    def one_subscription(org, subscription_id):
        with world.lock:
            hook = world.ado.find_hook(org, subscription_id)
            if hook is None:
                return ado_error(404, f"Subscription {subscription_id} does not exist.",
                                 "SubscriptionNotFoundException")
            if request.method == "GET":
                if not world.ado.allowed(who(), org, "ViewSubscriptions", hook["project_id"]):
                    return denied("View subscriptions")
                return jsonify(world.ado.hook_json(hook))
            if request.method == "DELETE":
                if not world.ado.allowed(who(), org, "DeleteSubscriptions", hook["project_id"]):
                    return denied("Delete subscriptions")
                world.ado.hooks.remove(hook)
                return "", 204
            body = request.get_json(silent=True)
            problem = check_subscription(body)
            if problem:
                return ado_error(400, problem)
            if not world.ado.allowed(who(), org, "EditSubscriptions", hook["project_id"]):
                return denied("Edit subscriptions")
            consumer = dict(body.get("consumerInputs") or {})
            hook["url"] = consumer.pop("url")
            hook["username"] = consumer.pop("basicAuthUsername", hook["username"])
            password = consumer.pop("basicAuthPassword", None)
            if password and password != MASK:  # the masked value sent back keeps the stored one
                hook["password"] = password
            hook["consumer_inputs"] = consumer
            hook["resource_version"] = body.get("resourceVersion") or hook["resource_version"]
            # A user may disable or re-enable; the system's verdicts (disabledBySystem, inactive identity)
            # are not lifted by a PUT: the subscription must be deleted and created again.
            wanted = body.get("status")
            if wanted in ("enabled", "disabledByUser") and hook["status"] in ("enabled", "onProbation",
                                                                               "disabledByUser"):
                hook["status"] = wanted
            hook["modified"] = now_iso()
            return jsonify(world.ado.hook_json(hook))

    # -- branch policies ------------------------------------------------------------------------------------

    @bp.route("/<org>/<project>/_apis/policy/configurations", methods=["GET", "POST"])
    def policies(org, project):
        with world.lock:
            found = world.ado.find_project(org, project)
            if found is None or not world.ado.sees_project(who(), org, found):
                return ado_error(404, f"TF200016: The following project does not exist: {project}.",
                                 "ProjectDoesNotExistWithNameException")
            if request.method == "GET":
                wanted = request.args.get("policyType")
                return listing([world.ado.policy_json(p) for p in world.ado.policies.values()
                                if p["project_id"] == found["id"] and (not wanted or p["type"]["id"] == wanted)])
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not (body.get("type") or {}).get("id") or not isinstance(
                    body.get("settings"), dict):
                return ado_error(400, "A policy configuration needs a type and settings.")
            scopes = body["settings"].get("scope") or []
            if not scopes or not all(sc.get("repositoryId") for sc in scopes):
                return ado_error(400, "The policy scope must name a repository.")
            if not world.ado.allowed(who(), org, "EditPolicies", found["id"]):
                return denied("Edit policies")
            caller = who()
            policy = world.ado.add_policy(org, found["id"], body, caller["oid"] if caller else "pat")
            return jsonify(world.ado.policy_json(policy))

    @bp.route("/<org>/<project>/_apis/policy/configurations/<int:configuration_id>", methods=["GET", "DELETE"])
    def one_policy(org, project, configuration_id):
        with world.lock:
            found = world.ado.find_project(org, project)
            policy = world.ado.policies.get(configuration_id)
            if found is None or policy is None or policy["project_id"] != found["id"]:
                return ado_error(404, f"The policy configuration {configuration_id} does not exist.",
                                 "PolicyNotFoundException")
            if request.method == "GET":
                return jsonify(world.ado.policy_json(policy))
            if not world.ado.allowed(who(), org, "EditPolicies", found["id"]):
                return denied("Edit policies")
            del world.ado.policies[configuration_id]
            return "", 204

    return bp
