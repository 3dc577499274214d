"""The sandbox's control API under ``/_sandbox``: it plays the people (open PRs, push, publish, comment,
close), chooses run outcomes, injects faults, and shows what was exchanged and delivered. ``control.py`` is its
client."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from flask import Blueprint, jsonify, request

from .ado_state import DEFAULT_ORG
from .world import Fault, World


def create_control_blueprint(world: World) -> Blueprint:
    bp = Blueprint("sandbox-control", __name__)

    # An incoming webhook of a chat (Slack answers "ok"; Teams' workflows 202): what the bridge posts is kept.
    @bp.post("/_sandbox/chat/<name>")
    def chat_post(name):
        with world.lock:
            if world.chat_failures.get(name, 0) > 0:
                world.chat_failures[name] -= 1
                return "internal error", 500
            world.chat.setdefault(name, []).append(request.get_json(force=True))
        return "ok", 200, {"Content-Type": "text/plain"}

    @bp.get("/_sandbox/chat/<name>")
    def chat_messages(name):
        with world.lock:
            return jsonify(world.chat.get(name, []))

    @bp.post("/_sandbox/chat/<name>/fail")
    def chat_fail(name):
        with world.lock:
            world.chat_failures[name] = int((request.get_json(force=True) or {}).get("times", 1))
        return jsonify({"failing": world.chat_failures[name]})

    @bp.post("/_sandbox/setup")
    def control_setup():
        body = request.get_json(force=True)
        with world.lock:
            if "pat" in body:
                world.ado.pats = {body["pat"]}
            if "dbt_token" in body:
                world.dbt.tokens = {int(k): v for k, v in (body["dbt_token"] or {}).items()}
            if "hooks" in body:
                world.ado.hooks = []
                for h in body["hooks"]:
                    world.ado.add_hook(h["org"], url=h["url"], username=h.get("username", ""),
                                   password=h.get("password", ""), event_type=h.get("event_type"),
                                   subscription_id=h.get("subscription_id"))
            if "dbt_webhooks" in body:
                world.dbt.webhooks = []
                for h in body["dbt_webhooks"]:
                    world.dbt.add_webhook(int(h["account_id"]), url=h["url"], secret=h.get("secret"),
                                          job_ids=h.get("job_ids") or (), webhook_id=h.get("id"))
            if "latency_ms" in body:
                world.latency = float(body["latency_ms"]) / 1000
            if "run_defaults" in body:
                world.dbt.run_defaults.update(body["run_defaults"])
            if "delivery_backoff" in body:
                world.delivery_backoff = float(body["delivery_backoff"])
            if "org_tenants" in body:
                world.ado.org_tenants = dict(body["org_tenants"] or {})
            if "members" in body:
                world.ado.members = dict(body["members"] or {})
            if "servers" in body:  # collection → newest REST API version (Server 2022: 7.0, Server 2020: 6.0)
                world.ado.servers = dict(body["servers"] or {})
            if "require_iteration_status" in body:
                world.ado.require_iteration_status = bool(body["require_iteration_status"])
        return jsonify({"ok": True})

    @bp.post("/_sandbox/hooks/<subscription_id>/status")
    def control_hook_status(subscription_id):
        """Play Azure DevOps' own verdicts on a subscription (disabledBySystem after probation, the creator
        left: disabledByInactiveIdentity)."""
        status = request.get_json(force=True)["status"]
        with world.lock:
            hook = next((h for h in world.ado.hooks if h["subscription_id"] == subscription_id), None)
            if hook is None:
                return jsonify({"error": "no such subscription"}), 404
            hook["status"] = status
        return jsonify({"ok": True})

    @bp.get("/_sandbox/hooks")
    def control_hooks():
        with world.lock:
            return jsonify([{**world.ado.hook_json(h), "password": h["password"]} for h in world.ado.hooks])

    @bp.get("/_sandbox/dbt-webhooks")
    def control_dbt_webhooks():
        with world.lock:
            return jsonify([dict(h) for h in world.dbt.webhooks])

    @bp.post("/_sandbox/dbt-webhooks/<webhook_id>/deactivate")
    def control_dbt_webhook_deactivate(webhook_id):
        with world.lock:
            hook = next((h for h in world.dbt.webhooks if h["id"] == webhook_id), None)
            if hook is None:
                return jsonify({"error": "no such webhook"}), 404
            hook["active"], hook["deactivate_reason"] = False, "deactivated after 5 consecutive failed deliveries"
        return jsonify({"ok": True})

    @bp.get("/_sandbox/policies")
    def control_policies():
        with world.lock:
            return jsonify([world.ado.policy_json(p) for p in world.ado.policies.values()])

    @bp.post("/_sandbox/repos")
    def control_repo():
        body = request.get_json(force=True)
        org = body.get("org", DEFAULT_ORG)
        with world.lock:  # find-or-add: two requests naming a new project make it once
            project = world.ado.find_project(org, body["project"]) or world.ado.add_project(
                org, str(uuid.uuid4()), body["project"])
            repo = world.ado.add_repo(org, project["id"], body.get("id") or str(uuid.uuid4()), body["name"])
            repo["disabled"] = bool(body.get("disabled"))
            return jsonify(world.ado.repo_json(repo))

    def deliver(event: dict) -> dict:
        if request.get_json(silent=True, force=True) and request.get_json(force=True).get("deliver") is False:
            return {"event_id": event["id"], "delivered": []}
        return {"event_id": event["id"], "delivered": world.deliver_event(event["id"])}

    @bp.post("/_sandbox/prs")
    def control_open_pr():
        body = request.get_json(force=True)
        try:
            pr = world.ado.open_pr(body.get("org", DEFAULT_ORG), body.get("repository", "dbt-analytics"),
                               source=body.get("source", "feature/x"), target=body.get("target", "main"),
                               title=body.get("title", "A change"), draft=bool(body.get("draft", False)))
        except KeyError as exc:
            return jsonify({"error": str(exc)}), 404
        event = world.ado.pr_event(pr["id"], "git.pullrequest.created",
                               f"Ada Developer created pull request {pr['id']} ({pr['title']})")
        return jsonify({"pr": pr["id"], "head": pr["head"], **deliver(event)})

    @bp.post("/_sandbox/prs/<int:pr_id>/<action>")
    def control_pr_action(pr_id, action):
        if pr_id not in world.ado.prs:
            return jsonify({"error": f"no PR {pr_id}"}), 404
        body = request.get_json(silent=True, force=True) or {}
        event_type, text, comment = "git.pullrequest.updated", "", None
        if action == "push":
            pr = world.ado.push(pr_id)
            text = f"Ada Developer updated the source branch of pull request {pr_id}"
        elif action == "publish":
            pr = world.ado.set_pr(pr_id, draft=False)
            text = f"Ada Developer published pull request {pr_id}"
        elif action == "draft":
            pr = world.ado.set_pr(pr_id, draft=True)
            text = f"Ada Developer marked pull request {pr_id} as a draft"
        elif action == "retarget":
            pr = world.ado.set_pr(pr_id, target=body.get("target", "refs/heads/main"))
            text = f"Ada Developer changed the target branch of pull request {pr_id}"
        elif action == "abandon":
            pr = world.ado.set_pr(pr_id, status="abandoned")
            text = f"Ada Developer abandoned pull request {pr_id}"
        elif action == "complete":
            blocking = world.ado.blocking_statuses(pr_id)
            if blocking:  # what Azure DevOps' "Complete" button does under a required status policy
                return jsonify({"error": "the branch policy requires a succeeded status", "blocking": blocking}), 409
            pr = world.ado.set_pr(pr_id, status="completed")
            event_type, text = "git.pullrequest.merged", f"Ada Developer completed pull request {pr_id}"
        elif action == "conflict":
            pr = world.ado.set_pr(pr_id, merge_status="conflicts")
            event_type, text = "git.pullrequest.merged", f"Merge attempted  for pull request {pr_id}"
        elif action == "comment":
            pr = world.ado.prs[pr_id]
            event_type, comment = "ms.vss-code.git-pullrequest-comment-event", body.get("content", "")
            text = f"Ada Developer has commented on pull request {pr_id}"
        elif action == "vote":
            pr = world.ado.prs[pr_id]
            text = f"Ada Developer approved pull request {pr_id}"
        elif action == "delete":
            event = world.ado.pr_event(pr_id, "git.pullrequest.updated", f"Pull request {pr_id} was deleted")
            with world.lock:
                pr = world.ado.prs.pop(pr_id)
            return jsonify({"pr": pr_id, "head": pr["head"], **deliver(event)})
        else:
            return jsonify({"error": f"unknown action {action}"}), 404
        event = world.ado.pr_event(pr_id, event_type, text, comment=comment)
        return jsonify({"pr": pr_id, "head": pr["head"], **deliver(event)})

    @bp.post("/_sandbox/events/<event_id>/deliver")
    def control_redeliver(event_id):
        if event_id not in world.ado.events:
            return jsonify({"error": "no such event"}), 404
        return jsonify({"event_id": event_id, "delivered": world.deliver_event(event_id)})

    @bp.get("/_sandbox/events")
    def control_events():
        """Every event made so far, as Azure DevOps would deliver it (for load generators)."""
        with world.lock:
            return jsonify([{k: v for k, v in e.items() if k != "org"} for e in world.ado.events.values()])

    @bp.get("/_sandbox/events/<event_id>")
    def control_event(event_id):
        event = world.ado.events.get(event_id)
        return (jsonify({k: v for k, v in event.items() if k != "org"}) if event else
                (jsonify({"error": "no such event"}), 404))

    @bp.get("/_sandbox/prs/<int:pr_id>")
    def control_show_pr(pr_id):
        with world.lock:
            if pr_id not in world.ado.prs:
                return jsonify({"error": f"no PR {pr_id}"}), 404
            return jsonify({"pr": world.ado.pr_json(world.ado.prs[pr_id]), "iterations": world.ado.iterations[pr_id],
                            "statuses": world.ado.statuses[pr_id], "threads": world.ado.threads[pr_id]})

    @bp.post("/_sandbox/outcomes")
    def control_outcome():
        body = request.get_json(force=True)
        key = body.get("sha") or (f"job:{body['job_id']}" if body.get("job_id") else None)
        if not key:
            return jsonify({"error": "give sha or job_id"}), 400
        with world.lock:
            world.dbt.outcomes[key] = {k: body[k] for k in ("outcome", "seconds", "queued", "message", "run_results")
                                       if k in body}
        return jsonify({"ok": True})

    @bp.post("/_sandbox/runs/<int:run_id>/cancel")
    def control_cancel(run_id):
        if run_id not in world.dbt.runs:
            return jsonify({"error": "no such run"}), 404
        return jsonify(world.dbt.run_json(world.dbt.cancel(run_id, "Cancelled by Dana in dbt Cloud.")))

    @bp.get("/_sandbox/runs")
    def control_runs():
        with world.lock:
            return jsonify([world.dbt.run_json(r, include_trigger=True) for r in world.dbt.runs.values()])

    @bp.post("/_sandbox/faults")
    def control_fault():
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

    @bp.get("/_sandbox/exchanges")
    def control_exchanges():
        since = request.args.get("since", 0, type=int)
        with world.lock:
            return jsonify(world.exchanges[since:])

    @bp.get("/_sandbox/deliveries")
    def control_deliveries():
        with world.lock:
            return jsonify(world.deliveries)

    @bp.get("/_sandbox/health")
    def control_health():
        return jsonify({"ok": True, "time": datetime.now(UTC).isoformat()})

    return bp
