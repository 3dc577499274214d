"""The administration APIs onboarding uses, as the sandbox plays them: Azure DevOps projects, repositories,
service-hook subscriptions, permission evaluation and branch policies; dbt Cloud jobs (v2), projects,
environments and webhook subscriptions (v3). Shapes follow ../shared/specs; a person's Entra token sees and
may do only what ``World.members`` grants (a PAT may do everything)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from .answers import ado_error, bearer_identity, dbt_auth, dbt_error, dbt_ok, listing
from .identity import IdentityState
from .world import PERMISSION_NAMES, World, now_iso

PR_EVENT_TYPES = {"git.pullrequest.created", "git.pullrequest.updated", "git.pullrequest.merged",
                  "ms.vss-code.git-pullrequest-comment-event", "git.push"}
MASK = "*" * 8  # how Azure DevOps shows a confidential input
DBT_EVENT_TYPES = {"job.run.started", "job.run.completed", "job.run.errored"}


def create_administration_blueprint(world: World, identity: IdentityState) -> Blueprint:
    bp = Blueprint("sandbox-administration", __name__)

    def who() -> dict | None:
        return bearer_identity(identity)

    def denied(action: str):
        caller = who()
        name = caller["upn"] if caller else "this identity"
        return ado_error(403, f"Access denied. {name} needs {action} permissions to perform the action. "
                              "For more information, contact the Azure DevOps Server administrator.",
                         "UnauthorizedRequestException")

    # -- projects and repositories ---------------------------------------------------------------------

    @bp.get("/<org>/_apis/projects")
    def projects(org):
        with world.lock:
            visible = sorted((p for p in world.projects.values()
                              if p["org"] == org and world.sees_project(who(), org, p)), key=lambda p: p["name"])
        top = request.args.get("$top", 100, type=int)
        start = request.args.get("continuationToken", type=int) or request.args.get("$skip", 0, type=int)
        page = visible[start:start + top]
        more = str(start + top) if start + top < len(visible) else None
        return listing([{k: p[k] for k in ("id", "name", "url", "state", "revision", "visibility")} | {
            "lastUpdateTime": now_iso()} for p in page], continuation=more)

    @bp.get("/<org>/<project>/_apis/git/repositories")
    def repositories(org, project):
        with world.lock:
            found = world.find_project(org, project)
            if found is None or not world.sees_project(who(), org, found):
                return ado_error(404, f"TF200016: The following project does not exist: {project}. Verify that "
                                      "the name of the project is correct and that the project exists on the "
                                      "specified Azure DevOps Server.", "ProjectDoesNotExistWithNameException")
            repos = sorted((world.repo_json(r) for r in world.repos.values()
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
            allowed = name is not None and world.allowed(caller, org, name, project_id)
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
        return world.find_project(org, (body.get("publisherInputs") or {}).get("projectId", ""))

    @bp.get("/<org>/_apis/hooks/subscriptions")
    def list_subscriptions(org):
        with world.lock:
            hooks = [h for h in world.hooks if h["org"] == org]
            wanted = {k: request.args.get(k) for k in ("publisherId", "eventType", "consumerId", "consumerActionId")}
            caller = who()
            answer = []
            for hook in hooks:
                shown = world.hook_json(hook)
                if any(v and shown.get(k) != v for k, v in wanted.items()):
                    continue
                if caller is not None and not world.allowed(caller, org, "ViewSubscriptions", hook["project_id"]):
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
            if not world.allowed(who(), org, "EditSubscriptions", project["id"]):
                return denied("Edit subscriptions")
            consumer = dict(body.get("consumerInputs") or {})
            publisher = dict(body.get("publisherInputs") or {})
            caller = who()
            hook = world.add_hook(org, url=consumer.pop("url"), username=consumer.pop("basicAuthUsername", ""),
                                  password=consumer.pop("basicAuthPassword", ""), event_type=body["eventType"],
                                  project_id=publisher.pop("projectId"), repository=publisher.pop("repository", None),
                                  created_by=caller["oid"] if caller else "pat",
                                  resource_version=body.get("resourceVersion"), consumer_inputs=consumer,
                                  publisher_inputs=publisher)
            return jsonify(world.hook_json(hook))

    @bp.route("/<org>/_apis/hooks/subscriptions/<subscription_id>", methods=["GET", "PUT", "DELETE"])
    def one_subscription(org, subscription_id):
        with world.lock:
            hook = world.find_hook(org, subscription_id)
            if hook is None:
                return ado_error(404, f"Subscription {subscription_id} does not exist.",
                                 "SubscriptionNotFoundException")
            if request.method == "GET":
                if not world.allowed(who(), org, "ViewSubscriptions", hook["project_id"]):
                    return denied("View subscriptions")
                return jsonify(world.hook_json(hook))
            if request.method == "DELETE":
                if not world.allowed(who(), org, "DeleteSubscriptions", hook["project_id"]):
                    return denied("Delete subscriptions")
                world.hooks.remove(hook)
                return "", 204
            body = request.get_json(silent=True)
            problem = check_subscription(body)
            if problem:
                return ado_error(400, problem)
            if not world.allowed(who(), org, "EditSubscriptions", hook["project_id"]):
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
            return jsonify(world.hook_json(hook))

    # -- branch policies ------------------------------------------------------------------------------------

    @bp.route("/<org>/<project>/_apis/policy/configurations", methods=["GET", "POST"])
    def policies(org, project):
        with world.lock:
            found = world.find_project(org, project)
            if found is None or not world.sees_project(who(), org, found):
                return ado_error(404, f"TF200016: The following project does not exist: {project}.",
                                 "ProjectDoesNotExistWithNameException")
            if request.method == "GET":
                wanted = request.args.get("policyType")
                return listing([world.policy_json(p) for p in world.policies.values()
                                if p["project_id"] == found["id"] and (not wanted or p["type"]["id"] == wanted)])
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not (body.get("type") or {}).get("id") or not isinstance(
                    body.get("settings"), dict):
                return ado_error(400, "A policy configuration needs a type and settings.")
            scopes = body["settings"].get("scope") or []
            if not scopes or not all(sc.get("repositoryId") for sc in scopes):
                return ado_error(400, "The policy scope must name a repository.")
            if not world.allowed(who(), org, "EditPolicies", found["id"]):
                return denied("Edit policies")
            caller = who()
            policy = world.add_policy(org, found["id"], body, caller["oid"] if caller else "pat")
            return jsonify(world.policy_json(policy))

    @bp.route("/<org>/<project>/_apis/policy/configurations/<int:configuration_id>", methods=["GET", "DELETE"])
    def one_policy(org, project, configuration_id):
        with world.lock:
            found = world.find_project(org, project)
            policy = world.policies.get(configuration_id)
            if found is None or policy is None or policy["project_id"] != found["id"]:
                return ado_error(404, f"The policy configuration {configuration_id} does not exist.",
                                 "PolicyNotFoundException")
            if request.method == "GET":
                return jsonify(world.policy_json(policy))
            if not world.allowed(who(), org, "EditPolicies", found["id"]):
                return denied("Edit policies")
            del world.policies[configuration_id]
            return "", 204

    # -- dbt Cloud: jobs (v2), projects and environments (v3) ----------------------------------------------

    @bp.route("/api/v2/accounts/<int:account_id>/jobs/", methods=["GET", "POST"])
    def jobs(account_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        if request.method == "POST":
            body = request.get_json(silent=True)
            required = ("account_id", "project_id", "environment_id", "name", "execute_steps", "settings",
                        "execution", "triggers", "state")
            missing = [k for k in required if not isinstance(body, dict) or body.get(k) in (None, "")]
            if missing:
                return dbt_error(400, f"Missing required fields: {', '.join(missing)}")
            if int(body["environment_id"]) not in world.dbt_environments:
                return dbt_error(400, "The environment does not exist.")
            return dbt_ok(world.job_json(world.add_job(body, account_id)), code=201)
        with world.lock:
            found = [j for j in world.jobs.values() if j.get("account_id", account_id) == account_id]
            for key in ("project_id", "environment_id"):
                value = request.args.get(key, type=int)
                if value:
                    found = [j for j in found if j[key] == value]
            offset, limit = request.args.get("offset", 0, type=int), min(request.args.get("limit", 100, type=int), 100)
            page = [world.job_json(j) for j in sorted(found, key=lambda j: j["id"])[offset:offset + limit]]
        return dbt_ok(page, {"filters": {}, "order_by": "id", "pagination": {"count": len(page),
                                                                           "total_count": len(found)}})

    @bp.get("/api/v2/accounts/<int:account_id>/jobs/<int:job_id>/")
    def job(account_id, job_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        found = world.jobs.get(job_id)
        if found is None or found.get("account_id", account_id) != account_id:
            return dbt_error(404, "Requested resource not found.")
        return dbt_ok(world.job_json(found))

    @bp.get("/api/v3/accounts/<int:account_id>/projects/")
    def dbt_projects(account_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        found = [world.dbt_project_json(p) for p in world.dbt_projects.values() if p["account_id"] == account_id]
        return dbt_ok(found, {"filters": {}, "order_by": "id", "pagination": {"count": len(found),
                                                                            "total_count": len(found)}})

    @bp.get("/api/v3/accounts/<int:account_id>/projects/<int:project_id>/environments/")
    def dbt_environments(account_id, project_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        found = [world.dbt_environment_json(e, account_id) for e in world.dbt_environments.values()
                 if e["project_id"] == project_id]
        return dbt_ok(found, {"filters": {}, "order_by": "id", "pagination": {"count": len(found),
                                                                            "total_count": len(found)}})

    # -- dbt Cloud: webhook subscriptions (v3) ---------------------------------------------------------------

    def check_webhook(body) -> str | None:
        if not isinstance(body, dict):
            return "The request body must be a JSON object."
        missing = [k for k in ("name", "client_url", "event_types", "active") if k not in body]
        if missing:
            return f"Missing required fields: {', '.join(missing)}"
        if not body["event_types"] or not set(body["event_types"]) <= DBT_EVENT_TYPES:
            return "event_types must be a non-empty list of job.run.started/completed/errored"
        return None

    @bp.route("/api/v3/accounts/<int:account_id>/webhooks/subscriptions", methods=["GET", "POST"])
    def webhooks(account_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        if request.method == "GET":
            with world.lock:
                found = [world.dbt_webhook_json(h) for h in world.dbt_webhooks if h["account_id"] == account_id]
            offset, limit = request.args.get("offset", 0, type=int), request.args.get("limit", 100, type=int)
            page = found[offset:offset + limit]
            return dbt_ok(page, {"filters": {"offset": offset, "limit": limit},
                                 "pagination": {"count": len(page), "total_count": len(found)}})
        body = request.get_json(silent=True)
        problem = check_webhook(body)
        if problem:
            return dbt_error(400, problem)
        hook = world.add_dbt_webhook(account_id, url=body["client_url"], job_ids=body.get("job_ids") or (),
                                     name=body["name"], event_types=body["event_types"], active=bool(body["active"]),
                                     description=body.get("description") or "")
        return dbt_ok(world.dbt_webhook_json(hook, with_secret=True), code=201)

    @bp.route("/api/v3/accounts/<int:account_id>/webhooks/subscription/<subscription_id>",
              methods=["GET", "PUT", "DELETE"])
    def one_webhook(account_id, subscription_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        with world.lock:
            hook = next((h for h in world.dbt_webhooks if h["id"] == subscription_id and
                         h["account_id"] == account_id), None)
            if hook is None:
                return dbt_error(404, "Requested resource not found.")
            if request.method == "GET":
                return dbt_ok(world.dbt_webhook_json(hook))
            if request.method == "DELETE":
                world.dbt_webhooks.remove(hook)
                return dbt_ok(world.dbt_webhook_json(hook))
            body = request.get_json(silent=True)
            problem = check_webhook(body)
            if problem:
                return dbt_error(400, problem)
            hook.update(url=body["client_url"], name=body["name"], event_types=list(body["event_types"]),
                        job_ids=[int(j) for j in body.get("job_ids") or []], active=bool(body["active"]),
                        description=body.get("description") or hook["description"], updated_at=now_iso())
            if hook["active"]:
                hook["failures"], hook["deactivate_reason"] = 0, None
            return dbt_ok(world.dbt_webhook_json(hook))

    return bp
