"""HTTP face of the sandbox: the Azure DevOps and dbt Cloud endpoints the bridge uses, plus a control API
under ``/_sandbox`` that plays the people (open PRs, push, publish, close, choose run outcomes, faults)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import socket
import struct
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, g, jsonify, request

from .administration import create_administration_blueprint
from .answers import ado_error, bearer_identity, dbt_auth, dbt_error, dbt_ok, listing
from .identity import IdentityState, create_identity_blueprint
from .world import DEFAULT_ORG, World, now_iso

ADO_PREFIX = re.compile(r"^/[^/_][^/]*/")


def create_sandbox_app(base_url: str) -> Flask:
    app = Flask("bridge-sandbox")
    world = World(base_url)
    app.extensions["world"] = world
    identity = IdentityState()
    app.extensions["identity"] = identity
    app.register_blueprint(create_identity_blueprint(identity))
    app.register_blueprint(create_administration_blueprint(world, identity))

    # -- plumbing: latency, faults, auth, the exchange log ------------------------------------------

    def service_of(path: str) -> str | None:
        if path.startswith(("/api/v2/", "/api/v3/")):
            return "dbt"
        if "/_apis/" in path:
            return "ado"
        return None

    @app.before_request
    def _before():
        g.started = time.time()
        service = service_of(request.path)
        g.service = service
        if service is None:
            return None
        if world.latency:
            time.sleep(world.latency)
        fault = world.take_fault(service, request.method, request.path)
        if fault is not None:
            answer = fault_response(service, fault)
            if answer is not None:
                return answer
        if service == "ado" and not _ado_authorized(world, identity):
            return jsonify({"message": "TF400813: The user is not authorized to access this resource.",
                            "typeKey": "UnauthorizedRequestException"}), 401
        return None

    def fault_response(service: str, fault) -> Response | None:
        """The faulty answer; None lets the request through (a pure delay)."""
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status == 0:
            return None
        if fault.status == -1:  # connection reset: close the socket under the client
            sock = request.environ.get("werkzeug.socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
            return Response(status=500)
        if fault.status == -2:  # an HTML page instead of JSON (seen from dbt Cloud's API)
            return Response("<html><body>Service temporarily unavailable</body></html>", status=200,
                            mimetype="text/html")
        body = fault.body or ({"message": f"sandbox fault {fault.status}", "typeKey": "SandboxFault"}
                              if service == "ado" else
                              {"status": {"code": fault.status, "is_success": False,
                                          "user_message": "sandbox fault", "developer_message": ""},
                               "data": None})
        response = jsonify(body)
        response.status_code = fault.status
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(int(fault.retry_after))
        return response

    @app.after_request
    def _after(response: Response):
        if g.get("service"):
            fault = world.take_fault(g.service, request.method, request.path, after=True)
            if fault is not None:
                response = fault_response(g.service, fault) or response
            try:
                req_body = request.get_json(silent=True)
            except Exception:
                req_body = None
            try:
                resp_body = json.loads(response.get_data()) if response.is_json else None
            except ValueError:
                resp_body = None
            world.log_exchange({"at": g.started, "service": g.service, "method": request.method, "path": request.path,
                                "as": _acting_as(identity),
                                "query": request.args.to_dict(flat=False), "body": req_body,
                                "status": response.status_code, "response": resp_body,
                                "elapsed": time.time() - g.started})
        return response

    # -- Azure DevOps ----------------------------------------------------------------------------------

    def repo_or_404(org: str, project: str, repository: str):
        repo = world.find_repo(org, project, repository)
        if repo is None:
            return None, ado_error(404, f"TF401019: The Git repository with name or identifier {repository} "
                                        "does not exist or you do not have permissions for the operation "
                                        "you are attempting.", "GitRepositoryNotFoundException")
        return repo, None

    def pr_or_404(repo: dict, pr_id: int):
        pr = world.prs.get(pr_id)
        if pr is None or pr["repository_id"] != repo["id"]:
            return None, ado_error(404, "TF401180: The requested pull request was not found.",
                                   "GitPullRequestNotFoundException")
        return pr, None

    def find_pr(org: str, project: str, repository: str, pr_id: int):
        """(pull request, None) or (None, the 404 answer)."""
        repo, error = repo_or_404(org, project, repository)
        return (None, error) if error else pr_or_404(repo, pr_id)

    @app.get("/<org>/<project>/_apis/git/repositories/<repository>")
    def ado_get_repository(org, project, repository):
        with world.lock:
            repo, error = repo_or_404(org, project, repository)
            return error or jsonify(world.repo_json(repo))

    @app.get("/<org>/<project>/_apis/git/repositories/<repository>/pullrequests/<int:pr_id>")
    def ado_get_pr(org, project, repository, pr_id):
        with world.lock:
            pr, error = find_pr(org, project, repository, pr_id)
            return error or jsonify(world.pr_json(pr))

    @app.get("/<org>/<project>/_apis/git/repositories/<repository>/pullrequests")
    def ado_list_prs(org, project, repository):
        with world.lock:
            repo, error = repo_or_404(org, project, repository)
            if error:
                return error
            status = request.args.get("searchCriteria.status", "active")
            prs = [world.pr_json(p) for p in world.prs.values()
                   if p["repository_id"] == repo["id"] and (status == "all" or p["status"] == status)]
            skip, top = int(request.args.get("$skip", 0)), int(request.args.get("$top", 100))
            return listing(prs[skip:skip + top])

    @app.get("/<org>/<project>/_apis/git/repositories/<repository>/pullRequests/<int:pr_id>/iterations")
    def ado_iterations(org, project, repository, pr_id):
        with world.lock:
            _, error = find_pr(org, project, repository, pr_id)
            return error or listing(world.iterations[pr_id])

    @app.route("/<org>/<project>/_apis/git/repositories/<repository>/pullRequests/<int:pr_id>/statuses",
               methods=["GET", "POST"])
    def ado_statuses(org, project, repository, pr_id):
        with world.lock:
            _, error = find_pr(org, project, repository, pr_id)
            if error or request.method == "GET":
                return error or listing(world.statuses[pr_id])
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not (body.get("context") or {}).get("name"):
                return ado_error(400, "The status context name is required.")
            iteration_id = body.get("iterationId")
            known = {it["id"] for it in world.iterations[pr_id]}
            if iteration_id is None and world.require_iteration_status:
                return ado_error(403, "Pull request status rejected by status policy. Policy configuration "
                                      "requires status to be posted on iteration.",
                                 "GitPullRequestStatusRejectedByPolicyException")
            if iteration_id is not None and iteration_id not in known:
                return ado_error(400, f"Iteration {iteration_id} does not exist.")
            if body.get("state") not in (None, "notSet", "pending", "succeeded", "failed", "error",
                                         "notApplicable"):
                return ado_error(400, "Invalid status state.")
            status = {"id": world._next_status, "state": body.get("state", "notSet"),
                      "description": body.get("description", ""), "context": body["context"],
                      "creationDate": now_iso(), "updatedDate": now_iso(),
                      "createdBy": {"displayName": "bridge", "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, "bridge"))}}
            if body.get("targetUrl"):
                status["targetUrl"] = body["targetUrl"]
            if iteration_id is not None:
                status["iterationId"] = iteration_id
            world._next_status += 1
            world.statuses[pr_id].append(status)
            return jsonify(status)

    @app.route("/<org>/<project>/_apis/git/repositories/<repository>/pullRequests/<int:pr_id>/threads",
               methods=["GET", "POST"])
    def ado_threads(org, project, repository, pr_id):
        with world.lock:
            _, error = find_pr(org, project, repository, pr_id)
            if error or request.method == "GET":
                return error or listing(world.threads[pr_id])
            body = request.get_json(silent=True)
            comments = (body or {}).get("comments") if isinstance(body, dict) else None
            if not comments or not isinstance(comments, list) or not comments[0].get("content"):
                return ado_error(400, "Thread must contain at least one comment.")
            thread = world.add_thread(pr_id, comments[0]["content"], author="bridge",
                                      status=body.get("status", "active"))
            return jsonify(thread)

    # -- who am I and where (app.vssps.visualstudio.com, served under /vssps) ---------------------------

    @app.get("/vssps/_apis/profile/profiles/<profile_id>")
    def ado_profile(profile_id):
        who = bearer_identity(identity)
        if who is None:
            return ado_error(401, "TF400813: The user is not authorized to access this resource.",
                             "UnauthorizedRequestException")
        if profile_id not in ("me", who["oid"]):
            return ado_error(404, "Profile not found.", "ProfileNotFoundException")
        return jsonify({"id": who["oid"], "displayName": who["upn"].split("@")[0], "publicAlias": who["oid"],
                        "emailAddress": who["upn"], "coreRevision": 1, "timeStamp": now_iso(), "revision": 1})

    @app.get("/vssps/_apis/accounts")
    def ado_accounts():
        who = bearer_identity(identity)
        if who is None:
            return ado_error(401, "TF400813: The user is not authorized to access this resource.",
                             "UnauthorizedRequestException")
        if request.args.get("memberId") not in (who["oid"],) and not request.args.get("ownerId"):
            return ado_error(400, "One of the following parameters is required: ownerId, memberId.")
        orgs = sorted({p["org"] for p in world.projects.values() if world.access_of(who, p["org"]) is not None})
        return listing([{"accountId": str(uuid.uuid5(uuid.NAMESPACE_URL, org)), "accountName": org,
                         "accountUri": f"{world.base_url}/{org}/", "organizationName": org} for org in orgs])

    # -- dbt Cloud ---------------------------------------------------------------------------------

    @app.post("/api/v2/accounts/<int:account_id>/jobs/<int:job_id>/run/")
    def dbt_trigger(account_id, job_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not body.get("cause"):
            return dbt_error(400, "The request was invalid. Please double check the provided data and try again.")
        if body.get("git_sha") and body.get("git_branch"):
            return dbt_error(400, "git_branch and git_sha cannot both be specified")
        if job_id not in world.jobs:
            return dbt_error(404, "Requested resource not found.")
        run = world.trigger(account_id, job_id, body)
        return dbt_ok(world.run_json(run))

    @app.get("/api/v2/accounts/<int:account_id>/runs/<int:run_id>/")
    def dbt_get_run(account_id, run_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        run = world.runs.get(run_id)
        if run is None or run.account_id != account_id:
            return dbt_error(404, "Requested resource not found.")
        return dbt_ok(world.run_json(run, include_trigger="trigger" in request.args.get("include_related", "")))

    @app.post("/api/v2/accounts/<int:account_id>/runs/<int:run_id>/cancel/")
    def dbt_cancel(account_id, run_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        if run_id not in world.runs or world.runs[run_id].account_id != account_id:
            return dbt_error(404, "Requested resource not found.")
        return dbt_ok(world.run_json(world.cancel(run_id)))

    @app.get("/api/v2/accounts/<int:account_id>/runs/")
    def dbt_list_runs(account_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        with world.lock:
            runs = [r for r in world.runs.values() if r.account_id == account_id]
            job = request.args.get("job_definition_id", type=int)
            if job:
                runs = [r for r in runs if r.job_id == job]
            wanted = {int(s) for s in request.args.getlist("status__in") if s.isdigit()}
            t = time.time()
            if wanted:
                runs = [r for r in runs if r.status_at(t) in wanted]
            order = request.args.get("order_by", "id")
            runs.sort(key=lambda r: r.id, reverse=order.startswith("-"))
            offset, limit = request.args.get("offset", 0, type=int), min(request.args.get("limit", 100, type=int), 100)
            page = runs[offset:offset + limit]
            with_trigger = "trigger" in request.args.get("include_related", "")
            data = [world.run_json(r, include_trigger=with_trigger) for r in page]
        return dbt_ok(data, {"filters": {}, "order_by": order,
                             "pagination": {"count": len(data), "total_count": len(runs)}})

    @app.get("/deploy/<int:account_id>/projects/<int:project_id>/runs/<int:run_id>/")
    def dbt_run_page(account_id, project_id, run_id):
        run = world.runs.get(run_id)
        if run is None:
            return "no such run", 404
        body = world.run_json(run, include_trigger=True)
        return (f"<html><body><h1>dbt Cloud (sandbox) run {run_id}</h1><p>{body['status_humanized']}</p>"
                f"<pre>{json.dumps(body, indent=2)}</pre></body></html>")

    # -- control API -------------------------------------------------------------------------------

    @app.post("/_sandbox/setup")
    def control_setup():
        body = request.get_json(force=True)
        with world.lock:
            if "pat" in body:
                world.pats = {body["pat"]}
            if "dbt_token" in body:
                world.dbt_tokens = {int(k): v for k, v in (body["dbt_token"] or {}).items()}
            if "hooks" in body:
                world.hooks = []
                for h in body["hooks"]:
                    world.add_hook(h["org"], url=h["url"], username=h.get("username", ""),
                                   password=h.get("password", ""), event_type=h.get("event_type"),
                                   subscription_id=h.get("subscription_id"))
            if "dbt_webhooks" in body:
                world.dbt_webhooks = []
                for h in body["dbt_webhooks"]:
                    world.add_dbt_webhook(int(h["account_id"]), url=h["url"], secret=h.get("secret"),
                                          job_ids=h.get("job_ids") or (), webhook_id=h.get("id"))
            if "latency_ms" in body:
                world.latency = float(body["latency_ms"]) / 1000
            if "run_defaults" in body:
                world.run_defaults.update(body["run_defaults"])
            if "delivery_backoff" in body:
                world.delivery_backoff = float(body["delivery_backoff"])
            if "org_tenants" in body:
                world.org_tenants = dict(body["org_tenants"] or {})
            if "members" in body:
                world.members = dict(body["members"] or {})
            if "require_iteration_status" in body:
                world.require_iteration_status = bool(body["require_iteration_status"])
        return jsonify({"ok": True})

    @app.post("/_sandbox/hooks/<subscription_id>/status")
    def control_hook_status(subscription_id):
        """Play Azure DevOps' own verdicts on a subscription (disabledBySystem after probation, the creator
        left: disabledByInactiveIdentity)."""
        status = request.get_json(force=True)["status"]
        with world.lock:
            hook = next((h for h in world.hooks if h["subscription_id"] == subscription_id), None)
            if hook is None:
                return jsonify({"error": "no such subscription"}), 404
            hook["status"] = status
        return jsonify({"ok": True})

    @app.get("/_sandbox/hooks")
    def control_hooks():
        with world.lock:
            return jsonify([{**world.hook_json(h), "password": h["password"]} for h in world.hooks])

    @app.get("/_sandbox/dbt-webhooks")
    def control_dbt_webhooks():
        with world.lock:
            return jsonify([dict(h) for h in world.dbt_webhooks])

    @app.post("/_sandbox/dbt-webhooks/<webhook_id>/deactivate")
    def control_dbt_webhook_deactivate(webhook_id):
        with world.lock:
            hook = next((h for h in world.dbt_webhooks if h["id"] == webhook_id), None)
            if hook is None:
                return jsonify({"error": "no such webhook"}), 404
            hook["active"], hook["deactivate_reason"] = False, "deactivated after 5 consecutive failed deliveries"
        return jsonify({"ok": True})

    @app.get("/_sandbox/policies")
    def control_policies():
        with world.lock:
            return jsonify([world.policy_json(p) for p in world.policies.values()])

    @app.post("/_sandbox/repos")
    def control_repo():
        body = request.get_json(force=True)
        org = body.get("org", DEFAULT_ORG)
        project = world.find_project(org, body["project"]) or world.add_project(org, str(uuid.uuid4()),
                                                                                body["project"])
        repo = world.add_repo(org, project["id"], body.get("id") or str(uuid.uuid4()), body["name"])
        repo["disabled"] = bool(body.get("disabled"))
        return jsonify(world.repo_json(repo))

    def deliver(event: dict) -> dict:
        if request.get_json(silent=True, force=True) and request.get_json(force=True).get("deliver") is False:
            return {"event_id": event["id"], "delivered": []}
        return {"event_id": event["id"], "delivered": world.deliver_event(event["id"])}

    @app.post("/_sandbox/prs")
    def control_open_pr():
        body = request.get_json(force=True)
        try:
            pr = world.open_pr(body.get("org", DEFAULT_ORG), body.get("repository", "dbt-analytics"),
                               source=body.get("source", "feature/x"), target=body.get("target", "main"),
                               title=body.get("title", "A change"), draft=bool(body.get("draft", False)))
        except KeyError as exc:
            return jsonify({"error": str(exc)}), 404
        event = world.pr_event(pr["id"], "git.pullrequest.created",
                               f"Ada Developer created pull request {pr['id']} ({pr['title']})")
        return jsonify({"pr": pr["id"], "head": pr["head"], **deliver(event)})

    @app.post("/_sandbox/prs/<int:pr_id>/<action>")
    def control_pr_action(pr_id, action):
        if pr_id not in world.prs:
            return jsonify({"error": f"no PR {pr_id}"}), 404
        body = request.get_json(silent=True, force=True) or {}
        event_type, text, comment = "git.pullrequest.updated", "", None
        if action == "push":
            pr = world.push(pr_id)
            text = f"Ada Developer updated the source branch of pull request {pr_id}"
        elif action == "publish":
            pr = world.set_pr(pr_id, draft=False)
            text = f"Ada Developer published pull request {pr_id}"
        elif action == "draft":
            pr = world.set_pr(pr_id, draft=True)
            text = f"Ada Developer marked pull request {pr_id} as a draft"
        elif action == "retarget":
            pr = world.set_pr(pr_id, target=body.get("target", "refs/heads/main"))
            text = f"Ada Developer changed the target branch of pull request {pr_id}"
        elif action == "abandon":
            pr = world.set_pr(pr_id, status="abandoned")
            text = f"Ada Developer abandoned pull request {pr_id}"
        elif action == "complete":
            blocking = world.blocking_statuses(pr_id)
            if blocking:  # what Azure DevOps' "Complete" button does under a required status policy
                return jsonify({"error": "the branch policy requires a succeeded status", "blocking": blocking}), 409
            pr = world.set_pr(pr_id, status="completed")
            event_type, text = "git.pullrequest.merged", f"Ada Developer completed pull request {pr_id}"
        elif action == "conflict":
            pr = world.set_pr(pr_id, merge_status="conflicts")
            event_type, text = "git.pullrequest.merged", f"Merge attempted  for pull request {pr_id}"
        elif action == "comment":
            pr = world.prs[pr_id]
            event_type, comment = "ms.vss-code.git-pullrequest-comment-event", body.get("content", "")
            text = f"Ada Developer has commented on pull request {pr_id}"
        elif action == "vote":
            pr = world.prs[pr_id]
            text = f"Ada Developer approved pull request {pr_id}"
        elif action == "delete":
            event = world.pr_event(pr_id, "git.pullrequest.updated", f"Pull request {pr_id} was deleted")
            with world.lock:
                pr = world.prs.pop(pr_id)
            return jsonify({"pr": pr_id, "head": pr["head"], **deliver(event)})
        else:
            return jsonify({"error": f"unknown action {action}"}), 404
        event = world.pr_event(pr_id, event_type, text, comment=comment)
        return jsonify({"pr": pr_id, "head": pr["head"], **deliver(event)})

    @app.post("/_sandbox/events/<event_id>/deliver")
    def control_redeliver(event_id):
        if event_id not in world.events:
            return jsonify({"error": "no such event"}), 404
        return jsonify({"event_id": event_id, "delivered": world.deliver_event(event_id)})

    @app.get("/_sandbox/events")
    def control_events():
        """Every event made so far, as Azure DevOps would deliver it (for load generators)."""
        with world.lock:
            return jsonify([{k: v for k, v in e.items() if k != "org"} for e in world.events.values()])

    @app.get("/_sandbox/events/<event_id>")
    def control_event(event_id):
        event = world.events.get(event_id)
        return (jsonify({k: v for k, v in event.items() if k != "org"}) if event else
                (jsonify({"error": "no such event"}), 404))

    @app.get("/_sandbox/prs/<int:pr_id>")
    def control_show_pr(pr_id):
        with world.lock:
            if pr_id not in world.prs:
                return jsonify({"error": f"no PR {pr_id}"}), 404
            return jsonify({"pr": world.pr_json(world.prs[pr_id]), "iterations": world.iterations[pr_id],
                            "statuses": world.statuses[pr_id]})

    @app.post("/_sandbox/outcomes")
    def control_outcome():
        body = request.get_json(force=True)
        key = body.get("sha") or (f"job:{body['job_id']}" if body.get("job_id") else None)
        if not key:
            return jsonify({"error": "give sha or job_id"}), 400
        with world.lock:
            world.outcomes[key] = {k: body[k] for k in ("outcome", "seconds", "queued", "message") if k in body}
        return jsonify({"ok": True})

    @app.post("/_sandbox/runs/<int:run_id>/cancel")
    def control_cancel(run_id):
        if run_id not in world.runs:
            return jsonify({"error": "no such run"}), 404
        return jsonify(world.run_json(world.cancel(run_id, "Cancelled by Dana in dbt Cloud.")))

    @app.get("/_sandbox/runs")
    def control_runs():
        with world.lock:
            return jsonify([world.run_json(r, include_trigger=True) for r in world.runs.values()])

    @app.post("/_sandbox/faults")
    def control_fault():
        from .world import Fault

        body = request.get_json(force=True)
        with world.lock:
            if body.get("clear"):
                world.faults.clear()
                return jsonify({"ok": True})
            world.faults.append(Fault(service=body["service"], method=body.get("method", "*"),
                                      path=re.compile(body.get("path", ".*")), status=int(body["status"]),
                                      times=int(body.get("times", 1)), retry_after=body.get("retry_after"),
                                      body=body.get("body"), delay=float(body.get("delay", 0)),
                                      after=bool(body.get("after", False))))
        return jsonify({"ok": True})

    @app.get("/_sandbox/exchanges")
    def control_exchanges():
        since = request.args.get("since", 0, type=int)
        with world.lock:
            return jsonify(world.exchanges[since:])

    @app.get("/_sandbox/deliveries")
    def control_deliveries():
        with world.lock:
            return jsonify(world.deliveries)

    @app.get("/_sandbox/health")
    def control_health():
        return jsonify({"ok": True, "time": datetime.now(UTC).isoformat()})

    world.start()
    return app


def _acting_as(identity: IdentityState) -> str:
    """Who a request acted as, for the exchange log: "pat", "token" (dbt), "user:<oid>" or "anonymous"."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        who = identity.who(value)
        return f"user:{who['oid']}" if who else "bearer:invalid"
    return {"basic": "pat", "token": "token"}.get(scheme.lower(), "anonymous")


def _ado_authorized(world: World, identity: IdentityState) -> bool:
    """A PAT (Basic, any user name) or an Entra access token from the fake identity platform (Bearer)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        who = identity.who(value)
        if who is None:
            return False
        org = request.path.strip("/").split("/", 1)[0]
        return org == "vssps" or world.access_of(who, org) is not None  # a token of another tenant: 401
    if scheme.lower() != "basic":
        return False
    try:
        _, _, token = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return token in world.pats
