"""The ``bridge`` command. One module per group of commands; this one holds the group and what they share.

``configuration`` (db, config, keys) · ``operations`` (sandbox, demo, status, prs, deliveries) ·
``identities`` (connections, orgs, dbt) · ``repositories`` (repos, hooks).

What Azure DevOps, dbt Cloud or the database say is data, never markup: table cells become plain ``Text``
and values put into a message go through ``data()``; both strip control characters (terminal escapes).
"""

from __future__ import annotations

import json
import os
import re
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import ConfigError
from ..settings import Settings

# Not a terminal (a pipe, CI's log) and no COLUMNS: no 80-column wrapping of what scripts and logs read.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 500)


def print_json(document: object) -> None:
    """The ``--json`` convention: one JSON document on standard output, nothing else."""
    click.echo(json.dumps(document, indent=2, default=str))


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
    """The settings; a ConfigError becomes one line and exit code 3 (``failures.py``)."""
    return Settings.from_env()


def open_database(settings: Settings | None = None, *, create: bool = False):
    """The configured database. A SQLite file that does not exist is refused unless ``create``: a command run
    outside the environment it belongs to must not leave an empty database behind."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from ..db import Database

    settings = settings or load_settings()
    url = make_url(settings.database_url) if "://" in settings.database_url else None
    if url is not None and url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not create and not Path(url.database).exists():
        default = "" if "BRIDGE_DATABASE_URL" in os.environ else \
            f" (BRIDGE_DATABASE_URL is not set, so the default {settings.database_url} is used)"
        raise ConfigError(f"there is no database at {Path(url.database).resolve()}{default}: set "
                          "BRIDGE_DATABASE_URL to the bridge's database, or create one with `bridge db upgrade`")
    return Database(settings.database_url)


def retry_refused_starts(settings: Settings) -> None:
    """After a fix to a token or an identity: have the workers start again the runs dbt Cloud refused."""
    from ..dispatch import Dispatcher

    if Dispatcher(settings).retry_refused_starts():
        console.print("pull requests whose run could not start are being run again")
    else:
        console.print("[yellow]the broker did not answer[/]: pull requests whose run could not start stay as they "
                      "are; `bridge prs rerun` runs one")


def linked_repository(spec: str) -> int:
    """The id of the linked repository named ORGANIZATION/PROJECT/REPOSITORY (project by name or id)."""
    from ..history import read

    if len(spec.split("/")) != 3:
        raise click.UsageError("name the repository as ORGANIZATION/PROJECT/REPOSITORY")
    with open_database().session() as s:
        found = read.repository_named(s, read.ADMIN, spec)
        if found is None:
            raise click.ClickException(f"{spec} is not linked to the bridge (see `bridge status`)")
        return found.id


class BridgeGroup(click.Group):
    """Turns every error of the bridge, the database and the broker into one line and an exit code
    (``failures.py``); ``--debug`` lets the traceback through instead."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get("bridge.debug"):
                raise
            from .failures import explain

            message, code = explain(exc)
            click.echo(f"Error: {clean(message)}", err=True)
            ctx.exit(code)


@click.group(cls=BridgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the traceback of a failure instead of one line.")
@click.version_option(package_name="ado-dbt-bridge")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """ado-dbt bridge: dbt Cloud pull-request CI for Azure DevOps.

    Exit codes: 0 done, 1 failed or needs a person, 2 wrong usage, 3 configuration, 4 database, 5 broker.
    """
    ctx.meta["bridge.debug"] = debug


def lock(settings: Settings):
    """The workers' Redis locks (Entra token refreshes, healing subscriptions), so the CLI never races them."""
    from .. import broker
    from ..locks import redis_lock_factory

    return redis_lock_factory(broker.client(settings, connect_timeout=2, timeout=5), settings.lock_timeout)


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
    return hosts_from_env()


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

    settings = load_settings()
    box = SecretBox(settings.require_secret_keys())
    database = open_database(settings)
    return settings, database, box, connections_for(settings, database, box)


def build_onboarding():
    from ..onboarding import Onboarding

    settings, database, box, clients = api_access()
    return Onboarding(settings, database, box, clients, lock(settings))


def find_person(spec: str):
    """A connected person named on the command line: ``<object id>@<tenant id>``, or a sign-in name that
    exactly one connection has (the operator typed it; what is kept is the tenant and object id)."""
    from sqlalchemy import func, select

    from ..models import Connection
    from ..people import PersonId

    person = PersonId.parse(spec)
    if person is not None:
        return person
    with open_database().session() as s:
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
