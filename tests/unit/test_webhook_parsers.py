"""Every real payload in ../shared/fixtures parses; malformed ones are refused with a reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.domain import IgnoredEvent, PullRequestEvent, PullRequestStatus, RunStatus
from bridge.errors import PayloadError
from bridge.webhooks import azure_devops, dbt_cloud
from tests.conftest import ADO_FIXTURES, DBT_FIXTURES


def test_fixtures_are_present():
    assert len(ADO_FIXTURES) >= 12
    assert len(DBT_FIXTURES) >= 6


@pytest.mark.parametrize("path", ADO_FIXTURES, ids=lambda p: p.name)
def test_every_azure_devops_fixture_parses(path):
    raw = path.read_bytes()
    data = json.loads(raw)
    event = azure_devops.parse(raw)
    assert event.event_id == data["id"]
    assert event.event_type == data["eventType"]
    if data["eventType"] == "git.push":
        assert isinstance(event, IgnoredEvent)
        return
    assert isinstance(event, PullRequestEvent)
    pr = data["resource"].get("pullRequest", data["resource"])
    assert event.pull_request_id == pr["pullRequestId"]
    assert event.repository_id == pr["repository"]["id"].lower()
    assert event.source_commit == pr["lastMergeSourceCommit"]["commitId"]
    assert event.status == PullRequestStatus(pr["status"])
    assert event.is_draft is bool(pr.get("isDraft"))
    assert event.dedupe_key == f"{data['eventType']}:{data['id']}"


def test_docs_sample_deliveries_are_recognised_as_tests():
    samples = [p for p in ADO_FIXTURES if "fabrikam" in p.read_text(encoding="utf-8-sig").lower()
               and "git.push" not in p.name]
    assert samples
    for path in samples:
        assert azure_devops.parse(path.read_bytes()).is_sample


def test_real_deliveries_are_not_tests():
    for path in ADO_FIXTURES:
        if path.name.startswith("zulip__"):
            assert not azure_devops.parse(path.read_bytes()).is_sample


def test_comment_event_carries_the_comment():
    path = next(p for p in ADO_FIXTURES if "comment-event" in p.name)
    event = azure_devops.parse(path.read_bytes())
    assert event.comment == "This is my comment."
    assert not event.requests_rerun


def test_merge_attempt_with_conflicts_is_not_closed():
    path = next(p for p in ADO_FIXTURES if p.name == "zulip__git.pullrequest.created.json")
    data = json.loads(path.read_bytes())
    data["eventType"] = "git.pullrequest.merged"
    data["resource"]["mergeStatus"] = "conflicts"
    event = azure_devops.parse(json.dumps(data).encode())
    assert event.status is PullRequestStatus.ACTIVE and not event.status.is_closed


@pytest.mark.parametrize("body, fragment", [
    (b"", "not valid JSON"),
    (b"{", "not valid JSON"),
    (b"[1, 2]", "not an Azure DevOps"),
    (b'"text"', "not an Azure DevOps"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (json.dumps({"eventType": "git.pullrequest.created"}).encode(), "not an Azure DevOps"),
    (json.dumps({"id": "x", "eventType": "git.pullrequest.created", "resource": None}).encode(), "malformed"),
    (json.dumps({"id": "x", "eventType": "git.pullrequest.created",
                 "resource": {"pullRequestId": "7", "repository": {"id": "r"}}}).encode(), "malformed"),
    (json.dumps({"id": "x", "eventType": "git.pullrequest.updated",
                 "resource": {"pullRequestId": 7}}).encode(), "malformed"),
    (json.dumps({"id": 5, "eventType": "git.pullrequest.updated"}).encode(), "not an Azure DevOps"),
])
def test_malformed_azure_devops_bodies_are_refused(body, fragment):
    with pytest.raises(PayloadError) as info:
        azure_devops.parse(body)
    assert fragment in str(info.value)


def test_unknown_event_types_are_ignored_not_refused():
    event = azure_devops.parse(json.dumps({"id": "e1", "eventType": "build.complete", "resource": {}}).encode())
    assert isinstance(event, IgnoredEvent)


@pytest.mark.parametrize("path", DBT_FIXTURES, ids=lambda p: p.name)
def test_every_dbt_fixture_parses(path):
    raw = path.read_bytes()
    data = json.loads(raw)
    event = dbt_cloud.parse(raw)
    assert event.event_id == data["eventId"]
    assert event.account_id == data["accountId"]
    assert event.run_id == int(data["data"]["runId"])
    expected = {"job.run.started": RunStatus.RUNNING, "job.run.completed": RunStatus.SUCCESS,
                "job.run.errored": RunStatus.ERROR}[data["eventType"]]
    assert event.status == expected
    if data["eventType"] != "job.run.started":
        assert event.finished_at is not None and event.started_at is not None


def test_all_three_dbt_payload_generations_are_covered():
    keys = {("webhookId" in p.read_text()) * 1 + ("webhooksID" in p.read_text()) * 2 for p in DBT_FIXTURES}
    assert {1, 2} <= keys
    legacy = json.loads(DBT_FIXTURES[0].read_bytes())
    legacy.pop("webhookId", None)
    legacy.pop("webhooksID", None)
    legacy["data"].pop("runStatusCode", None)  # the 2023 format had neither
    assert dbt_cloud.parse(json.dumps(legacy).encode()).status is not None


def test_dbt_signature_is_hex_hmac_sha256_of_the_raw_body():
    body = DBT_FIXTURES[0].read_bytes()
    good = dbt_cloud.signature("s3cret", body)
    assert len(good) == 64 and int(good, 16) >= 0
    assert dbt_cloud.verify("s3cret", body, good)
    assert dbt_cloud.verify("s3cret", body, good.upper())
    assert not dbt_cloud.verify("s3cret", body + b" ", good)
    assert not dbt_cloud.verify("other", body, good)
    assert not dbt_cloud.verify(None, body, good)  # fail closed without a secret
    assert not dbt_cloud.verify("s3cret", body, None)
    assert not dbt_cloud.verify("s3cret", body, f"sha256={good}")


@pytest.mark.parametrize("body", [b"{}", b'{"accountId": "x"}', b'{"accountId": true}', b"[]", b"nope"])
def test_dbt_sender_of_refuses_bodies_without_an_account(body):
    with pytest.raises(PayloadError):
        dbt_cloud.sender_of(body)


def test_dbt_signature_may_match_any_candidate_secret():
    body = b'{"accountId": 1, "webhookId": "wsu_1"}'
    good = dbt_cloud.signature("subscription-secret", body)
    assert dbt_cloud.sender_of(body) == (1, "wsu_1")
    assert dbt_cloud.verify([None, "subscription-secret"], body, good)
    assert dbt_cloud.verify(["subscription-secret", "account-secret"], body, good)
    assert not dbt_cloud.verify([None, None], body, good)
    assert not dbt_cloud.verify(["other", "account-secret"], body, good)


# -- the hot path's reader and the schemas agree ------------------------------------------------------

# Where a delivery's fields live, as paths into the JSON (pull-request events, then comment events).
_PR_FIELDS = [("pullRequestId",), ("repository",), ("repository", "id"), ("repository", "project"),
              ("repository", "project", "id"), ("status",), ("isDraft",), ("mergeStatus",), ("targetRefName",),
              ("lastMergeSourceCommit",), ("lastMergeSourceCommit", "commitId")]
_PATHS = ([("id",), ("eventType",), ("subscriptionId",), ("notificationId",), ("resource",)]
          + [("resource", *p) for p in _PR_FIELDS]
          + [("resource", "comment"), ("resource", "comment", "content"), ("resource", "pullRequest")]
          + [("resource", "pullRequest", *p) for p in _PR_FIELDS])
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from(["true", "0", "5", "active", "completed", "git.pullrequest.updated", "draft"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)
_DELETE = object()


def _mutated(data: dict, path: tuple, value) -> dict:
    data = json.loads(json.dumps(data))
    holder = data
    for key in path[:-1]:
        if not isinstance(holder, dict) or not isinstance(holder.get(key), dict):
            return data
        holder = holder[key]
    if value is _DELETE:
        holder.pop(path[-1], None)
    else:
        holder[path[-1]] = value
    return data


def _by_schemas(data):
    try:
        return azure_devops._by_schemas(data)
    except PayloadError:
        return "refused"


@pytest.mark.parametrize("path", ADO_FIXTURES, ids=lambda p: p.name)
def test_the_hot_path_reads_every_fixture_as_the_schemas_do(path):
    data = json.loads(path.read_bytes())
    fast = azure_devops._fast(data)
    assert fast is not None  # the usual delivery never needs the schemas
    assert fast == azure_devops._by_schemas(data)


def _fixtures_for(path: tuple) -> list:
    """Deliveries where ``path`` matters: comment events for the comment's fields, PR events for the PR's."""
    comments = [p for p in ADO_FIXTURES if "comment" in p.name]
    if path[:2] in (("resource", "comment"), ("resource", "pullRequest")):
        return comments
    if len(path) > 1:
        return [p for p in ADO_FIXTURES if p not in comments and "git.push" not in p.name]
    return ADO_FIXTURES


@pytest.mark.parametrize("path", _PATHS, ids=".".join)
@settings(max_examples=60, deadline=None)
@given(draw=st.data(), value=st.just(_DELETE) | _JSON_VALUES)
def test_the_hot_path_agrees_with_the_schemas_whatever_one_field_holds(path, draw, value):
    fixture = draw.draw(st.sampled_from(_fixtures_for(path)))
    data = _mutated(json.loads(fixture.read_bytes()), path, value)
    fast = azure_devops._fast(data)
    if fast is not None:
        assert fast == _by_schemas(data)


@settings(max_examples=300, deadline=None)
@given(fixture=st.sampled_from(ADO_FIXTURES), changes=st.lists(
    st.tuples(st.sampled_from(_PATHS), st.just(_DELETE) | _JSON_VALUES), min_size=1, max_size=3))
def test_whatever_several_fields_hold_the_readers_agree_and_refuse_only_with_a_payload_error(fixture, changes):
    data = json.loads(fixture.read_bytes())
    for path, value in changes:
        data = _mutated(data, path, value)
    fast = azure_devops._fast(data)
    if fast is not None:  # when it answers, it is what the schemas say; otherwise they decide
        assert fast == _by_schemas(data)
    try:
        event = azure_devops.parse(json.dumps(data).encode())
    except PayloadError as exc:
        assert str(exc)  # refused, with a reason: never another exception (a 500)
    else:
        assert isinstance(event, PullRequestEvent | IgnoredEvent)
