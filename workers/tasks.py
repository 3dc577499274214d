"""Celery tasks, registered under ``bridge.contracts``' names. Payloads are ids; every task is idempotent;
``BridgeTask`` alone decides retries (with ``bridge.retry``). Each task finds its services with ``runtime_of``."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task, shared_task
from sqlalchemy import or_, select

from bridge import retry
from bridge.ci import sweep
from bridge.contracts import (
    CHECK_SUBSCRIPTIONS,
    DISPATCH_DELIVERIES,
    NOTIFY_PEOPLE,
    POLL_QUIET_RUNS,
    PROCESS_DELIVERY,
    PRUNE_HISTORY,
    RECONCILE_PULL_REQUEST,
    REFRESH_CONNECTION,
    REFRESH_RUN,
    RERUN_PULL_REQUEST,
    RETRY_REFUSED_STARTS,
    RUN_ONBOARDING_JOB,
    SWEEP_DELIVERIES,
    SWEEP_PROJECT,
    SWEEP_PULL_REQUESTS,
)
from bridge.deliveries import codec
from bridge.deliveries.states import DeliveryState
from bridge.deliveries.store import Claimed, Selection
from bridge.domain import DbtRunEvent, PullRequestEvent, RunStatus, is_rerun_command
from bridge.errors import ApiError, ConfigError, IdentityError, LockBusy, NotSent, PayloadError, ReauthRequired
from bridge.history import record as activity
from bridge.history.record import Cause
from bridge.logs import log_context
from bridge.models import CiRun, Organization, Repository, utcnow
from bridge.onboarding import console_jobs

from .runtime import Runtime, runtime_of

log = logging.getLogger(__name__)


class BridgeTask(Task):
    """Retries what ``retry.is_retryable`` calls transient, with backoff and jitter that honour
    ``Retry-After``; anything else fails once, visibly, without a retry storm."""

    abstract = True
    acks_late = True
    max_retries = None  # the limit is ours (``settings.task_max_retries``); lock waits are not counted

    @property
    def runtime(self) -> Runtime:
        return runtime_of(self.app)

    def __call__(self, *args, **kwargs):
        try:
            return self.run(*args, **kwargs)
        except Exception as exc:
            if not retry.is_retryable(exc):
                raise
            lock_busy = isinstance(exc, LockBusy)
            limit = None if lock_busy else self.runtime.settings.task_max_retries
            if limit is not None and self.request.retries >= limit:
                self.runtime.metrics.task_failures.labels(task=self.name, error=type(exc).__name__).inc()
                self.on_give_up(exc, *args, **kwargs)
                raise
            countdown = retry.delay(self.request.retries, exc)
            self.runtime.metrics.task_retries.labels(task=self.name, error=type(exc).__name__).inc()
            log.info("%s%r: %s; retrying in %.1fs", self.name, args, _safe(exc), countdown)
            raise self.retry(exc=exc, countdown=countdown, max_retries=limit) from None

    def on_give_up(self, exc: Exception, *args, **kwargs) -> None:
        """Called when retries are exhausted."""


def _safe(exc: BaseException) -> str:
    """An error for the log: type and message (our messages never carry secrets), bounded in length."""
    return f"{type(exc).__name__}: {str(exc)[:300]}"


class DeliveryTask(BridgeTask):
    """A delivery whose retries ran out is marked failed, with why."""

    abstract = True

    def __call__(self, delivery_id, *args, **kwargs):
        with log_context(delivery_id=delivery_id):  # its retries and give-up too
            return super().__call__(delivery_id, *args, **kwargs)

    def on_give_up(self, exc, delivery_id, *args, **kwargs):
        self.runtime.deliveries.finish(delivery_id, DeliveryState.FAILED, f"gave up after retries: {_safe(exc)}")


@shared_task(bind=True, base=DeliveryTask, name=PROCESS_DELIVERY)
def process_delivery(self, delivery_id: int) -> str:
    rt = self.runtime
    store = rt.deliveries
    claimed = store.claim(delivery_id)
    if not isinstance(claimed, Claimed):
        return claimed  # missing, or a redelivered message whose work is done
    try:
        event = codec.decode(claimed.source, claimed.event)
        if isinstance(event, PullRequestEvent):
            with log_context(repository_id=claimed.repository_id, pr=event.pull_request_id):
                outcome = rt.reconciler.reconcile(claimed.repository_id, event.pull_request_id,
                                                  rerun=is_rerun_command(event.comment),
                                                  cause=Cause(delivery_id=delivery_id))
            store.finish(delivery_id, DeliveryState.PROCESSED)
            return outcome.reason
        with log_context(dbt_run_id=event.run_id):
            return _dbt_event(rt, delivery_id, claimed.dbt_account_id, event)
    except ReauthRequired as exc:
        # Not a failure of this delivery: it waits (state "blocked") and is re-run when someone
        # reconnects, instead of retrying uselessly against dead tokens.
        log.warning("delivery %s blocked: %s", delivery_id, exc.reason)
        store.finish(delivery_id, DeliveryState.BLOCKED, exc.reason)
        rt.metrics.task_failures.labels(task=self.name, error=type(exc).__name__).inc()
        return "blocked"
    except (ApiError, ConfigError, IdentityError, PayloadError) as exc:
        if retry.is_retryable(exc):
            raise
        log.warning("delivery %s failed: %s", delivery_id, _safe(exc))
        store.finish(delivery_id, DeliveryState.FAILED, _safe(exc))
        rt.metrics.task_failures.labels(task=self.name, error=type(exc).__name__).inc()
        return "failed"


@shared_task(bind=True, base=BridgeTask, name=DISPATCH_DELIVERIES)
def dispatch_deliveries(self, delivery_ids: list[int]) -> int:
    """Fan a batch the outbox relay claimed out to one task per delivery."""
    for delivery_id in delivery_ids:
        process_delivery.apply_async(args=[int(delivery_id)])
    return len(delivery_ids)


@shared_task(bind=True, base=BridgeTask, name=RECONCILE_PULL_REQUEST)
def reconcile_pull_request(self, repository_id: int, pull_request_id: int) -> str:
    with log_context(repository_id=repository_id, pr=pull_request_id):
        return self.runtime.reconciler.reconcile(repository_id, pull_request_id).reason


@shared_task(bind=True, base=BridgeTask, name=RERUN_PULL_REQUEST)
def rerun_pull_request(self, repository_id: int, pull_request_id: int) -> str:
    """A fresh run of the head (``bridge prs rerun``), unless one is live."""
    with log_context(repository_id=repository_id, pr=pull_request_id):
        return self.runtime.reconciler.reconcile(repository_id, pull_request_id, rerun=True).reason


@shared_task(bind=True, base=BridgeTask, name=RETRY_REFUSED_STARTS)
def retry_refused_starts(self) -> str:
    """After a fix (a token, an identity, a connection): rerun each open head whose run dbt Cloud refused to
    start. One that is still refused is refused again, visibly, and waits for the next fix."""
    return _retry_refused(self.runtime)


def _retry_refused(rt: Runtime) -> str:
    heads = rt.reconciler.refused_heads()
    retried = 0
    for repository_id, pull_request_id in heads:
        with log_context(repository_id=repository_id, pr=pull_request_id):
            try:
                rt.reconciler.reconcile(repository_id, pull_request_id, rerun=True)
                retried += 1
            except (ApiError, IdentityError, LockBusy) as exc:  # this one waits; the others still go
                log.warning("could not retry a refused start: %s", exc)
    if heads:
        log.info("retried %d of %d pull requests whose run could not start", retried, len(heads))
    return f"{retried} of {len(heads)} refused starts retried"


@shared_task(bind=True, base=BridgeTask, name=REFRESH_RUN)
def refresh_run(self, ci_run_id: int) -> str:
    with log_context(ci_run_id=ci_run_id):
        return self.runtime.reconciler.settle_run(ci_run_id).reason


@shared_task(bind=True, base=BridgeTask, name=SWEEP_DELIVERIES)
def sweep_deliveries(self) -> int:
    """The safety net under the relay, sending the relay's way: deliveries stored but not sent for
    ``sweep_after``, and those sent but unfinished after ``redispatch_after`` (a message lost with Redis)."""
    rt = self.runtime
    now = utcnow()
    waiting = _resend(rt, "waiting", Selection(
        received_before=now - timedelta(seconds=rt.settings.sweep_after)))
    lost = _resend(rt, "lost", Selection(
        states=frozenset({DeliveryState.DISPATCHED, DeliveryState.PROCESSING}),
        dispatched_before=now - timedelta(seconds=rt.settings.redispatch_after)))
    if waiting or lost:
        log.info("sweeper sent %d waiting and %d lost deliveries", waiting, lost)
    return waiting + lost


@shared_task(bind=True, base=BridgeTask, name=REFRESH_CONNECTION)
def refresh_connection(self, connection_id: int) -> str:
    """Read a new connection's profile and organizations with its own token."""
    store = self.runtime.entra
    if store is None:
        return "Entra ID is not configured"
    try:
        organizations = store.refresh_profile(connection_id)
    except IdentityError as exc:  # marked on the connection (needs_reauth) when a person must act
        log.warning("connection %s: %s", connection_id, exc.reason)
        return "failed"
    # The deliveries that waited for a dead identity run again; those whose identity is still dead block
    # again, so nothing is lost either way.
    resumed = _resend(self.runtime, "blocked", Selection(states=frozenset({DeliveryState.BLOCKED})))
    if resumed:
        log.info("resumed %d blocked deliveries", resumed)
    retried = _retry_refused(self.runtime)  # a run refused for this identity's lack may start now
    return f"{', '.join(organizations)}; {resumed} blocked deliveries resumed; {retried}"


