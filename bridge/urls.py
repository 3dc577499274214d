"""Which base URLs the bridge may send credentials to: checked wherever one is configured (config file,
console, onboarding) and again before each client is built."""

from __future__ import annotations

from urllib.parse import urlsplit

from .errors import ConfigError


def check_base_url(url: str, *, allow_insecure_http: bool, what: str) -> str:
    """Validate a configured API base URL; plain http only when explicitly allowed for local testing."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{what}: {url!r} is not an absolute http(s) URL")
    if parts.scheme == "http" and not allow_insecure_http:
        raise ConfigError(f"{what}: {url!r} uses plain http; use https "
                          "(BRIDGE_ALLOW_INSECURE_HTTP=1 allows http for local testing only)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{what}: {url!r} must not carry credentials, a query or a fragment")
    return url.rstrip("/")
