"""The CI rules of DESIGN.md, end to end: sandbox → gunicorn → PostgreSQL → Redis → Celery → sandbox."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from sqlalchemy import select

from bridge.dev.sandbox.control import wait_until
from bridge.models import Activity, Delivery

from .conftest import CI_JOB, TEARDOWN_JOB

DBT_DATA = Path(__file__).resolve().parents[1] / "data" / "dbt"


def settle(seconds: float = 2.0) -> None:
    """Give the system time to do something it must not do (used before asserting an absence)."""
    time.sleep(seconds)


def ci_runs(bridge, pr):
    return bridge.sandbox.runs_for(pr, CI_JOB)


def open_with_long_run(bridge, seconds: float) -> tuple[dict, int]:
    """Open a PR whose CI run lasts ``seconds`` and wait until it has started."""
    sb = bridge.sandbox
    opened = sb.open_pr(deliver=False)
    sb.outcome(sha=opened["head"], seconds=seconds)
    sb.deliver(opened["event_id"])
    wait_until(lambda: ci_runs(bridge, opened["pr"]), what="run started")
    return opened, opened["pr"]


def test_pr_opens_and_passes(bridge):
    sb = bridge.sandbox
    opened = sb.open_pr(title="Add orders model")
    pr, head = opened["pr"], opened["head"]
    assert opened["delivered"][0]["status"] == 202
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=30, what="succeeded")
    statuses = sb.statuses(pr)
    assert [s["state"] for s in statuses] == ["pending", "succeeded"]
    runs = ci_runs(bridge, pr)
    assert len(runs) == 1
    trigger = runs[0]["trigger"]
    assert trigger["git_sha"] == head and "git_branch" not in trigger
    assert trigger["azure_pull_request_id"] == pr
    assert trigger["schema_override"] == f"dbt_cloud_pr_{CI_JOB}_{pr}"
    assert 0 < len(trigger["cause"]) <= 255
    for status in statuses:
        assert status["context"] == {"genre": "dbt-cloud", "name": "ci"}
        assert status["iterationId"] == 1
        assert status["targetUrl"] == runs[0]["href"]
    assert "passed" in statuses[-1]["description"]


def test_new_push_cancels_the_stale_run_and_builds_the_new_head(bridge):
    sb = bridge.sandbox
    opened = sb.open_pr(deliver=False)
    pr = opened["pr"]
    sb.outcome(sha=opened["head"], seconds=30)
    sb.deliver(opened["event_id"])
    wait_until(lambda: sb.latest_state(pr, 1) == "pending", what="pending on iteration 1")
    pushed = sb.act(pr, "push")
    wait_until(lambda: sb.latest_state(pr, 2) == "succeeded", timeout=30, what="iteration 2 succeeded")
    assert sb.latest_state(pr, 1) == "notApplicable"
    runs = ci_runs(bridge, pr)
    assert [r["trigger"]["git_sha"] for r in runs] == [opened["head"], pushed["head"]]
    assert runs[0]["status_humanized"] == "Cancelled"
    assert runs[1]["status_humanized"] == "Success"


def _failing_pr(sb, *, message: str = "Database Error in model order_margins", run_results=None) -> int:
    """A new PR whose run fails with ``run_results`` (real dbt's failing artifacts unless given)."""
    opened = sb.open_pr(deliver=False)
    sb.outcome(sha=opened["head"], outcome="error", message=message,
               run_results=run_results or json.loads((DBT_DATA / "run_results_failing.json").read_text()))
    sb.deliver(opened["event_id"])
    return opened["pr"]


def test_failure_status_says_what_failed_and_why(bridge):
    """The run's results (real dbt's, tests/data/dbt) are read once: the status counts what failed."""
    sb = bridge.sandbox
    pr = _failing_pr(sb)
    wait_until(lambda: sb.latest_state(pr, 1) == "failed", timeout=30, what="failed status")
    [run] = ci_runs(bridge, pr)
    description = sb.statuses(pr)[-1]["description"]
    assert description.startswith(f"dbt Cloud CI failed: 1 model, 1 test (run {run['id']}, ")
    assert description.endswith(" — Database Error in model order_margins")
    fetched = [e for e in sb.exchanges() if e["path"].endswith(f"/runs/{run['id']}/artifacts/run_results.json")]
    assert len(fetched) == 1


def test_one_summary_thread_lists_what_failed_then_is_edited_in_place_and_resolved_by_a_fix(bridge):
    sb = bridge.sandbox
    pr = _failing_pr(sb)
    wait_until(lambda: sb.pr(pr)["threads"], timeout=30, what="the summary thread")
    [thread] = sb.pr(pr)["threads"]
    assert thread["status"] == "active"
    assert thread["properties"]["ado-dbt-bridge.summary"]["$value"] == f"job:{CI_JOB}"
    failing = thread["comments"][0]["content"]
    assert failing.startswith("### dbt Cloud CI failed") and "order\\_margins" in failing
    assert "Binder Error: Referenced column \"cost\" not found" in failing
    fixed = sb.act(pr, "push", deliver=False)
    sb.outcome(sha=fixed["head"], run_results=json.loads((DBT_DATA / "run_results_passing.json").read_text()))
    sb.deliver(fixed["event_id"])
    wait_until(lambda: sb.pr(pr)["threads"][0]["status"] == "fixed", timeout=30, what="the thread resolved")
    [thread] = sb.pr(pr)["threads"]  # the same thread, its comment edited: never a second one
    assert len(thread["comments"]) == 1
    assert thread["comments"][0]["content"].startswith("### dbt Cloud CI passed")
    assert sb.latest_state(pr, 2) == "succeeded"


def test_a_failure_without_run_results_keeps_dbt_clouds_message(bridge):
    sb = bridge.sandbox
    pr = _failing_pr(sb, message="Database Error in model revenue", run_results={"not": "a run_results.json"})
    wait_until(lambda: sb.latest_state(pr, 1) == "failed", timeout=30, what="failed status")
    description = sb.statuses(pr)[-1]["description"]
    assert description.startswith("dbt Cloud CI failed") and "Database Error in model revenue" in description


def test_draft_is_skipped_until_published(bridge):
    sb = bridge.sandbox
    pr = sb.open_pr(draft=True)["pr"]
    settle()
    assert sb.statuses(pr) == [] and ci_runs(bridge, pr) == []
    sb.act(pr, "publish")
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=30, what="status after publishing")


