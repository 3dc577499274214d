"""Microsoft's hosts served by the sandbox's fake identity platform: the seam the dev tooling injects into
the product's :class:`~bridge.identity.Identity` (local testing only; the product never reads this).

``BRIDGE_ENTRA_TEST_BASE`` names the sandbox; it needs ``BRIDGE_ALLOW_INSECURE_HTTP=1``, since the fake is plain
http. Requests to other hosts leave unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from urllib.parse import urlsplit

import requests

from ..errors import ConfigError
from ..identity import IdentityHosts

MICROSOFT_HOSTS = {"login.microsoftonline.com": "/idp", "app.vssps.visualstudio.com": "/vssps"}
ENV = "BRIDGE_ENTRA_TEST_BASE"


def local_url(base: str, url: str) -> str:
    """``url`` on one of Microsoft's hosts, served instead by the local fake at ``base``; other URLs unchanged."""
    parts = urlsplit(url)
    prefix = MICROSOFT_HOSTS.get(parts.hostname or "")
    if prefix is None or parts.scheme != "https":
        return url
    return f"{base.rstrip('/')}{prefix}{parts.path}" + (f"?{parts.query}" if parts.query else "")


class LocalRedirect(requests.Session):
    """A session whose requests meant for Microsoft's hosts go to the local fake at ``base``."""

    def __init__(self, base: str):
        super().__init__()
        self._base = base.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        return super().request(method, local_url(self._base, url), *args, **kwargs)


def sandbox_hosts(base: str) -> IdentityHosts:
    """The identity platform (and the profile host) at the sandbox ``base``, for MSAL and for browsers."""
    return IdentityHosts(session=partial(LocalRedirect, base), browser_url=partial(local_url, base))


def hosts_from_env(env: Mapping[str, str] | None = None) -> IdentityHosts | None:
    """The sandbox's hosts when ``BRIDGE_ENTRA_TEST_BASE`` names it, else None (Microsoft's own)."""
    env = os.environ if env is None else env
    base = env.get(ENV)
    if not base:
        return None
    if env.get("BRIDGE_ALLOW_INSECURE_HTTP") != "1":
        raise ConfigError(f"{ENV} (a local fake identity platform) needs BRIDGE_ALLOW_INSECURE_HTTP=1 "
                          "and is for local testing only")
    return sandbox_hosts(base)
