"""Heartbeats of the worker and beat processes, kept in Redis as keys that expire.

Each process writes ``bridge:heartbeat:<role>:<host>:<pid>`` every third of the timeout with the timeout as
its TTL, from a thread of its own; a role with no key left has had no living process that reaches Redis for
that long. Readers (``/readyz``) ask with short socket timeouts and never raise: an unreachable Redis is an
answer too.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis

log = logging.getLogger(__name__)

PREFIX = "bridge:heartbeat:"
ROLES = ("worker", "beat")


class Heartbeats:
    def __init__(self, client: redis.Redis, timeout: float):
        self.client = client
        self.timeout = timeout

    def beat(self, role: str, name: str) -> None:
        """Raises redis' errors; the beating thread logs them."""
        self.client.set(f"{PREFIX}{role}:{name}", f"{time.time():.3f}", px=int(self.timeout * 1000))

    def alive(self, role: str) -> list[str]:
        """The processes of ``role`` that beat within the timeout. Raises redis' errors."""
        prefix = f"{PREFIX}{role}:"
        return sorted(key.decode()[len(prefix):] for key in self.client.scan_iter(f"{prefix}*", count=100))


class Beating:
    """A daemon thread that beats for one process until stopped; Redis being away is logged once per outage."""

    def __init__(self, heartbeats: Heartbeats, role: str):
        self.heartbeats = heartbeats
        self.role = role
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.role}-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self.heartbeats.beat(self.role, self.name)
                if failing:
                    log.info("%s heartbeat: Redis answers again", self.role)
                failing = False
            except redis.exceptions.RedisError as exc:
                if not failing:
                    log.warning("%s heartbeat: Redis unreachable (%s); /readyz will warn", self.role,
                                type(exc).__name__)
                failing = True
            self._stop.wait(self.heartbeats.timeout / 3)
