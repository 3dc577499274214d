"""Liveness, readiness and Prometheus metrics.

Anonymous callers (load balancers, probes) learn only the verdict and which checks passed; what is wrong, and
the warnings that name people and repositories, go to signed-in admins. ``/metrics`` answers only the bearer
of ``BRIDGE_METRICS_TOKEN`` and is not served at all without it.
"""

from __future__ import annotations

import hmac
from datetime import timedelta

import redis
from flask import Blueprint, Response, abort, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text

from ..db import describe_database_error
from ..deliveries.states import DeliveryState
from ..deliveries.store import DeliveryStore
from ..heartbeats import ROLES
from ..models import (
    Connection,
    DbtWebhookRecord,
    Delivery,
    HookSubscriptionRecord,
    Repository,
    as_utc,
    utcnow,
)
from .pages import is_admin
from .services import services

bp = Blueprint("health", __name__)

STALLED_AFTER = 60  # seconds a stored delivery may wait for the workers' relay before /readyz says so


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready when a delivery can be accepted (the database answers, stored credentials can be read); admins also
    get what is wrong and named warnings for what degrades the service without stopping intake."""
    body, ready = _readiness(services(), detailed=is_admin())
    return jsonify(body), 200 if ready else 503


def _readiness(ext, *, detailed: bool) -> tuple[dict, bool]:
    checks = {"database": _database(ext)}
    checks["secret_key"] = _secret_key(ext) if checks["database"] == "ok" else "unknown: the database is unavailable"
    ready = all(v == "ok" for v in checks.values())
    if not detailed:
        return {"status": "ready" if ready else "not ready",
                "checks": {name: "ok" if v == "ok" else "failing" for name, v in checks.items()}}, ready
    body: dict = {"status": "ready" if ready else "not ready", "checks": checks}
    warnings = _process_warnings(ext)
    if checks["database"] == "ok":
        warnings += _quiet_warnings(ext) + _work_warnings(ext)
    if warnings:
        body["warnings"] = [{"name": name, "message": message} for name, message in warnings]
    return body, ready


def _database(ext) -> str:
    try:
        with ext.db.session() as s:
            s.execute(text("SELECT 1"))
    except Exception as exc:
        return f"unavailable: {describe_database_error(exc)}"
    return "ok"


def _secret_key(ext) -> str:
    """Failing when a delivery could not be accepted: no key, or stored credentials the keys cannot read."""
    if not ext.settings.secret_keys:
        return "missing: set BRIDGE_SECRET_KEY"
    try:
        problem = ext.intake.secrets_problem()
    except Exception as exc:  # the database went away between the two checks
        return f"unknown: {describe_database_error(exc)}"
    return f"failing: {problem}" if problem else "ok"


Warning = tuple[str, str]


def _process_warnings(ext) -> list[Warning]:
    """The broker and the worker and beat processes, as their heartbeats in Redis tell."""
    heartbeats = ext.heartbeats
    try:
        alive = {role: heartbeats.alive(role) for role in ROLES}
    except redis.exceptions.RedisError as exc:
        return [("broker", f"the broker (BRIDGE_BROKER_URL) is unreachable ({type(exc).__name__}): deliveries "
                           "are stored and wait for it; is Redis running and reachable from here?")]
    warnings = []
    if not alive["worker"]:
        warnings.append(("worker-heartbeat", f"no worker has beaten in {heartbeats.timeout:g} s: nothing "
                                             "processes deliveries; start one (celery -A workers.entry worker)"))
    if not alive["beat"]:
        warnings.append(("beat-heartbeat", f"beat has not beaten in {heartbeats.timeout:g} s: nothing sweeps, polls "
                                           "or heals; start one, and only one (celery -A workers.entry beat)"))
    return warnings


def _quiet_warnings(ext) -> list[Warning]:
    """No delivery from Azure DevOps for longer than BRIDGE_DELIVERY_QUIET while repositories are linked."""
    quiet = ext.settings.delivery_quiet
    if quiet <= 0:
        return []
    since = utcnow() - timedelta(seconds=quiet)
    with ext.db.session() as s:
        linked_before = s.scalar(select(func.min(Repository.created_at)))
        if linked_before is None or as_utc(linked_before) > since:
            return []  # nothing linked, or linked too recently to expect a delivery
        last = s.scalar(select(func.max(Delivery.received_at)).where(Delivery.source == "azure-devops"))
    if last is not None and as_utc(last) > since:
        return []
    when = f"since {as_utc(last):%Y-%m-%d %H:%M} UTC" if last else "ever"
    return [("deliveries-quiet", f"no delivery from Azure DevOps {when} (quiet for over {quiet:g} s) while "
                                 "repositories are linked: are the service hooks enabled? (bridge hooks check)")]


def _work_warnings(ext) -> list[Warning]:
    """Work that waits: connections that need a person, stalled or blocked deliveries, unhealthy subscriptions."""
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
    stalled = deliveries.count({DeliveryState.RECEIVED}, received_before=utcnow() - timedelta(seconds=STALLED_AFTER))
    warnings = [("connection-needs-person", f"Azure DevOps connection {upn} needs re-authorization ({reason}); "
                                            f"reconnect it at {ext.settings.public_url}/console")
                for upn, reason in dead]
    if stalled:
        warnings.append(("deliveries-stalled", f"{stalled} deliveries have waited over {STALLED_AFTER} s for a "
                                               "worker to take them; are workers running, and can they reach the "
                                               "broker and the database?"))
    if blocked:
        warnings.append(("deliveries-blocked", f"{blocked} deliveries wait for an identity to be reconnected; they "
                                               "run again when it is (or: bridge deliveries retry --state blocked)"))
    warnings += [("subscription-unhealthy", f"subscription {what} of repository {name}: {problem} "
                                            "(bridge hooks status)")
                 for name, what, problem in hook_problems]
    return warnings


@bp.get("/metrics")
def metrics():
    expected = services().settings.metrics_token
    if not expected:
        abort(404)  # not served on the public port unless a scraper has a token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return Response("metrics need Authorization: Bearer <BRIDGE_METRICS_TOKEN>\n", status=401,
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'}, mimetype="text/plain")
    return Response(services().metrics.render(), mimetype=CONTENT_TYPE_LATEST)