def test_drafts_run_when_the_repository_says_so(bridge):
    sb = bridge.sandbox
    pr = sb.open_pr(draft=True, repository="dbt-marts", target="develop")["pr"]
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=30, what="draft built")
    assert sb.statuses(pr)[0]["context"] == {"genre": "analytics", "name": "dbt-marts"}


def test_target_branch_filter(bridge):
    sb = bridge.sandbox
    pr = sb.open_pr(target="develop")["pr"]
    settle()
    assert sb.statuses(pr) == [] and ci_runs(bridge, pr) == []
    sb.act(pr, "retarget", target="refs/heads/main")
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=30, what="built after retarget")


def test_abandoning_cancels_the_live_run_and_tears_down_once(bridge):
    sb = bridge.sandbox
    _, pr = open_with_long_run(bridge, 30)
    abandoned = sb.act(pr, "abandon")
    teardown = wait_until(lambda: sb.runs_for(pr, TEARDOWN_JOB), timeout=20, what="teardown run")
    assert teardown[0]["trigger"]["schema_override"] == f"dbt_cloud_pr_{CI_JOB}_{pr}"
    assert "git_sha" not in teardown[0]["trigger"]
    wait_until(lambda: ci_runs(bridge, pr)[0]["status_humanized"] == "Cancelled", what="CI run cancelled")
    sb.deliver(abandoned["event_id"])  # a retried delivery
    sb.act(pr, "vote")                 # and a fresh event for the closed PR
    settle()
    assert len(sb.runs_for(pr, TEARDOWN_JOB)) == 1


def test_completing_tears_down_and_a_conflicted_merge_attempt_does_not(bridge):
    sb = bridge.sandbox
    pr = sb.open_pr()["pr"]
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=30, what="CI passes")
    sb.act(pr, "conflict")
    settle()
    assert sb.runs_for(pr, TEARDOWN_JOB) == []
    sb.act(pr, "complete")
    wait_until(lambda: sb.runs_for(pr, TEARDOWN_JOB), timeout=20, what="teardown after completion")


