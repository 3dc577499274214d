"""dbt Cloud run webhooks → domain events, and their HMAC signature check.

Three payload generations exist (no id key, ``webhooksID``, ``webhookId``); ids inside ``data`` are
strings. The signature is the lowercase hex HMAC-SHA256 of the raw body, keyed with the subscription's
secret, sent bare in ``Authorization``.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load

from ..domain import DbtRunEvent, RunStatus
from ..errors import PayloadError

# What the bridge acts on: a finished run. "started" changes nothing a developer sees (the PR already
# shows pending), so it is recorded and answered 200 without costing a worker task.
SETTLING_EVENT_TYPES = frozenset({"job.run.completed", "job.run.errored"})

_STATUS_WORDS = {"queued": 1, "starting": 2, "running": 3, "success": 10, "error": 20, "errored": 20,
                 "cancelled": 30, "canceled": 30}


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


class _Data(_Lenient):
    run_id = fields.Int(data_key="runId", required=True)
    job_id = fields.Int(data_key="jobId", load_default=None, allow_none=True)
    run_status = fields.Str(data_key="runStatus", load_default=None, allow_none=True)
    run_status_code = fields.Int(data_key="runStatusCode", load_default=None, allow_none=True)
    run_status_message = fields.Str(data_key="runStatusMessage", load_default=None, allow_none=True)
    run_started_at = fields.AwareDateTime(data_key="runStartedAt", load_default=None, allow_none=True,
                                          default_timezone=None)
    run_finished_at = fields.AwareDateTime(data_key="runFinishedAt", load_default=None, allow_none=True)
    run_errored_at = fields.AwareDateTime(data_key="runErroredAt", load_default=None, allow_none=True)

    @pre_load
    def _trim_nanoseconds(self, data, **_):
        # dbt sends RFC 3339 with nanoseconds ("...:09.123456789Z"); Python parses microseconds.
        if isinstance(data, dict):
            data = dict(data)
            for key in ("runStartedAt", "runFinishedAt", "runErroredAt"):
                value = data.get(key)
                if isinstance(value, str) and "." in value:
                    head, _, frac = value.partition(".")
                    digits = "".join(ch for ch in frac if ch.isdigit())
                    tail = frac[len(digits):]
                    data[key] = f"{head}.{digits[:6]}{tail}"
        return data


class _Event(_Lenient):
    account_id = fields.Int(data_key="accountId", required=True)
    event_id = fields.Str(data_key="eventId", required=True)
    event_type = fields.Str(data_key="eventType", required=True)
    data = fields.Nested(_Data, required=True)

    @pre_load
    def _require_object(self, data, **_):
        if not isinstance(data, dict):
            raise ValidationError("the body must be a JSON object")
        return data

    @post_load
    def _to_event(self, data, **_):
        d = data["data"]
        status = RunStatus.parse(d.get("run_status_code"))
        if status is None and d.get("run_status"):
            status = RunStatus.parse(_STATUS_WORDS.get(d["run_status"].strip().lower()))
        if status is None and data["event_type"] == "job.run.errored":
            status = RunStatus.ERROR
        return DbtRunEvent(
            event_id=data["event_id"],
            event_type=data["event_type"],
            account_id=data["account_id"],
            run_id=d["run_id"],
            job_id=d.get("job_id"),
            status=status,
            status_message=d.get("run_status_message"),
            started_at=d.get("run_started_at"),
            finished_at=d.get("run_finished_at") or d.get("run_errored_at"),
        )


_EVENT = _Event()  # stateless; shared by every request


def sender_of(body: bytes) -> tuple[int, str | None]:
    """(account id, webhook subscription id) a delivery claims to come from, read only to pick the secrets
    to verify it with (the subscription's own, then the account's)."""
    try:
        data = json.loads(body)
        account = data["accountId"] if isinstance(data, dict) else None
        if isinstance(account, bool) or account is None:
            raise TypeError
        webhook = data.get("webhookId") or data.get("webhooksID")
        return int(account), webhook if isinstance(webhook, str) and len(webhook) <= 64 else None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise PayloadError("body is not valid JSON") from None
    except (KeyError, TypeError, ValueError):
        raise PayloadError("accountId is missing or not a number") from None


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secrets: str | list[str | None] | None, body: bytes, authorization: str | None) -> bool:
    """Constant-time check of the ``Authorization`` header against each candidate secret (all are
    compared, whatever matches); False when no secret is configured."""
    candidates = [s for s in (secrets if isinstance(secrets, list) else [secrets]) if s]
    if not candidates or not authorization:
        return False
    given = authorization.strip().lower().encode()
    matches = [hmac.compare_digest(signature(secret, body).encode(), given) for secret in candidates]
    return any(matches)


def parse(body: bytes) -> DbtRunEvent:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    try:
        return _EVENT.load(data)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise PayloadError("not a dbt Cloud run webhook", errors=messages) from None
