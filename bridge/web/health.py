"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select, text

from ..deliveries.states import DeliveryState
from ..deliveries.store import DeliveryStore
from ..models import Connection, DbtWebhookRecord, HookSubscriptionRecord, Repository, utcnow
from .services import services

bp = Blueprint("health", __name__)

STALLED_AFTER = 60  # seconds a stored delivery may wait for the workers' relay before /readyz says so


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready when the database answers and secrets can be read; details say what is wrong."""
    ext = services()
    checks = {}
    try:
        with ext.db.session() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    checks["secret_key"] = "ok" if ext.settings.secret_keys else "missing: set BRIDGE_SECRET_KEY"
    ready = all(v == "ok" for v in checks.values())
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
    return jsonify(body), 200 if ready else 503


@bp.get("/metrics")
def metrics():
    registry = services().metrics.registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