@shared_task(bind=True, base=BridgeTask, name=RUN_ONBOARDING_JOB)
def run_onboarding_job(self, job_id: int) -> str:
    """Carry out a console request, recording progress on the job row the page shows."""
    outcome = console_jobs.run(self.runtime.db, self.runtime.onboarding, int(job_id))
    if outcome == console_jobs.ACCOUNT_SAVED:
        _retry_refused(self.runtime)
    return outcome


@shared_task(bind=True, base=BridgeTask, name=CHECK_SUBSCRIPTIONS)
def check_subscriptions(self) -> dict:
    """List the bridge's service hooks and dbt webhooks; heal what may be healed, record the rest."""
    return self.runtime.onboarding.check_health()


@shared_task(bind=True, base=BridgeTask, name=PRUNE_HISTORY)
def prune_history(self) -> int:
    """Delete finished deliveries and activity older than BRIDGE_RETENTION_DAYS, in small batches (hourly,
    from beat)."""
    rt = self.runtime
    days = rt.settings.retention_days
    before = utcnow() - timedelta(days=days)
    pruned = rt.deliveries.prune(before)
    entries = activity.prune(rt.db, before)
    if pruned or entries:
        log.info("pruned %d deliveries and %d activity entries older than %g days", pruned, entries, days)
    return pruned + entries


