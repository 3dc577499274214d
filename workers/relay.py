"""The outbox relay: one runs in every worker process, sending what the receivers commit.

It sends the deliveries' way (``DeliveryStore.drain``: claimed and sent in one transaction, rolled back if
the broker refuses). On PostgreSQL it sleeps on ``LISTEN`` (the receivers' INSERT notifies
``OUTBOX_CHANNEL``), so a delivery reaches a worker within milliseconds; on SQLite it looks every ``interval``.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from sqlalchemy.exc import DBAPIError

from bridge.contracts import OUTBOX_CHANNEL
from bridge.db import Database
from bridge.deliveries.store import NEW, DeliveryStore, NotSent, Selection
from bridge.dispatch import Dispatcher

log = logging.getLogger(__name__)

BATCH = 500
MAX_BACKOFF = 5.0


class OutboxRelay:
    def __init__(self, db: Database, dispatcher: Dispatcher, *, interval: float | None = None, batch: int = BATCH):
        self.db = db
        self.dispatcher = dispatcher
        self.store = DeliveryStore(db, batch=batch)
        # How often it looks when nothing woke it: PostgreSQL wakes it at once, SQLite cannot.
        self.interval = interval if interval is not None else (2.0 if db.is_postgres else 0.1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener = None  # the detached DBAPI connection that LISTENs (PostgreSQL)

    # -- one step --------------------------------------------------------------------------------------

    def relay_once(self, selection: Selection = NEW) -> int:
        """Send one batch of what ``selection`` picks (by default the new deliveries); how many were sent.
        Raises SQLAlchemyError, or NotSent when the broker refused (nothing is marked then)."""
        return self.store.dispatch(self.dispatcher.process_deliveries, selection)

    def drain(self, selection: Selection = NEW) -> int:
        """Send until nothing ``selection`` picks is left."""
        return self.store.drain(self.dispatcher.process_deliveries, selection)

    # -- the loop --------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close_listener()

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                self._ensure_listener()
                self.drain()
                backoff = 0.0
            except Exception as exc:  # database or broker away: the thread must outlive them
                backoff = min(MAX_BACKOFF, max(0.25, backoff * 2))
                log.warning("outbox relay: %s; trying again in %.2fs", _describe(exc), backoff)
                self._close_listener()
                self._stop.wait(backoff)
                continue
            self._wait()

    def _wait(self) -> None:
        """Until a receiver notifies (PostgreSQL), or ``interval`` passes."""
        if self._listener is None:
            self._stop.wait(self.interval)
            return
        try:
            for _ in self._listener.dbapi_connection.notifies(timeout=self.interval, stop_after=1):
                pass  # everything already received comes with the first: one drain serves them all
        except Exception as exc:  # psycopg OperationalError: the connection was lost; reconnect next turn
            log.warning("outbox relay: stopped listening (%s)", type(exc).__name__)
            self._close_listener()

    def _ensure_listener(self) -> None:
        if self._listener is not None or not self.db.is_postgres:
            return
        conn = self.db.engine.raw_connection()
        try:
            conn.detach()  # kept for LISTEN: it never goes back to the pool
            conn.dbapi_connection.autocommit = True
            conn.dbapi_connection.execute(f"LISTEN {OUTBOX_CHANNEL}")
        except BaseException:
            conn.close()
            raise
        self._listener = conn

    def _close_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing more to release
                conn.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, NotSent):
        return f"broker unavailable, {exc} wait"
    if isinstance(exc, DBAPIError):
        return f"database unavailable ({type(exc.orig).__name__})"
    return type(exc).__name__