def test_duplicate_and_retried_deliveries_start_one_run(bridge):
    sb = bridge.sandbox
    opened = sb.open_pr()
    pr = opened["pr"]
    answers = [sb.deliver(opened["event_id"])["delivered"][0]["status"] for _ in range(3)]
    assert answers == [200, 200, 200]
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=30, what="succeeded")
    assert len(ci_runs(bridge, pr)) == 1
    with bridge.db.session() as s:
        rows = s.scalars(select(Delivery).where(Delivery.dedupe_key == f"git.pullrequest.created:{opened['event_id']}"))
        assert len(rows.all()) == 1


def test_two_subscriptions_delivering_the_same_event(bridge, clean_faults):
    bridge.hooks(bridge.web, subscriptions=2)
    sb = bridge.sandbox
    opened = sb.open_pr()
    assert sorted(d["status"] for d in opened["delivered"]) == [200, 202]
    wait_until(lambda: sb.latest_state(opened["pr"], 1) == "succeeded", timeout=30, what="succeeded")
    assert len(ci_runs(bridge, opened["pr"])) == 1


def test_out_of_order_deliveries_converge_on_the_head(bridge):
    sb = bridge.sandbox
    opened = sb.open_pr(deliver=False)
    pr = opened["pr"]
    pushed = sb.act(pr, "push", deliver=False)
    sb.deliver(pushed["event_id"])   # the newer event first
    sb.deliver(opened["event_id"])   # then the older one
    wait_until(lambda: sb.latest_state(pr, 2) == "succeeded", timeout=30, what="head built")
    settle(1)
    runs = ci_runs(bridge, pr)
    assert [r["trigger"]["git_sha"] for r in runs] == [pushed["head"]]
    assert sb.latest_state(pr, 1) is None


def test_rerun_comment_starts_a_fresh_run(bridge):
    sb = bridge.sandbox
    pr = sb.open_pr()["pr"]
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=30, what="first run")
    sb.act(pr, "comment", content="looks good")
    settle(1)
    assert len(ci_runs(bridge, pr)) == 1
    sb.act(pr, "comment", content="/dbt rerun")
    wait_until(lambda: len(ci_runs(bridge, pr)) == 2, what="second run")
    wait_until(lambda: [s["state"] for s in sb.statuses(pr)][-2:] == ["pending", "succeeded"], timeout=30,
               what="rerun status")
    with bridge.db.session() as s:  # the command and what it decided are in the PR's activity record
        done = [(a.kind, a.message) for a in s.scalars(select(Activity).where(
            Activity.pull_request_id == pr, Activity.kind.in_(("command", "decision"))).order_by(Activity.id))]
    assert ("command", "`/dbt rerun` commented on the pull request") in done
    assert ("decision", "rerun requested: start a CI run") in done


def test_run_cancelled_by_a_person_is_settled_by_the_poller(bridge):
    sb = bridge.sandbox
    _, pr = open_with_long_run(bridge, 60)
    sb.cancel_run(ci_runs(bridge, pr)[0]["id"])
    wait_until(lambda: sb.latest_state(pr, 1) == "error", timeout=30, what="error status from the poller")
    assert "cancelled in dbt Cloud" in sb.statuses(pr)[-1]["description"]


def test_lost_dbt_webhook_is_settled_by_the_poller(bridge, clean_faults):
    bridge.dbt_hooks(enabled=False)
    sb = bridge.sandbox
    pr = sb.open_pr()["pr"]
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=40, what="succeeded via polling")


def test_dbt_429_with_retry_after_and_5xx_are_retried_without_duplicate_runs(bridge, clean_faults):
    sb = bridge.sandbox
    sb.fault(service="dbt", method="POST", path=r"/jobs/42/run/$", status=429, retry_after=1, times=1)
    sb.fault(service="dbt", method="POST", path=r"/jobs/42/run/$", status=503, times=1)
    pr = sb.open_pr()["pr"]
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=40, what="succeeded after retries")
    assert len(ci_runs(bridge, pr)) == 1


def test_a_trigger_whose_answer_was_lost_is_not_repeated(bridge, clean_faults):
    sb = bridge.sandbox
    sb.fault(service="dbt", method="POST", path=r"/jobs/42/run/$", status=502, times=1, after=True)
    pr = sb.open_pr()["pr"]
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=40, what="succeeded after recovery")
    assert len(ci_runs(bridge, pr)) == 1


def test_azure_devops_503_on_status_post_is_retried(bridge, clean_faults):
    sb = bridge.sandbox
    sb.fault(service="ado", method="POST", path=r"/statuses$", status=503, retry_after=1, times=2)
    pr = sb.open_pr()["pr"]
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=40, what="succeeded after retries")


