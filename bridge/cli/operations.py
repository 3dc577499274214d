"""Watching the bridge: ``bridge status``, ``bridge prs``, ``bridge deliveries``."""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import click

from ..deliveries.states import DeliveryState
from . import console, linked_repository, load_settings, main, new_table, open_database, print_json, text
from .failures import BrokerRefused

# -- pull requests -------------------------------------------------------------------------------

@main.group()
def prs() -> None:
    """Pull requests."""


@prs.command("sweep")
def prs_sweep() -> None:
    """Reconcile now every PR whose state Azure DevOps and the bridge disagree on (beat does this every
    BRIDGE_PR_SWEEP_INTERVAL seconds)."""
    from ..dispatch import Dispatcher

    if not Dispatcher(load_settings()).sweep_pull_requests():
        raise BrokerRefused("could not reach the broker (BRIDGE_BROKER_URL)")
    console.print("sweep queued; the workers reconcile what differs")


@prs.command("rerun")
@click.argument("repository", metavar="ORGANIZATION/PROJECT/REPOSITORY")
@click.argument("pull_request", type=click.IntRange(min=1), metavar="PR")
def prs_rerun(repository: str, pull_request: int) -> None:
    """Start a fresh dbt Cloud run of the pull request's head (as `/dbt rerun` does), unless one is live."""
    from sqlalchemy import select

    from ..dispatch import Dispatcher
    from ..models import PullRequestRecord

    settings = load_settings()
    repository_id = linked_repository(repository)
    with open_database(settings).session() as s:
        known = s.scalar(select(PullRequestRecord.status).where(
            PullRequestRecord.repository_id == repository_id, PullRequestRecord.pull_request_id == pull_request))
    if known is not None and known != "active":
        raise click.ClickException(f"pull request {pull_request} is {known}: nothing to run")
    if not Dispatcher(settings).rerun_pull_request(repository_id, pull_request):
        raise BrokerRefused("could not reach the broker (BRIDGE_BROKER_URL); nothing was queued")
    console.print(f"rerun of pull request {pull_request} queued; `bridge status` shows the run")


# -- runs ---------------------------------------------------------------------------------------------

@main.group()
def runs() -> None:
    """dbt Cloud runs the bridge started."""


@runs.command("list")
@click.option("--repo", "repository", metavar="ORGANIZATION/PROJECT/REPOSITORY", help="Only for this repository.")
@click.option("--pr", "pull_request", type=click.IntRange(min=1), help="Only for this pull request.")
@click.option("--since", "since", metavar="AGE", help="Only started in the last AGE (30d, 12h, 90m).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1, max=10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON document on standard output, for scripts.")
def runs_list(*, repository, pull_request, since, limit, as_json) -> None:
    """Runs newest first: their pull request, kind, outcome (or why one could not start) and duration."""
    from sqlalchemy import select

    from ..models import CiRun, PullRequestRecord, Repository, utcnow

    query = (select(CiRun, PullRequestRecord, Repository)
             .join(PullRequestRecord, PullRequestRecord.id == CiRun.pull_request_ref)
             .join(Repository, Repository.id == PullRequestRecord.repository_id)
             .order_by(CiRun.id.desc()).limit(limit))
    if repository:
        query = query.where(Repository.id == linked_repository(repository))
    if pull_request:
        query = query.where(PullRequestRecord.pull_request_id == pull_request)
    if since:
        query = query.where(CiRun.created_at >= utcnow() - _age(since))
    with open_database().session() as s:
        rows = [{"repository": f"{repo.organization.name}/{repo.ado_project_name}/{repo.name}",
                 "pull_request_id": pr.pull_request_id, "kind": run.kind, "dbt_run_id": run.dbt_run_id,
                 "commit": run.commit, "outcome": run_outcome(run), "href": run.href,
                 "started_at": run.created_at, "finished_at": run.finished_at,
                 "duration_seconds": run.duration_seconds} for run, pr, repo in s.execute(query)]
    if as_json:
        print_json({"runs": rows})
        return
    table = new_table("runs (newest first)", "started", "repository", "PR", "kind", "dbt run", "commit",
                      "outcome", "duration")
    for r in rows:
        table.add_row(f"{r['started_at']:%Y-%m-%d %H:%M:%S}", r["repository"], str(r["pull_request_id"]), r["kind"],
                      str(r["dbt_run_id"] or "-"), (r["commit"] or "")[:8], r["outcome"],
                      f"{r['duration_seconds']:.0f} s" if r["duration_seconds"] is not None else "")
    console.print(table)


# -- notifications ------------------------------------------------------------------------------------

@main.group()
def notify() -> None:
    """Notifications to a Slack or Teams channel (BRIDGE_NOTIFY_URL) when something needs a person."""


