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
    return _fast(data) or _by_schemas(data)


def _by_schemas(data) -> PullRequestEvent | IgnoredEvent:
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


def _str_or_none(value) -> bool:
    return value is None or type(value) is str


def _fast(data) -> PullRequestEvent | IgnoredEvent | None:
    """The usual, well-formed delivery read without the schemas, which cost more CPU than anything else on
    the receivers' hot path after the INSERT (docs/benchmarks.md). Takes only values the schemas would pass
    through unchanged and returns None for anything else, which ``parse`` then hands to the schemas to
    parse or refuse with their detailed errors: both paths give the same event (a property test holds them
    to it, tests/unit/test_webhook_parsers.py)."""
    if type(data) is not dict:
        return None
    event_id, event_type, resource = data.get("id"), data.get("eventType"), data.get("resource")
    subscription, notification = data.get("subscriptionId"), data.get("notificationId")
    if (type(event_id) is not str or type(event_type) is not str or not _str_or_none(subscription)
            or not (notification is None or type(notification) is int)
            or not (resource is None or type(resource) is dict)):
        return None
    if event_type not in HANDLED_EVENT_TYPES:
        return IgnoredEvent(event_id, event_type)
    if resource is None:
        return None
    comment = None
    pr = resource
    if event_type == EventType.PR_COMMENTED:
        holder, pr = resource.get("comment"), resource.get("pullRequest")
        if holder is not None:
            if type(holder) is not dict or not _str_or_none(holder.get("content")):
                return None
            comment = holder.get("content")
        if type(pr) is not dict:
            return None
    repo, source = pr.get("repository"), pr.get("lastMergeSourceCommit")
    if type(pr.get("pullRequestId")) is not int or type(repo) is not dict or type(repo.get("id")) is not str:
        return None
    project = repo.get("project")
    if project is not None and (type(project) is not dict or not _str_or_none(project.get("id"))):
        return None
    if source is not None and (type(source) is not dict or not _str_or_none(source.get("commitId"))):
        return None
    status, draft = pr.get("status", "notSet"), pr.get("isDraft")
    if (type(status) is not str or not (draft is None or type(draft) is bool)
            or not _str_or_none(pr.get("mergeStatus")) or not _str_or_none(pr.get("targetRefName"))):
        return None
    envelope = {"event_id": event_id, "event_type": event_type, "subscription_id": subscription,
                "notification_id": notification}
    loaded = {"pull_request_id": pr["pullRequestId"], "status": status, "is_draft": draft,
              "merge_status": pr.get("mergeStatus"), "target_ref": pr.get("targetRefName"),
              "repository": {"id": repo["id"], "project": {"id": project.get("id")} if project else project},
              "last_merge_source_commit": {"commit_id": source.get("commitId")} if source else source}
    return _to_event(envelope, loaded, comment)
