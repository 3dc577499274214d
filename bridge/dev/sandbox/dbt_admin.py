"""The sandbox's dbt Cloud administration APIs that onboarding uses: jobs (v2), projects, environments and
webhook subscriptions (v3), in the shapes of the official OpenAPI spec."""

from __future__ import annotations

from flask import Blueprint, request

from .answers import dbt_auth, dbt_error, dbt_ok
from .values import now_iso
from .world import World

DBT_EVENT_TYPES = {"job.run.started", "job.run.completed", "job.run.errored"}


def create_dbt_admin_blueprint(world: World) -> Blueprint:
    bp = Blueprint("sandbox-dbt-admin", __name__)

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
            if int(body["environment_id"]) not in world.dbt.environments:
                return dbt_error(400, "The environment does not exist.")
            return dbt_ok(world.dbt.job_json(world.dbt.add_job(body, account_id)), code=201)
        with world.lock:
            found = [j for j in world.dbt.jobs.values() if j.get("account_id", account_id) == account_id]
            for key in ("project_id", "environment_id"):
                value = request.args.get(key, type=int)
                if value:
                    found = [j for j in found if j[key] == value]
            offset, limit = request.args.get("offset", 0, type=int), min(request.args.get("limit", 100, type=int), 100)
            page = [world.dbt.job_json(j) for j in sorted(found, key=lambda j: j["id"])[offset:offset + limit]]
        return dbt_ok(page, {"filters": {}, "order_by": "id", "pagination": {"count": len(page),
                                                                           "total_count": len(found)}})

    @bp.get("/api/v2/accounts/<int:account_id>/jobs/<int:job_id>/")
    def job(account_id, job_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        found = world.dbt.jobs.get(job_id)
        if found is None or found.get("account_id", account_id) != account_id:
            return dbt_error(404, "Requested resource not found.")
        return dbt_ok(world.dbt.job_json(found))

    @bp.get("/api/v3/accounts/<int:account_id>/projects/")
    def dbt_projects(account_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        found = [world.dbt.project_json(p) for p in world.dbt.projects.values() if p["account_id"] == account_id]
        return dbt_ok(found, {"filters": {}, "order_by": "id", "pagination": {"count": len(found),
                                                                            "total_count": len(found)}})

    @bp.get("/api/v3/accounts/<int:account_id>/projects/<int:project_id>/environments/")
    def dbt_environments(account_id, project_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        found = [world.dbt.environment_json(e, account_id) for e in world.dbt.environments.values()
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
                found = [world.dbt.webhook_json(h) for h in world.dbt.webhooks if h["account_id"] == account_id]
            offset, limit = request.args.get("offset", 0, type=int), request.args.get("limit", 100, type=int)
            page = found[offset:offset + limit]
            return dbt_ok(page, {"filters": {"offset": offset, "limit": limit},
                                 "pagination": {"count": len(page), "total_count": len(found)}})
        body = request.get_json(silent=True)
        problem = check_webhook(body)
        if problem:
            return dbt_error(400, problem)
        hook = world.dbt.add_webhook(account_id, url=body["client_url"], job_ids=body.get("job_ids") or (),
                                     name=body["name"], event_types=body["event_types"], active=bool(body["active"]),
                                     description=body.get("description") or "")
        return dbt_ok(world.dbt.webhook_json(hook, with_secret=True), code=201)

    @bp.route("/api/v3/accounts/<int:account_id>/webhooks/subscription/<subscription_id>",
              methods=["GET", "PUT", "DELETE"])
    def one_webhook(account_id, subscription_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        with world.lock:
            hook = next((h for h in world.dbt.webhooks if h["id"] == subscription_id and
                         h["account_id"] == account_id), None)
            if hook is None:
                return dbt_error(404, "Requested resource not found.")
            if request.method == "GET":
                return dbt_ok(world.dbt.webhook_json(hook))
            if request.method == "DELETE":
                world.dbt.webhooks.remove(hook)
                return dbt_ok(world.dbt.webhook_json(hook))
            body = request.get_json(silent=True)
            problem = check_webhook(body)
            if problem:
                return dbt_error(400, problem)
            hook.update(url=body["client_url"], name=body["name"], event_types=list(body["event_types"]),
                        job_ids=[int(j) for j in body.get("job_ids") or []], active=bool(body["active"]),
                        description=body.get("description") or hook["description"], updated_at=now_iso())
            if hook["active"]:
                hook["failures"], hook["deactivate_reason"] = 0, None
            return dbt_ok(world.dbt.webhook_json(hook))

    return bp
