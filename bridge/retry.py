"""The one place that decides whether a failure is worth retrying, and when."""

from __future__ import annotations

import random

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc

from .errors import LockBusy, Transient

BASE_DELAY = 2.0
MAX_DELAY = 300.0

# Our own storage, broker or network blinking: the libraries' errors for "could not reach it, for now".
FOREIGN_TRANSIENTS = (
    sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
    ConnectionError, TimeoutError,
)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, (Transient, *FOREIGN_TRANSIENTS))


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
