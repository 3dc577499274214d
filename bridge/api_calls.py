"""Azure DevOps calls per organization over a sliding five-minute window — the window Azure DevOps' rate limit
counts in (200 TSTUs per identity per five minutes) — kept in Redis as per-minute counters, so every worker
process's calls add up and the web's ``/metrics`` and the PR sweep's budget read the same numbers.

Counting never fails the work it counts: a Redis error drops the count (and says so once in the log). A call
is counted as one TSTU, an upper bound for the light reads and writes the bridge makes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable

import redis

from .domain import RATE_LIMIT_WINDOW_SECONDS as WINDOW_SECONDS

log = logging.getLogger(__name__)

PREFIX = "bridge:ado-calls:"
LISTED = "bridge:pr-sweep:listed"  # hash: "org_id:project_id" → when the sweep last listed it
WINDOW_MINUTES = int(WINDOW_SECONDS // 60)
KINDS = ("sweep", "work")  # the PR sweep's listings; everything else (reconciles, set-up, health checks)


class ApiCalls:
    def __init__(self, client: redis.Redis, *, clock: Callable[[], float] = time.time):
        self.client = client
        self.clock = clock
        self._warned = False

    def _key(self, kind: str, organization: str, minutes_ago: int = 0) -> str:
        return f"{PREFIX}{kind}:{organization.lower()}:{int(self.clock() // 60) - minutes_ago}"

    def count(self, organization: str, *, kind: str = "work", calls: int = 1) -> None:
        key = self._key(kind, organization)
        try:
            self.client.pipeline(transaction=False).incrby(key, calls).expire(key, 60 * (WINDOW_MINUTES + 1)) \
                .execute()
        except redis.exceptions.RedisError as exc:
            if not self._warned:
                log.warning("could not count Azure DevOps calls (Redis: %s); the sweep keeps to its plan alone",
                            type(exc).__name__)
                self._warned = True

    def last_window(self, organizations: Iterable[str]) -> dict[str, dict[str, int]]:
        """Calls per organization and kind in the last five minutes (this minute and the four before); empty
        when Redis cannot be read."""
        names = sorted({o.lower() for o in organizations})
        keys = [self._key(kind, name, m) for name in names for kind in KINDS for m in range(WINDOW_MINUTES)]
        if not keys:
            return {}
        try:
            values = [int(v or 0) for v in self.client.mget(keys)]
        except redis.exceptions.RedisError:
            return {}
        found, at = {}, 0
        for name in names:
            found[name] = {}
            for kind in KINDS:
                found[name][kind] = sum(values[at:at + WINDOW_MINUTES])
                at += WINDOW_MINUTES
        return found

    def listed(self, keys: Iterable[str]) -> dict[str, float]:
        """When the sweep last listed each ``"org_id:project_id"`` (missing: never, or Redis unreadable)."""
        keys = list(keys)
        if not keys:
            return {}
        try:
            values = self.client.hmget(LISTED, keys)
        except redis.exceptions.RedisError:
            return {}
        return {k: float(v) for k, v in zip(keys, values, strict=True) if v is not None}

    def mark_listed(self, key: str) -> None:
        with contextlib.suppress(redis.exceptions.RedisError):  # unmarked, it is listed again sooner: harmless
            self.client.hset(LISTED, key, self.clock())
