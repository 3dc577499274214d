"""Watching the bridge: ``bridge status``, ``bridge prs``, ``bridge deliveries``."""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import click

from ..deliveries.states import DeliveryState
from ..domain import branch_name
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


@prs.command("list")
@click.argument("search", required=False, default="")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1, max=10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON document on standard output, for scripts.")
def prs_list(search: str, limit: int, as_json: bool) -> None:
    """Pull requests newest first; SEARCH matches ORGANIZATION/PROJECT/REPOSITORY, a PR number, a title or a
    branch."""
    from ..history import read

    with open_database().session() as s:
        rows = read.find_pull_requests(s, read.ADMIN, search, limit=limit)
    if as_json:
        print_json({"pull_requests": [read.as_json(r) for r in rows]})
        return
    table = new_table("pull requests (newest first)", "repository", "PR", "state", "title", "source", "head",
                      "last decision")
    for r in rows:
        table.add_row(r.repository, str(r.pull_request_id), r.state + (" (draft)" if r.is_draft else ""), r.title,
                      branch_name(r.source_ref), (r.head_commit or "")[:8], r.last_decision or "")
    console.print(table)


@prs.command("show")
@click.argument("repository", metavar="ORGANIZATION/PROJECT/REPOSITORY")
@click.argument("pull_request", type=click.IntRange(min=1), metavar="PR")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on standard output, for scripts.")
def prs_show(repository: str, pull_request: int, as_json: bool) -> None:
    """Why a pull request got (or did not get) a run, in one sentence; its runs; its timeline, newest first.
    Exits 1 when the bridge has heard nothing of it."""
    from ..history import read

    repository_id = linked_repository(repository)
    with open_database().session() as s:
        shown = read.pull_request(s, read.ADMIN, repository_id, pull_request)
    assert shown is not None  # the repository is linked, and the CLI sees everything
    if as_json:
        print_json(read.as_json(shown))
    else:
        pr = shown.pull_request
        console.print(text(f"{pr.repository} PR {pr.pull_request_id}: {pr.title}", "bold"))
        if shown.known:
            console.print(text(f"{pr.state}{' (draft)' if pr.is_draft else ''}, "
                               f"{branch_name(pr.source_ref)} → {branch_name(pr.target_ref)}, "
                               f"head {(pr.head_commit or '-')[:8]}"))
        console.print(text(shown.why))
        if pr.runs:
            console.print(_runs_table("runs (newest first)", pr.runs))
        table = new_table("timeline (newest first)", "at", "what", "by", "delivery", "dbt run")
        for e in shown.timeline:
            table.add_row(f"{e.at:%Y-%m-%d %H:%M:%S}", e.text, e.actor, str(e.delivery_id or ""),
                          str(e.dbt_run_id or ""))
        console.print(table)
    if not shown.known and not shown.timeline:
        sys.exit(1)


@prs.command("rerun")
@click.argument("repository", metavar="ORGANIZATION/PROJECT/REPOSITORY")
@click.argument("pull_request", type=click.IntRange(min=1), metavar="PR")
def prs_rerun(repository: str, pull_request: int) -> None:
    """Start a fresh dbt Cloud run of the pull request's head (as `/dbt rerun` does), unless one is live."""
    from sqlalchemy import select

    from ..dispatch import Dispatcher
    from ..history import record as activity
    from ..history.record import Cause, Kind
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
    with open_database(settings).session() as s:  # after the broker took it: the record says what was asked
        activity.add(s, Kind.COMMAND, "rerun asked for from the CLI (`bridge prs rerun`)", cause=Cause(actor="cli"),
                     repository_id=repository_id, pull_request_id=pull_request)
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
    from ..history import read
    from ..models import utcnow

    repository_id = linked_repository(repository) if repository else None
    with open_database().session() as s:
        rows = read.runs(s, read.ADMIN, repository_id=repository_id, pull_request_id=pull_request,
                         since=utcnow() - _age(since) if since else None, limit=limit)
    if as_json:
        print_json({"runs": [read.as_json(r) for r in rows]})
        return
    console.print(_runs_table("runs (newest first)", rows))


def _runs_table(title: str, rows) -> object:
    table = new_table(title, "started", "repository", "PR", "kind", "dbt run", "commit", "outcome", "duration")
    for r in rows:
        table.add_row(f"{r.started_at:%Y-%m-%d %H:%M:%S}", r.repository, str(r.pull_request_id), r.kind,
                      str(r.dbt_run_id or "-"), (r.commit or "")[:8], r.outcome,
                      f"{r.duration_seconds:.0f} s" if r.duration_seconds is not None else "")
    return table


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


@deliveries.command("list")
@click.option("--state", "states", type=click.Choice([s.value for s in DeliveryState]), multiple=True,
              help="Only these states (repeatable).")
