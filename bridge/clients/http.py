"""What the API clients share: the transport seam, path escaping, status → error mapping (one pure function)
and a JSON call.

Clients speak to a ``Transport`` (one method: send a request, get an ``HttpAnswer``); ``RequestsTransport`` is
the real one, and tests give recorded answers instead (tests/fakes.py).
"""

from __future__ import annotations

import email.utils
import functools
import json as jsonlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, urlsplit

import requests

from .. import errors

USER_AGENT = "ado-dbt-bridge/0.1 (+https://github.com/ado-dbt-bridge)"


def segment(value: str | int) -> str:
    """One URL path segment, escaped so that a name can never add path or query."""
    return quote(str(value), safe="")


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), if any."""
    raw = headers.get("Retry-After") or headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def error_kind(status: int) -> type[errors.ApiError] | None:
    """Map an HTTP status to the kind of error it means; None for success."""
    if status < 400:
        return None
    if status in (408,) or status >= 500:
        return errors.ServerError
    return {
        400: errors.BadRequest,
        401: errors.Unauthorized,
        403: errors.Forbidden,
        404: errors.NotFound,
        409: errors.Conflict,
        422: errors.BadRequest,
        429: errors.RateLimited,
    }.get(status, errors.HttpError)


@functools.lru_cache(maxsize=256)
def environment_settings(base_url: str) -> dict:
    """What requests takes from the environment for calls under ``base_url`` (HTTPS_PROXY / NO_PROXY,
    REQUESTS_CA_BUNDLE), read once. A session that trusts the environment reads it, and ~/.netrc, on every
    call: measurable CPU in the worker (docs/benchmarks.md), and a .netrc entry would replace our credentials."""
    found = requests.Session().merge_environment_settings(base_url, {}, None, None, None)
    return {"proxies": found["proxies"], "verify": found["verify"], "cert": found["cert"]}


def plain_session() -> requests.Session:
    """A session that leaves the environment to ``environment_settings``."""
    session = requests.Session()
    session.trust_env = False
    return session


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> object:
        """The body as JSON; ValueError when it is not."""
        return jsonlib.loads(self.body)


class NoAnswer(Exception):
    """The request got no HTTP answer (refused, reset, timed out, TLS); ``str`` names what happened."""


class Transport(Protocol):
    def send(self, method: str, url: str, *, params: Mapping | None, json: object, headers: Mapping[str, str],
             timeout: float) -> HttpAnswer:
        """One HTTP exchange, never following redirects; raises NoAnswer when no answer came."""
        ...


class CountedTransport:
    """Another transport's exchanges, each counted first by ``count()`` (what a rate limit counts: the requests
    sent, answered or not)."""

    def __init__(self, inner: Transport, count: Callable[[], None]):
        self.inner = inner
        self.count = count

    def send(self, method, url, *, params, json, headers, timeout) -> HttpAnswer:
        self.count()
        return self.inner.send(method, url, params=params, json=json, headers=headers, timeout=timeout)


class RequestsTransport:
    """The real transport: a requests session, with the environment's proxy and CA settings read once;
    ``ca_bundle`` trusts that bundle instead of the environment's (certificates are always verified)."""

    def __init__(self, session: requests.Session | None = None, *, ca_bundle: str | None = None):
        self.session = session or plain_session()
        self.ca_bundle = ca_bundle

    def send(self, method, url, *, params, json, headers, timeout) -> HttpAnswer:
        parts = urlsplit(url)
        settings = environment_settings(f"{parts.scheme}://{parts.netloc}")
        if self.ca_bundle:
            settings = {**settings, "verify": self.ca_bundle}
        try:
            response = self.session.request(method, url, params=params, json=json, headers=headers, timeout=timeout,
                                            allow_redirects=False, **settings)
        except requests.RequestException as exc:
            raise NoAnswer(type(exc).__name__) from None
        return HttpAnswer(response.status_code, response.headers, response.content)


class JsonApi:
    """A JSON-over-HTTP API reached through one requests session with one credential.

    Every failure raises a kind of ``errors.ApiError`` carrying ``service``; subclasses name the service, say how
    to summarize an error body and may refine a kind (``error_class``).
    """

    service = "api"

    def __init__(self, base_url: str, authorization: str, *, transport: Transport | None = None,
                 timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self._authorization = authorization
        self.transport = transport or RequestsTransport()
        self.timeout = timeout

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._authorization, "Accept": "application/json", "User-Agent": USER_AGENT}

    def describe_error(self, response: HttpAnswer) -> str:
        return response.text[:300]

    def error_class(self, kind: type[errors.ApiError], response: HttpAnswer) -> type[errors.ApiError]:
        return kind

    def call(self, method: str, path: str, *, params: Mapping | None = None, json: object = None):
        return self.call_with_headers(method, path, params=params, json=json)[0]

    def call_with_headers(self, method: str, path: str, *, params: Mapping | None = None,
                          json: object = None) -> tuple[object, Mapping[str, str]]:
        """The parsed answer and its headers (for paging by continuation token)."""
        url = f"{self.base_url}{path}"
        try:
            response = self.transport.send(method, url, params=params, json=json, headers=self._headers(),
                                           timeout=self.timeout)
        except NoAnswer as exc:
            raise errors.TransportError(f"{method} {path}: {exc}", service=self.service) from None
        kind = error_kind(response.status)
        if kind is None and 300 <= response.status < 400:
            kind = errors.HttpError  # a redirect here means a sign-in page or a wrong base URL
        if kind is not None:
            cls = self.error_class(kind, response)
            raise cls(f"{method} {path} → {response.status}: {self.describe_error(response)}",
                      service=self.service, status=response.status, retry_after=retry_after(response.headers),
                      body=response.text)
        if response.status == 204 or not response.body:
            return None, response.headers
        try:
            return response.json(), response.headers
        except ValueError:
            # dbt Cloud has been seen answering HTML although the call worked; make it retryable-safe.
            raise errors.ServerError(f"{method} {path}: answer is not JSON", service=self.service,
                                     status=response.status, body=response.text) from None
