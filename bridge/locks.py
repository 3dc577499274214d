"""Locks across processes and machines, kept in Redis: per pull request, per Entra connection.

A lock yields its ``Lease``. The holder calls ``lease.check()`` before each act the lock guards (a status
posted, a run started or cancelled): once a renewal has failed — a partition from Redis, a pause longer than
the lease — another worker may hold the lock, and the check raises ``LockLost`` instead of acting twice.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

import redis

from .errors import LockBusy, LockLost, LockStoreUnavailable

log = logging.getLogger(__name__)


class Lease:
    """The holder's side of a lock: lost once a renewal failed."""

    def __init__(self, key: str):
        self.key = key
        self._lost = threading.Event()

    def lose(self) -> None:
        self._lost.set()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        if self._lost.is_set():
            raise LockLost(f"{self.key}: the lock's lease could not be renewed, so another worker may hold it; "
                           "stopped before acting, to be tried again")


def redis_lock_factory(client: redis.Redis, timeout: float):
    """Per-PR locks that expire quickly if their holder dies (SIGKILL, lost machine) but never while it
    works: a watchdog thread renews the lease every third of ``timeout``."""

    @contextmanager
    def lock(key: str):
        # thread_local=False: the token must be seen by the watchdog thread that renews the lease.
        handle = client.lock(f"bridge:lock:{key}", timeout=timeout, blocking_timeout=5, thread_local=False)
        try:
            acquired = handle.acquire()
        except redis.exceptions.RedisError as exc:
            raise LockStoreUnavailable(f"{key}: Redis is unreachable ({type(exc).__name__})") from None
        if not acquired:
            raise LockBusy(key)
        done, lease = threading.Event(), Lease(key)

        def renew() -> None:
            while not done.wait(timeout / 3):
                try:
                    handle.reacquire()
                except (redis.exceptions.LockError, redis.exceptions.RedisError) as exc:
                    lease.lose()
                    log.warning("could not renew lock %s (%s): its holder stops before its next act", key,
                                type(exc).__name__)
                    return

        watchdog = threading.Thread(target=renew, name=f"lock-{key}", daemon=True)
        watchdog.start()
        try:
            yield lease
        finally:
            done.set()
            watchdog.join()
            try:
                handle.release()
            except redis.exceptions.LockError:
                log.warning("lock %s was lost before release", key)

    return lock
