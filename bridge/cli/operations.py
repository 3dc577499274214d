"""Watching the bridge: ``bridge status``, ``bridge prs``, ``bridge deliveries``."""

from __future__ import annotations

import click

from . import console, load_settings, main, new_table

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
        raise click.ClickException("could not reach the broker (BRIDGE_BROKER_URL)")
    console.print("sweep queued; the workers reconcile what differs")


# -- deliveries ---------------------------------------------------------------------------------------

@main.group()
def deliveries() -> None:
    """Stored webhook deliveries."""


@deliveries.command("retry")
@click.option("--state", "states", type=click.Choice(["blocked", "failed"]), multiple=True,
              default=("blocked",), show_default=True,
              help="blocked: waited for a dead identity; failed: gave up (after fixing the cause).")
@click.option("--id", "ids", type=int, multiple=True, help="Only these deliveries.")
def deliveries_retry(states: tuple[str, ...], ids: tuple[int, ...]) -> None:
    """Run deliveries again. Safe: processing is idempotent, so a delivery already acted on changes nothing."""
    from ..db import Database
    from ..deliveries.states import DeliveryState
    from ..deliveries.store import DeliveryStore, NotSent, Selection
    from ..dispatch import Dispatcher

    settings = load_settings()
    selection = Selection(states=frozenset(DeliveryState(s) for s in states), ids=ids)
    try:  # claimed and sent in one transaction: if the broker refuses, nothing changes
        sent = DeliveryStore(Database(settings.database_url)).drain(Dispatcher(settings).process_deliveries,
                                                                     selection)
    except NotSent:
        raise click.ClickException("could not reach the broker (BRIDGE_BROKER_URL); nothing was changed, "
                                   "try again once it answers") from None
    if not sent:
        console.print(f"no {'/'.join(states)} deliveries" + (" with those ids" if ids else ""))
        return
    console.print(f"{sent} deliveries queued again")


# -- read-outs ----------------------------------------------------------------------------------------

@main.command()
@click.option("--limit", default=20, show_default=True)
def status(limit: int) -> None:
    """Recent pull requests, their runs and the delivery backlog."""
    from sqlalchemy import func, select

    from ..db import Database
    from ..models import CiRun, Delivery, PullRequestRecord, Repository

    settings = load_settings()
    with Database(settings.database_url).session() as s:
        backlog = s.execute(select(Delivery.source, Delivery.state, func.count())
                            .group_by(Delivery.source, Delivery.state)).all()
        prs = s.scalars(select(PullRequestRecord).order_by(PullRequestRecord.id.desc()).limit(limit)).all()
        table = new_table("pull requests", "repository", "PR", "state", "head", "runs (newest last)",
                          "last decision")
        for pr in prs:
            repo = s.get(Repository, pr.repository_id)
            runs = " ".join(f"{r.kind}:{r.dbt_run_id or '-'}:{r.posted_state or '?'}" for r in
                            s.scalars(select(CiRun).where(CiRun.pull_request_ref == pr.id).order_by(CiRun.id)))
            table.add_row(repo.name if repo else "?", str(pr.pull_request_id),
                          pr.status + (" (draft)" if pr.is_draft else ""), (pr.head_commit or "")[:8], runs,
                          pr.last_reason or "")
    console.print(table)
    deliveries = new_table("deliveries", "source", "state", "count")
    for source, state, n in backlog:
        deliveries.add_row(source, state, str(n))
    console.print(deliveries)
