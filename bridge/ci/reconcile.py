"""Make a pull request's CI match the pull request: read the truth, ask the domain's plan, carry it out.

Every entry point runs under the pull request's lock, so duplicate, retried and out-of-order deliveries
are serialized and each one only ever moves the world toward the same end state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session, joinedload, selectinload

from .. import domain
from ..clients.azure_devops import AzureDevOpsClient
from ..clients.dbt_cloud import DbtCloudClient
from ..db import Database
from ..domain import (
    CiSettings,
    DbtRun,
    PullRequest,
    RecordedRun,
    RunKind,
    StatusContext,
)
from ..errors import ApiError, BadRequest, Forbidden, NotFound, Unauthorized
from ..history import record as activity
from ..history.explain import describe_plan, run_outcome
from ..history.record import WORKER, Cause, Kind
from ..locks import Lease
from ..metrics import Metrics
from ..models import CiRun, DbtAccount, Organization, PullRequestRecord, Repository, utcnow
from ..services.connections import Connections
from . import summary
from .records import apply_run, ci_settings, recorded, whole_run

log = logging.getLogger(__name__)

LockFactory = Callable[[str], AbstractContextManager[Lease]]

# A trigger whose answer we never saw (worker killed, connection reset) is looked up in dbt Cloud
# before it is repeated, so that one push never starts two runs.
IN_DOUBT_LOOKBACK = timedelta(hours=6)


@dataclass(frozen=True)
class Target:
    """Where a pull request's statuses go: the client and the PR's coordinates in Azure DevOps."""

    ado: AzureDevOpsClient
    project: str
    repository: str
    pull_request_id: int
    context: StatusContext
    repository_id: int  # ours, for the activity record
    lease: Lease        # the PR's lock: checked before each act, so a holder whose lease lapsed stops
    cause: Cause = WORKER

    def about(self, **more) -> dict:
        return {"cause": self.cause, "repository_id": self.repository_id, "pull_request_id": self.pull_request_id,
                **more}


@dataclass
class Outcome:
    reason: str
    triggered: int = 0
    cancelled: int = 0
    posted: int = 0


# A repository is read with its organization and dbt account in one query: each reconcile needs all three.
WITH_OWNERS = (joinedload(Repository.organization), joinedload(Repository.dbt_account))


# Built once (compiled once, never keyed again): what a posted status leaves on its run.
POSTED = sql_update(CiRun).where(CiRun.id == bindparam("run_id")).values(
    posted_state=bindparam("state"), posted_description=bindparam("description"))


class Reconciler:
    def __init__(self, db: Database, connections: Connections, lock: LockFactory, metrics: Metrics):
        self.db = db
        self.connections = connections
        self.lock = lock
        self.metrics = metrics

    # -- entry points -------------------------------------------------------------------------------

    def reconcile(self, repository_id: int, pull_request_id: int, *, rerun: bool = False,
                  cause: Cause = WORKER) -> Outcome:
        with self.lock(f"pr:{repository_id}:{pull_request_id}") as lease:
            return self._reconcile(repository_id, pull_request_id, lease, rerun=rerun, cause=cause)

    def settle_run(self, ci_run_id: int, dbt_run: DbtRun | None = None, *, cause: Cause = WORKER) -> Outcome:
        """Take in news of a run (a dbt webhook, or a poll when ``dbt_run`` is None) and post its status."""
        with self.db.session() as s:
            run = s.get(CiRun, ci_run_id)
            if run is None:
                return Outcome("unknown run")
            key = f"pr:{run.pull_request.repository_id}:{run.pull_request.pull_request_id}"
        with self.lock(key) as lease:
            return self._settle(ci_run_id, dbt_run, lease, cause)

    def refused_heads(self) -> list[tuple[int, int]]:
        """(repository id, pull request id) of the open pull requests whose head's newest CI run could not
        start (dbt Cloud refused it: a token, a permission, a job). Run again once a person has fixed that."""
        newest = (select(func.max(CiRun.id)).where(CiRun.kind == RunKind.CI.value)
                  .group_by(CiRun.pull_request_ref).scalar_subquery())
        with self.db.session() as s:
            rows = s.execute(select(PullRequestRecord.repository_id, PullRequestRecord.pull_request_id)
                             .join(CiRun, CiRun.pull_request_ref == PullRequestRecord.id)
                             .where(CiRun.id.in_(newest), CiRun.start_error.is_not(None),
                                    CiRun.commit == PullRequestRecord.head_commit,
                                    PullRequestRecord.status == "active")
                             .order_by(PullRequestRecord.id)).all()
        return [(repository_id, pull_request_id) for repository_id, pull_request_id in rows]

    def stale_in_project(self, organization_id: int, project_id: str) -> list[tuple[int, int]]:
        """(repository id, pull request id) of the pull requests of a project's linked repositories whose state
        Azure DevOps and the bridge disagree on: active ones with a head the bridge has not reconciled, and
        ones the bridge thinks active that no longer are. One listing for the whole project (counted against
        the sweep's budget). The safety net for deliveries that never came (a disabled hook, a long outage)."""
        with self.db.session() as s:
            org = s.get(Organization, organization_id)
            repos = {r.ado_repository_id.lower(): r.id for r in s.scalars(select(Repository).where(
                Repository.organization_id == organization_id, Repository.ado_project_id == project_id))}
        if org is None or not repos:
            return []
        active = {}
        for pr in self.connections.azure_devops(org, kind="sweep").list_project_pull_requests(project_id):
            repository_id = repos.get(pr.repository_id.lower())
            if repository_id is not None:  # other repositories of the project are not the bridge's
                active[repository_id, pr.pull_request_id] = pr.head_commit
        with self.db.session() as s:
            known = {(r.repository_id, r.pull_request_id): (r.status, r.head_commit) for r in s.scalars(
                select(PullRequestRecord).where(PullRequestRecord.repository_id.in_(sorted(repos.values())),
                                                PullRequestRecord.status == "active"))}
        stale = [key for key, head in active.items() if known.get(key) != ("active", head)]
        stale += [key for key in known if key not in active]
        return sorted(set(stale))

    # -- internals ----------------------------------------------------------------------------------

    def _reconcile(self, repository_id: int, pull_request_id: int, lease: Lease, *, rerun: bool,
                   cause: Cause) -> Outcome:
        with self.db.session() as s:
            repo = s.get(Repository, repository_id, options=WITH_OWNERS)
            if repo is None:
                return Outcome("repository is no longer configured")
            org, account = repo.organization, repo.dbt_account
            settings = ci_settings(repo)
            project, ado_repo = repo.ado_project_id, repo.ado_repository_id
        ado = self.connections.azure_devops(org)
        dbt = self.connections.dbt_cloud(account)

        try:
            pr = ado.get_pull_request(project, ado_repo, pull_request_id)
        except NotFound:
            pr = None

        about = {"cause": cause, "repository_id": repository_id, "pull_request_id": pull_request_id}
        with self.db.session() as s:
            record = self._pr_record(s, repository_id, pull_request_id, pr)
            if rerun and cause.delivery_id is not None:  # the comment's delivery (the CLI records its own)
                activity.add(s, Kind.COMMAND, "`/dbt rerun` commented on the pull request", **about)
            in_doubt = [r.id for r in record.runs
                        if r.dbt_run_id is None and r.start_error is None]
            runs = [recorded(r) for r in record.runs]
            if not in_doubt:  # the common case: decide and record the decision in the same transaction
                plan = domain.plan(pr, runs, settings, rerun=rerun)
                record.last_reason, record.reconciled_at = plan.reason, utcnow()
                activity.add(s, Kind.DECISION, describe_plan(plan), **about)
            s.flush()  # a new record is one INSERT, with the decision in it
            record_id = record.id
        if in_doubt:
            for run_id in in_doubt:
                self._resolve_in_doubt(run_id, dbt, pull_request_id, about)
            with self.db.session() as s:
                record = s.get(PullRequestRecord, record_id)
                runs = [recorded(r) for r in record.runs]
                plan = domain.plan(pr, runs, settings, rerun=rerun)
                record.last_reason, record.reconciled_at = plan.reason, utcnow()
                activity.add(s, Kind.DECISION, describe_plan(plan), **about)
        outcome = Outcome(plan.reason)

        target = Target(ado, project, ado_repo, pull_request_id, settings.status_context, repository_id, lease, cause)
        for cancel in plan.cancels:
            self._cancel(dbt, cancel, target)
            outcome.cancelled += 1
        for post in plan.statuses:
            self._post(target, post.record_id, post.update)
            outcome.posted += 1
        for trigger in plan.triggers:
            assert pr is not None
            outcome.posted += self._trigger(target, dbt, record_id, pr, settings=settings, trigger=trigger)
            outcome.triggered += 1

        log.info("reconciled PR %s of repository %s: %s (triggered %d, cancelled %d, posted %d)",
                 pull_request_id, repository_id, plan.reason, outcome.triggered, outcome.cancelled, outcome.posted)
        return outcome

    @staticmethod
    def _pr_record(s: Session, repository_id: int, pull_request_id: int,
                   pr: PullRequest | None) -> PullRequestRecord:
        record = s.scalar(select(PullRequestRecord).options(selectinload(PullRequestRecord.runs)).where(
            PullRequestRecord.repository_id == repository_id,
            PullRequestRecord.pull_request_id == pull_request_id))  # runs read before any change: one UPDATE
        if record is None:  # known to have no runs: reading them would be a query
            record = PullRequestRecord(repository_id=repository_id, pull_request_id=pull_request_id, runs=[])
            s.add(record)
        if pr is None:
            record.status = "deleted"
        else:
            record.title = pr.title[:500]
            record.status = pr.status.value
            record.is_draft = pr.is_draft
            record.target_ref = pr.target_ref
            record.source_ref = pr.source_ref[:500]
            record.head_commit = pr.head_commit
        return record

    def _resolve_in_doubt(self, ci_run_id: int, dbt: DbtCloudClient, pull_request_id: int, about: dict) -> None:
        """Find the dbt run a lost trigger may have started; otherwise mark the attempt as not started."""
        with self.db.session() as s:
            run = s.get(CiRun, ci_run_id)
            job_id, commit, created = run.dbt_job_id, run.commit, run.created_at
        found = None
        for dbt_run, trigger in dbt.list_runs(job_id):
            if dbt_run.started_at and created and dbt_run.started_at < created - IN_DOUBT_LOOKBACK:
                break
            same_pr = trigger.get("azure_pull_request_id") == pull_request_id
            same_sha = (trigger.get("git_sha") or dbt_run.git_sha) == commit
            if same_pr and same_sha:
                found = dbt_run
                break
        with self.db.session() as s:
            run = s.get(CiRun, ci_run_id)
            if found is not None:
                run.dbt_run_id = found.run_id
                apply_run(run, found)
                activity.add(s, Kind.RUN_RECOVERED, f"found dbt run {found.run_id} that an interrupted start of job "
                             f"{job_id} made for {domain.short(commit)}", ci_run_id=ci_run_id,
                             dbt_run_id=found.run_id, **about)
                log.info("recovered dbt run %s for an interrupted trigger (record %s)", found.run_id, ci_run_id)
            else:
                s.delete(run)  # never started: the plan will start it again
                activity.add(s, Kind.RUN_RECOVERED, f"an interrupted start of job {job_id} for {domain.short(commit)} "
                             "never reached dbt Cloud: starting it again", **about)

    def _cancel(self, dbt: DbtCloudClient, cancel: domain.CancelRun, target: Target) -> None:
        target.lease.check()
        try:
            answer = dbt.cancel_run(cancel.dbt_run_id)
        except NotFound:
            answer = None
        with self.db.session() as s:
            run = s.get(CiRun, cancel.record_id)
            run.cancel_requested = True
            run.superseded = run.superseded or cancel.reason in ("superseded", "not-applicable")
            if answer is not None:
                apply_run(run, answer)
            activity.add(s, Kind.RUN_CANCELLED, f"asked dbt Cloud to cancel run {cancel.dbt_run_id} ({cancel.reason})"
                         + ("" if answer is not None else ": dbt Cloud no longer knows it"),
                         **target.about(ci_run_id=cancel.record_id, dbt_run_id=cancel.dbt_run_id))
        self.metrics.runs_cancelled.labels(reason=cancel.reason).inc()

    def _post(self, target: Target, record_id: int, update: domain.StatusUpdate) -> None:
        target.lease.check()
        target.ado.post_status(target.project, target.repository, target.pull_request_id, target.context, update)
        with self.db.engine.begin() as conn:  # the run's posted state and its record, no read first
            conn.execute(POSTED, {"run_id": record_id, "state": update.state.value,
                                  "description": update.description})
            activity.execute(conn, Kind.STATUS_POSTED, f"posted {target.context.genre}/{target.context.name} "
                             f"{update.state.value}: {update.description}", **target.about(ci_run_id=record_id))
        self.metrics.statuses_posted.labels(state=update.state.value).inc()

    def _trigger(self, target: Target, dbt: DbtCloudClient, record_id: int, pr: PullRequest, *,
                 settings: CiSettings, trigger: domain.TriggerRun) -> int:
        """Start a run; record it first so that a lost answer is found again rather than repeated."""
        target.lease.check()
        teardown = trigger.kind is RunKind.TEARDOWN
        job_id = settings.teardown_job_id if teardown else settings.ci_job_id
        iteration = None
        if not teardown:
            iteration = domain.iteration_for(trigger.commit, target.ado.list_iterations(
                target.project, target.repository, pr.pull_request_id))
        with self.db.session() as s:
            run = whole_run(pull_request_ref=record_id, kind=trigger.kind.value, commit=trigger.commit,
                            iteration_id=iteration, dbt_account_id=dbt.account_id, dbt_job_id=job_id)
            s.add(run)
            s.flush()
            run_id = run.id
        target.lease.check()  # recorded, not sent: the next holder finds it in doubt and starts it
        try:
            started = dbt.trigger_run(
                job_id, cause=domain.run_cause(pr, kind=trigger.kind),
                git_sha=None if teardown else trigger.commit, pull_request_id=pr.pull_request_id,
                schema_override=domain.pr_schema(settings.ci_job_id, pr.pull_request_id))
        except (BadRequest, Forbidden, NotFound, Unauthorized) as exc:
            with self.db.session() as s:
                s.add(run)  # the record as inserted (no one else writes it before it has a dbt run id)
                run.start_error = _start_error(exc)
                snapshot = recorded(run)
                activity.add(s, Kind.RUN_REFUSED, f"dbt Cloud refused to start job {job_id} for "
                             f"{domain.short(trigger.commit)}: {run.start_error}", **target.about(ci_run_id=run_id))
            self.metrics.runs_started.labels(kind=trigger.kind.value, result="refused").inc()
            log.warning("dbt Cloud refused to start job %s for PR %s: %s", job_id, pr.pull_request_id, exc)
            update = domain.needs_post(snapshot, pr.head_commit)
            if update is not None:
                self._post(target, run_id, update)
                return 1
            return 0
        with self.db.session() as s:
            s.add(run)
            run.dbt_run_id = started.run_id
            apply_run(run, started)
            snapshot = recorded(run)
            what = "teardown run" if teardown else f"run for {domain.short(trigger.commit)}"
            activity.add(s, Kind.RUN_STARTED, f"started dbt {what}: run {started.run_id} of job {job_id}",
                         **target.about(ci_run_id=run_id, dbt_run_id=started.run_id))
        self.metrics.runs_started.labels(kind=trigger.kind.value, result="started").inc()
        log.info("started dbt run %s (job %s) for PR %s @ %s", started.run_id, job_id, pr.pull_request_id,
                 domain.short(trigger.commit))
        update = domain.needs_post(snapshot, pr.head_commit)
        if update is not None:
            self._post(target, run_id, update)
            return 1
        return 0

    def _settle(self, ci_run_id: int, dbt_run: DbtRun | None, lease: Lease, cause: Cause) -> Outcome:
        with self.db.session() as s:
            run = s.get(CiRun, ci_run_id)
            record = run.pull_request
            repo = s.get(Repository, record.repository_id, options=WITH_OWNERS)
            org, account = repo.organization, repo.dbt_account
            settings = ci_settings(repo)
            project, ado_repo, pr_number = repo.ado_project_id, repo.ado_repository_id, record.pull_request_id
            repository_id, dbt_run_id = repo.id, run.dbt_run_id
            thread = (record.summary_thread_id, record.summary_comment_id)
        if dbt_run_id is None:
            return Outcome("run was never started")
        if dbt_run is None:
            dbt_run = self.connections.dbt_cloud(account).get_run(dbt_run_id)
        with self.db.session() as s:
            run = s.get(CiRun, ci_run_id)
            if apply_run(run, dbt_run):
                took = domain.format_duration(run.duration_seconds)
                activity.add(s, Kind.RUN_SETTLED, f"dbt run {dbt_run_id} {run_outcome(dbt_run.status)}"
                             + (f" in {took}" if took and dbt_run.status.is_terminal else ""), cause=cause,
                             repository_id=repository_id, pull_request_id=pr_number, ci_run_id=ci_run_id,
                             dbt_run_id=dbt_run_id)
            snapshot = recorded(run)
            head = run.pull_request.head_commit
            closed = run.pull_request.status in domain.CLOSED_STATES
            summarized = run.summary_posted
        if snapshot.status and snapshot.status.is_terminal:
            self.metrics.runs_finished.labels(kind=snapshot.kind.value,
                                              status=snapshot.status.name.lower()).inc()
        results = None
        if not closed and not summarized and domain.wants_results(snapshot, head, has_thread=thread[0] is not None):
            results = self._read_results(dbt_run_id, account)
        if results is not None and results.failures and snapshot.failure_tally is None:
            snapshot = self._keep_tally(ci_run_id, summary.failure_tally(results))
        update = None if closed else domain.needs_post(snapshot, head)
        if update is None and results is None:
            return Outcome("nothing to post")  # no client built: a progress webhook costs no credentials
        target = Target(self.connections.azure_devops(org), project, ado_repo, pr_number, settings.status_context,
                        repository_id, lease, cause)
        if update is not None:
            self._post(target, ci_run_id, update)
        if results is not None:
            self._post_summary(target, key=f"job:{settings.ci_job_id}", thread=thread, ci_run_id=ci_run_id,
                               results=results, run=snapshot)
        return Outcome("nothing to post") if update is None else Outcome(f"posted {update.state.value}", posted=1)

    def _read_results(self, dbt_run_id: int, account: DbtAccount) -> summary.Summary | None:
        """The finished run's results, read once; None when it has none (it failed before any node ran) or
        they cannot be read — then dbt Cloud's message stands and no summary is posted."""
        try:
            raw = self.connections.dbt_cloud(account).run_results(dbt_run_id)
            return summary.read_run_results(raw) if raw is not None else None
        except summary.ArtifactError as exc:
            log.warning("dbt run %s: its run_results.json could not be read: %s", dbt_run_id, exc)
            return None

    def _keep_tally(self, ci_run_id: int, tally: str) -> RecordedRun:
        with self.db.session() as s:
            run = s.get(CiRun, ci_run_id)
            run.failure_tally = tally[:300]
            return recorded(run)

    def _post_summary(self, target: Target, *, key: str, thread: tuple[int | None, int | None], ci_run_id: int,
                      results: summary.Summary, run: RecordedRun) -> None:
        """One thread per CI job on the PR, found again by its property: created on the first failure, then
        edited in place on every later run, active while failing and resolved once passing."""
        target.lease.check()
        facts = summary.RunFacts(run_id=run.dbt_run_id, commit=run.commit or "",
                                 duration=domain.format_duration(run.duration_seconds),
                                 run_url=run.href if (run.href or "").startswith(("https://", "http://")) else None)
        text, status = summary.thread_markdown(results, facts), ("active" if results.failures else "fixed")
        ado, where = target.ado, (target.project, target.repository, target.pull_request_id)
        thread_id, comment_id = thread
        if thread_id is None:
            found = next((t for t in ado.list_threads(*where) if t.properties.get(summary.THREAD_PROPERTY) == key),
                         None)
            thread_id, comment_id = (found.id, found.first_comment_id) if found else (None, None)
        if thread_id is not None and comment_id is not None:
            try:
                ado.edit_comment(*where, thread_id=thread_id, comment_id=comment_id, content=text)
                ado.set_thread_status(*where, thread_id=thread_id, status=status)
            except NotFound:  # a person deleted it: a new one
                thread_id = None
        if thread_id is None or comment_id is None:
            made = ado.create_thread(*where, content=text, status=status, properties={summary.THREAD_PROPERTY: key})
            thread_id, comment_id = made.id, made.first_comment_id
        with self.db.session() as s:
            run_row = s.get(CiRun, ci_run_id)
            run_row.summary_posted = True
            record = run_row.pull_request
            record.summary_thread_id, record.summary_comment_id = thread_id, comment_id


def _start_error(exc: ApiError) -> str:
    status = f"HTTP {exc.status}: " if exc.status else ""
    text = str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
    return f"{status}{text}"[:300]
