"""The ``bridge`` command: migrations, configuration, the sandbox, the demo and operator read-outs."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .errors import BridgeError, ConfigError
from .settings import Settings

console = Console(soft_wrap=True)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ado-dbt-bridge")
def main() -> None:
    """ado-dbt bridge: dbt Cloud pull-request CI for Azure DevOps."""


# -- database -----------------------------------------------------------------------------------------

@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations to BRIDGE_DATABASE_URL."""
    from .db import upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    console.print(f"database at revision [bold]{revision}[/]")


# -- configuration ------------------------------------------------------------------------------------

@main.group()
def config() -> None:
    """Declarative configuration (YAML)."""


def _load_config(path: Path, settings: Settings):
    from . import config_file

    return config_file.load(config_file.read(path), source=str(path),
                            allow_insecure_http=settings.allow_insecure_http)


def _config_path(file: Path | None, settings: Settings) -> Path:
    path = file or settings.config_file
    if path is None:
        raise click.UsageError("give FILE or set BRIDGE_CONFIG")
    return path


@config.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
def config_check(file: Path | None) -> None:
    """Validate FILE (default: BRIDGE_CONFIG) without touching the database or calling Azure DevOps."""
    settings = _settings()
    file = _config_path(file, settings)
    try:
        desired = _load_config(file, settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"{file}: valid ({len(desired.organizations)} organizations, {len(desired.accounts)} dbt "
                  f"accounts, {len(desired.repositories)} repositories)")


@config.command("apply")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
def config_apply(file: Path | None) -> None:
    """Create or update what FILE (default: BRIDGE_CONFIG) describes; idempotent, and nothing changes if
    any part is wrong."""
    from . import config_file
    from .clients.azure_devops import AzureDevOpsClient, PersonalAccessToken
    from .crypto import SecretBox
    from .db import Database

    settings = _settings()
    file = _config_path(file, settings)
    try:
        desired = _load_config(file, settings)
        box = SecretBox(settings.require_secret_keys())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    def resolve(org: dict, repo: dict) -> dict:
        if not org.get("pat"):
            raise ConfigError(f"organization {org['name']!r} has no pat to resolve repository "
                              f"{repo['repository']!r} with")
        client = AzureDevOpsClient(org["url"], PersonalAccessToken(org["pat"]), timeout=settings.http_timeout)
        info = client.get_repository(repo["project"], repo["repository"])
        return info

    database = Database(settings.database_url)
    try:
        with database.session() as session:
            changes = config_file.apply(session, desired, box, resolve)
    except BridgeError as exc:
        raise click.ClickException(f"{exc}\nnothing was changed") from None
    table = Table(title=f"bridge config apply {file}")
    for col in ("kind", "name", "result"):
        table.add_column(col)
    for change in changes:
        table.add_row(change.kind, change.name, change.action)
    console.print(table)


# -- keys ---------------------------------------------------------------------------------------------

