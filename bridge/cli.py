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


def _connections(settings: Settings, database, box):
    """API clients as the workers build them; Entra token refreshes take the same Redis lock they do."""
    import redis

    from .locks import redis_lock_factory
    from .services.connections import Connections

    lock = redis_lock_factory(redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=5),
                              settings.lock_timeout)
    return Connections.from_settings(settings, database, box, lock)


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
    from .crypto import SecretBox
    from .db import Database

    settings = _settings()
    file = _config_path(file, settings)
    try:
        desired = _load_config(file, settings)
        box = SecretBox(settings.require_secret_keys())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    database = Database(settings.database_url)
    # Repository names are resolved as the identity each organization acts as (a PAT, a connected user, a
    # service principal), exactly as the workers will call Azure DevOps.
    clients = _connections(settings, database, box)

    def resolve(org, repo: dict) -> dict:
        return clients.azure_devops(org).get_repository(repo["project"], repo["repository"])

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


# -- organizations -------------------------------------------------------------------------------------

@main.group()
def orgs() -> None:
    """Azure DevOps organizations and the identity workers act as in each."""


@orgs.command("list")
def orgs_list() -> None:
    """Organizations and who reads their PRs and posts their statuses."""
    from sqlalchemy import select

    from .db import Database
    from .models import Organization

    with Database(_settings().database_url).session() as s:
        rows = s.scalars(select(Organization).order_by(Organization.name)).all()
    table = Table(title="organizations")
    for col in ("name", "url", "acts as"):
        table.add_column(col)
    for org in rows:
        table.add_row(org.name, org.url, _acts_as(org))
    console.print(table)


def _acts_as(org) -> str:
    kind = org.identity_kind or "pat"
    if kind == "user":
        return f"connected user {org.identity_upn}"
    if kind == "service_principal":
        return f"service principal {org.sp_client_id} in tenant {org.sp_tenant_id}"
    return "personal access token" if org.pat_enc else "[red]nothing configured[/]"


def _secret(env_name: str | None, prompt: str) -> str:
    """Secrets come from an environment variable or a hidden prompt, never from the command line (which
    other users of the machine can read in the process list)."""
    import os

    if env_name:
        value = os.environ.get(env_name, "")
        if not value:
            raise click.UsageError(f"environment variable {env_name} is empty or not set")
        return value
    return click.prompt(prompt, hide_input=True)


@orgs.command("identity")
@click.argument("organization")
@click.option("--kind", type=click.Choice(["pat", "user", "service-principal"]), required=True,
              help="pat: a personal access token; user: a person connected through Entra ID; "
                   "service-principal: an Entra app added to the organization.")
@click.option("--upn", help="user: the connected person's sign-in name (user@example.com).")
@click.option("--tenant", help="service-principal: the organization's Entra tenant id.")
@click.option("--client-id", help="service-principal: the application (client) id.")
@click.option("--secret-env", metavar="VAR",
              help="Read the PAT or client secret from this environment variable instead of prompting.")
def orgs_identity(*, organization: str, kind: str, upn: str | None, tenant: str | None, client_id: str | None,
                  secret_env: str | None) -> None:
    """Choose who reads ORGANIZATION's pull requests and posts their statuses. (A config file applied later
    sets it again: keep the file's `identity` in step if you manage organizations with one.)"""
    from sqlalchemy import func, select

    from .crypto import SecretBox
    from .db import Database
    from .models import Connection, Organization

    settings = _settings()
    if kind == "user" and not upn:
        raise click.UsageError("--kind user needs --upn")
    if kind == "service-principal" and not (tenant and client_id):
        raise click.UsageError("--kind service-principal needs --tenant and --client-id")
    if kind != "pat" and settings.entra is None:
        raise click.ClickException(f"--kind {kind} needs Entra ID: set BRIDGE_ENTRA_CLIENT_ID and "
                                   "BRIDGE_ENTRA_CLIENT_SECRET first")
    try:
        box = SecretBox(settings.require_secret_keys())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    with Database(settings.database_url).session() as s:
        org = s.scalar(select(Organization).where(func.lower(Organization.name) == organization.lower()))
        if org is None:
            known = ", ".join(s.scalars(select(Organization.name).order_by(Organization.name))) or "none"
            raise click.ClickException(f"no organization {organization!r} (known: {known}); add it with "
                                       "`bridge config apply`")
        if kind == "pat":
            org.pat_enc = box.encrypt(_secret(secret_env, f"Personal access token for {org.name}"))
            org.identity_kind, org.identity_upn = "pat", None
        elif kind == "user":
            org.identity_kind, org.identity_upn = "user", upn.lower()
            connected = s.scalar(select(Connection.status).where(func.lower(Connection.upn) == upn.lower()))
        else:
            secret = _secret(secret_env, f"Client secret of {client_id}")
            org.identity_kind, org.identity_upn = "service_principal", None
            org.sp_tenant_id, org.sp_client_id, org.sp_secret_enc = tenant, client_id, box.encrypt(secret)
        acts_as = _acts_as(org)
    console.print(f"{organization}: workers now act as {acts_as}")
    if kind == "user" and connected is None:
        console.print(f"[yellow]{upn} has not connected yet[/]: until they do (console → Connect Azure DevOps), "
                      "work for this organization waits.")
    elif kind == "user" and connected != "ok":
        console.print(f"[yellow]{upn}'s connection needs re-authorization[/]: reconnect it in the console.")


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

    from .db import Database
    from .dispatch import Dispatcher
    from .models import Delivery, utcnow

    settings = _settings()
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
