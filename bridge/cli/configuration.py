"""Schema, declarative configuration and encryption keys: ``bridge db``, ``bridge config``, ``bridge keys``."""

from __future__ import annotations

from pathlib import Path

import click

from ..catalog import AdoRepository
from ..errors import BridgeError
from ..settings import Settings
from . import connections_for, console, data, load_settings, main, new_table, open_database

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


@config.command("apply")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
def config_apply(file: Path | None) -> None:
    """Create or update what FILE (default: BRIDGE_CONFIG) describes; idempotent, and nothing changes if
    any part is wrong."""
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

    try:
        with database.session() as session:
            changes = config_file.apply(session, desired, box, resolve)
    except BridgeError as exc:
        raise click.ClickException(f"{exc}\nnothing was changed") from None
    table = new_table(f"bridge config apply {file}", "kind", "name", "result")
    for change in changes:
        table.add_row(change.kind, change.name, change.action)
    console.print(table)
    for name, server in checked.items():
        console.print(f"{data(name)}: {data(server)}")


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