@click.option("--source", type=click.Choice(["azure-devops", "dbt-cloud"]), help="Only from this sender.")
@click.option("--repo", "repository", metavar="ORGANIZATION/PROJECT/REPOSITORY", help="Only for this repository.")
@click.option("--since", "since", metavar="AGE", help="Only received in the last AGE (30d, 12h, 90m).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1, max=10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON document on standard output, for scripts.")
def deliveries_list(*, states, source, repository, since, limit, as_json) -> None:
    """Stored deliveries, newest first: what came, in what state, and why (a failed or ignored one's reason)."""
    from ..history import read
    from ..models import utcnow

    where = read.DeliveryFilter(states=tuple(states), source=source,
                                repository_id=linked_repository(repository) if repository else None,
                                since=utcnow() - _age(since) if since else None)
    with open_database().session() as s:
        rows = read.deliveries(s, read.ADMIN, where, limit=limit)
    if as_json:
        print_json({"deliveries": [read.as_json(d) for d in rows]})
        return
    table = new_table("deliveries (newest first)", "id", "received", "source", "event", "state", "repository",
                      "PR", "why")
    for d in rows:
        table.add_row(str(d.id), f"{d.received_at:%Y-%m-%d %H:%M:%S}", d.source, d.event_type, d.state,
                      d.repository or (f"dbt account {d.dbt_account}" if d.dbt_account else ""),
                      str(d.pull_request_id or ""), d.error or "")
    console.print(table)


@deliveries.command("show")
@click.argument("delivery_id", type=click.IntRange(min=1), metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on standard output, for scripts.")
def deliveries_show(delivery_id: int, as_json: bool) -> None:
    """One delivery: its parsed event, attempts, error and what the bridge did with it."""
    from ..history import read

    with open_database().session() as s:
        shown = read.delivery(s, read.ADMIN, delivery_id)
    if shown is None:
        raise click.ClickException(f"no delivery {delivery_id} (it may have been pruned)")
    if as_json:  # flat: the row's fields beside the event and what was done with it
        print_json({**read.as_json(shown.row), "dedupe_key": shown.dedupe_key, "event": shown.event,
                    "activity": [read.as_json(e) for e in shown.activity]})
        return
    table = new_table(f"delivery {delivery_id}", "field", "value")
    for key, value in {**read.as_json(shown.row), "dedupe_key": shown.dedupe_key}.items():
        table.add_row(key, str(value))
    table.add_row("event", json.dumps(shown.event, indent=2, default=str))
    console.print(table)
    if shown.activity:
        done = new_table("what the bridge did with it (newest first)", "at", "what", "by")
        for e in shown.activity:
            done.add_row(f"{e.at:%Y-%m-%d %H:%M:%S}", e.text, e.actor)
        console.print(done)


@deliveries.command("prune")
@click.option("--older-than", "older_than", required=True, metavar="AGE", help="30d, 12h or 90m.")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
def deliveries_prune(older_than: str, dry_run: bool) -> None:
    """Delete finished deliveries (processed, ignored, failed) received longer ago than AGE, and the activity
    record of that age, in small batches; unfinished work is never deleted. Beat does this hourly for
    BRIDGE_RETENTION_DAYS."""
    from ..deliveries.store import DeliveryStore
    from ..history import record as activity
    from ..models import utcnow

    cutoff = utcnow() - _age(older_than)
    db = open_database()
    count = DeliveryStore(db).prune(cutoff, dry_run=dry_run)
    entries = activity.prune(db, cutoff, dry_run=dry_run)
    console.print(f"{count} deliveries and {entries} activity entries from before {cutoff:%Y-%m-%d %H:%M} UTC "
                  f"{'would be' if dry_run else 'were'} deleted")


@deliveries.command("retry")
@click.option("--state", "states", type=click.Choice(["blocked", "failed"]), multiple=True,
              default=("blocked",), show_default=True,
              help="blocked: waited for a dead identity; failed: gave up (after fixing the cause).")
@click.option("--id", "ids", type=int, multiple=True, help="Only these deliveries.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on standard output, for scripts.")
def deliveries_retry(states: tuple[str, ...], ids: tuple[int, ...], as_json: bool) -> None:
    """Run deliveries again. Safe: processing is idempotent, so a delivery already acted on changes nothing."""
    from ..deliveries.states import DeliveryState
    from ..deliveries.store import DeliveryStore, NotSent, Selection
    from ..dispatch import Dispatcher

    settings = load_settings()
    selection = Selection(states=frozenset(DeliveryState(s) for s in states), ids=ids)
    try:  # claimed and sent in one transaction: if the broker refuses, nothing changes
        sent = DeliveryStore(open_database(settings)).drain(Dispatcher(settings).process_deliveries,
                                                            selection, replayed_by="cli")
    except NotSent:
        raise BrokerRefused("could not reach the broker (BRIDGE_BROKER_URL); nothing was changed, "
                                   "try again once it answers") from None
    if as_json:
        print_json({"sent": sent})
    elif not sent:
        console.print(f"no {'/'.join(states)} deliveries" + (" with those ids" if ids else ""))
    else:
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
    """``bridge status --json``'s shape of a pull request (scripts read these names)."""
    from ..history import read

    return {"repository": read.full_name(repo), "pull_request_id": pr.pull_request_id, "state": pr.status,
            "draft": pr.is_draft, "head_commit": pr.head_commit, "last_decision": pr.last_reason,
            "runs": [{"kind": r.kind, "dbt_run_id": r.dbt_run_id, "outcome": read.outcome_of(r),
                      "posted_state": r.posted_state, "start_error": r.start_error} for r in pr.runs]}
