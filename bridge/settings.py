"""Process settings, read once from the environment by the two factories (web app, Celery app) and the CLI.

Each setting's default is written once, on its field; a field ``name`` is read from ``BRIDGE_<NAME>``
(``secret_keys``, ``config_file``, ``entra``, ``admin_token``, ``metrics_token`` and ``access`` have readers of
their own).
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from .access import ConsoleAccess
from .broker import check_url as check_broker_url
from .broker import is_sentinel
from .errors import ConfigError
from .urls import check_base_url

_OWN_READERS = frozenset({"secret_keys", "config_file", "entra", "admin_token", "metrics_token", "access"})
# Read by other readers than Settings' fields: EntraSettings, ConsoleAccess, the process set-up
# (deploy/gunicorn.conf.py, workers/app.py) and the dev tooling.
OTHER_VARIABLES = frozenset({
    "BRIDGE_SECRET_KEY", "BRIDGE_CONFIG", "BRIDGE_ADMIN_TOKEN", "BRIDGE_METRICS_TOKEN",
    "BRIDGE_ENTRA_CLIENT_ID", "BRIDGE_ENTRA_CLIENT_SECRET", "BRIDGE_ENTRA_AUTHORITY",
    "BRIDGE_ADMINS", "BRIDGE_ADMINS_BY_UPN", "BRIDGE_ADMIN_GROUPS", "BRIDGE_CONSOLE_TENANTS",
    "BRIDGE_ACCESS_LOG", "BRIDGE_GIL_SWITCH_INTERVAL", "BRIDGE_ENTRA_TEST_BASE",
})
# Numbers where 0 means "off" or "none"; every other number must be above 0.
_MAY_BE_ZERO = frozenset({"pr_sweep_interval", "hook_check_interval", "delivery_quiet", "proxy_hops",
                          "task_max_retries", "retention_days"})
_CHOICES = {"log_format": ("text", "json"), "log_level": ("debug", "info", "warning", "error"),
            "notify_format": ("slack", "teams")}
_FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _choice(name: str, value: str) -> str:
    """One of the values ``_CHOICES`` allows for ``name``, in lower case."""
    if value.lower() not in _CHOICES[name]:
        raise ConfigError(f"BRIDGE_{name.upper()} must be {' or '.join(_CHOICES[name])}, got {value!r}")
    return value.lower()


def _parse(name: str, kind: str, raw: str) -> object:
    variable = f"BRIDGE_{name.upper()}"
    if kind == "bool":
        if raw.lower() not in _FLAGS:
            raise ConfigError(f"{variable} must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")
        return _FLAGS[raw.lower()]
    if kind == "str":
        if name in _CHOICES:
            return _choice(name, raw)
        return raw
    try:
        number = int(raw) if kind == "int" else float(raw)
    except ValueError:
        what = "a whole number" if kind == "int" else "a number"
        raise ConfigError(f"{variable} must be {what}, got {raw!r}") from None
    if number < 0 or (number == 0 and name not in _MAY_BE_ZERO):
        raise ConfigError(f"{variable} must be {'0 or more' if name in _MAY_BE_ZERO else 'above 0'}, got {raw!r}")
    return number


def _token(env: Mapping[str, str], variable: str) -> str | None:
    token = env.get(variable) or None
    if token is not None and len(token) < 24:
        raise ConfigError(f"{variable} must be at least 24 characters long")
    return token


def _unknown_variables(env: Mapping[str, str]) -> list[str]:
    """A mistyped setting would be silently ignored; name it, with the setting it probably meant."""
    known = {f"BRIDGE_{f.name.upper()}" for f in fields(Settings) if f.name not in _OWN_READERS} | OTHER_VARIABLES
    problems = []
    for variable in sorted(v for v in env if v.startswith("BRIDGE_") and v not in known):
        close = difflib.get_close_matches(variable, known, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else " (the README's settings table lists them all)"
        problems.append(f"{variable} is not a setting{hint}")
    return problems


def _database_url(url: str) -> str | None:
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme in ("postgres", "postgresql"):
        return (f"BRIDGE_DATABASE_URL uses {scheme}://, which loads no installed driver: "
                "use postgresql+psycopg://USER@HOST/DB")
    if scheme != "sqlite" and not scheme.startswith("postgresql+"):
        return f"BRIDGE_DATABASE_URL must be postgresql+psycopg://USER@HOST/DB or sqlite:///PATH, got {_redacted(url)}"
    return None


def _notify_url(url: str, insecure: bool) -> str | None:
    """Checked without repeating it: the URL is the webhook's credential."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "BRIDGE_NOTIFY_URL is not an absolute https URL (copy the incoming webhook's URL whole)"
    if parts.scheme == "http" and not insecure:
        return "BRIDGE_NOTIFY_URL uses plain http; use https (BRIDGE_ALLOW_INSECURE_HTTP=1 allows http for testing)"
    return None


