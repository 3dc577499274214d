"""Who the bridge acts as: Entra connections, each organization's identity, dbt Cloud accounts."""

from __future__ import annotations

import sys

import click

from ..domain import SERVICES_API_VERSION
from ..errors import ApiError, BridgeError
from . import (
    build_onboarding,
    console,
    data,
    find_person,
    load_settings,
    main,
    new_table,
    open_database,
    read_secret,
    retry_refused_starts,
    text,
)

# -- connections -------------------------------------------------------------------------------------

@main.group()
def connections() -> None:
    """Azure DevOps accounts connected through Microsoft Entra ID."""


@connections.command("list")
def connections_list() -> None:
    """Who is connected, which organizations they reach, and what to do about a dead connection."""
    from sqlalchemy import select

    from ..models import Connection

    settings = load_settings()
    with open_database(settings).session() as s:
        rows = s.scalars(select(Connection).order_by(Connection.id)).all()
    table = new_table("connections", "id", "user", "person (object id@tenant id)", "organizations", "health")
    for c in rows:
        table.add_row(str(c.id), c.upn, f"{c.oid}@{c.tenant_id}", ", ".join(c.organizations or []) or "…",
                      "ok" if c.status == "ok" else text(f"needs re-authorization: {c.status_reason}", "red"))
    console.print(table)
    dead = [c for c in rows if c.status != "ok"]
    for c in dead:
        upn = data(c.upn)
        console.print(f"To fix {upn}: open {settings.public_url}/console, choose [bold]Connect Azure DevOps[/] "
                      f"and sign in as {upn} (work for organizations acting as {upn} resumes with the next "
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

    from ..models import Organization

    with open_database().session() as s:
        rows = s.scalars(select(Organization).order_by(Organization.name)).all()
    table = new_table("organizations", "name", "url", "REST API", "acts as")
    for org in rows:
        table.add_row(org.name, org.url, org.api_version, _acts_as(org))
    console.print(table)


@orgs.command("api-version")
@click.argument("organization")
@click.argument("version", type=click.Choice(["7.1", "7.0", "6.0"]))
def orgs_api_version(organization: str, version: str) -> None:
    """Set the REST API version ORGANIZATION's server serves (7.1: Azure DevOps Services; 7.0: Server 2022;
    6.0: Server 2020), after asking the server that it does. (A config file applied later sets it again: keep
    its api_version in step.)"""
    from sqlalchemy import func, select

    from ..models import Organization
    from ..services.connections import check_server
    from . import api_access

    _, database, _, clients = api_access()
    with database.session() as s:
        org = s.scalar(select(Organization).where(func.lower(Organization.name) == organization.lower()))
        if org is None:
            raise click.ClickException(f"no organization {organization!r}")
        org.api_version = version
        try:
            found = check_server(clients.azure_devops(org), org.name)
        except BridgeError as exc:
            s.rollback()
            raise click.ClickException(f"{exc}; nothing was changed") from None
    console.print(f"{data(organization)}: REST API {version} ({data(found)})")


@orgs.command("check")
@click.argument("organization", required=False)
def orgs_check(organization: str | None) -> None:
    """Ask each organization's server (or ORGANIZATION's) what it is and whether it serves the organization's
    REST API version, as its configured identity; exit 1 when one does not."""
    from sqlalchemy import func, select

    from ..models import Organization
    from ..services.connections import check_server
    from . import api_access

    _, database, _, clients = api_access()
    with database.session() as s:
        query = select(Organization).order_by(Organization.name)
        if organization:
            query = query.where(func.lower(Organization.name) == organization.lower())
        rows = s.scalars(query).all()
        for org in rows:
            s.expunge(org)
    if not rows:
        raise click.ClickException(f"no organization {organization!r}" if organization else "no organization")
    failed = False
    for org in rows:
        try:
            console.print(f"{data(org.name)}: {data(check_server(clients.azure_devops(org), org.name))}")
        except BridgeError as exc:
            failed = True
            console.print(f"[red]{data(org.name)}[/]: {data(exc)}")
    if failed:
        sys.exit(1)


def _acts_as(org) -> str:
    kind = org.identity_kind or "pat"
    if kind == "user":
        return f"connected user {org.identity_oid}@{org.identity_tid}"
    if kind == "service_principal":
        return f"service principal {org.sp_client_id} in tenant {org.sp_tenant_id}"
    return "personal access token" if org.pat_enc else "[red]nothing configured[/]"


@orgs.command("identity")
@click.argument("organization")
@click.option("--kind", type=click.Choice(["pat", "user", "service-principal"]), required=True,
              help="pat: a personal access token; user: a person connected through Entra ID; "
                   "service-principal: an Entra app added to the organization.")
@click.option("--user", "--upn", "user", metavar="PERSON",
              help="user: the connected person, <object id>@<tenant id> (or a sign-in name only one connection "
                   "has).")
@click.option("--tenant", help="service-principal: the organization's Entra tenant id.")
@click.option("--client-id", help="service-principal: the application (client) id.")
@click.option("--secret-env", metavar="VAR",
              help="Read the PAT or client secret from this environment variable instead of prompting.")
def orgs_identity(*, organization: str, kind: str, user: str | None, tenant: str | None, client_id: str | None,
                  secret_env: str | None) -> None:
    """Choose who reads ORGANIZATION's pull requests and posts their statuses. (A config file applied later
    sets it again: keep the file's `identity` in step if you manage organizations with one.)"""
    from sqlalchemy import func, select

    from ..crypto import SecretBox
    from ..models import Connection, Organization

    settings = load_settings()
    if kind == "user" and not user:
        raise click.UsageError("--kind user needs --user")
    if kind == "service-principal" and not (tenant and client_id):
        raise click.UsageError("--kind service-principal needs --tenant and --client-id")
    if kind != "pat" and settings.entra is None:
        raise click.ClickException(f"--kind {kind} needs Entra ID: set BRIDGE_ENTRA_CLIENT_ID and "
                                   "BRIDGE_ENTRA_CLIENT_SECRET first")
    box = SecretBox(settings.require_secret_keys())
    person = find_person(user) if kind == "user" else None
    with open_database(settings).session() as s:
        org = s.scalar(select(Organization).where(func.lower(Organization.name) == organization.lower()))
        if org is None:
            known = ", ".join(s.scalars(select(Organization.name).order_by(Organization.name))) or "none"
            raise click.ClickException(f"no organization {organization!r} (known: {known}); add it with "
                                       "`bridge config apply`")
        if kind != "pat" and org.api_version != SERVICES_API_VERSION:
            raise click.ClickException(f"{org.name} is an Azure DevOps Server collection (REST API "
                                       f"{org.api_version}): it knows no Microsoft Entra ID; use --kind pat")
        if kind == "pat":
            org.pat_enc = box.encrypt(read_secret(secret_env, f"Personal access token for {org.name}"))
            org.identity_kind, org.identity_tid, org.identity_oid = "pat", None, None
        elif kind == "user":
            org.identity_kind, org.identity_tid, org.identity_oid = "user", person.tenant_id, person.object_id
            connected = s.scalar(select(Connection.status).where(Connection.of(person)))
        else:
            secret = read_secret(secret_env, f"Client secret of {client_id}")
            org.identity_kind, org.identity_tid, org.identity_oid = "service_principal", None, None
            org.sp_tenant_id, org.sp_client_id, org.sp_secret_enc = tenant, client_id, box.encrypt(secret)
        acts_as = _acts_as(org)
    console.print(f"{data(organization)}: workers now act as {data(acts_as)}")
    if kind == "user" and connected is None:
        console.print(f"[yellow]{data(user)} has not connected yet[/]: until they do (console → Connect Azure DevOps), "
                      "work for this organization waits.")
    elif kind == "user" and connected != "ok":
        console.print(f"[yellow]{data(user)}'s connection needs re-authorization[/]: reconnect it in the console.")
    retry_refused_starts(settings)


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
    """Add a dbt Cloud account, or give it a new service token: saved only if dbt Cloud accepts the token. Runs
    dbt Cloud refused to start (a wrong or expired token) are then started again."""
    token = read_secret(token_env, f"Service token of dbt Cloud account {account_id}")
    try:
        catalog = build_onboarding().save_dbt_account(account_id, url, token)
    except ApiError as exc:
        raise click.ClickException(f"dbt Cloud refused the token, so nothing was saved: {exc}") from None
    console.print(f"dbt Cloud account {account_id} at {data(url)}: the token works ({len(catalog.jobs)} jobs); "
                  "saved")
    retry_refused_starts(load_settings())
