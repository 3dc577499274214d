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


def _lock(settings: Settings):
    """The workers' Redis locks (Entra token refreshes, healing subscriptions), so the CLI never races them."""
    import redis

    from .locks import redis_lock_factory

    return redis_lock_factory(redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=5),
                              settings.lock_timeout)


def _connections(settings: Settings, database, box):
    """API clients as the workers build them."""
    from .services.connections import Connections

    return Connections.from_settings(settings, database, box, _lock(settings))


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
        table.add_column(col, overflow="fold")
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
        table.add_column(col, overflow="fold")
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
        table.add_column(col, overflow="fold")
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


# -- repositories and their service hooks (onboarding) ----------------------------------------------

def _onboarding():
    from .crypto import SecretBox
    from .db import Database
    from .services.onboarding import Onboarding

    settings = _settings()
    try:
        box = SecretBox(settings.require_secret_keys())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    database = Database(settings.database_url)
    return Onboarding(settings, database, box, _connections(settings, database, box), _lock(settings))


def _actor(upn: str | None):
    from .services.onboarding import Actor

    return Actor(upn, upn) if upn else Actor("the organization's configured identity")


AS_OPTION = click.option("--as", "as_upn", metavar="UPN",
                         help="Act as this person connected through Entra ID (their permissions apply); "
                              "default: the organization's configured identity.")


@main.group()
def repos() -> None:
    """Find repositories and set up (or undo) their dbt Cloud CI."""


@repos.command("list")
@click.option("--org", "organization", help="Azure DevOps organization (default: list the organizations).")
@click.option("--project", help="List this project's repositories (default: list the projects).")
@click.option("--search", default="", help="Only names containing this text (or matching this glob).")
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--page-size", default=50, show_default=True, type=click.IntRange(1, 500))
@AS_OPTION
def repos_list(*, organization: str | None, project: str | None, search: str, page: int, page_size: int,
               as_upn: str | None) -> None:
    """What you can reach: organizations → projects → repositories (only what Azure DevOps shows you)."""
    onboarding, actor = _onboarding(), _actor(as_upn)
    try:
        if organization is None:
            rows, title, cols = [[o] for o in onboarding.organizations(actor)], "organizations", ("organization",)
        elif project is None:
            rows = [[p["name"], p["id"]] for p in onboarding.projects(actor, organization, search=search)]
            title, cols = f"projects of {organization}", ("project", "id")
        else:
            rows = [[r["name"], r["id"], f"linked (job {r['ci_job']})" if r["linked"] else "",
                     "disabled" if r.get("is_disabled") else ""]
                    for r in onboarding.repositories(actor, organization, project, search=search)]
            title, cols = f"repositories of {organization}/{project}", ("repository", "id", "bridge", "")
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from None
    start = (page - 1) * page_size
    table = Table(title=f"{title} (page {page} of {max(1, -(-len(rows) // page_size))}, {len(rows)} in all)")
    for col in cols:
        table.add_column(col, overflow="fold")
    for row in rows[start:start + page_size]:
        table.add_row(*row)
    console.print(table)


@repos.command("setup")
@click.option("--org", "organization", required=True)
@click.option("--project", required=True)
@click.argument("repositories", nargs=-1)
@click.option("--match", "pattern", help="Set up every repository of the project whose name matches this glob.")
@click.option("--dbt-account", type=int, required=True, help="A dbt Cloud account configured in the bridge.")
@click.option("--ci-job", type=int, help="An existing dbt Cloud CI job (see `bridge repos jobs`).")
@click.option("--create-job", "environment", type=int, metavar="ENVIRONMENT_ID",
              help="Create a CI job in this dbt Cloud environment instead.")
@click.option("--defer-to", type=int, metavar="ENVIRONMENT_ID", help="With --create-job: defer to this environment "
              "(usually production), so only what changed is built.")
@click.option("--job-name", default="PR CI (ado-dbt bridge)", show_default=True)
@click.option("--step", "job_steps", multiple=True, help="With --create-job: a dbt command (repeatable; default "
              "`dbt build --select state:modified+`).")