def _host_port(value: str) -> str | None:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f"BRIDGE_WORKER_METRICS_BIND must be HOST:PORT (e.g. 0.0.0.0:9808), got {value!r}"
    return None


def _broker_url(url: str) -> str | None:
    problem = check_broker_url(url)
    return f"{problem}, got {_redacted(url)}" if problem and not is_sentinel(url) else problem


def _redacted(url: str) -> str:
    """A URL as it may be shown: without a password."""
    password = urlsplit(url).password
    return repr(url.replace(f":{password}@", ":***@") if password else url)


@dataclass(frozen=True)
class EntraSettings:
    """The bridge's app registration in Microsoft Entra ID (``BRIDGE_ENTRA_*``)."""

    client_id: str
    client_secret: str
    authority: str = "https://login.microsoftonline.com/organizations"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EntraSettings | None:
        client_id = env.get("BRIDGE_ENTRA_CLIENT_ID")
        if not client_id:
            return None
        secret = env.get("BRIDGE_ENTRA_CLIENT_SECRET")
        if not secret:
            raise ConfigError("BRIDGE_ENTRA_CLIENT_ID is set but BRIDGE_ENTRA_CLIENT_SECRET is not")
        authority = env.get("BRIDGE_ENTRA_AUTHORITY") or cls.authority
        if urlsplit(authority).scheme != "https":
            raise ConfigError("BRIDGE_ENTRA_AUTHORITY must be an https URL")
        return cls(client_id=client_id, client_secret=secret, authority=authority.rstrip("/"))


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///bridge.db"
    broker_url: str = "redis://127.0.0.1:6379/0"  # or sentinel://HOST:PORT;… (bridge/broker.py)
    sentinel_master: str = ""         # the master's name Sentinel monitors (with a sentinel:// broker URL)
    sentinel_password: str = field(default="", repr=False)  # the sentinels' own password, when they have one
    secret_keys: tuple[str, ...] = ()  # BRIDGE_SECRET_KEY, comma-separated: the first encrypts, all decrypt
    public_url: str = "http://127.0.0.1:8000"
    config_file: Path | None = None    # BRIDGE_CONFIG
    allow_insecure_http: bool = False
    max_body_bytes: int = 1_048_576
    http_timeout: float = 10.0
    poll_interval: float = 15.0      # beat: how often to look for runs that went quiet
    quiet_after: float = 60.0        # a live run with no news for this long is polled
    sweep_interval: float = 10.0     # beat: how often to re-enqueue undispatched deliveries
    sweep_after: float = 15.0        # a delivery undispatched for this long is re-enqueued
    relay_interval: float | None = None  # the relay's polling period (None: 2 s on PostgreSQL, 0.1 s on SQLite)
    pr_sweep_interval: float = 300.0  # beat: how often to catch up with PR changes no delivery told us of (0: off)
    pr_sweep_share: float = 0.25      # of Azure DevOps' 200 TSTU per 5 minutes per identity the sweep may spend
    redispatch_after: float = 600.0  # a dispatched delivery not finished after this long was lost: resend
    lock_timeout: float = 15.0      # lease of a per-PR lock; renewed while held, so only a dead holder lets it lapse
    visibility_timeout: float = 300.0
    task_max_retries: int = 8
    worker_prefetch: int = 1         # tasks a worker reserves per thread beyond the running ones
    worker_db_pool: int = 32         # database connections a worker process may hold (≥ its thread count)
    azure_devops_url: str = "https://dev.azure.com"  # where organizations found through a connection live
    heartbeat_timeout: float = 60.0   # /readyz warns when no worker (or beat) has beaten for this long
    delivery_quiet: float = 259200.0  # /readyz warns after this long with no delivery from Azure DevOps (0: off)
    hook_check_interval: float = 900.0  # beat: how often service hooks and dbt webhooks are checked and healed
    log_format: str = "text"          # text | json (one object per line)
    log_level: str = "info"           # debug | info | warning | error (gunicorn's own lines too)
    worker_metrics_bind: str = ""     # HOST:PORT where each worker process serves its counters (empty: not served)
    retention_days: float = 30.0      # beat prunes finished deliveries older than this (0: keep everything)
    notify_url: str = ""              # a Slack or Teams incoming webhook told about what needs a person (a secret)
    notify_format: str = ""           # slack | teams (empty: slack for hooks.slack.com, else teams)
    notify_interval: float = 300.0    # beat: how often problems are looked for and new ones posted
    session_lifetime: float = 28800.0  # a console session ends this many seconds after sign-in
    session_idle: float = 3600.0       # … or after this many seconds without a request
    proxy_hops: int = 0               # trusted reverse proxies in front that set X-Forwarded-For / -Proto
    entra: EntraSettings | None = None  # BRIDGE_ENTRA_CLIENT_ID and _SECRET (and _AUTHORITY)
    admin_token: str | None = None    # local-only sign-in for first set-up and the demo (off unless set)
    metrics_token: str | None = None  # the bearer token /metrics answers (unset: /metrics is not served)
    access: ConsoleAccess = field(default_factory=ConsoleAccess)  # who may use the console after Entra ID sign-in

    def __post_init__(self):
        for name in ("public_url", "azure_devops_url"):
            object.__setattr__(self, name, getattr(self, name).rstrip("/"))
        for name in ("log_format", "log_level"):  # also when built in code, not from the environment
            object.__setattr__(self, name, _choice(name, getattr(self, name)))
        if self.notify_format:
            object.__setattr__(self, "notify_format", _choice("notify_format", self.notify_format))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every setting; raises one ConfigError with a line per problem, all found at once."""
        env = os.environ if env is None else env
        problems: list[str] = []
        values: dict[str, object] = {}
        for setting in fields(cls):
            variable = f"BRIDGE_{setting.name.upper()}"
            raw = env.get(variable)
            if setting.name in _OWN_READERS or raw in (None, ""):
                continue  # the field's default
            try:
                values[setting.name] = _parse(setting.name, setting.type, raw.strip())
            except ConfigError as exc:
                problems.append(str(exc))
        problems += _unknown_variables(env)
        read = {"secret_keys": lambda: tuple(k.strip() for k in env.get("BRIDGE_SECRET_KEY", "").split(",")
                                             if k.strip()),
                "config_file": lambda: Path(env["BRIDGE_CONFIG"]) if env.get("BRIDGE_CONFIG") else None,
                "entra": lambda: EntraSettings.from_env(env),
                "admin_token": lambda: _token(env, "BRIDGE_ADMIN_TOKEN"),
                "metrics_token": lambda: _token(env, "BRIDGE_METRICS_TOKEN"),
                "access": lambda: ConsoleAccess.from_env(env)}
        for name, reader in read.items():
            try:
                values[name] = reader()
            except ConfigError as exc:
                problems.append(str(exc))
        insecure = bool(values.get("allow_insecure_http", False))
        for name in ("public_url", "azure_devops_url"):
            if name in values:
                try:
                    check_base_url(str(values[name]), allow_insecure_http=insecure, what=f"BRIDGE_{name.upper()}")
                except ConfigError as exc:
                    problems.append(str(exc))
        if values.get("notify_url") and (problem := _notify_url(str(values["notify_url"]), insecure)):
            problems.append(problem)
        for name, check in (("database_url", _database_url), ("broker_url", _broker_url),
                            ("worker_metrics_bind", _host_port)):
            if name in values and (problem := check(str(values[name]))):
                problems.append(problem)
        if float(values.get("pr_sweep_share", 0.25)) > 1:
            problems.append("BRIDGE_PR_SWEEP_SHARE is the share of Azure DevOps' rate limit the PR sweep may spend: "
                            "a number above 0 and at most 1 (0.25 is a quarter)")
        sentinel = is_sentinel(str(values.get("broker_url", "")))
        if sentinel and not values.get("sentinel_master"):
            problems.append("BRIDGE_BROKER_URL names Sentinel: set BRIDGE_SENTINEL_MASTER to the master's name the "
                            "sentinels monitor (`sentinel monitor NAME …` in their configuration)")
        if not sentinel and (values.get("sentinel_master") or values.get("sentinel_password")):
            problems.append("BRIDGE_SENTINEL_MASTER / BRIDGE_SENTINEL_PASSWORD are set but BRIDGE_BROKER_URL is not a "
                            "sentinel:// URL: give the sentinels' addresses there, or unset them")
        if problems:
            raise ConfigError("\n".join(problems))
        return cls(**values)

    @classmethod
    def at_start_up(cls) -> Settings:
        """The process' settings; when they are wrong, every problem on a line of stderr and exit code 3 (no
        traceback: the lines say what to fix)."""
        try:
            return cls.from_env()
        except ConfigError as exc:
            for line in str(exc).splitlines():
                print(f"bridge: configuration problem: {line}", file=sys.stderr, flush=True)
            raise SystemExit(3) from None

    def require_secret_keys(self) -> tuple[str, ...]:
        """Secrets are stored encrypted; without a key the bridge refuses to store or read them."""
        if not self.secret_keys:
            raise ConfigError(
                "BRIDGE_SECRET_KEY is not set. Generate one with `bridge keys generate` and set it "
                "(comma-separate several keys to rotate: the first encrypts, all decrypt)."
            )
        return self.secret_keys
