"""How every part reaches the broker's Redis — Celery's transport, the per-PR locks, the heartbeats, the CLI —
from one setting, ``BRIDGE_BROKER_URL``: a Redis URL (``redis://``, ``rediss://``, ``unix://``), or Redis
Sentinel, ``sentinel://HOST:PORT[;sentinel://HOST:PORT…]`` (kombu's form), with the master's name in
``BRIDGE_SENTINEL_MASTER`` and, when the sentinels themselves require one, ``BRIDGE_SENTINEL_PASSWORD``.

Through Sentinel every new connection asks the sentinels which server is the master now, so after a failover
the clients (Celery's, reconnecting by itself; the locks' and heartbeats', on their next command) follow it
without a restart. A password in the URL (``sentinel://:PASSWORD@HOST:PORT``) is the master's, as with kombu.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

from .errors import ConfigError

if TYPE_CHECKING:
    from .settings import Settings

SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class SentinelAddress:
    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None  # the master's (and its replicas')


def is_sentinel(url: str) -> bool:
    return url.strip().lower().startswith("sentinel://")


def parse_sentinel(url: str) -> SentinelAddress:
    """The sentinels a ``sentinel://`` URL names; ConfigError (never showing a password) when one is not
    HOST:PORT."""
    sentinels, first = [], None
    for part in (p.strip() for p in url.split(";") if p.strip()):
        parts = urlsplit(part)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme.lower() != "sentinel" or not parts.hostname or port is None:
            shown = part.replace(f":{parts.password}@", ":***@") if parts.password else part
            raise ConfigError(f"BRIDGE_BROKER_URL: {shown!r} is not sentinel://HOST:PORT (give each sentinel, "
                              "separated by ';', e.g. sentinel://10.0.0.5:26379;sentinel://10.0.0.6:26379)")
        sentinels.append((parts.hostname, port))
        first = first or parts
    path = (first.path or "/0").strip("/") or "0"
    if not path.isdigit():
        raise ConfigError(f"BRIDGE_BROKER_URL: the Redis database must be a number, got {path!r}")
    return SentinelAddress(tuple(sentinels), int(path), unquote(first.username) if first.username else None,
                           unquote(first.password) if first.password else None)


def check_url(url: str) -> str | None:
    """Why ``url`` is no broker URL the bridge can use (None: it is one)."""
    if is_sentinel(url):
        try:
            parse_sentinel(url)
        except ConfigError as exc:
            return str(exc)
        return None
    if url.partition("://")[0] not in SCHEMES:
        return ("BRIDGE_BROKER_URL must be a Redis URL (redis://HOST:PORT/DB or rediss://…) or Sentinel's "
                "(sentinel://HOST:PORT;sentinel://HOST:PORT, with BRIDGE_SENTINEL_MASTER)")
    return None


def client(settings: Settings, *, connect_timeout: float, timeout: float) -> redis.Redis:
    """A client of the broker's server (through Sentinel: of whichever server is the master now)."""
    url, master, sentinel_password = settings.broker_url, settings.sentinel_master, settings.sentinel_password
    if not is_sentinel(url):
        return redis.Redis.from_url(url, socket_connect_timeout=connect_timeout, socket_timeout=timeout)
    address = parse_sentinel(url)
    sentinel = Sentinel(list(address.sentinels), socket_connect_timeout=connect_timeout, socket_timeout=timeout,
                        sentinel_kwargs={"password": sentinel_password or None,
                                         "socket_connect_timeout": connect_timeout, "socket_timeout": timeout})
    return sentinel.master_for(master, db=address.db, username=address.username, password=address.password,
                               socket_connect_timeout=connect_timeout, socket_timeout=timeout)


def transport_options(settings: Settings) -> dict:
    """What Celery's Redis transport needs beyond the URL to go through Sentinel (nothing otherwise)."""
    if not is_sentinel(settings.broker_url):
        return {}
    options: dict = {"master_name": settings.sentinel_master}
    if settings.sentinel_password:
        options["sentinel_kwargs"] = {"password": settings.sentinel_password}
    return options
