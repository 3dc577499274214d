"""What an actor can see: organizations, projects, repositories (with whether the bridge serves each),
dbt Cloud jobs and environments. Reads only; every call acts as the actor, so Azure DevOps enforces their
permissions.
"""

from __future__ import annotations

import fnmatch

from sqlalchemy import func, select

from ..catalog import AdoProject, DbtCatalog, DbtEnvironment, DbtJob, RepositoryOffer
from ..models import Connection, Organization, Repository
from .context import Actor, OnboardingContext


def organizations(ctx: OnboardingContext, actor: Actor) -> list[str]:
    """What the actor reaches: a person's organizations (from their connection's profile), else the
    organizations configured here."""
    with ctx.db.session() as s:
        if actor.person:
            rows = s.scalars(select(Connection).where(Connection.of(actor.person))).all()
            return sorted({o for c in rows if c.status == "ok" for o in (c.organizations or [])})
        return sorted(s.scalars(select(Organization.name)).all())


def projects(ctx: OnboardingContext, actor: Actor, organization: str, *, search: str = "") -> list[AdoProject]:
    client = ctx.azure_devops(actor, organization)
    found = [p for p in client.list_projects() if matches(p.name, search)]
    return sorted(found, key=lambda p: p.name.lower())


def repositories(ctx: OnboardingContext, actor: Actor, organization: str, project: str, *,
                 search: str = "") -> list[RepositoryOffer]:
    """Repositories of a project the actor can see, with the dbt Cloud job of those the bridge serves."""
    client = ctx.azure_devops(actor, organization)
    repos = [r for r in client.list_repositories(project) if matches(r.name, search)]
    with ctx.db.session() as s:
        jobs = {r.ado_repository_id: r.ci_job_id for r in s.scalars(select(Repository).join(Organization).where(
            func.lower(Organization.name) == organization.lower()))}
    return [RepositoryOffer(r, jobs.get(r.id)) for r in repos]


def dbt_jobs(ctx: OnboardingContext, account_id: int) -> list[DbtJob]:
    return ctx.dbt(account_id).list_jobs()


def dbt_environments(ctx: OnboardingContext, account_id: int) -> list[DbtEnvironment]:
    dbt = ctx.dbt(account_id)
    return [e for p in dbt.list_projects() for e in dbt.list_environments(p)]


def dbt_catalog(ctx: OnboardingContext, account_id: int) -> DbtCatalog:
    return DbtCatalog(account_id, tuple(dbt_jobs(ctx, account_id)), tuple(dbt_environments(ctx, account_id)))


def matching_repositories(ctx: OnboardingContext, actor: Actor, organization: str, project: str,
                          pattern: str) -> list[RepositoryOffer]:
    """Repositories whose name matches a glob (disabled ones included: set-up reports them as skipped)."""
    return [r for r in repositories(ctx, actor, organization, project)
            if fnmatch.fnmatchcase(r.name.lower(), pattern.lower())]


def matches(name: str, search: str) -> bool:
    return not search or search.lower() in name.lower() or fnmatch.fnmatchcase(name.lower(), search.lower())
