"""Locks across processes and machines, kept in Redis: per pull request, per Entra connection."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

import redis

from .errors import LockBusy, LockStoreUnavailable

log = logging.getLogger(__name__)


def redis_lock_factory(client: redis.Redis, timeout: float):
    """Per-PR locks that expire quickly if their holder dies (SIGKILL, lost machine) but never while it
    works: a watchdog thread renews the lease every third of ``timeout``."""

    @contextmanager
    def lock(key: str):
        handle = client.lock(f"bridge:lock:{key}", timeout=timeout, blocking_timeout=5)
        try:
            acquired = handle.acquire()
        except redis.exceptions.RedisError as exc:
            raise LockStoreUnavailable(f"{key}: Redis is unreachable ({type(exc).__name__})") from None
        if not acquired:
            raise LockBusy(key)
        done = threading.Event()

        def renew() -> None:
            while not done.wait(timeout / 3):
                try:
                    handle.reacquire()
                except (redis.exceptions.LockError, redis.exceptions.RedisError) as exc:
                    log.warning("could not renew lock %s: %s", key, type(exc).__name__)
                    return

        watchdog = threading.Thread(target=renew, name=f"lock-{key}", daemon=True)
        watchdog.start()
        try:
            yield
        finally:
            done.set()
            watchdog.join()
            try:
                handle.release()
            except redis.exceptions.LockError:
                log.warning("lock %s was lost before release", key)

    return lock
