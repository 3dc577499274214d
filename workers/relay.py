"""The outbox relay: hands committed deliveries to Celery. One runs in every worker process.

The web tier only commits a delivery (``bridge/web/outbox.py``: state "received"); sending it is worker-tier
work, off the receivers' hot path. The relay claims received rows with ``FOR UPDATE SKIP LOCKED`` (relays
in several workers never claim the same row), sends their ids as one task and marks them "dispatched" in
the same transaction: if the broker refuses, the claim rolls back and the rows wait for the next attempt
(and beat's sweeper). On PostgreSQL it sleeps on ``LISTEN`` (the receivers' INSERT notifies
``OUTBOX_CHANNEL``), so a delivery reaches a worker within milliseconds; elsewhere (SQLite) it looks every
``relay_interval``.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from bridge.db import Database
from bridge.dispatch import OUTBOX_CHANNEL, UNDISPATCHED, Dispatcher
from bridge.models import Delivery, utcnow

log = logging.getLogger(__name__)

BATCH = 500
FAN_OUT = 25  # ids per fan-out task: a claimed batch is spread over that many worker threads, not one
MAX_BACKOFF = 5.0


class NotSent(Exception):
    """The broker did not take the batch: roll the claim back."""


class OutboxRelay:
    def __init__(self, db: Database, dispatcher: Dispatcher, *, interval: float | None = None, batch: int = BATCH):
        self.db = db
        self.dispatcher = dispatcher
        # How often it looks when nothing woke it: PostgreSQL wakes it at once, SQLite cannot.
        self.interval = interval if interval is not None else (2.0 if db.is_postgres else 0.1)
        self.batch = batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener = None  # the detached DBAPI connection that LISTENs (PostgreSQL)

    # -- one step --------------------------------------------------------------------------------------

    def relay_once(self, *where) -> int:
        """Claim up to ``batch`` deliveries, send them, mark them dispatched; how many were sent. By default the
        new ones (state received); the sweeper and a reconnection pass ``where`` (SQL criteria on Delivery)
        for the waiting, the lost and the blocked. Raises SQLAlchemyError, or NotSent when the broker refused
        (nothing is marked then)."""
        claimable = (select(Delivery.id).where(*(where or (Delivery.state == UNDISPATCHED,))).order_by(Delivery.id)
                     .limit(self.batch).with_for_update(skip_locked=True))
        claim = (update(Delivery).where(Delivery.id.in_(claimable))
                 .values(state="dispatched", dispatched_at=utcnow()).returning(Delivery.id))
        with self.db.engine.begin() as conn:
            ids = sorted(conn.scalars(claim))
            for start in range(0, len(ids), FAN_OUT):  # a refusal rolls the whole claim back (resending is safe)
                if not self.dispatcher.process_deliveries(ids[start:start + FAN_OUT]):
                    raise NotSent(f"{len(ids)} deliveries")
        return len(ids)

    def drain(self, *where) -> int:
        """Relay until nothing (that ``where`` selects) is left; a claimed row is dispatched, so it is not
        selected again."""
        total = 0
        while (sent := self.relay_once(*where)) > 0:
            total += sent
            if sent < self.batch:
                break
        return total

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
