"""The reconciler's rules on SQLite, answered by recorded sandbox exchanges (tests/data/http): no process runs.

Each scenario replays what the sandbox answered when ``python -m tests.data.http.record`` played it against
the same code; the assertions are on what the bridge asked for and what it recorded.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from bridge.errors import LockLost
from bridge.locks import Lease
from bridge.models import CiRun, PullRequestRecord
from tests.fakes import RecordedTransport, Unrecorded
from tests.orchestration import CI_JOB, TEARDOWN_JOB, assemble

TRIGGER = f"/api/v2/accounts/1/jobs/{CI_JOB}/run/"
TEARDOWN = f"/api/v2/accounts/1/jobs/{TEARDOWN_JOB}/run/"


def replay(tmp_path, scenario: str):
    transport = RecordedTransport.load(scenario)
    return assemble(tmp_path, transport), transport


def runs(bridge) -> list[CiRun]:
    with bridge.db.session() as s:
        found = s.scalars(select(CiRun).order_by(CiRun.id)).all()
        s.expunge_all()
        return found


def statuses(transport: RecordedTransport) -> list[dict]:
    return [r["body"] for r in transport.sent("POST", "/statuses")]


def test_an_opened_pr_gets_one_run_of_its_head_and_its_status_follows_the_run(tmp_path):
    bridge, transport = replay(tmp_path, "pr_passes")
    pr = _recorded_pr(transport)
    outcome = bridge.reconciler.reconcile(bridge.repository_id, pr)
    assert outcome.triggered == 1 and outcome.cancelled == 0
    [trigger] = transport.sent("POST", TRIGGER)
    head = _recorded_head(transport)
    assert trigger["body"]["git_sha"] == head and "git_branch" not in trigger["body"]
    assert trigger["body"]["azure_pull_request_id"] == pr
    assert trigger["body"]["schema_override"] == f"dbt_cloud_pr_{CI_JOB}_{pr}"
    [run] = runs(bridge)
    bridge.reconciler.settle_run(run.id)
    assert [s["state"] for s in statuses(transport)] == ["pending", "succeeded"]
    assert all(s["iterationId"] == 1 and s["context"] == {"genre": "dbt-cloud", "name": "ci"}
               for s in statuses(transport))
    [run] = runs(bridge)
    assert run.posted_state == "succeeded" and run.commit == head
    assert not transport.unused


def test_a_holder_whose_lease_lapsed_starts_and_posts_nothing(tmp_path):
    bridge, transport = replay(tmp_path, "pr_passes")
    lapsed = Lease("pr")
    lapsed.lose()
    bridge.reconciler.lock = lambda _key: contextlib.nullcontext(lapsed)
    with pytest.raises(LockLost):
        bridge.reconciler.reconcile(bridge.repository_id, _recorded_pr(transport))
    assert not transport.sent("POST", TRIGGER) and not statuses(transport) and not runs(bridge)


def test_a_lease_lapsing_while_a_trigger_is_answered_keeps_the_run_and_leaves_the_status_to_the_next_holder(
        tmp_path, monkeypatch):
    bridge, transport = replay(tmp_path, "pr_passes")
    pr = _recorded_pr(transport)
    lease = Lease(f"pr:{bridge.repository_id}:{pr}")
    bridge.reconciler.lock = lambda _key: contextlib.nullcontext(lease)
    send = transport.send

    def lapse_on_trigger(method, url, **kw):
        answer = send(method, url, **kw)
        if method == "POST" and urlsplit(url).path == TRIGGER:
            lease.lose()  # the holder was cut off from Redis while dbt Cloud answered
        return answer

    monkeypatch.setattr(transport, "send", lapse_on_trigger)
    with pytest.raises(LockLost):
        bridge.reconciler.reconcile(bridge.repository_id, pr)
    [run] = runs(bridge)
    assert run.dbt_run_id is not None and not statuses(transport)  # recorded, so no second start; nothing posted
    bridge.reconciler.lock = lambda key: contextlib.nullcontext(Lease(key))
    bridge.reconciler.settle_run(run.id)
    assert [s["state"] for s in statuses(transport)] == ["succeeded"]
    assert len(transport.sent("POST", TRIGGER)) == 1


def test_a_new_push_cancels_the_stale_run_and_builds_the_new_head(tmp_path):
    bridge, transport = replay(tmp_path, "push_supersedes")
    pr = _recorded_pr(transport)
    bridge.reconciler.reconcile(bridge.repository_id, pr)
    outcome = bridge.reconciler.reconcile(bridge.repository_id, pr)
    assert (outcome.triggered, outcome.cancelled) == (1, 1)
    first, second = runs(bridge)
    assert transport.sent("POST", f"/runs/{first.dbt_run_id}/cancel/")
    assert first.superseded and first.posted_state == "notApplicable"
    assert second.commit != first.commit and second.iteration_id == 2
    posted = statuses(transport)
    assert [(s["state"], s["iterationId"]) for s in posted] == [
        ("pending", 1), ("notApplicable", 1), ("pending", 2)]
    assert not transport.unused


def test_a_draft_waits_until_it_is_published(tmp_path):
    bridge, transport = replay(tmp_path, "draft_waits")
    pr = _recorded_pr(transport)
    outcome = bridge.reconciler.reconcile(bridge.repository_id, pr)
    assert outcome.triggered == 0 and not transport.sent("POST", TRIGGER)
    with bridge.db.session() as s:
        assert "draft" in s.scalar(select(PullRequestRecord.last_reason))
    assert bridge.reconciler.reconcile(bridge.repository_id, pr).triggered == 1
    assert len(transport.sent("POST", TRIGGER)) == 1
    assert not transport.unused


def test_an_abandoned_pr_cancels_its_run_and_tears_its_schema_down_once(tmp_path):
    bridge, transport = replay(tmp_path, "abandoned_tears_down")
    pr = _recorded_pr(transport)
    bridge.reconciler.reconcile(bridge.repository_id, pr)
    bridge.reconciler.reconcile(bridge.repository_id, pr)
    bridge.reconciler.reconcile(bridge.repository_id, pr)  # a repeated delivery
    [run] = [r for r in runs(bridge) if r.kind == "ci"]
    assert transport.sent("POST", f"/runs/{run.dbt_run_id}/cancel/")
    assert len(transport.sent("POST", TEARDOWN)) == 1
    assert transport.sent("POST", TEARDOWN)[0]["body"]["schema_override"] == f"dbt_cloud_pr_{CI_JOB}_{pr}"
    assert not transport.unused


def test_a_request_nobody_recorded_fails_the_test_by_name(tmp_path):
    bridge, _ = assemble_with_nothing(tmp_path)
    with pytest.raises(Unrecorded, match="no recorded answer for GET"):
        bridge.reconciler.reconcile(bridge.repository_id, 1)


def assemble_with_nothing(tmp_path):
    transport = RecordedTransport([])
    return assemble(tmp_path, transport), transport


def _recorded_pr(transport: RecordedTransport) -> int:
    """The PR the scenario played, from the first recorded request about one."""
    path = next(e["path"].lower() for e in transport.recorded if "/pullrequests/" in e["path"].lower())
    return int(path.split("/pullrequests/")[1].split("/")[0])


def _recorded_head(transport: RecordedTransport) -> str:
    """The head commit Azure DevOps (the sandbox) first answered for the scenario's PR."""
    pr = _recorded_pr(transport)
    answer = next(e["response"] for e in transport.recorded
                  if e["method"] == "GET" and e["path"].lower().endswith(f"/pullrequests/{pr}"))
    return answer["lastMergeSourceCommit"]["commitId"]
