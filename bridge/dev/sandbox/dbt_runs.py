"""The sandbox's dbt Cloud runs API (v2: trigger, get, cancel, list, artifacts) and the run page a status links
to."""

from __future__ import annotations

import html
import json
import time

from flask import Blueprint, request

from .answers import dbt_auth, dbt_error, dbt_ok
from .world import World


def create_dbt_runs_blueprint(world: World) -> Blueprint:
    bp = Blueprint("sandbox-dbt-runs", __name__)


    @bp.post("/api/v2/accounts/<int:account_id>/jobs/<int:job_id>/run/")
    def dbt_trigger(account_id, job_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not body.get("cause"):
            return dbt_error(400, "The request was invalid. Please double check the provided data and try again.")
        if body.get("git_sha") and body.get("git_branch"):
            return dbt_error(400, "git_branch and git_sha cannot both be specified")
        if job_id not in world.dbt.jobs:
            return dbt_error(404, "Requested resource not found.")
        run = world.dbt.trigger(account_id, job_id, body)
        return dbt_ok(world.dbt.run_json(run))

    @bp.get("/api/v2/accounts/<int:account_id>/runs/<int:run_id>/")
    def dbt_get_run(account_id, run_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        run = world.dbt.runs.get(run_id)
        if run is None or run.account_id != account_id:
            return dbt_error(404, "Requested resource not found.")
        return dbt_ok(world.dbt.run_json(run, include_trigger="trigger" in request.args.get("include_related", "")))

    @bp.post("/api/v2/accounts/<int:account_id>/runs/<int:run_id>/cancel/")
    def dbt_cancel(account_id, run_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        if run_id not in world.dbt.runs or world.dbt.runs[run_id].account_id != account_id:
            return dbt_error(404, "Requested resource not found.")
        return dbt_ok(world.dbt.run_json(world.dbt.cancel(run_id)))

    @bp.get("/api/v2/accounts/<int:account_id>/runs/<int:run_id>/artifacts/<path:remainder>")
    def dbt_run_artifact(account_id, run_id, remainder):
        """The file itself, not enveloped; the sandbox keeps run_results.json only (of the last step)."""
        error = dbt_auth(world, account_id)
        if error:
            return error
        with world.lock:
            run = world.dbt.runs.get(run_id)
            found = world.dbt.run_results(run) if run is not None and run.account_id == account_id else None
        if found is None or remainder != "run_results.json":
            return dbt_error(404, "Requested resource not found.")
        return found

    @bp.get("/api/v2/accounts/<int:account_id>/runs/")
    def dbt_list_runs(account_id):
        error = dbt_auth(world, account_id)
        if error:
            return error
        with world.lock:
            runs = [r for r in world.dbt.runs.values() if r.account_id == account_id]
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
            data = [world.dbt.run_json(r, include_trigger=with_trigger) for r in page]
        return dbt_ok(data, {"filters": {}, "order_by": order,
                             "pagination": {"count": len(data), "total_count": len(runs)}})

    @bp.get("/deploy/<int:account_id>/projects/<int:project_id>/runs/<int:run_id>/")
    def dbt_run_page(account_id, project_id, run_id):
        run = world.dbt.runs.get(run_id)
        if run is None:
            return "no such run", 404
        body = world.dbt.run_json(run, include_trigger=True)
        # the trigger's cause and steps come from the caller: escaped like any page should
        return (f"<html><body><h1>dbt Cloud (sandbox) run {run_id}</h1><p>{html.escape(body['status_humanized'])}"
                f"</p><pre>{html.escape(json.dumps(body, indent=2))}</pre></body></html>")

    return bp