@click.option("--teardown-job", type=int, help="A job that drops the PR schema when the PR closes.")
@click.option("--target-branch", default="main", show_default=True, help="PRs into this branch are built.")
@click.option("--policy/--no-policy", default=False, show_default=True,
              help="Also require the bridge's status on the target branch (a Status branch policy).")
@click.option("--reset-on-new-changes/--keep-status-on-new-changes", default=True, show_default=True)
@click.option("--drafts", type=click.Choice(["skip", "run"]), default="skip", show_default=True)
@click.option("--status", "status_context", default="dbt-cloud/ci", show_default=True, metavar="GENRE/NAME")
@click.option("--only", "only", multiple=True, help="Retry only this step (after fixing what made it fail).")
@AS_OPTION
def repos_setup(**options) -> None:
    """Set up CI for REPOSITORIES (or every --match): dbt job, service hooks, dbt webhook, optional branch
    policy. Idempotent: run it again to repair."""
    from rich.progress import Progress

    from .services.onboarding import NewJob, SetupRequest

    repositories, pattern = options["repositories"], options["pattern"]
    if bool(repositories) == bool(pattern):
        raise click.UsageError("name REPOSITORIES or give --match GLOB (one of the two)")
    if bool(options["ci_job"]) == bool(options["environment"]):
        raise click.UsageError("give --ci-job JOB or --create-job ENVIRONMENT_ID (one of the two)")
    genre, _, name = options["status_context"].rpartition("/")
    if not genre or not name:
        raise click.UsageError("--status must look like GENRE/NAME, e.g. dbt-cloud/ci")
    onboarding, actor = _onboarding(), _actor(options["as_upn"])
    try:
        if pattern:
            repositories = [r["name"] for r in onboarding.matching_repositories(actor, options["organization"],
                                                                                 options["project"], pattern)]
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from None
    if not repositories:
        raise click.ClickException(f"no repository of {options['organization']}/{options['project']} matches "
                                   f"{pattern!r}")
    new_job = NewJob(environment_id=options["environment"], deferring_environment_id=options["defer_to"],
                     name=options["job_name"], steps=tuple(options["job_steps"]) or NewJob.steps) \
        if options["environment"] else None
    reports = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("setting up", total=len(repositories))
        for repository in repositories:
            progress.update(task, description=f"setting up {repository}")
            request = SetupRequest(
                organization=options["organization"], project=options["project"], repository=repository,
                dbt_account=options["dbt_account"], ci_job=options["ci_job"], new_job=new_job,
                teardown_job=options["teardown_job"], target_branch=options["target_branch"],
                policy=options["policy"], reset_on_new_changes=options["reset_on_new_changes"],
                drafts=options["drafts"], status_genre=genre, status_name=name, only=tuple(options["only"]))
            try:
                reports.append(onboarding.setup(request, actor))
            except BridgeError as exc:
                raise click.ClickException(str(exc)) from None
            progress.advance(task)
    _print_reports(reports)
    if any(r.outcome == "failed" for r in reports):
        sys.exit(1)


def _print_reports(reports) -> None:
    colour = {"created": "green", "repaired": "yellow", "unchanged": "", "skipped": "", "failed": "red"}
    if len(reports) == 1:
        table = Table(title=f"set-up of {reports[0].repository}: {reports[0].outcome}")
        for col in ("step", "result", "detail"):
            table.add_column(col, overflow="fold")
        for step in reports[0].steps:
            table.add_row(step.step, step.outcome, step.detail)
        console.print(table)
    else:
        table = Table(title="set-up")
        for col in ("repository", "result", "what happened"):
            table.add_column(col, overflow="fold")
        for report in reports:
            notes = "; ".join(f"{s.step}: {s.outcome}" + (f" ({s.detail})" if s.outcome in ("failed", "refused")
                                                           else "")
                              for s in report.steps if s.outcome != "unchanged")
            table.add_row(report.repository, f"[{colour[report.outcome]}]{report.outcome}[/]" if colour[
                report.outcome] else report.outcome, notes or "nothing to change")
        console.print(table)
        totals = {k: sum(1 for r in reports if r.outcome == k) for k in colour}
        console.print(", ".join(f"{n} {k}" for k, n in totals.items()))
    for report in reports:
        if report.failed_steps:
            console.print(f"[red]{report.repository}[/]: fix the cause, then retry with "
                          + " ".join(f"--only '{s}'" for s in report.failed_steps) + " (or run set-up again)")