@shared_task(bind=True, base=BridgeTask, name=NOTIFY_PEOPLE)
def notify_people(self) -> str:
    """Post the problems that need a person and are new since the last round (bridge/notifications.py)."""
    notifier = self.runtime.notifier
    if notifier is None:
        return "BRIDGE_NOTIFY_URL is not set"
    done = notifier.run()
    return f"{len(done.posted)} posted, {len(done.failed)} to try again, {done.cleared} cleared"


@shared_task(bind=True, base=BridgeTask, name=SWEEP_PULL_REQUESTS)
def sweep_pull_requests(self, now: bool = False) -> int:
    """Plan a round of the PR sweep (``bridge.ci.sweep``): one listing per linked project, within each
    organization's share of Azure DevOps' budget, the least recently listed first, spread over the interval
    (``now``: a person asked, so all that the budget allows at once). How many listings were queued."""
    rt = self.runtime
    with rt.db.session() as s:
        rows = s.execute(select(Organization.id, Organization.name, Repository.ado_project_id).join(
            Repository, Repository.organization_id == Organization.id).distinct()).all()
    projects: dict[tuple[int, str], list[str]] = {}
    for organization_id, name, project_id in rows:
        projects.setdefault((organization_id, name), []).append(project_id)
    keys = [f"{org_id}:{p}" for (org_id, _), ids in projects.items() for p in ids]
    interval = rt.settings.pr_sweep_interval or 300.0
    planned = sweep.plan(projects, last_listed=rt.calls.listed(keys),
                         used=rt.calls.last_window(name for _, name in projects),
                         share=rt.settings.pr_sweep_share, interval=interval, spread=not now)
    for listing in planned.listings:
        sweep_project.apply_async(args=[listing.organization_id, listing.project_id], countdown=listing.delay)
    for organization, left in planned.deferred.items():
        log.info("PR sweep of %s: %d projects wait for a later round (its share of Azure DevOps' budget is "
                 "spent)", organization, left)
    return len(planned.listings)


