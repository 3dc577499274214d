"""Schema, declarative configuration and encryption keys: ``bridge db``, ``bridge config``, ``bridge keys``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..catalog import AdoRepository
from ..errors import BridgeError
from ..settings import Settings
from . import (
    actor_for,
    build_onboarding,
    connections_for,
    console,
    data,
    load_settings,
    main,
    new_table,
    open_database,
    retry_refused_starts,
)

# -- database -----------------------------------------------------------------------------------------

@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations to BRIDGE_DATABASE_URL."""
    from ..db import upgrade

    settings = load_settings()
    upgrade(settings.database_url, revision)
    console.print(f"database at revision [bold]{revision}[/]")


# -- configuration ------------------------------------------------------------------------------------

@main.group()
def config() -> None:
    """Declarative configuration (YAML)."""


def _load_config(path: Path, settings: Settings):
    from .. import config_file

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
    settings = load_settings()
    file = _config_path(file, settings)
    desired = _load_config(file, settings)
    console.print(f"{data(file)}: valid ({len(desired.organizations)} organizations, {len(desired.accounts)} dbt "
                  f"accounts, {len(desired.repositories)} repositories)")


@config.command("plan")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option("--prune", is_flag=True, help="Also show what apply --prune would remove.")
def config_plan(file: Path | None, prune: bool) -> None:
    """Show what `config apply` would create, change and remove, with a diff per object (secrets masked);
    changes nothing. Exit code 0 when nothing would change, 1 when something would."""
    changes = _apply(file, commit=False, prune=prune)
    if any(c.action not in ("unchanged", "not in the file") for c in changes):
        sys.exit(1)


@config.command("apply")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option("--prune", is_flag=True, help="Also remove organizations, dbt accounts and repositories the file no "
                                            "longer lists (a repository is unlinked: its hooks are deleted).")
def config_apply(file: Path | None, prune: bool) -> None:
    """Create or update what FILE (default: BRIDGE_CONFIG) describes; idempotent, and nothing changes if
    any part is wrong. Run `config plan` first to see the diff."""
    _apply(file, commit=True, prune=prune)


def _apply(file: Path | None, *, commit: bool, prune: bool) -> list:
    from .. import config_file
    from ..crypto import SecretBox
    from ..services.connections import check_server

    settings = load_settings()
    file = _config_path(file, settings)
    desired = _load_config(file, settings)
    box = SecretBox(settings.require_secret_keys())

    database = open_database(settings)
    # Repository names are resolved as the identity each organization acts as (a PAT, a connected user, a
    # service principal), exactly as the workers will call Azure DevOps.
    clients = connections_for(settings, database, box)
    checked: dict[str, str] = {}

    def resolve(org, repo: dict) -> AdoRepository:
        client = clients.azure_devops(org)
        if org.name not in checked:  # the server answers at this organization's API version, or nothing changes
            checked[org.name] = check_server(client, org.name)
        return client.get_repository(repo["project"], repo["repository"])

    session = database.sessionmaker()
    try:
        changes = config_file.apply(session, desired, box, resolve)
        stale = config_file.unlisted(session, desired, changes)
        session.commit() if commit else session.rollback()
    except BridgeError as exc:
        session.rollback()
        raise click.ClickException(f"{exc}\nnothing was changed") from None
    finally:
        session.close()
    if not commit:
        changes += stale.changes("would be removed" if prune else "not in the file")
    elif not prune:
        changes += stale.changes("not in the file")
    _print_changes(f"bridge config {'apply' if commit else 'plan'} {file}", changes)
    if commit and any(c.action in ("created", "updated") and c.kind != "repository" for c in changes):
        retry_refused_starts(settings)  # a token or an identity changed: runs it refused may start now
    if commit and prune:
        _prune(database, stale)
    elif stale:
        console.print(f"{len(stale)} not in the file: `bridge config apply --prune` removes them")
    for name, server in checked.items():
        console.print(f"{data(name)}: {data(server)}")
    return changes


def _prune(database, stale) -> None:
    """Unlink the repositories the file no longer lists (their hooks go too), then forget organizations and
    accounts. A refusal stops here: what was applied stays, and running apply --prune again continues."""
    from .. import config_file

    onboarding, actor = build_onboarding(), actor_for(None)
    table = new_table("removed (--prune)", "kind", "name", "result")
    for repository_id, name in stale.repositories:
        try:
            steps = onboarding.unlink(repository_id, actor)
        except BridgeError as exc:
            raise click.ClickException(f"could not unlink {name}: {exc}; the rest of the file was applied, and "
                                       "`bridge config apply --prune` again continues") from None
        table.add_row("repository", name, "; ".join(f"{s.step}: {s.detail}" for s in steps if s.detail))
    with database.session() as session:
        config_file.remove(session, stale)
    for _, name in stale.organizations:
        table.add_row("organization", name, "removed")
    for account in stale.accounts:
        table.add_row("dbt account", str(account), "removed")
    console.print(table)


def _print_changes(title: str, changes: list) -> None:
    table = new_table(title, "kind", "name", "result")
    for change in changes:
        diff = "".join(f"\n  {d.key}: {d.before} → {d.after}" for d in change.diffs)
        table.add_row(change.kind, change.name, change.action + diff)
    console.print(table)


# -- keys ---------------------------------------------------------------------------------------------

@main.group()
def keys() -> None:
    """Encryption keys for stored secrets."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new key for BRIDGE_SECRET_KEY."""
    from ..crypto import generate_key

    click.echo(generate_key())


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret with the first key of BRIDGE_SECRET_KEY."""
    from sqlalchemy import select

    from ..crypto import SecretBox
    from ..models import DbtAccount, Organization

    settings = load_settings()
    box = SecretBox(settings.require_secret_keys())
    count = 0
    with open_database(settings).session() as s:
        for obj, attrs in [(o, ("pat_enc", "webhook_password_enc")) for o in s.scalars(select(Organization))] + \
                [(a, ("api_token_enc", "webhook_secret_enc")) for a in s.scalars(select(DbtAccount))]:
            for attr in attrs:
                if getattr(obj, attr):
                    setattr(obj, attr, box.rotate(getattr(obj, attr)))
                    count += 1
    console.print(f"re-encrypted {count} secrets with the current key")
