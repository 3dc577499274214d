"""The CI rules of DESIGN.md as plain functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge import domain
from bridge.domain import (
    CiSettings,
    DbtRun,
    DraftPolicy,
    Iteration,
    PullRequest,
    PullRequestStatus,
    RecordedRun,
    RunKind,
    RunStatus,
    StatusContext,
    StatusState,
)

SETTINGS = CiSettings(ci_job_id=42, status_context=StatusContext("dbt-cloud", "ci"),
                      target_branches=("refs/heads/main",), teardown_job_id=43)
A, B = "a" * 40, "b" * 40


def pr(**kw) -> PullRequest:
    base = {"pull_request_id": 7, "repository_id": "r", "status": PullRequestStatus.ACTIVE, "is_draft": False,
            "source_ref": "refs/heads/feature", "target_ref": "refs/heads/main", "head_commit": A, "title": "T"}
    return PullRequest(**{**base, **kw})


def run(record_id=1, commit=A, status=RunStatus.RUNNING, dbt_run_id=100, iteration_id=1, **kw) -> RecordedRun:
    return RecordedRun(record_id=record_id, kind=kw.pop("kind", RunKind.CI), commit=commit,
                       iteration_id=iteration_id, dbt_run_id=dbt_run_id, status=status, **kw)


def test_new_pr_triggers_one_run_for_its_head():
    plan = domain.plan(pr(), [], SETTINGS)
    assert plan.triggers == [domain.TriggerRun(RunKind.CI, A, None)]
    assert not plan.cancels and not plan.statuses


def test_same_head_twice_triggers_nothing():
    plan = domain.plan(pr(), [run(posted_state=StatusState.PENDING)], SETTINGS)
    assert plan.is_empty


def test_new_push_cancels_the_stale_run_and_marks_its_iteration_not_applicable():
    plan = domain.plan(pr(head_commit=B), [run(posted_state=StatusState.PENDING)], SETTINGS)
    assert plan.triggers == [domain.TriggerRun(RunKind.CI, B, None)]
    assert plan.cancels == [domain.CancelRun(1, 100, "superseded")]
    assert [(p.record_id, p.update.state, p.update.iteration_id) for p in plan.statuses] == [
        (1, StatusState.NOT_APPLICABLE, 1)]


def test_a_finished_old_run_is_left_alone_after_a_push():
    old = run(status=RunStatus.SUCCESS, posted_state=StatusState.SUCCEEDED)
    plan = domain.plan(pr(head_commit=B), [old], SETTINGS)
    assert not plan.cancels and not plan.statuses and len(plan.triggers) == 1


def test_out_of_order_delivery_of_an_old_event_changes_nothing():
    # The worker always reads the PR's current head, so an old "created" delivery arriving after the
    # push sees the same truth as the push's delivery did.
    runs = [run(1, A, RunStatus.CANCELLED, superseded=True, posted_state=StatusState.NOT_APPLICABLE),
            run(2, B, RunStatus.RUNNING, dbt_run_id=101, iteration_id=2, posted_state=StatusState.PENDING)]
    assert domain.plan(pr(head_commit=B), runs, SETTINGS).is_empty


@pytest.mark.parametrize("drafts, expect_trigger", [(DraftPolicy.SKIP, False), (DraftPolicy.RUN, True)])
def test_drafts(drafts, expect_trigger):
    settings = CiSettings(42, SETTINGS.status_context, drafts=drafts)
    plan = domain.plan(pr(is_draft=True), [], settings)
    assert bool(plan.triggers) is expect_trigger


def test_pr_turned_back_into_a_draft_cancels_its_live_run():
    plan = domain.plan(pr(is_draft=True), [run()], SETTINGS)
    assert plan.cancels == [domain.CancelRun(1, 100, "not-applicable")] and not plan.triggers


@pytest.mark.parametrize("target, built", [("refs/heads/main", True), ("refs/heads/develop", False),
                                           ("refs/heads/main-old", False)])
def test_target_branch_filter(target, built):
    assert bool(domain.plan(pr(target_ref=target), [], SETTINGS).triggers) is built


def test_no_target_filter_builds_every_branch():
    settings = CiSettings(42, SETTINGS.status_context)
    assert domain.plan(pr(target_ref="refs/heads/anything"), [], settings).triggers


def test_short_branch_names_in_config_are_normalized():
    assert domain.normalize_ref("main") == "refs/heads/main"
    assert domain.normalize_ref("refs/heads/main") == "refs/heads/main"


@pytest.mark.parametrize("status", [PullRequestStatus.COMPLETED, PullRequestStatus.ABANDONED])
def test_closing_cancels_live_runs_and_tears_down_once(status):
    plan = domain.plan(pr(status=status), [run()], SETTINGS)
    assert plan.cancels == [domain.CancelRun(1, 100, "closed")]
    assert plan.triggers == [domain.TriggerRun(RunKind.TEARDOWN, None, None)]
    again = domain.plan(pr(status=status), [run(status=RunStatus.CANCELLED),
                                            run(2, None, kind=RunKind.TEARDOWN, iteration_id=None)], SETTINGS)
    assert again.is_empty


def test_closing_a_pr_that_never_ran_needs_no_teardown():
    assert domain.plan(pr(status=PullRequestStatus.ABANDONED), [], SETTINGS).is_empty


def test_no_teardown_without_a_teardown_job():
    settings = CiSettings(42, SETTINGS.status_context)
    plan = domain.plan(pr(status=PullRequestStatus.COMPLETED), [run(status=RunStatus.SUCCESS)], settings)
    assert plan.is_empty


def test_deleted_pr_cancels_without_teardown():
    plan = domain.plan(None, [run()], SETTINGS)
    assert plan.cancels and not plan.triggers


def test_rerun_starts_a_fresh_run_only_when_the_head_run_finished():
    finished = run(status=RunStatus.ERROR, posted_state=StatusState.FAILED)
    assert domain.plan(pr(), [finished], SETTINGS, rerun=True).triggers
    assert not domain.plan(pr(), [run(posted_state=StatusState.PENDING)], SETTINGS, rerun=True).triggers


def test_an_older_run_of_the_head_does_not_overwrite_the_rerun():
    runs = [run(1, status=RunStatus.ERROR, posted_state=StatusState.FAILED),
            run(2, status=RunStatus.QUEUED, dbt_run_id=101, posted_state=None)]
    plan = domain.plan(pr(), runs, SETTINGS)
    assert [(p.record_id, p.update.state) for p in plan.statuses] == [(2, StatusState.PENDING)]


def test_missing_status_is_posted_again():
    # The worker died after triggering but before posting: the next reconcile posts it.
    plan = domain.plan(pr(), [run(status=RunStatus.QUEUED, posted_state=None)], SETTINGS)
    assert [p.update.state for p in plan.statuses] == [StatusState.PENDING]


def test_refused_start_is_reported_as_error_with_the_reason():
    refused = run(dbt_run_id=None, status=None, start_error="HTTP 404: job 42 not found")
    update = domain.wanted_status(refused, A)
    assert update.state is StatusState.ERROR and "job 42 not found" in update.description


@pytest.mark.parametrize("status, cancelled_by_bridge, state", [
    (RunStatus.QUEUED, False, StatusState.PENDING),
    (RunStatus.STARTING, False, StatusState.PENDING),
    (RunStatus.RUNNING, False, StatusState.PENDING),
    (RunStatus.SUCCESS, False, StatusState.SUCCEEDED),
    (RunStatus.ERROR, False, StatusState.FAILED),
    (RunStatus.CANCELLED, False, StatusState.ERROR),
    (RunStatus.CANCELLED, True, StatusState.NOT_APPLICABLE),
])
def test_run_status_maps_to_pr_status(status, cancelled_by_bridge, state):
    got, description = domain.status_for_run(DbtRun(5, status), cancelled_by_bridge=cancelled_by_bridge)
    assert got is state
    assert "run 5" in description


def test_failure_description_says_why_and_how_long():
    _, text = domain.status_for_run(DbtRun(9, RunStatus.ERROR, status_message="Database Error in model x",
                                           duration_seconds=125))
    assert text == "dbt Cloud CI failed in 2m 05s: Database Error in model x (run 9)"
    _, text = domain.status_for_run(DbtRun(9, RunStatus.SUCCESS, git_sha="0123456789abcdef", duration_seconds=4))
    assert text == "dbt Cloud CI passed for 01234567 in 4s (run 9)"
    _, text = domain.status_for_run(DbtRun(9, RunStatus.ERROR, status_message="None"))
    assert text == "dbt Cloud CI failed (run 9)"


def test_a_failure_counted_from_the_run_results_leads_the_description():
    run = DbtRun(1234, RunStatus.ERROR, status_message="Database Error in model order_margins", duration_seconds=252)
    _, text = domain.status_for_run(run, failed="1 model, 1 test")
    assert text == "dbt Cloud CI failed: 1 model, 1 test (run 1234, 4m 12s) — Database Error in model order_margins"
    _, text = domain.status_for_run(DbtRun(7, RunStatus.ERROR), failed="2 models")
    assert text == "dbt Cloud CI failed: 2 models (run 7)"


def test_results_are_read_for_a_failed_head_and_for_a_pass_with_a_thread_to_resolve():
    def run(status, commit=A, kind=domain.RunKind.CI):
        return domain.RecordedRun(1, kind, commit, 1, 9, status)

    assert domain.wants_results(run(RunStatus.ERROR), A, has_thread=False)
    assert not domain.wants_results(run(RunStatus.SUCCESS), A, has_thread=False)
    assert domain.wants_results(run(RunStatus.SUCCESS), A, has_thread=True)
    assert not domain.wants_results(run(RunStatus.ERROR, commit=B), A, has_thread=True)  # superseded
    assert not domain.wants_results(run(RunStatus.ERROR, kind=domain.RunKind.TEARDOWN), A, has_thread=True)
    assert not domain.wants_results(run(RunStatus.RUNNING), A, has_thread=True)


def test_iteration_for_commit_prefers_the_newest_matching():
    its = [Iteration(1, A), Iteration(2, B), Iteration(3, A)]
    assert domain.iteration_for(A, its) == 3
    assert domain.iteration_for(B, its) == 2
    assert domain.iteration_for("c" * 40, its) == 3
    assert domain.iteration_for(A, []) is None


def test_schema_and_cause():
    assert domain.pr_schema(42, 1704) == "dbt_cloud_pr_42_1704"
    cause = domain.run_cause(pr(title="x" * 400))
    assert len(cause) == domain.CAUSE_MAX and cause.startswith("Azure DevOps PR #7 @ aaaaaaaa: ")


def test_rerun_command():
    assert domain.is_rerun_command("  /dbt rerun please")
    assert domain.is_rerun_command("/DBT RERUN")
    assert not domain.is_rerun_command("please /dbt rerun")
    assert not domain.is_rerun_command(None)


commits = st.sampled_from(["a" * 40, "b" * 40, "c" * 40])
statuses = st.sampled_from(list(RunStatus))


@st.composite
def histories(draw):
    n = draw(st.integers(0, 5))
    runs = []
    for i in range(n):
        started = draw(st.booleans())
        runs.append(RecordedRun(
            record_id=i + 1, kind=RunKind.CI, commit=draw(commits), iteration_id=draw(st.integers(1, 3)),
            dbt_run_id=100 + i if started else None, status=draw(statuses) if started else None,
            superseded=draw(st.booleans()),
            posted_state=draw(st.none() | st.sampled_from(list(StatusState))),
            start_error=None if started else "refused"))
    return runs


@given(head=commits, runs=histories(), draft=st.booleans(), rerun=st.booleans())
def test_plan_invariants(head, runs, draft, rerun):
    plan = domain.plan(pr(head_commit=head, is_draft=draft), runs, SETTINGS, rerun=rerun)
    live_for_head = [r for r in runs if r.is_live and r.commit == head]
    # never more than one new run, and never a second live run for the same head
    assert len(plan.triggers) <= 1
    if plan.triggers:
        assert not live_for_head
        assert plan.triggers[0].commit == head and not draft
    # only stale live runs are cancelled (or all of them, for a skipped draft)
    for cancel in plan.cancels:
        cancelled = next(r for r in runs if r.record_id == cancel.record_id)
        assert cancelled.is_live and (cancelled.commit != head or draft)
    # statuses are only posted where they change something
    for post in plan.statuses:
        posted = next(r for r in runs if r.record_id == post.record_id)
        assert post.update.state is not posted.posted_state
