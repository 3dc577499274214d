"""The ``bridge`` command. One module per group of commands; this one holds the group and what they share.

``configuration`` (db, config, keys) · ``operations`` (sandbox, demo, status, prs, deliveries) ·
``identities`` (connections, orgs, dbt) · ``repositories`` (repos, hooks).
"""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError
from ..settings import Settings

console = Console(soft_wrap=True)


def new_table(title: str, *columns: str) -> Table:
    """A table whose long cells wrap instead of being cut (reasons and fixes must be readable whole)."""
    table = Table(title=title)
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


def build_onboarding():
    from ..crypto import SecretBox
    from ..db import Database
    from ..onboarding import Onboarding

    settings = load_settings()
    try:
        box = SecretBox(settings.require_secret_keys())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    database = Database(settings.database_url)
    return Onboarding(settings, database, box, connections_for(settings, database, box), lock(settings))


def actor_for(upn: str | None):
    from ..onboarding import Actor

    return Actor.of(upn)


AS_OPTION = click.option("--as", "as_upn", metavar="UPN",
                         help="Act as this person connected through Entra ID (their permissions apply); "
                              "default: the organization's configured identity.")


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
