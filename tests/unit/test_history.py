"""The activity record and its read model: what the reconciler writes (in the transaction of the change), the
one sentence that says why a PR got or did not get a run, the overview's charts, who sees what, pruning."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bridge.domain import CancelRun, Plan, RunKind, RunStatus, TriggerRun
from bridge.history import explain, read
from bridge.history import record as activity
from bridge.history.charts import DayRuns, daily_bars
from bridge.history.explain import DeliveryFacts, PullRequestFacts, RunFacts, why
from bridge.history.record import Cause, Kind
from bridge.models import Activity, CiRun, Connection, Delivery, utcnow
from bridge.people import PersonId
from tests.fakes import RecordedTransport
from tests.orchestration import assemble

from .test_reconcile import _recorded_pr

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
HEAD = "5923b894aaaa"


def replay(tmp_path, scenario: str):
    transport = RecordedTransport.load(scenario)
    bridge = assemble(tmp_path, transport)
    return bridge, _recorded_pr(transport)


def kinds(bridge) -> list[str]:
    with bridge.db.session() as s:
        return list(s.scalars(select(Activity.kind).order_by(Activity.id)))


# -- what the reconciler records --------------------------------------------------------------------------

def test_a_passing_run_is_recorded_step_by_step_and_the_page_says_it_passed(tmp_path):
    bridge, pr = replay(tmp_path, "pr_passes")
    bridge.reconciler.reconcile(bridge.repository_id, pr, cause=Cause(delivery_id=77))
    with bridge.db.session() as s:
        run_id = s.scalar(select(CiRun.id))
    bridge.reconciler.settle_run(run_id, cause=Cause(delivery_id=78))
    assert kinds(bridge) == ["decision", "run-started", "status-posted", "run-settled", "status-posted"]
    with bridge.db.session() as s:
        shown = read.pull_request(s, read.ADMIN, bridge.repository_id, pr)
        delivery_ids = list(s.scalars(select(Activity.delivery_id).order_by(Activity.id)))
    assert delivery_ids == [77, 77, 77, 78, 78]  # each entry names the delivery whose work it was
    assert shown.known and shown.why.startswith("dbt run 1000 for ") and " passed" in shown.why
    assert shown.timeline[0].kind == "status-posted" and "succeeded" in shown.timeline[0].text
    assert shown.timeline[-1].text.startswith("new head commit") and "start a CI run" in shown.timeline[-1].text
    assert all(e.dbt_run_id == 1000 for e in shown.timeline[:-1])  # a status posted links to its run too


def test_a_draft_is_recorded_as_skipped_and_the_page_says_why(tmp_path):
    bridge, pr = replay(tmp_path, "draft_waits")
    bridge.reconciler.reconcile(bridge.repository_id, pr)
    with bridge.db.session() as s:
        shown = read.pull_request(s, read.ADMIN, bridge.repository_id, pr)
    assert shown.why.startswith(f"No run: PR {pr} is a draft")
    assert [e.text for e in shown.timeline] == ["draft pull request (skipped until published): nothing to do"]


def test_a_status_and_its_record_commit_together(tmp_path, monkeypatch):
    """The record is written in the transaction of the change: when it cannot be written, the posted state
    is not recorded either (and the next reconcile posts it again)."""
    bridge, pr = replay(tmp_path, "pr_passes")

    def broken(conn, kind, message, **about):
        raise RuntimeError("activity table unavailable")

    monkeypatch.setattr(activity, "execute", broken)
    with pytest.raises(RuntimeError):
        bridge.reconciler.reconcile(bridge.repository_id, pr)
    with bridge.db.session() as s:
        run = s.scalar(select(CiRun))
        assert run.dbt_run_id == 1000 and run.posted_state is None
        assert list(s.scalars(select(Activity.kind).order_by(Activity.id))) == ["decision", "run-started"]


def test_a_duplicate_and_a_replay_are_recorded(tmp_path):
    from bridge.deliveries.states import DeliveryState
    from bridge.deliveries.store import DeliveryStore, Selection
    from bridge.web.intake import Intake

    bridge, pr = replay(tmp_path, "pr_passes")
    intake = Intake(db=bridge.db, box=None)
    stored = intake.store(source="azure-devops", dedupe_key="e1", event_type="git.pullrequest.updated", event={},
                          state=DeliveryState.RECEIVED, repository_id=bridge.repository_id, pull_request_id=pr)
    assert intake.store(source="azure-devops", dedupe_key="e1", event_type="git.pullrequest.updated", event={},
                        state=DeliveryState.RECEIVED, repository_id=bridge.repository_id,
                        pull_request_id=pr) is None
    intake.record_duplicate("azure-devops", "e1", "git.pullrequest.updated", repository_id=bridge.repository_id,
                            pull_request_id=pr)
    with bridge.db.session() as s:
        s.get(Delivery, stored).state = "failed"
    sent: list[list[int]] = []
    DeliveryStore(bridge.db).drain(lambda ids: sent.append(ids) or True,
                                   Selection(states=frozenset({DeliveryState.FAILED})), replayed_by="token:admin")
    assert sent == [[stored]]
    with bridge.db.session() as s:
        shown = read.pull_request(s, read.ADMIN, bridge.repository_id, pr)
        page = read.delivery(s, read.ADMIN, stored)
    texts = [(e.kind, e.actor, e.delivery_id) for e in shown.timeline]
    assert ("replay", "token:admin", stored) in texts and ("duplicate", "azure-devops", stored) in texts
    assert ("delivery", "azure-devops", stored) in texts  # its receipt: the deliveries row itself
    assert [e.kind for e in page.activity] == ["replay", "duplicate"]


def test_a_refused_relay_send_records_no_replay(tmp_path):
    from bridge.deliveries.states import DeliveryState
    from bridge.deliveries.store import DeliveryStore, NotSent, Selection

    bridge, _ = replay(tmp_path, "pr_passes")
    with bridge.db.session() as s:
        s.add(Delivery(source="azure-devops", dedupe_key="f", event_type="x", event={}, state="failed"))
    with pytest.raises(NotSent):
        DeliveryStore(bridge.db).drain(lambda ids: False, Selection(states=frozenset({DeliveryState.FAILED})),
                                       replayed_by="cli")
    assert kinds(bridge) == []


# -- who sees what ----------------------------------------------------------------------------------------

def test_people_see_only_the_repositories_their_healthy_connection_reaches(tmp_path):
    bridge, pr = replay(tmp_path, "draft_waits")
    bridge.reconciler.reconcile(bridge.repository_id, pr)
    ada = PersonId("t-1", "o-1")
    someone = read.Viewer(admin=False, person=ada)
    with bridge.db.session() as s:
        assert read.pull_request(s, someone, bridge.repository_id, pr) is None
        assert read.find_pull_requests(s, someone) == [] and read.repository_page(s, someone, 1) is None
        assert read.pull_request(s, read.Viewer(admin=False), bridge.repository_id, pr) is None  # nobody
        s.add(Connection(home_account_id="o-1.t-1", oid="o-1", tenant_id="t-1", upn="ada@x", organizations=[
            "Fabrikam"], status="ok"))
    with bridge.db.session() as s:
        assert read.pull_request(s, someone, bridge.repository_id, pr) is not None
        assert [r.pull_request_id for r in read.find_pull_requests(s, someone)] == [pr]
        s.scalar(select(Connection)).status = "needs_reauth"
    with bridge.db.session() as s:
        assert read.find_pull_requests(s, someone) == []


def test_search_finds_pull_requests_by_repository_number_title_and_branch(tmp_path):
    bridge, pr = replay(tmp_path, "draft_waits")
    bridge.reconciler.reconcile(bridge.repository_id, pr)
    with bridge.db.session() as s:
        found = {q: [r.pull_request_id for r in read.find_pull_requests(s, read.ADMIN, q)] for q in (
            "fabrikam/fabrikam-fiber-git/DBT-ANALYTICS", str(pr), f"#{pr}", "analytics", "feature/", "nothing-like",
            "100%", "_")}
    assert found.pop("nothing-like") == [] and found.pop("100%") == [] and found.pop("_") == []  # LIKE escaped
    assert all(v == [pr] for v in found.values()), found


# -- the one sentence -------------------------------------------------------------------------------------

def facts(**given) -> PullRequestFacts:
    return PullRequestFacts(**{"pull_request_id": 7, "known": True, "head_commit": HEAD,
                               "reconciled_at": NOW - timedelta(minutes=10), **given})


def ci(status=RunStatus.SUCCESS, **given) -> RunFacts:
    return RunFacts(**{"dbt_run_id": 12, "kind": "ci", "commit": HEAD, "status": status, **given})


@pytest.mark.parametrize(("given", "expected"), [
    ({"known": False}, "The bridge has heard nothing of PR 7: no delivery named it. Check the repository's service"),
    ({"known": False, "problems": ("git.pullrequest.created: disabled by Azure DevOps",)},
     "The bridge has heard nothing of PR 7: no delivery named it. The repository's subscriptions need a person: "
     "git.pullrequest.created: disabled"),
    ({"deliveries": (DeliveryFacts(3, "blocked", "connection needs re-authorization", NOW),)},
     "Delivery 3 waits for its Azure DevOps identity to be re-authorized (connection needs re-authorization)"),
    ({"deliveries": (DeliveryFacts(3, "failed", "HTTP 500", NOW),)}, "Delivery 3 failed: HTTP 500. Fix the cause"),
    ({"deliveries": (DeliveryFacts(3, "received", None, NOW - timedelta(minutes=5)),)},
     "Delivery 3 arrived 5m 00s ago and no worker has finished it"),
    ({"deliveries": (DeliveryFacts(3, "received", None, NOW - timedelta(seconds=5)),), "runs": (ci(),)},
     "dbt run 12 for 5923b894 passed."),  # just arrived: not stuck, the run explains the state
    ({"deliveries": (DeliveryFacts(3, "failed", "old", NOW - timedelta(hours=1)),), "runs": (ci(),)},
     "dbt run 12 for 5923b894 passed."),  # failed before the last reconcile: no longer what explains it
    ({"state": "abandoned", "runs": (RunFacts(13, "teardown", None, RunStatus.SUCCESS),)},
     "PR 7 is abandoned: nothing more is built for it. Its schema teardown is dbt run 13 (succeeded)."),
    ({"is_draft": True, "last_reason": "draft pull request (skipped until published)"}, "No run: PR 7 is a draft"),
    ({"target_ref": "refs/heads/dev", "last_reason": "target branch refs/heads/dev is not built",
      "target_branches": ("refs/heads/main",)},
     "No run: PR 7 targets refs/heads/dev, which this repository does not build (target branches: refs/heads/main)."),
    ({"last_reason": "pull request has no source commit yet"}, "No run yet: Azure DevOps reports no source commit"),
    ({"runs": (ci(None, dbt_run_id=None, start_error="HTTP 401: Invalid token."),)},
     "dbt Cloud refused to start the run for 5923b894: HTTP 401: Invalid token. Fix the token or the job"),
    ({"runs": (ci(RunStatus.RUNNING),)}, "dbt run 12 for 5923b894 is running."),
    ({"runs": (ci(RunStatus.ERROR, duration_seconds=252, status_message="2 models failed"),)},
     "dbt run 12 for 5923b894 failed in 4m 12s: 2 models failed."),
    ({"runs": (ci(RunStatus.CANCELLED),)}, "dbt run 12 for 5923b894 was cancelled."),
    ({"runs": (ci(commit="0ld0ld0ld"),), "last_reason": "rerun requested"},
     "No run for the head 5923b894 yet; the last decision was: rerun requested."),
])
def test_why_names_the_first_thing_that_explains_the_state(given, expected):
    assert why(facts(**given), NOW).startswith(expected)


def test_a_plan_in_words():
    plan = Plan(triggers=[TriggerRun(RunKind.CI, HEAD, None)], cancels=[CancelRun(1, 99, "superseded")],
                reason="new head commit 5923b894")
    assert explain.describe_plan(plan) == "new head commit 5923b894: start a CI run, cancel dbt run 99 (superseded)"
    assert explain.describe_plan(Plan(reason="closed")) == "closed: nothing to do"


# -- charts -----------------------------------------------------------------------------------------------

def test_bars_stack_passed_failed_other_and_scale_to_the_busiest_day():
    chart = daily_bars([DayRuns(date(2026, 12, 1), 2, 1, 1), DayRuns(date(2026, 12, 2)),
                        DayRuns(date(2026, 12, 3), 1)], width=90, height=40)
    busy, empty, one = chart.bars
    assert chart.peak == 4 and empty.segments == () and empty.title == "2026-12-02: 0 passed, 0 failed, 0 other"
    assert [(s.part, s.y, s.height) for s in busy.segments] == [("passed", 20.0, 20.0), ("failed", 10.0, 10.0),
                                                                ("other", 0.0, 10.0)]
    assert [(s.part, s.y, s.height) for s in one.segments] == [("passed", 30.0, 10.0)]
    assert [b.x for b in chart.bars] == [2.0, 32.0, 62.0] and busy.width == 26.0 and busy.label == "Tue"
    assert daily_bars([]).bars == ()


def test_the_overview_counts_runs_per_day_and_the_pass_rate(tmp_path):
    bridge, pr = replay(tmp_path, "pr_passes")
    bridge.reconciler.reconcile(bridge.repository_id, pr)
    with bridge.db.session() as s:
        run = s.scalar(select(CiRun))
        bridge.reconciler.settle_run(run.id)
    with bridge.db.session() as s:
        shown = read.overview(s, read.ADMIN)
        page = read.repository_page(s, read.ADMIN, bridge.repository_id)
    [repo] = shown.repositories
    assert len(repo.days) == 7 and repo.days[-1].day == utcnow().date() and repo.days[-1].passed == 1
    assert repo.pass_rate == 1.0 and page.pass_rate == 1.0 and page.last_failure is None
    assert [r.outcome for r in page.runs] == ["succeeded"] and page.pull_requests[0].pull_request_id == pr


# -- retention --------------------------------------------------------------------------------------------

def test_pruning_removes_only_old_entries_in_batches(tmp_path):
    bridge, _ = replay(tmp_path, "pr_passes")
    old, new = utcnow() - timedelta(days=40), utcnow()
    with bridge.db.session() as s:
        for n in range(7):
            s.add(Activity(**{**activity.entry(Kind.DECISION, f"old {n}"), "at": old}))
        s.add(Activity(**activity.entry(Kind.DECISION, "new")))
    cutoff = new - timedelta(days=30)
    assert activity.prune(bridge.db, cutoff, dry_run=True) == 7
    assert activity.prune(bridge.db, cutoff, batch=3) == 7
    with bridge.db.session() as s:
        assert list(s.scalars(select(Activity.message))) == ["new"]
        assert s.scalar(select(func.count()).select_from(Activity)) == 1


def test_links_from_dbt_cloud_are_kept_only_when_they_are_http():
    assert read.safe_link("https://cloud.getdbt.com/x") == "https://cloud.getdbt.com/x"
    assert read.safe_link("javascript:alert(1)") is None and read.safe_link("JaVaScRiPt:x") is None
    assert read.safe_link(None) is None and read.safe_link("data:text/html,x") is None


# -- the CLI reads the same ------------------------------------------------------------------------------

def test_prs_show_and_list_for_scripts(tmp_path):
    import json

    from click.testing import CliRunner

    from bridge.cli import main

    bridge, pr = replay(tmp_path, "draft_waits")
    bridge.reconciler.reconcile(bridge.repository_id, pr)
    env = {"BRIDGE_DATABASE_URL": bridge.db.url, "COLUMNS": "200"}
    name = "fabrikam/Fabrikam-Fiber-Git/dbt-analytics"

    def run(*args):
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    shown = json.loads(run("prs", "show", name, str(pr), "--json").output)
    assert shown["known"] and shown["why"].startswith(f"No run: PR {pr} is a draft")
    assert shown["pull_request"]["title"] and shown["timeline"][0]["kind"] == "decision"
    table = run("prs", "show", name, str(pr))
    assert table.exit_code == 0 and "is a draft" in table.output and "timeline" in table.output
    unknown = run("prs", "show", name, "999", "--json")
    assert unknown.exit_code == 1 and "heard nothing of PR 999" in json.loads(unknown.output)["why"]
    assert run("prs", "show", "fabrikam/nope/nope", "1").exit_code == 1
    assert run("prs", "show", "not-a-path", "1").exit_code == 2
    listed = json.loads(run("prs", "list", "analytics", "--json").output)["pull_requests"]
    assert [p["pull_request_id"] for p in listed] == [pr] and listed[0]["is_draft"]
    assert json.loads(run("prs", "list", "no-such-thing", "--json").output) == {"pull_requests": []}