def _linked_repository(spec: str) -> int:
    from sqlalchemy import func, select

    from .db import Database
    from .models import Organization, Repository

    parts = spec.split("/")
    if len(parts) != 3:
        raise click.UsageError("name the repository as ORGANIZATION/PROJECT/REPOSITORY")
    org, project, name = (p.lower() for p in parts)
    with Database(_settings().database_url).session() as s:
        found = s.scalar(select(Repository.id).join(Organization).where(
            func.lower(Organization.name) == org, func.lower(Repository.name) == name,
            (func.lower(Repository.ado_project_name) == project) | (func.lower(Repository.ado_project_id) == project)))
    if found is None:
        raise click.ClickException(f"{spec} is not linked to the bridge (see `bridge status`)")
    return found


@repos.command("unlink")
@click.argument("repository", metavar="ORGANIZATION/PROJECT/REPOSITORY")
@click.option("--remove-policy", is_flag=True, help="Also delete the branch policy set-up created.")
@AS_OPTION
def repos_unlink(repository: str, remove_policy: bool, as_upn: str | None) -> None:
    """Undo set-up: delete the repository's service hooks and dbt webhook (and, if asked, its branch policy)."""
    repository_id = _linked_repository(repository)
    try:
        steps = _onboarding().unlink(repository_id, _actor(as_upn), remove_policy=remove_policy)
    except BridgeError as exc:
        raise click.ClickException(f"{exc}\nnothing was forgotten; retry once fixed") from None
    table = Table(title=f"unlink {repository}")
    for col in ("step", "result", "detail"):
        table.add_column(col, overflow="fold")
    for step in steps:
        table.add_row(step.step, step.outcome, step.detail)
    console.print(table)


@repos.command("jobs")
@click.option("--dbt-account", type=int, required=True)
def repos_jobs(dbt_account: int) -> None:
    """The dbt Cloud account's jobs and environments, to choose --ci-job or --create-job from."""
    onboarding = _onboarding()
    try:
        jobs, environments = onboarding.dbt_jobs(dbt_account), onboarding.dbt_environments(dbt_account)
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from None
    table = Table(title=f"jobs of dbt Cloud account {dbt_account}")
    for col in ("job", "name", "type", "environment", "steps"):
        table.add_column(col, overflow="fold")
    for job in jobs:
        table.add_row(str(job["id"]), job["name"], str(job["job_type"]), str(job["environment_id"]),
                      "; ".join(job["execute_steps"]))
    console.print(table)
    table = Table(title="environments")
    for col in ("environment", "name", "project", "kind"):
        table.add_column(col, overflow="fold")
    for env in environments:
        table.add_row(str(env["id"]), env["name"], env["project"], str(env.get("deployment_type") or env["type"]))
    console.print(table)


@main.group()
def hooks() -> None:
    """The service hooks and dbt webhooks the bridge registered: health, healing, credential rotation."""


@hooks.command("status")
def hooks_status() -> None:
    """Every subscription the bridge keeps, its last known state and what a person must fix (exit 1 if any)."""
    from sqlalchemy import select

    from .db import Database
    from .models import DbtWebhookRecord, HookSubscriptionRecord, Repository

    with Database(_settings().database_url).session() as s:
        names = {r.id: f"{r.organization.name}/{r.ado_project_name}/{r.name}" for r in s.scalars(select(Repository))}
        rows = [(names.get(h.repository_id, "?"), h.event_type, h.status, h.healed, h.last_healed_reason, h.problem)
                for h in s.scalars(select(HookSubscriptionRecord).order_by(HookSubscriptionRecord.repository_id,
                                                                           HookSubscriptionRecord.id))]
        rows += [(names.get(d.repository_id, "?"), f"dbt Cloud webhook {d.dbt_webhook_id}", d.status, d.healed,
                  d.last_healed_reason, d.problem) for d in s.scalars(select(DbtWebhookRecord))]
    table = Table(title="subscriptions")
    for col in ("repository", "subscription", "status", "healed", "last healed because", "needs a person"):
        table.add_column(col, overflow="fold")
    for repo, what, status, healed, why, problem in rows:
        table.add_row(repo, what, status if status in ("enabled", "active") else f"[yellow]{status}[/]",
                      str(healed), why or "", f"[red]{problem}[/]" if problem else "")
    console.print(table)
    for repo, what, _status, _healed, _why, problem in rows:
        if problem:
            console.print(f"[red]needs a person[/] {repo} {what}: {problem}")
    if any(r[5] for r in rows):
        sys.exit(1)


