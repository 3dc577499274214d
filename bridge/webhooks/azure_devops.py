"""Azure DevOps service-hook deliveries → domain events.

Payloads are unsigned and vary by source (docs samples, real deliveries, ``resourceDetailsToSend``), so
the schemas accept what they do not know and require only what the bridge acts on.
"""

from __future__ import annotations

import json

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load

from ..domain import HANDLED_EVENT_TYPES, EventType, IgnoredEvent, PullRequestEvent, PullRequestStatus
from ..errors import PayloadError


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


class _Project(_Lenient):
    id = fields.Str(load_default=None)


class _Repository(_Lenient):
    id = fields.Str(required=True)
    project = fields.Nested(_Project, load_default=None)


class _Commit(_Lenient):
    commit_id = fields.Str(data_key="commitId", load_default=None)


class _PullRequest(_Lenient):
    pull_request_id = fields.Int(data_key="pullRequestId", required=True, strict=True)
    repository = fields.Nested(_Repository, required=True)
    status = fields.Str(load_default="notSet")
    is_draft = fields.Bool(data_key="isDraft", load_default=False, allow_none=True)
    merge_status = fields.Str(data_key="mergeStatus", load_default=None, allow_none=True)
    target_ref = fields.Str(data_key="targetRefName", load_default=None, allow_none=True)
    last_merge_source_commit = fields.Nested(_Commit, data_key="lastMergeSourceCommit", load_default=None,
                                             allow_none=True)


class _Comment(_Lenient):
    content = fields.Str(load_default=None, allow_none=True)


class _CommentResource(_Lenient):
    comment = fields.Nested(_Comment, load_default=None, allow_none=True)
    pull_request = fields.Nested(_PullRequest, data_key="pullRequest", required=True)


class _Envelope(_Lenient):
    event_id = fields.Str(data_key="id", required=True)
    event_type = fields.Str(data_key="eventType", required=True)
    subscription_id = fields.Str(data_key="subscriptionId", load_default=None, allow_none=True)
    notification_id = fields.Int(data_key="notificationId", load_default=None, allow_none=True)
    resource = fields.Dict(load_default=None, allow_none=True)

    @pre_load
    def _require_object(self, data, **_):
        if not isinstance(data, dict):
            raise ValidationError("the body must be a JSON object")
        return data


def _status(raw: str) -> PullRequestStatus:
    try:
        return PullRequestStatus(raw)
    except ValueError:
        return PullRequestStatus.NOT_SET


def _to_event(envelope: dict, pr: dict, comment: str | None) -> PullRequestEvent:
    repo = pr["repository"]
    source = pr.get("last_merge_source_commit") or {}
    return PullRequestEvent(
        event_id=envelope["event_id"],
        event_type=envelope["event_type"],
        subscription_id=envelope.get("subscription_id"),
        notification_id=envelope.get("notification_id"),
        repository_id=repo["id"].lower(),
        project_id=((repo.get("project") or {}).get("id") or None),
        pull_request_id=pr["pull_request_id"],
        status=_status(pr["status"]),
        is_draft=bool(pr.get("is_draft")),
        source_commit=source.get("commit_id"),
        target_ref=pr.get("target_ref"),
        merge_status=pr.get("merge_status"),
        comment=comment,
    )


# Schemas hold no per-call state; one instance each serves every request.
_ENVELOPE = _Envelope()
_PULL_REQUEST = _PullRequest()
_COMMENT_RESOURCE = _CommentResource()


def _nested_errors(exc: ValidationError) -> dict:
    return exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}


def parse(body: bytes) -> PullRequestEvent | IgnoredEvent:
    """Parse one delivery. Raises :class:`PayloadError` for anything that is not a well-formed event."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    try:
        envelope = _ENVELOPE.load(data)
    except ValidationError as exc:
        raise PayloadError("not an Azure DevOps service-hook event", errors=_nested_errors(exc)) from None
    event_type = envelope["event_type"]
    if event_type not in HANDLED_EVENT_TYPES:
        return IgnoredEvent(envelope["event_id"], event_type)
    resource = envelope.get("resource")
    if not isinstance(resource, dict):
        raise PayloadError(f"malformed {event_type} event", errors={"resource": ["a pull-request event needs it"]})
    try:
        if event_type == EventType.PR_COMMENTED:
            parsed = _COMMENT_RESOURCE.load(resource)
            return _to_event(envelope, parsed["pull_request"], (parsed.get("comment") or {}).get("content"))
        return _to_event(envelope, _PULL_REQUEST.load(resource), None)
    except ValidationError as exc:
        raise PayloadError(f"malformed {event_type} event", errors=_nested_errors(exc)) from None
