"""``POST /webhooks/azure-devops`` and ``POST /webhooks/dbt-cloud``.

Answer discipline (Azure DevOps disables subscriptions that answer 410 and puts on probation those that
fail, so "not interested" is always 200): 202 accepted (committed; the workers' relay queues it); 200
duplicate, ignored or test delivery; 400 malformed; 401 bad credentials; 413 too large; 415 not JSON; 503
database unavailable.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from ..dispatch import UNDISPATCHED
from ..domain import IgnoredEvent, PullRequestEvent
from ..errors import PayloadError
from ..webhooks import azure_devops, dbt_cloud
from .intake import Intake, event_record
from .outbox import OutboxUnavailable

log = logging.getLogger(__name__)
bp = Blueprint("receivers", __name__)

ADO = "azure-devops"
DBT = "dbt-cloud"


def _intake() -> Intake:
    return current_app.extensions["bridge"]["intake"]


def _answer(source: str, outcome: str, status: int, **extra):
    current_app.extensions["bridge"]["metrics"].deliveries.labels(source=source, outcome=outcome).inc()
    return jsonify({"outcome": outcome, **extra}), status


def _too_large(source: str):
    """413 without reading the body (gunicorn discards the rest before the next request)."""
    return _answer(source, "too-large", 413, error="body too large")


def _is_json() -> bool:
    return (request.mimetype or "").lower() in ("application/json", "text/json") or (
        request.mimetype or "").lower().endswith("+json")


def _body(source: str):
    """The raw body, or an error answer for a body that is too large or not JSON."""
    if request.content_length is not None and request.content_length > current_app.config["MAX_CONTENT_LENGTH"]:
        return None, _too_large(source)
    if not _is_json():
        return None, _answer(source, "not-json", 415, error="Content-Type must be application/json")
    try:
        return request.get_data(cache=True), None
    except RequestEntityTooLarge:
        return None, _too_large(source)


@bp.errorhandler(SQLAlchemyError)
@bp.errorhandler(OutboxUnavailable)
def _database_unavailable(exc):
    log.error("database unavailable while receiving a delivery: %s", type(exc).__name__)
    response = jsonify({"outcome": "unavailable", "error": "database unavailable; retry later"})
    response.headers["Retry-After"] = "5"
    return response, 503


@bp.post("/webhooks/azure-devops")
def azure_devops_hook():
    started = time.perf_counter()
    intake = _intake()
    auth = request.authorization
    organization_id = intake.authenticate_organization(
        auth.username if auth and auth.type == "basic" else None,
        auth.password if auth and auth.type == "basic" else None)
    if organization_id is None:
        response, status = _answer(ADO, "unauthorized", 401, error="bad or missing Basic credentials")
        response.headers["WWW-Authenticate"] = 'Basic realm="ado-dbt-bridge"'
        return response, status
    body, error = _body(ADO)
    if error:
        return error
    try:
        event = azure_devops.parse(body)
    except PayloadError as exc:
        return _answer(ADO, "malformed", 400, error=str(exc), details=exc.errors)

    if isinstance(event, IgnoredEvent):
        stored = intake.store(source=ADO, dedupe_key=event.dedupe_key, event_type=event.event_type,
                                 event=event_record(event), state="ignored")
        if stored is None:
            return _answer(ADO, "duplicate", 200)
        return _answer(ADO, "ignored", 200, reason=f"event type {event.event_type} is not handled")
    assert isinstance(event, PullRequestEvent)
    if event.is_sample:
        return _answer(ADO, "test", 200, reason="test delivery received; the subscription works")
    repository_id = intake.repository_for(organization_id, event.repository_id)
    if repository_id is None:
        stored = intake.store(source=ADO, dedupe_key=event.dedupe_key, event_type=event.event_type,
                                 event=event_record(event), state="ignored")
        if stored is None:
            return _answer(ADO, "duplicate", 200)
        return _answer(ADO, "ignored", 200, reason=f"repository {event.repository_id} is not configured")
    delivery_id = intake.store(source=ADO, dedupe_key=event.dedupe_key, event_type=event.event_type,
                               event=event_record(event), state=UNDISPATCHED, repository_id=repository_id)
    if delivery_id is None:
        return _answer(ADO, "duplicate", 200)
    current_app.extensions["bridge"]["metrics"].ingest_seconds.labels(source=ADO).observe(
        time.perf_counter() - started)
    return _answer(ADO, "accepted", 202, delivery=delivery_id)


@bp.post("/webhooks/dbt-cloud")
def dbt_cloud_hook():
    started = time.perf_counter()
    intake = _intake()
    body, error = _body(DBT)
    if error:
        return error
    try:
        account_id, webhook_id = dbt_cloud.sender_of(body)
    except PayloadError as exc:
        return _answer(DBT, "malformed", 400, error=str(exc))
    if not intake.verify_dbt(account_id, webhook_id, body, request.headers.get("Authorization")):
        return _answer(DBT, "unauthorized", 401, error="signature missing or wrong for this account")
    try:
        event = dbt_cloud.parse(body)
    except PayloadError as exc:
        return _answer(DBT, "malformed", 400, error=str(exc), details=exc.errors)
    if event.event_type not in dbt_cloud.SETTLING_EVENT_TYPES:
        stored = intake.store(source=DBT, dedupe_key=event.dedupe_key, event_type=event.event_type,
                                 event=event_record(event), state="ignored", dbt_account_id=account_id)
        if stored is None:
            return _answer(DBT, "duplicate", 200)
        return _answer(DBT, "ignored", 200, reason=f"event type {event.event_type} needs no action")
    delivery_id = intake.store(source=DBT, dedupe_key=event.dedupe_key, event_type=event.event_type,
                               event=event_record(event), state=UNDISPATCHED, dbt_account_id=account_id)
    if delivery_id is None:
        return _answer(DBT, "duplicate", 200)
    current_app.extensions["bridge"]["metrics"].ingest_seconds.labels(source=DBT).observe(
        time.perf_counter() - started)
    return _answer(DBT, "accepted", 202, delivery=delivery_id)