def test_refused_trigger_posts_an_error_the_developer_can_read(bridge, clean_faults):
    sb = bridge.sandbox
    sb.fault(service="dbt", method="POST", path=r"/jobs/42/run/$", status=403, times=1,
             body={"status": {"code": 403, "is_success": False, "developer_message": "",
                              "user_message": "The token lacks Job Admin permission."}, "data": None})
    pr = sb.open_pr()["pr"]
    wait_until(lambda: sb.latest_state(pr, 1) == "error", timeout=30, what="error status")
    description = sb.statuses(pr)[-1]["description"]
    assert "Could not start dbt Cloud CI" in description and "Job Admin" in description
    assert ci_runs(bridge, pr) == []


def test_dead_azure_devops_credential_fails_visibly_without_retrying(bridge, clean_faults):
    sb = bridge.sandbox
    sb.fault(service="ado", method="GET", path=r"/pullrequests/\d+$", status=401, times=1)
    opened = sb.open_pr()
    key = f"git.pullrequest.created:{opened['event_id']}"

    def failed():
        with bridge.db.session() as s:
            row = s.scalar(select(Delivery).where(Delivery.dedupe_key == key))
            return row if row is not None and row.state == "failed" else None

    row = wait_until(failed, timeout=20, what="delivery marked failed")
    assert row.attempts == 1 and "401" in row.error
    assert ci_runs(bridge, opened["pr"]) == []


def test_deleted_pr_cancels_its_live_run(bridge):
    sb = bridge.sandbox
    _, pr = open_with_long_run(bridge, 60)
    sb.act(pr, "delete")  # the event goes out; reading the PR then answers 404
    wait_until(lambda: ci_runs(bridge, pr)[0]["status_humanized"] == "Cancelled", timeout=20,
               what="run cancelled")
    assert sb.runs_for(pr, TEARDOWN_JOB) == []


def test_pr_sweep_catches_up_with_events_that_never_came(bridge):
    sb = bridge.sandbox
    silent = sb.open_pr(title="no delivery ever", deliver=False)   # Azure DevOps never tells the bridge
    closing = sb.open_pr(title="its closing is missed")
    wait_until(lambda: sb.latest_state(closing["pr"], 1) == "succeeded", timeout=30, what="CI passes")
    sb.act(closing["pr"], "abandon", deliver=False)
    settle(1)
    assert ci_runs(bridge, silent["pr"]) == [] and sb.runs_for(closing["pr"], TEARDOWN_JOB) == []
    before = len(sb.exchanges())
    out = bridge.stack.run_cli(bridge.env, "prs", "sweep")
    assert out.returncode == 0, out.stderr
    wait_until(lambda: sb.latest_state(silent["pr"], 1) == "succeeded", timeout=40, what="silent PR built")
    wait_until(lambda: sb.runs_for(closing["pr"], TEARDOWN_JOB), timeout=30, what="missed close torn down")
    listings = [e["path"] for e in sb.exchanges(before) if e["method"] == "GET" and e["path"].endswith(
        "pullrequests")]
    assert listings and all("/_apis/git/pullrequests" in p for p in listings)  # one listing a project
    assert len(listings) == len({p.split("/_apis")[0] for p in listings})
    swept = re.search(r'bridge_azure_devops_calls_5m\{kind="sweep",organization="fabrikam"\} (\d+)', bridge.metrics())
    assert swept and int(swept.group(1)) >= len(listings)  # counted across the workers, shown by the web


def test_the_workers_log_lines_name_the_delivery_and_pull_request_they_are_about(bridge):
    sb = bridge.sandbox
    opened = sb.open_pr(title="Traceable in the logs")
    pr = opened["pr"]
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=30, what="succeeded")
    with bridge.db.session() as s:
        [(delivery, repository_id)] = [(d.id, d.repository_id) for d in s.scalars(
            select(Delivery).where(Delivery.source == "azure-devops")) if d.event.get("pull_request_id") == pr]
    started = [line for line in bridge.stack.read_logs()["worker"].splitlines()
               if "started dbt run" in line and f"for PR {pr} " in line]
    assert len(started) == 1, started
    assert started[0].endswith(f"[delivery_id={delivery} repository_id={repository_id} pr={pr}]")