def _notifier():
    from ..notifications import notifier_for

    settings = load_settings()
    notifier = notifier_for(settings, open_database(settings))
    if notifier is None:
        raise click.ClickException("BRIDGE_NOTIFY_URL is not set: give it a Slack or Teams incoming webhook's URL")
    return notifier


@notify.command("check")
def notify_check() -> None:
    """Post now what needs a person and was not posted yet (beat does this every BRIDGE_NOTIFY_INTERVAL seconds)."""
    done = _notifier().run()
    for problem in done.posted:
        console.print(text(f"posted: {problem.title}"))
    console.print(f"{len(done.posted)} posted, {done.cleared} cleared since the last round"
                  + (f", {len(done.failed)} not taken by the webhook (tried again next round)" if done.failed else ""))
    if done.failed:
        sys.exit(1)


@notify.command("test")
def notify_test() -> None:
    """Post a test message, to see the webhook works."""
    _notifier().test()
    console.print("test message posted")


# -- deliveries ---------------------------------------------------------------------------------------

@main.group()
def deliveries() -> None:
    """Stored webhook deliveries."""


def _age(value: str) -> timedelta:
    """``30d``, ``12h`` or ``90m``: how far back."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    number, unit = value[:-1], value[-1:].lower()
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise click.BadParameter(f"{value!r}: give a whole number and d, h or m (e.g. 30d)")
    return timedelta(**{units[unit]: int(number)})


def _delivery(row, repository: str | None) -> dict:
    return {"id": row.id, "source": row.source, "event_type": row.event_type, "state": row.state,
            "repository": repository, "dbt_account": row.dbt_account_id, "attempts": row.attempts,
            "error": row.error, "received_at": row.received_at, "dispatched_at": row.dispatched_at,
            "processed_at": row.processed_at}


@deliveries.command("list")
@click.option("--state", "states", type=click.Choice([s.value for s in DeliveryState]), multiple=True,
              help="Only these states (repeatable).")
@click.option("--source", type=click.Choice(["azure-devops", "dbt-cloud"]), help="Only from this sender.")
@click.option("--repo", "repository", metavar="ORGANIZATION/PROJECT/REPOSITORY", help="Only for this repository.")
@click.option("--since", "since", metavar="AGE", help="Only received in the last AGE (30d, 12h, 90m).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1, max=10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON document on standard output, for scripts.")
def deliveries_list(*, states, source, repository, since, limit, as_json) -> None:
    """Stored deliveries, newest first: what came, in what state, and the error of a failed one."""
    from sqlalchemy import select

    from ..models import Delivery, Repository, utcnow

    query = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
    if states:
        query = query.where(Delivery.state.in_(states))
    if source:
        query = query.where(Delivery.source == source)
    if repository:
        query = query.where(Delivery.repository_id == linked_repository(repository))
    if since:
        query = query.where(Delivery.received_at >= utcnow() - _age(since))
    with open_database().session() as s:
        names = {r.id: f"{r.organization.name}/{r.ado_project_name}/{r.name}" for r in s.scalars(select(Repository))}
        rows = [_delivery(d, names.get(d.repository_id)) for d in s.scalars(query)]
    if as_json:
        print_json({"deliveries": rows})
        return
    table = new_table("deliveries (newest first)", "id", "received", "source", "event", "state", "repository",
                      "error")
    for d in rows:
        table.add_row(str(d["id"]), f"{d['received_at']:%Y-%m-%d %H:%M:%S}", d["source"], d["event_type"],
                      d["state"], d["repository"] or (f"dbt account {d['dbt_account']}" if d["dbt_account"] else ""),
                      d["error"] or "")
    console.print(table)


@deliveries.command("show")
@click.argument("delivery_id", type=click.IntRange(min=1), metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on standard output, for scripts.")
def deliveries_show(delivery_id: int, as_json: bool) -> None:
    """One delivery: its parsed event, attempts and error."""
    from ..models import Delivery, Repository

    with open_database().session() as s:
        row = s.get(Delivery, delivery_id)
        if row is None:
            raise click.ClickException(f"no delivery {delivery_id} (it may have been pruned)")
        repo = s.get(Repository, row.repository_id) if row.repository_id else None
        shown = {**_delivery(row, f"{repo.organization.name}/{repo.ado_project_name}/{repo.name}" if repo else None),
                 "dedupe_key": row.dedupe_key, "event": row.event}
    if as_json:
        print_json(shown)
        return
    table = new_table(f"delivery {delivery_id}", "field", "value")
    for key, value in shown.items():
        table.add_row(key, json.dumps(value, indent=2, default=str) if key == "event" else str(value))
    console.print(table)


@deliveries.command("prune")
@click.option("--older-than", "older_than", required=True, metavar="AGE", help="30d, 12h or 90m.")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
def deliveries_prune(older_than: str, dry_run: bool) -> None:
    """Delete finished deliveries (processed, ignored, failed) received longer ago than AGE, in small batches;
    unfinished work is never deleted. Beat does this hourly for BRIDGE_RETENTION_DAYS."""
    from ..deliveries.store import DeliveryStore
    from ..models import utcnow

    cutoff = utcnow() - _age(older_than)
    count = DeliveryStore(open_database()).prune(cutoff, dry_run=dry_run)
    console.print(f"{count} deliveries received before {cutoff:%Y-%m-%d %H:%M} UTC "
                  f"{'would be' if dry_run else 'were'} deleted")


@deliveries.command("retry")
@click.option("--state", "states", type=click.Choice(["blocked", "failed"]), multiple=True,
              default=("blocked",), show_default=True,
              help="blocked: waited for a dead identity; failed: gave up (after fixing the cause).")
@click.option("--id", "ids", type=int, multiple=True, help="Only these deliveries.")
def deliveries_retry(states: tuple[str, ...], ids: tuple[int, ...]) -> None:
    """Run deliveries again. Safe: processing is idempotent, so a delivery already acted on changes nothing."""
    from ..deliveries.states import DeliveryState
    from ..deliveries.store import DeliveryStore, NotSent, Selection
    from ..dispatch import Dispatcher

    settings = load_settings()
    selection = Selection(states=frozenset(DeliveryState(s) for s in states), ids=ids)
    try:  # claimed and sent in one transaction: if the broker refuses, nothing changes
        sent = DeliveryStore(open_database(settings)).drain(Dispatcher(settings).process_deliveries,
                                                                     selection)
    except NotSent:
        raise BrokerRefused("could not reach the broker (BRIDGE_BROKER_URL); nothing was changed, "
                                   "try again once it answers") from None
    if not sent:
        console.print(f"no {'/'.join(states)} deliveries" + (" with those ids" if ids else ""))
        return
    console.print(f"{sent} deliveries queued again")


# -- read-outs ----------------------------------------------------------------------------------------

@main.command()
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on standard output, for scripts.")
def status(limit: int, as_json: bool) -> None:
    """Recent pull requests, their runs and the delivery backlog."""
    from sqlalchemy import func, select

    from ..models import Delivery, PullRequestRecord, Repository

    settings = load_settings()
    with open_database(settings).session() as s:
        backlog = s.execute(select(Delivery.source, Delivery.state, func.count())
                            .group_by(Delivery.source, Delivery.state)).all()
        rows = s.execute(select(PullRequestRecord, Repository).join(
            Repository, Repository.id == PullRequestRecord.repository_id)
            .order_by(PullRequestRecord.id.desc()).limit(limit)).all()
        prs = [_pull_request(pr, repo) for pr, repo in rows]
    if as_json:
        print_json({"pull_requests": prs,
                    "deliveries": [{"source": src, "state": st, "count": n} for src, st, n in backlog]})
        return
    table = new_table("pull requests", "repository", "PR", "state", "head", "runs (newest last)", "last decision")
    for pr in prs:
        runs = "\n".join(f"{r['kind']} {r['dbt_run_id'] or '-'}: {r['outcome']}" for r in pr["runs"])
        table.add_row(pr["repository"], str(pr["pull_request_id"]), pr["state"] + (" (draft)" if pr["draft"] else ""),
                      (pr["head_commit"] or "")[:8], runs, pr["last_decision"] or "")
    console.print(table)
    deliveries = new_table("deliveries", "source", "state", "count")
    for source, state, n in backlog:
        deliveries.add_row(source, state, str(n))
    console.print(deliveries)


def _pull_request(pr, repo) -> dict:
    return {"repository": f"{repo.organization.name}/{repo.ado_project_name}/{repo.name}",
            "pull_request_id": pr.pull_request_id, "state": pr.status, "draft": pr.is_draft,
            "head_commit": pr.head_commit, "last_decision": pr.last_reason,
            "runs": [{"kind": r.kind, "dbt_run_id": r.dbt_run_id, "outcome": run_outcome(r),
                      "posted_state": r.posted_state, "start_error": r.start_error} for r in pr.runs]}


def run_outcome(run) -> str:
    """What became of a run, in words: its start error, dbt Cloud's verdict, or what was posted."""
    from ..domain import RunStatus

    if run.start_error:
        return f"could not start: {run.start_error}"
    status = RunStatus.parse(run.status)
    if status is not None:
        word = {RunStatus.SUCCESS: "succeeded", RunStatus.ERROR: "failed", RunStatus.CANCELLED: "cancelled"}.get(
            status, "running")
        return word + (" (superseded)" if run.superseded else "")
    return run.posted_state or ("starting" if run.dbt_run_id is None else "running")
