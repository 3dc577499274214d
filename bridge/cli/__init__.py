"""The ``bridge`` command. One module per group of commands; this one holds the group and what they share.

``configuration`` (db, config, keys) · ``operations`` (sandbox, demo, status, prs, deliveries) ·
``identities`` (connections, orgs, dbt) · ``repositories`` (repos, hooks).

What Azure DevOps, dbt Cloud or the database say is data, never markup: table cells become plain ``Text``
and values put into a message go through ``data()``; both strip control characters (terminal escapes).
"""

from __future__ import annotations

import re

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import ConfigError
from ..settings import Settings

console = Console(soft_wrap=True)


# C0 and C1 control characters but tab and newline: escape sequences, bells, backspaces, carriage returns.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(value: object) -> str:
    return _CONTROL.sub("", str(value))


def data(value: object) -> str:
    """A value from outside, ready to put into a message that carries our own markup."""
    return escape(clean(value))


def text(value: object, style: str = "") -> Text:
    """A value from outside as a table cell or a line: shown as it is, never read as markup."""
    return Text(clean(value), style=style)


class DataTable(Table):
    """A table whose cells are data: strings are shown as text; a cell we style ourselves is a ``Text``."""

    def add_row(self, *cells, **kwargs) -> None:
        super().add_row(*(cell if isinstance(cell, Text) or cell is None else text(cell) for cell in cells), **kwargs)


def new_table(title: str, *columns: str) -> Table:
    """A table whose long cells wrap instead of being cut (reasons and fixes must be readable whole)."""
    table = DataTable(title=clean(title))
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ado-dbt-bridge")
def main() -> None:
    """ado-dbt bridge: dbt Cloud pull-request CI for Azure DevOps."""




def lock(settings: Settings):
    """The workers' Redis locks (Entra token refreshes, healing subscriptions), so the CLI never races them."""
    import redis

    from ..locks import redis_lock_factory

    return redis_lock_factory(redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=5),
                              settings.lock_timeout)


def connections_for(settings: Settings, database, box):
    """API clients as the workers build them."""
    from ..services.connections import Connections

    return Connections.from_settings(settings, database, box, lock(settings), identity_hosts=dev_identity_hosts())


def dev_identity_hosts():
    """The sandbox's identity platform when the dev stack runs the CLI (``BRIDGE_ENTRA_TEST_BASE``), else None."""
    try:
        from ..dev.entra_redirect import hosts_from_env
    except ModuleNotFoundError as exc:  # installed without the dev tooling
        if exc.name not in ("bridge.dev", "bridge.dev.entra_redirect"):
            raise
        return None
    try:
        return hosts_from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def read_secret(env_name: str | None, prompt: str) -> str:
    """Secrets come from an environment variable or a hidden prompt, never from the command line (which
    other users of the machine can read in the process list)."""
    import os

    if env_name:
        value = os.environ.get(env_name, "")
        if not value:
            raise click.UsageError(f"environment variable {env_name} is empty or not set")
        return value
    return click.prompt(prompt, hide_input=True)


def api_access():
    """(settings, database, secret box, API clients) for a command that calls Azure DevOps or dbt Cloud."""
    from ..crypto import SecretBox
    from ..db import Database

    settings = load_settings()
    try:
        box = SecretBox(settings.require_secret_keys())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    database = Database(settings.database_url)
    return settings, database, box, connections_for(settings, database, box)


def build_onboarding():
    from ..onboarding import Onboarding

    settings, database, box, clients = api_access()
    return Onboarding(settings, database, box, clients, lock(settings))


def find_person(spec: str):
    """A connected person named on the command line: ``<object id>@<tenant id>``, or a sign-in name that
    exactly one connection has (the operator typed it; what is kept is the tenant and object id)."""
    from sqlalchemy import func, select

    from ..db import Database
    from ..models import Connection
    from ..people import PersonId

    person = PersonId.parse(spec)
    if person is not None:
        return person
    with Database(load_settings().database_url).session() as s:
        found = s.execute(select(Connection.oid, Connection.tenant_id)
                          .where(func.lower(Connection.upn) == spec.strip().lower())).all()
    if len(found) == 1:
        return PersonId(found[0][1], found[0][0])
    if not found:
        raise click.ClickException(f"no connected account is named {spec!r}: connect it in the console first, "
                                   "or give <object id>@<tenant id>")
    choices = ", ".join(f"{oid}@{tid}" for oid, tid in found)
    raise click.ClickException(f"{len(found)} connected accounts are named {spec!r} (in different tenants): "
                               f"give one as <object id>@<tenant id>: {choices}")


def actor_for(spec: str | None):
    from ..onboarding import Actor

    return Actor.of(find_person(spec), spec) if spec else Actor.of(None)


AS_OPTION = click.option("--as", "as_upn", metavar="PERSON",
                         help="Act as this person connected through Entra ID (their permissions apply): "
                              "<object id>@<tenant id>, or a sign-in name only one connection has; default: the "
                              "organization's configured identity.")


def _register_dev_commands() -> None:
    """``bridge sandbox`` and ``bridge demo`` from the dev tooling; installed without it, they say where it is."""
    try:
        from ..dev.commands import COMMANDS
    except ModuleNotFoundError as exc:
        if exc.name not in ("bridge.dev", "bridge.dev.commands"):
            raise
        for name in ("sandbox", "demo"):
            @main.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                          help="(dev tooling) runs from a checkout of the repository, not an installed package.")
            def unavailable(name=name) -> None:
                raise click.ClickException(f"'bridge {name}' is dev tooling: run it from a checkout of the "
                                           "repository (make demo), not from an installed package")
        return
    for command in COMMANDS:
        main.add_command(command)


# Registering the command groups (each module adds its commands to ``main``).
from . import configuration, identities, operations, repositories  # noqa: E402, F401

_register_dev_commands()