@shared_task(bind=True, base=BridgeTask, name=SWEEP_PROJECT)
def sweep_project(self, organization_id: int, project_id: str) -> int:
    """List a project's active pull requests once and reconcile each of its linked repositories' PRs whose
    state Azure DevOps and the bridge disagree on."""
    rt = self.runtime
    rt.calls.mark_listed(f"{organization_id}:{project_id}")
    try:
        stale = rt.reconciler.stale_in_project(organization_id, project_id)
    except (ApiError, ConfigError) as exc:
        log.warning("PR sweep of project %s failed: %s", project_id, _safe(exc))
        return 0
    for repository_id, pull_request_id in stale:
        reconcile_pull_request.apply_async(args=[repository_id, pull_request_id])
    if stale:
        log.info("PR sweep of project %s found %d pull requests to reconcile", project_id, len(stale))
    return len(stale)


@shared_task(bind=True, base=BridgeTask, name=POLL_QUIET_RUNS)
def poll_quiet_runs(self) -> int:
    """Ask dbt Cloud about runs with no news for a while: cancellations send no webhook, and webhooks
    can be lost or deactivated."""
    rt = self.runtime
    quiet = utcnow() - timedelta(seconds=rt.settings.quiet_after)
    with rt.db.session() as s:
        ids = s.scalars(select(CiRun.id).where(
            CiRun.dbt_run_id.is_not(None),
            or_(CiRun.status.is_(None), CiRun.status < int(RunStatus.SUCCESS)),
            CiRun.updated_at < quiet).limit(500)).all()
        for run in s.scalars(select(CiRun).where(CiRun.id.in_(ids))):
            run.updated_at = utcnow()  # do not ask again before quiet_after has passed
    for ci_run_id in ids:
        refresh_run.apply_async(args=[ci_run_id])
    return len(ids)


def _resend(rt, what: str, selection: Selection) -> int:
    """Send the deliveries ``selection`` picks the relay's way (claimed and sent in one transaction, rolled
    back if the broker refuses: they stay as they were for the next attempt)."""
    try:
        return rt.relay.drain(selection)
    except NotSent as exc:
        log.warning("could not send %s deliveries: %s", what, exc)
        return 0


def _dbt_event(rt, delivery_id: int, account_id: int | None, event: DbtRunEvent) -> str:
    with rt.db.session() as s:
        ci_run_id = s.scalar(select(CiRun.id).where(CiRun.dbt_account_id == account_id,
                                                    CiRun.dbt_run_id == event.run_id))
    if ci_run_id is None:
        rt.deliveries.finish(delivery_id, DeliveryState.IGNORED, "run was not started by the bridge")
        return "ignored"
    news = event.run()
    if news is None:
        rt.deliveries.finish(delivery_id, DeliveryState.IGNORED, "event carries no run status")
        return "ignored"
    outcome = rt.reconciler.settle_run(ci_run_id, news, cause=Cause(delivery_id=delivery_id))
    rt.deliveries.finish(delivery_id, DeliveryState.PROCESSED)
    return outcome.reason
