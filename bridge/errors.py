"""The bridge's error tree: every failure it raises on purpose, one vocabulary for every layer.

Two markers say what a failure asks for: ``Transient`` (the same work may succeed later; ``retry.is_retryable``
retries it with backoff) and ``NeedsPerson`` (no retry can help; the message says who must do what).
Failures of neither kind fail once, visibly.
"""

from __future__ import annotations

import re


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


class Transient:
    """Marker: the same work may succeed later."""

    retryable = True


class NeedsPerson:
    """Marker: retrying cannot help; a person must act (reconnect, grant a permission, fix configuration)."""


class ConfigError(BridgeError):
    """Settings or the configuration file are wrong; the message says which key and why."""


class PayloadError(BridgeError):
    """An inbound webhook body could not be understood (answered with 400)."""

    def __init__(self, message: str, *, errors: dict | None = None):
        super().__init__(message)
        self.errors = errors or {}


class ApiError(BridgeError):
    """Root of the errors of the outbound APIs; the kind says what happened, ``service`` says where.

    ``service`` names the API ("azure-devops", "dbt-cloud"); ``retryable`` says whether the same request may
    succeed later; ``retry_after`` is the server's hint in seconds when it gave one.
    """

    retryable = False

    def __init__(self, message: str, *, service: str = "api", status: int | None = None,
                 retry_after: float | None = None, body: str = ""):
        super().__init__(message)
        self.service = service
        self.status = status
        self.retry_after = retry_after
        self.body = body[:2000]


class TransportError(Transient, ApiError):
    """The request never got an HTTP answer (connection refused or reset, timeout, TLS)."""


class HttpError(ApiError):
    """The server answered with an error status."""


class BadRequest(HttpError):
    """400/422: our request was wrong; retrying the same request cannot help."""


class Unauthorized(NeedsPerson, HttpError):
    """401: the credential is missing, expired or revoked."""


class Forbidden(NeedsPerson, HttpError):
    """403: the identity lacks a permission (or a policy rejected the change)."""


class NotFound(HttpError):
    """404: the object does not exist or the identity may not see it."""


class Conflict(HttpError):
    """409: the object changed under us."""


class RateLimited(Transient, HttpError):
    """429: slow down; ``retry_after`` says how long."""


class ServerError(Transient, HttpError):
    """5xx and 408: the server failed; the same request may succeed later."""


class StatusRejectedByPolicy(Forbidden):
    """Azure DevOps refused a status because a branch policy wants it posted on an iteration."""


class VersionOutOfRange(BadRequest):
    """An Azure DevOps Server refused the REST API version asked for; ``supported`` is the newest it serves
    (from its own message), when it said. A setting to change, never worth retrying."""

    def __init__(self, message: str, **kwargs):
        super().__init__(message, **kwargs)
        found = re.search(r"latest REST API version this server supports is (\d+\.\d+)", self.body)
        self.supported = found.group(1) if found else None
        if self.supported:
            self.args = (f"{message} (set the organization's api_version to {self.supported}: "
                         "api_version in the configuration file, then bridge config apply)",)


class IdentityError(BridgeError):
    """The identity platform refused or the flow is wrong; ``reason`` is safe to show and log."""

    def __init__(self, reason: str, *, code: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ReauthRequired(NeedsPerson, IdentityError):
    """The connection's tokens are dead: a person must connect again."""


class FlowRejected(IdentityError):
    """A connect callback that does not belong to a flow we started (forged or replayed state, bad nonce)."""


class LockBusy(Transient, BridgeError):
    """Another worker holds the lock (a pull request, a connection, an organization's subscriptions), or the
    lock store cannot be reached; try again shortly."""


class LockStoreUnavailable(LockBusy):
    """Redis, which keeps the locks, did not answer: nobody holds the lock, nobody can take it."""


class LockLost(LockBusy):
    """A held lock's lease could not be renewed (Redis unreachable, the key gone): another worker may hold it by
    now, so its holder stops before its next act and the work is tried again under a fresh lock."""


class OutboxUnavailable(Transient, BridgeError):
    """A delivery could not be committed (database down or refusing): answered 503, so it is sent again."""


class NotSent(Transient, BridgeError):
    """The broker did not take a batch of deliveries: its claim was rolled back."""
