"""Process settings, read once from the environment by the two factories (web app, Celery app) and the CLI.

Each setting's default is written once, on its field; a field ``name`` is read from ``BRIDGE_<NAME>``
(``secret_keys``, ``config_file``, ``entra``, ``admin_token``, ``metrics_token`` and ``access`` have readers of
their own).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from .access import ConsoleAccess
from .errors import ConfigError


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


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
    broker_url: str = "redis://127.0.0.1:6379/0"
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
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"BRIDGE_LOG_FORMAT must be text or json, got {self.log_format!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        own_readers = {"secret_keys", "config_file", "entra", "admin_token", "metrics_token", "access"}
        values: dict[str, object] = {}
        for setting in fields(cls):
            variable = f"BRIDGE_{setting.name.upper()}"
            raw = env.get(variable)
            if setting.name in own_readers or raw in (None, ""):
                continue  # the field's default
            if setting.type == "bool":
                values[setting.name] = _flag(raw)
            elif setting.type == "int":
                values[setting.name] = int(_number(variable, raw))
            elif setting.type.startswith("float"):
                values[setting.name] = _number(variable, raw)
            else:
                values[setting.name] = raw
        admin_token = env.get("BRIDGE_ADMIN_TOKEN") or None
        if admin_token is not None and len(admin_token) < 24:
            raise ConfigError("BRIDGE_ADMIN_TOKEN must be at least 24 characters long")
        metrics_token = env.get("BRIDGE_METRICS_TOKEN") or None
        if metrics_token is not None and len(metrics_token) < 24:
            raise ConfigError("BRIDGE_METRICS_TOKEN must be at least 24 characters long")
        config = env.get("BRIDGE_CONFIG")
        return cls(
            **values,
            secret_keys=tuple(k.strip() for k in env.get("BRIDGE_SECRET_KEY", "").split(",") if k.strip()),
            config_file=Path(config) if config else None,
            entra=EntraSettings.from_env(env),
            admin_token=admin_token,
            metrics_token=metrics_token,
            access=ConsoleAccess.from_env(env),
        )

    def require_secret_keys(self) -> tuple[str, ...]:
        """Secrets are stored encrypted; without a key the bridge refuses to store or read them."""
        if not self.secret_keys:
            raise ConfigError(
                "BRIDGE_SECRET_KEY is not set. Generate one with `bridge keys generate` and set it "
                "(comma-separate several keys to rotate: the first encrypts, all decrypt)."
            )
        return self.secret_keys
