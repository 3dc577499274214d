"""Process settings, read once from the environment by the two factories (web app, Celery app) and the CLI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .access import ConsoleAccess
from .errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///bridge.db"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _number(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str = DEFAULT_BROKER_URL
    secret_keys: tuple[str, ...] = ()
    public_url: str = "http://127.0.0.1:8000"
    config_file: Path | None = None
    allow_insecure_http: bool = False
    max_body_bytes: int = 1_048_576
    http_timeout: float = 10.0
    poll_interval: float = 15.0      # beat: how often to look for runs that went quiet
    quiet_after: float = 60.0        # a live run with no news for this long is polled
    sweep_interval: float = 10.0     # beat: how often to re-enqueue undispatched deliveries
    sweep_after: float = 15.0        # a delivery undispatched for this long is re-enqueued
    relay_interval: float | None = None  # the relay looks for new deliveries at least this often (None: 2 s on
    #                                      PostgreSQL, which also wakes it at once; 0.1 s on SQLite, which cannot)
    pr_sweep_interval: float = 300.0  # beat: how often to catch up with PR changes no delivery told us of (0: off)
    redispatch_after: float = 600.0  # a dispatched delivery not finished after this long was lost: resend
    lock_timeout: float = 15.0      # lease of a per-PR lock; renewed while held, so only a dead holder lets it lapse
    visibility_timeout: float = 300.0
    task_max_retries: int = 8
    worker_prefetch: int = 1         # tasks a worker reserves per thread beyond the running ones
    worker_db_pool: int = 32         # database connections a worker process may hold (≥ its thread count)
    azure_devops_url: str = "https://dev.azure.com"  # where organizations found through a connection live
    hook_check_interval: float = 900.0  # beat: how often service hooks and dbt webhooks are checked and healed
    entra: object | None = None       # identity.EntraSettings when BRIDGE_ENTRA_CLIENT_ID is set
    admin_token: str | None = None    # local-only sign-in for first set-up and the demo (off unless set)
    access: ConsoleAccess = field(default_factory=ConsoleAccess)  # who may use the console after Entra ID sign-in

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        from .identity import EntraSettings

        keys = tuple(k.strip() for k in env.get("BRIDGE_SECRET_KEY", "").split(",") if k.strip())
        insecure = _flag(env.get("BRIDGE_ALLOW_INSECURE_HTTP"))
        admin_token = env.get("BRIDGE_ADMIN_TOKEN") or None
        if admin_token is not None and len(admin_token) < 24:
            raise ConfigError("BRIDGE_ADMIN_TOKEN must be at least 24 characters long")
        config = env.get("BRIDGE_CONFIG")
        return cls(
            database_url=env.get("BRIDGE_DATABASE_URL") or DEFAULT_DATABASE_URL,
            broker_url=env.get("BRIDGE_BROKER_URL") or DEFAULT_BROKER_URL,
            secret_keys=keys,
            public_url=(env.get("BRIDGE_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/"),
            config_file=Path(config) if config else None,
            allow_insecure_http=insecure,
            entra=EntraSettings.from_env(env, allow_insecure_http=insecure),
            admin_token=admin_token,
            access=ConsoleAccess.from_env(env),
            azure_devops_url=(env.get("BRIDGE_AZURE_DEVOPS_URL") or "https://dev.azure.com").rstrip("/"),
            hook_check_interval=_number(env, "BRIDGE_HOOK_CHECK_INTERVAL", 900.0),
            max_body_bytes=int(_number(env, "BRIDGE_MAX_BODY_BYTES", 1_048_576)),
            http_timeout=_number(env, "BRIDGE_HTTP_TIMEOUT", 10.0),
            poll_interval=_number(env, "BRIDGE_POLL_INTERVAL", 15.0),
            quiet_after=_number(env, "BRIDGE_QUIET_AFTER", 60.0),
            sweep_interval=_number(env, "BRIDGE_SWEEP_INTERVAL", 10.0),
            sweep_after=_number(env, "BRIDGE_SWEEP_AFTER", 15.0),
            relay_interval=_number(env, "BRIDGE_RELAY_INTERVAL", None),
            pr_sweep_interval=_number(env, "BRIDGE_PR_SWEEP_INTERVAL", 300.0),
            redispatch_after=_number(env, "BRIDGE_REDISPATCH_AFTER", 600.0),
            lock_timeout=_number(env, "BRIDGE_LOCK_TIMEOUT", 15.0),
            visibility_timeout=_number(env, "BRIDGE_VISIBILITY_TIMEOUT", 300.0),
            task_max_retries=int(_number(env, "BRIDGE_TASK_MAX_RETRIES", 8)),
            worker_db_pool=int(_number(env, "BRIDGE_WORKER_DB_POOL", 32)),
            worker_prefetch=int(_number(env, "BRIDGE_WORKER_PREFETCH", 1)),
        )

    def require_secret_keys(self) -> tuple[str, ...]:
        """Secrets are stored encrypted; without a key the bridge refuses to store or read them."""
        if not self.secret_keys:
            raise ConfigError(
                "BRIDGE_SECRET_KEY is not set. Generate one with `bridge keys generate` and set it "
                "(comma-separate several keys to rotate: the first encrypts, all decrypt)."
            )
        return self.secret_keys
