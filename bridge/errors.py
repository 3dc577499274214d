"""The bridge's error tree.

Every failure the bridge can name lives here so that the domain, the parsers and the API clients share
one vocabulary, and so that one predicate (``retry.is_retryable``) can decide what is worth retrying.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """Settings or the configuration file are wrong; the message says which key and why."""


class PayloadError(BridgeError):
    """An inbound webhook body could not be understood (answered with 400)."""

    def __init__(self, message: str, *, errors: dict | None = None):
        super().__init__(message)
        self.errors = errors or {}


class ApiError(BridgeError):
    """Root of the errors of one outbound API (Azure DevOps, dbt Cloud).

    ``retryable`` says whether the same request may succeed later; ``retry_after`` is the server's hint
    in seconds when it gave one.
    """

    service = "api"
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 body: str = ""):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.body = body[:2000]


class TransportError(ApiError):
    """The request never got an HTTP answer (connection refused or reset, timeout, TLS)."""

    retryable = True


class HttpError(ApiError):
    """The server answered with an error status."""


class BadRequest(HttpError):
    """400/422: our request was wrong; retrying the same request cannot help."""


class Unauthorized(HttpError):
    """401: the credential is missing, expired or revoked."""


class Forbidden(HttpError):
    """403: the identity lacks a permission (or a policy rejected the change)."""


class NotFound(HttpError):
    """404: the object does not exist or the identity may not see it."""


class Conflict(HttpError):
    """409: the object changed under us."""


class RateLimited(HttpError):
    """429: slow down; ``retry_after`` says how long."""

    retryable = True


class ServerError(HttpError):
    """5xx and 408: the server failed; the same request may succeed later."""

    retryable = True
