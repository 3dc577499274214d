"""Pure rules that put a pull request's history into words: what a plan decided, and the one sentence at the
top of the PR page that answers "why did (or didn't) it get a run?". No I/O: the read model gathers the facts.

The sentence names the first thing that explains the state, in order: a delivery that is stuck (blocked,
failed, or not picked up), nothing heard at all, a closed PR, a plan that decided not to build, a run dbt
Cloud refused, a live run, a finished run. Each says what to do when a person can do something.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..deliveries.states import IN_FLIGHT
from ..domain import CLOSED_STATES, Plan, RunKind, RunStatus, format_duration, short

# A delivery not finished this long after it arrived is stuck (the workers take seconds).
STUCK_AFTER = timedelta(minutes=2)


def describe_plan(plan: Plan) -> str:
    """``"new head commit 1a2b3c4d: start a CI run, cancel dbt run 12 (superseded)"``."""
    actions = []
    for trigger in plan.triggers:
        actions.append("start the teardown run" if trigger.kind is RunKind.TEARDOWN else "start a CI run")
    actions += [f"cancel dbt run {c.dbt_run_id} ({c.reason})" for c in plan.cancels]
    actions += [f"post status {p.update.state.value}" for p in plan.statuses]
    return f"{plan.reason}: {', '.join(actions) if actions else 'nothing to do'}"


def run_outcome(status: RunStatus | None, *, start_error: str | None = None, superseded: bool = False,
                posted_state: str | None = None, started: bool = True) -> str:
    """What became of a run, in words: its start error, dbt Cloud's verdict, or what was posted."""
    if start_error:
        return f"could not start: {start_error}"
    if status is not None:
        word = {RunStatus.SUCCESS: "succeeded", RunStatus.ERROR: "failed", RunStatus.CANCELLED: "cancelled",
                RunStatus.QUEUED: "queued", RunStatus.STARTING: "starting"}.get(status, "running")
        return word + (" (superseded)" if superseded else "")
    return posted_state or ("running" if started else "starting")


@dataclass(frozen=True)
class RunFacts:
    dbt_run_id: int | None
    kind: str
    commit: str | None
    status: RunStatus | None
    start_error: str | None = None
    superseded: bool = False
    duration_seconds: float | None = None
    status_message: str | None = None


@dataclass(frozen=True)
class DeliveryFacts:
    id: int
    state: str
    error: str | None
    received_at: datetime


@dataclass(frozen=True)
class PullRequestFacts:
    """What the read model knows of one pull request, newest first where there are several."""

    pull_request_id: int
    known: bool                           # the bridge keeps a record of it (a worker reconciled it once)
    state: str = "active"
    is_draft: bool = False
    target_ref: str = ""
    head_commit: str | None = None
    last_reason: str | None = None
    reconciled_at: datetime | None = None
    runs: tuple[RunFacts, ...] = ()            # newest first
    deliveries: tuple[DeliveryFacts, ...] = ()  # newest first
    target_branches: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())  # the repository's subscriptions' problems


def why(facts: PullRequestFacts, now: datetime) -> str:
    """The one sentence that explains the pull request's CI now."""
    pr = f"PR {facts.pull_request_id}"
    newest = facts.deliveries[0] if facts.deliveries else None
    if newest is not None and (facts.reconciled_at is None or newest.received_at >= facts.reconciled_at):
        if newest.state == "blocked":
            return (f"Delivery {newest.id} waits for its Azure DevOps identity to be re-authorized "
                    f"({newest.error or 'its tokens no longer work'}): reconnect it in the console, and the "
                    "delivery runs by itself.")
        if newest.state == "failed":
            error = (newest.error or "no reason recorded").rstrip(".")
            return (f"Delivery {newest.id} failed: {error}. Fix the cause, then "
                    "replay it from the Deliveries page (or `bridge deliveries retry --state failed`).")
        if newest.state in IN_FLIGHT and now - newest.received_at > STUCK_AFTER:
            age = format_duration((now - newest.received_at).total_seconds())
            return (f"Delivery {newest.id} arrived {age} ago and no worker has finished it: check that the "
                    "workers and Redis are running (`bridge status`, /readyz).")
    if not facts.known:
        if newest is not None:
            return f"Delivery {newest.id} for {pr} is {newest.state}; no worker has reconciled the pull request yet."
        hint = f" The repository's subscriptions need a person: {facts.problems[0]}" if facts.problems else \
            " Check the repository's service hooks (Repositories page) and that the PR is in this repository."
        return f"The bridge has heard nothing of {pr}: no delivery named it.{hint}"
    if facts.state in CLOSED_STATES:
        teardown = next((r for r in facts.runs if r.kind == RunKind.TEARDOWN.value), None)
        torn = (f" Its schema teardown is dbt run {teardown.dbt_run_id} ({run_outcome(teardown.status)})."
                if teardown and teardown.dbt_run_id else "")
        return f"{pr} is {facts.state}: nothing more is built for it.{torn}"
    reason = facts.last_reason or ""
    if facts.is_draft and reason.startswith("draft"):
        return f"No run: {pr} is a draft, and this repository skips drafts until they are published."
    if reason.startswith("target branch"):
        built = ", ".join(facts.target_branches) or "none"
        return (f"No run: {pr} targets {facts.target_ref or 'a branch'}, which this repository does not build "
                f"(target branches: {built}).")
    if reason.startswith("pull request has no source commit"):
        return f"No run yet: Azure DevOps reports no source commit for {pr}."
    head_runs = [r for r in facts.runs if r.kind == RunKind.CI.value and r.commit == facts.head_commit]
    if not head_runs:
        return (f"No run for the head {short(facts.head_commit)} yet; the last decision was: {reason}."
                if reason else f"No run for the head {short(facts.head_commit)} yet.")
    run = head_runs[0]
    head = short(run.commit)
    if run.start_error:
        return (f"dbt Cloud refused to start the run for {head}: {run.start_error.rstrip('.')}. Fix the token or "
                "the job, then rerun (comment `/dbt rerun`, or `bridge prs rerun`): the bridge also retries by itself "
                "once the token or identity changes.")
    if run.dbt_run_id is None:
        return f"A run for {head} is being started."
    if run.status is None or not run.status.is_terminal:
        return f"dbt run {run.dbt_run_id} for {head} is {run_outcome(run.status)}."
    took = format_duration(run.duration_seconds)
    verdict = {RunStatus.SUCCESS: "passed", RunStatus.ERROR: "failed",
               RunStatus.CANCELLED: "was cancelled"}[run.status]
    failed = run.status is RunStatus.ERROR and run.status_message
    detail = f": {run.status_message.strip().rstrip('.')}" if failed else ""
    return f"dbt run {run.dbt_run_id} for {head} {verdict}{f' in {took}' if took else ''}{detail}."