@main.group()
def keys() -> None:
    """Encryption keys for stored secrets."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new key for BRIDGE_SECRET_KEY."""
    from .crypto import generate_key

    click.echo(generate_key())


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret with the first key of BRIDGE_SECRET_KEY."""
    from sqlalchemy import select

    from .crypto import SecretBox
    from .db import Database
    from .models import DbtAccount, Organization

    settings = _settings()
    box = SecretBox(settings.require_secret_keys())
    count = 0
    with Database(settings.database_url).session() as s:
        for obj, attrs in [(o, ("pat_enc", "webhook_password_enc")) for o in s.scalars(select(Organization))] + \
                [(a, ("api_token_enc", "webhook_secret_enc")) for a in s.scalars(select(DbtAccount))]:
            for attr in attrs:
                if getattr(obj, attr):
                    setattr(obj, attr, box.rotate(getattr(obj, attr)))
                    count += 1
    console.print(f"re-encrypted {count} secrets with the current key")


# -- sandbox and demo ---------------------------------------------------------------------------------

@main.command()
@click.option("--port", type=int, required=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True)
def sandbox(port: int, host: str) -> None:
    """Run the local fake Azure DevOps + dbt Cloud (control API under /_sandbox)."""
    from .sandbox import serve

    console.print(f"sandbox on http://{host}:{port} (Azure DevOps org URL http://{host}:{port}/fabrikam, "
                  f"dbt Cloud URL http://{host}:{port})")
    serve(host, port)


@main.command()
@click.option("--once", is_flag=True, help="Play the scenario once and exit 0 only if every expectation held.")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=Path(".demo"),
              show_default=True)
def demo(once: bool, workdir: Path) -> None:
    """Start Redis, the sandbox, web, worker and beat on SQLite and play the CI scenario."""
    from .demo import run_demo

    sys.exit(run_demo(workdir=workdir, once=once))


# -- pull requests -------------------------------------------------------------------------------

@main.group()
def prs() -> None:
    """Pull requests."""


@prs.command("sweep")
def prs_sweep() -> None:
    """Reconcile now every PR whose state Azure DevOps and the bridge disagree on (beat does this every
    BRIDGE_PR_SWEEP_INTERVAL seconds)."""
    from .dispatch import Dispatcher

    if not Dispatcher(_settings()).sweep_pull_requests():
        raise click.ClickException("could not reach the broker (BRIDGE_BROKER_URL)")
    console.print("sweep queued; the workers reconcile what differs")


# -- connections -------------------------------------------------------------------------------------

@main.group()
def connections() -> None:
    """Azure DevOps accounts connected through Microsoft Entra ID."""


@connections.command("list")
def connections_list() -> None:
    """Who is connected, which organizations they reach, and what to do about a dead connection."""
    from sqlalchemy import select

    from .db import Database
    from .models import Connection

    settings = _settings()
    with Database(settings.database_url).session() as s:
        rows = s.scalars(select(Connection).order_by(Connection.id)).all()
    table = Table(title="connections")
    for col in ("id", "user", "organizations", "health"):
        table.add_column(col)
    for c in rows:
        table.add_row(str(c.id), c.upn, ", ".join(c.organizations or []) or "…",
                      "ok" if c.status == "ok" else f"[red]needs re-authorization[/]: {c.status_reason}")
    console.print(table)
    dead = [c for c in rows if c.status != "ok"]
    for c in dead:
        console.print(f"To fix {c.upn}: open {settings.public_url}/console, choose [bold]Connect Azure DevOps[/] "
                      f"and sign in as {c.upn} (work for organizations acting as {c.upn} resumes with the next "
                      "event or PR sweep).")
    if dead:
        sys.exit(1)


# -- read-outs ----------------------------------------------------------------------------------------

@main.command()
@click.option("--limit", default=20, show_default=True)
def status(limit: int) -> None:
    """Recent pull requests, their runs and the delivery backlog."""
    from sqlalchemy import func, select

    from .db import Database
    from .models import CiRun, Delivery, PullRequestRecord, Repository

    settings = _settings()
    with Database(settings.database_url).session() as s:
        backlog = s.execute(select(Delivery.source, Delivery.state, func.count())
                            .group_by(Delivery.source, Delivery.state)).all()
        prs = s.scalars(select(PullRequestRecord).order_by(PullRequestRecord.id.desc()).limit(limit)).all()
        table = Table(title="pull requests")
        for col in ("repository", "PR", "state", "head", "runs (newest last)", "last decision"):
            table.add_column(col)
        for pr in prs:
            repo = s.get(Repository, pr.repository_id)
            runs = " ".join(f"{r.kind}:{r.dbt_run_id or '-'}:{r.posted_state or '?'}" for r in
                            s.scalars(select(CiRun).where(CiRun.pull_request_ref == pr.id).order_by(CiRun.id)))
            table.add_row(repo.name if repo else "?", str(pr.pull_request_id),
                          pr.status + (" (draft)" if pr.is_draft else ""), (pr.head_commit or "")[:8], runs,
                          pr.last_reason or "")
    console.print(table)
    deliveries = Table(title="deliveries")
    for col in ("source", "state", "count"):
        deliveries.add_column(col)
    for source, state, n in backlog:
        deliveries.add_row(source, state, str(n))
    console.print(deliveries)


if __name__ == "__main__":  # pragma: no cover
    main()