@hooks.command("check")
def hooks_check() -> None:
    """Check and heal every subscription now (beat does this every BRIDGE_HOOK_CHECK_INTERVAL seconds)."""
    from .retry import LockBusy

    try:
        counts = _onboarding().check_health()
    except LockBusy as exc:
        raise click.ClickException(f"a health check or set-up is already running ({exc}); try again shortly") from None
    console.print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no subscriptions to check")


@hooks.command("rotate")
@click.option("--repo", "repository", metavar="ORGANIZATION/PROJECT/REPOSITORY", help="Only this repository.")
@click.option("--grace", default=600, show_default=True, type=click.IntRange(min=60),
              help="Seconds the old password is still accepted while Azure DevOps switches.")
@AS_OPTION
def hooks_rotate(repository: str | None, grace: int, as_upn: str | None) -> None:
    """Give each service-hook subscription new Basic credentials, without dropping a delivery."""
    from datetime import timedelta

    repository_id = _linked_repository(repository) if repository else None
    try:
        steps = _onboarding().rotate(_actor(as_upn), repository_id=repository_id, grace=timedelta(seconds=grace))
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from None
    table = Table(title="rotated credentials")
    for col in ("subscription", "result", "detail"):
        table.add_column(col, overflow="fold")
    for step in steps:
        table.add_row(step.step, step.outcome, step.detail)
    console.print(table)
    if any(step.outcome == "failed" for step in steps):
        sys.exit(1)


# -- dbt Cloud accounts ------------------------------------------------------------------------------------

@main.group()
def dbt() -> None:
    """dbt Cloud accounts the bridge triggers runs in."""


@dbt.command("add-account")
@click.argument("account_id", type=int)
@click.option("--url", default="https://cloud.getdbt.com", show_default=True,
              help="The account's access URL (regional, cell or single-tenant hosts included).")
@click.option("--token-env", metavar="VAR", help="Read the service token from this environment variable instead "
                                                 "of prompting.")
def dbt_add_account(account_id: int, url: str, token_env: str | None) -> None:
    """Add (or update) a dbt Cloud account and check its service token against dbt Cloud."""
    from .crypto import SecretBox
    from .db import Database
    from .models import DbtAccount
    from .urls import check_base_url

    settings = _settings()
    try:
        url = check_base_url(url, allow_insecure_http=settings.allow_insecure_http, what="--url")
        box = SecretBox(settings.require_secret_keys())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    token = _secret(token_env, f"Service token of dbt Cloud account {account_id}")
    with Database(settings.database_url).session() as s:
        account = s.get(DbtAccount, account_id) or DbtAccount(id=account_id, url=url)
        account.url, account.api_token_enc = url, box.encrypt(token)
        s.merge(account)
    try:
        jobs = _onboarding().dbt_jobs(account_id)
    except BridgeError as exc:
        raise click.ClickException(f"stored, but dbt Cloud refused: {exc}") from None
    console.print(f"dbt Cloud account {account_id} at {url}: the token works ({len(jobs)} jobs)")


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
            table.add_column(col, overflow="fold")
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
        deliveries.add_column(col, overflow="fold")
    for source, state, n in backlog:
        deliveries.add_row(source, state, str(n))
    console.print(deliveries)


if __name__ == "__main__":  # pragma: no cover
    main()
