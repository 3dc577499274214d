"""Liveness, readiness and Prometheus metrics.

Anonymous callers (load balancers, probes) learn only the verdict and which checks passed; what is wrong, and
the warnings that name people and repositories, go to signed-in admins. ``/metrics`` answers only the bearer
of ``BRIDGE_METRICS_TOKEN`` and is not served at all without it.
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from flask import Blueprint, Response, abort, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select, text

from ..deliveries.states import DeliveryState
from ..deliveries.store import DeliveryStore
from ..models import Connection, DbtWebhookRecord, HookSubscriptionRecord, Repository, utcnow
from .pages import is_admin
from .services import services

bp = Blueprint("health", __name__)

STALLED_AFTER = 60  # seconds a stored delivery may wait for the workers' relay before /readyz says so


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready when the database answers and secrets can be read; admins also get what is wrong and warnings."""
    body, ready = _readiness(services(), detailed=is_admin())
    return jsonify(body), 200 if ready else 503


def _readiness(ext, *, detailed: bool) -> tuple[dict, bool]:
    checks = {}
    try:
        with ext.db.session() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    checks["secret_key"] = "ok" if ext.settings.secret_keys else "missing: set BRIDGE_SECRET_KEY"
    ready = all(v == "ok" for v in checks.values())
    if not detailed:
        return {"status": "ready" if ready else "not ready",
                "checks": {name: "ok" if v == "ok" else "failing" for name, v in checks.items()}}, ready
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    if checks["database"] == "ok":
        # Not a readiness failure (webhooks are still accepted), but work for these identities is stopped.
        with ext.db.session() as s:
            dead = s.execute(select(Connection.upn, Connection.status_reason)
                             .where(Connection.status == "needs_reauth")).all()
            hook_problems = s.execute(select(Repository.name, HookSubscriptionRecord.event_type,
                                             HookSubscriptionRecord.problem)
                                      .join(Repository, Repository.id == HookSubscriptionRecord.repository_id)
                                      .where(HookSubscriptionRecord.problem.is_not(None))).all()
            hook_problems += s.execute(select(Repository.name, DbtWebhookRecord.dbt_webhook_id,
                                              DbtWebhookRecord.problem)
                                       .join(Repository, Repository.id == DbtWebhookRecord.repository_id)
                                       .where(DbtWebhookRecord.problem.is_not(None))).all()
        deliveries = DeliveryStore(ext.db)
        blocked = deliveries.count({DeliveryState.BLOCKED})
        stalled = deliveries.count({DeliveryState.RECEIVED},
                                   received_before=utcnow() - timedelta(seconds=STALLED_AFTER))
        warnings = [f"Azure DevOps connection {upn} needs re-authorization ({reason}); reconnect it "
                    f"at {ext.settings.public_url}/console" for upn, reason in dead]
        if stalled:
            warnings.append(f"{stalled} deliveries have waited over {STALLED_AFTER} s for a worker to take them; "
                            "are workers running, and can they reach the broker and the database?")
        if blocked:
            warnings.append(f"{blocked} deliveries wait for an identity to be reconnected; they run again when "
                            "it is (or: bridge deliveries retry --state blocked)")
        warnings += [f"subscription {what} of repository {name}: {problem} (bridge hooks status)"
                     for name, what, problem in hook_problems]
        if warnings:
            body["warnings"] = warnings
    return body, ready


@bp.get("/metrics")
def metrics():
    expected = services().settings.metrics_token
    if not expected:
        abort(404)  # not served on the public port unless a scraper has a token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return Response("metrics need Authorization: Bearer <BRIDGE_METRICS_TOKEN>\n", status=401,
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'}, mimetype="text/plain")
    return Response(generate_latest(services().metrics.registry), mimetype=CONTENT_TYPE_LATEST)
