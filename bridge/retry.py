"""The one place that decides whether a failure is worth retrying, and when."""

from __future__ import annotations

import random

from .errors import ApiError

BASE_DELAY = 2.0
MAX_DELAY = 300.0


class LockBusy(Exception):
    """Another worker holds the lock (a pull request, a connection, an organization's subscriptions), or the
    lock store cannot be reached; try again shortly."""


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ApiError):
        return exc.retryable
    if isinstance(exc, LockBusy):
        return True
    # Our own storage or broker blinking (SQLAlchemy OperationalError, redis ConnectionError) is transient.
    name = type(exc).__name__
    return name in {"OperationalError", "ConnectionError", "TimeoutError", "InterfaceError"}


def delay(attempt: int, exc: BaseException | None = None, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter, never sooner than the server's ``Retry-After``."""
    rng = rng or random
    if isinstance(exc, LockBusy):
        return 0.5 + rng.random() * 1.5
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** attempt))
    wait = ceiling / 2 + rng.random() * ceiling / 2
    hint = getattr(exc, "retry_after", None)
    if hint is not None:
        wait = max(wait, float(hint))
    return min(wait, MAX_DELAY * 2)
