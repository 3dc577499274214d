"""Running and watching the bridge: the sandbox, the demo, ``bridge status``, ``bridge prs``, ``bridge deliveries``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import console, load_settings, main, new_table

# -- sandbox and demo ---------------------------------------------------------------------------------

@main.command()
@click.option("--port", type=int, required=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True)
def sandbox(port: int, host: str) -> None:
    """Run the local fake Azure DevOps + dbt Cloud (control API under /_sandbox)."""
    from ..sandbox import serve

    console.print(f"sandbox on http://{host}:{port} (Azure DevOps org URL http://{host}:{port}/fabrikam, "
                  f"dbt Cloud URL http://{host}:{port})")
    serve(host, port)


@main.command()
@click.option("--once", is_flag=True, help="Play the scenario once and exit 0 only if every expectation held.")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=Path(".demo"),
              show_default=True)
def demo(once: bool, workdir: Path) -> None:
    """Start Redis, the sandbox, web, worker and beat on SQLite and play the CI scenario."""
    from ..demo import run_demo

    sys.exit(run_demo(workdir=workdir, once=once))


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
    from sqlalchemy import select

    from ..db import Database
    from ..dispatch import Dispatcher
    from ..models import Delivery, utcnow

    settings = load_settings()
    with Database(settings.database_url).session() as s:
        query = select(Delivery).where(Delivery.state.in_(states))
        if ids:
            query = query.where(Delivery.id.in_(ids))
        rows = s.scalars(query.order_by(Delivery.id)).all()
        chosen = [r.id for r in rows]
        for r in rows:
            r.state, r.dispatched_at, r.processed_at = "dispatched", utcnow(), None
    if not chosen:
        console.print(f"no {'/'.join(states)} deliveries" + (" with those ids" if ids else ""))
        return
    sent = Dispatcher(settings).process_deliveries(chosen)
    console.print(f"{len(chosen)} deliveries queued again" + ("" if sent else
                  " (broker unreachable: the sweeper sends them within BRIDGE_REDISPATCH_AFTER seconds)"))


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
