"""Importing repositories and keeping their subscriptions healthy: ``bridge repos``, ``bridge hooks``."""

from __future__ import annotations

import sys

import click

from ..errors import BridgeError
from . import (
    AS_OPTION,
    actor_for,
    build_onboarding,
    console,
    data,
    linked_repository,
    main,
    new_table,
    open_database,
    text,
)

# -- repositories and their service hooks (onboarding) ----------------------------------------------

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
    onboarding, actor = build_onboarding(), actor_for(as_upn)
    try:
        if organization is None:
            rows, title, cols = [[o] for o in onboarding.organizations(actor)], "organizations", ("organization",)
        elif project is None:
            rows = [[p.name, p.id] for p in onboarding.projects(actor, organization, search=search)]
            title, cols = f"projects of {organization}", ("project", "id")
        else:
            rows = [[r.name, r.repository.id, f"linked (job {r.ci_job})" if r.linked else "",
                     "disabled" if r.repository.is_disabled else ""]
                    for r in onboarding.repositories(actor, organization, project, search=search)]
            title, cols = f"repositories of {organization}/{project}", ("repository", "id", "bridge", "")
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from None
    start = (page - 1) * page_size
    table = new_table(f"{title} (page {page} of {max(1, -(-len(rows) // page_size))}, {len(rows)} in all)", *cols)
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

    from ..onboarding import NewJob, SetupRequest

    repositories, pattern = options["repositories"], options["pattern"]
    if bool(repositories) == bool(pattern):
        raise click.UsageError("name REPOSITORIES or give --match GLOB (one of the two)")
    if bool(options["ci_job"]) == bool(options["environment"]):
        raise click.UsageError("give --ci-job JOB or --create-job ENVIRONMENT_ID (one of the two)")
    genre, _, name = options["status_context"].rpartition("/")
    if not genre or not name:
        raise click.UsageError("--status must look like GENRE/NAME, e.g. dbt-cloud/ci")
    onboarding, actor = build_onboarding(), actor_for(options["as_upn"])
    try:
        if pattern:
            repositories = [r.name for r in onboarding.matching_repositories(actor, options["organization"],
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


def _print_steps(title: str, steps, *, first: str = "step") -> None:
    table = new_table(title, first, "result", "detail")
    for step in steps:
        table.add_row(step.step, step.outcome, step.detail)
    console.print(table)


def _print_reports(reports) -> None:
    colour = {"created": "green", "repaired": "yellow", "unchanged": "", "skipped": "", "failed": "red"}
    if len(reports) == 1:
        _print_steps(f"set-up of {reports[0].repository}: {reports[0].outcome}", reports[0].steps)
    else:
        table = new_table("set-up", "repository", "result", "what happened")
        for report in reports:
            notes = "; ".join(f"{s.step}: {s.outcome}" + (f" ({s.detail})" if s.outcome in ("failed", "refused")
                                                           else "")
                              for s in report.steps if s.outcome != "unchanged")
            table.add_row(report.repository, text(report.outcome, colour[report.outcome]), notes or "nothing to change")
        console.print(table)
        totals = {k: sum(1 for r in reports if r.outcome == k) for k in colour}
        console.print(", ".join(f"{n} {k}" for k, n in totals.items()))
    for report in reports:
        if report.failed_steps:
            console.print(f"[red]{data(report.repository)}[/]: fix the cause, then retry with "
                          + " ".join(f"--only '{s}'" for s in report.failed_steps) + " (or run set-up again)")


@repos.command("unlink")
@click.argument("repository", metavar="ORGANIZATION/PROJECT/REPOSITORY")
@click.option("--remove-policy", is_flag=True, help="Also delete the branch policy set-up created.")
@AS_OPTION
def repos_unlink(repository: str, remove_policy: bool, as_upn: str | None) -> None:
    """Undo set-up: delete the repository's service hooks and dbt webhook (and, if asked, its branch policy)."""
    repository_id = linked_repository(repository)
    try:
        steps = build_onboarding().unlink(repository_id, actor_for(as_upn), remove_policy=remove_policy)
    except BridgeError as exc:
        raise click.ClickException(f"{exc}\nnothing was forgotten; retry once fixed") from None
    _print_steps(f"unlink {repository}", steps)


@repos.command("jobs")
@click.option("--dbt-account", type=int, required=True)
def repos_jobs(dbt_account: int) -> None:
    """The dbt Cloud account's jobs and environments, to choose --ci-job or --create-job from."""
    onboarding = build_onboarding()
    try:
        jobs, environments = onboarding.dbt_jobs(dbt_account), onboarding.dbt_environments(dbt_account)
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from None
    table = new_table(f"jobs of dbt Cloud account {dbt_account}", "job", "name", "type", "environment", "steps")
    for job in jobs:
        table.add_row(str(job.id), job.name, str(job.job_type), str(job.environment_id), "; ".join(job.execute_steps))
    console.print(table)
    table = new_table("environments", "environment", "name", "project", "kind")
    for env in environments:
        table.add_row(str(env.id), env.name, env.project_name, env.kind)
    console.print(table)


@main.group()
def hooks() -> None:
    """The service hooks and dbt webhooks the bridge registered: health, healing, credential rotation."""


@hooks.command("status")
def hooks_status() -> None:
    """Every subscription the bridge keeps, its last known state and what a person must fix (exit 1 if any)."""
    from sqlalchemy import select

    from ..models import DbtWebhookRecord, HookSubscriptionRecord, Repository

    with open_database().session() as s:
        names = {r.id: f"{r.organization.name}/{r.ado_project_name}/{r.name}" for r in s.scalars(select(Repository))}
        rows = [(names.get(h.repository_id, "?"), h.event_type, h.status, h.healed, h.last_healed_reason, h.problem)
                for h in s.scalars(select(HookSubscriptionRecord).order_by(HookSubscriptionRecord.repository_id,
                                                                           HookSubscriptionRecord.id))]
        rows += [(names.get(d.repository_id, "?"), f"dbt Cloud webhook {d.dbt_webhook_id}", d.status, d.healed,
                  d.last_healed_reason, d.problem) for d in s.scalars(select(DbtWebhookRecord))]
    table = new_table("subscriptions", "repository", "subscription", "status", "healed", "last healed because",
                      "needs a person")
    for repo, what, status, healed, why, problem in rows:
        table.add_row(repo, what, text(status, "" if status in ("enabled", "active") else "yellow"),
                      str(healed), why or "", text(problem or "", "red"))
    console.print(table)
    for repo, what, _status, _healed, _why, problem in rows:
        if problem:
            console.print(f"[red]needs a person[/] {data(repo)} {data(what)}: {data(problem)}")
    if any(r[5] for r in rows):
        sys.exit(1)


@hooks.command("check")
def hooks_check() -> None:
    """Check and heal every subscription now (beat does this every BRIDGE_HOOK_CHECK_INTERVAL seconds)."""
    from ..errors import LockBusy, LockStoreUnavailable

    try:
        counts = build_onboarding().check_health()
    except LockStoreUnavailable:
        raise  # not "already running": one line and exit code 5 (failures.py)
    except LockBusy as exc:
        raise click.ClickException(f"a health check or set-up is already running ({exc}); try again shortly") \
            from None
    console.print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no subscriptions to check")
    if counts.get("unchecked"):
        sys.exit(1)  # some could not be checked at all: bridge hooks status says why


@hooks.command("rotate")
@click.option("--repo", "repository", metavar="ORGANIZATION/PROJECT/REPOSITORY", help="Only this repository.")
@click.option("--grace", default=600, show_default=True, type=click.IntRange(min=60),
              help="Seconds the old password is still accepted while Azure DevOps switches.")
@AS_OPTION
def hooks_rotate(repository: str | None, grace: int, as_upn: str | None) -> None:
    """Give each service-hook subscription new Basic credentials, without dropping a delivery."""
    from datetime import timedelta

    repository_id = linked_repository(repository) if repository else None
    try:
        steps = build_onboarding().rotate(actor_for(as_upn), repository_id=repository_id,
                                          grace=timedelta(seconds=grace))
    except BridgeError as exc:
        raise click.ClickException(str(exc)) from None
    _print_steps("rotated credentials", steps, first="subscription")
    if any(step.outcome == "failed" for step in steps):
        sys.exit(1)
