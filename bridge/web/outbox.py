"""Group commit of accepted deliveries: the receivers' path to the outbox.

Each gunicorn worker runs request threads; they hand their delivery to one writer thread per process,
which takes everything waiting, INSERTs it in one statement (``ON CONFLICT DO NOTHING`` recognises
duplicates), commits, hands the new ids to the workers as one task, and only then releases the
requests. Every 2xx still means "committed", but the commit and the broker round trip are paid once per
batch instead of once per request. With one request waiting, the batch is that one request: nothing is
held back to fill a batch.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass, field

from sqlalchemy import JSON, DateTime, TextClause, bindparam, text, update
from sqlalchemy.exc import SQLAlchemyError

from ..db import Database
from ..dispatch import Dispatcher
from ..metrics import Metrics
from ..models import Delivery, utcnow

log = logging.getLogger(__name__)

MAX_BATCH = 100
COLUMNS = ("source", "dedupe_key", "event_type", "repository_id", "dbt_account_id", "event", "state", "attempts",
           "received_at", "dispatched_at")
TYPES = {"event": JSON(), "received_at": DateTime(timezone=True), "dispatched_at": DateTime(timezone=True)}
WAIT_SECONDS = 15.0


class OutboxUnavailable(Exception):
    """The delivery could not be committed (database down or too slow): answer 503 so it is retried."""


@dataclass
class _Item:
    values: dict
    done: threading.Event = field(default_factory=threading.Event)
    delivery_id: int | None = None
    queued: bool = False
    error: BaseException | None = None


class OutboxWriter:
    def __init__(self, db: Database, dispatcher: Dispatcher, metrics: Metrics):
        self.db = db
        self.dispatcher = dispatcher
        self.metrics = metrics
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._table = Delivery.__table__
        self._statements: dict[int, TextClause] = {}

    def write(self, *, source: str, dedupe_key: str, event_type: str, event: dict, state: str,
              repository_id: int | None = None, dbt_account_id: int | None = None) -> tuple[int | None, bool]:
        """Commit one delivery; returns (id, queued), id None for a duplicate. Raises OutboxUnavailable."""
        now = utcnow()
        item = _Item({"source": source, "dedupe_key": dedupe_key[:300], "event_type": event_type[:100],
                      "event": event, "state": state, "repository_id": repository_id,
                      "dbt_account_id": dbt_account_id, "received_at": now,
                      "dispatched_at": now if state == "dispatched" else None, "attempts": 0})
        self._ensure_thread()
        self._queue.put(item)
        if not item.done.wait(WAIT_SECONDS):
            raise OutboxUnavailable("the database did not commit in time")
        if item.error is not None:
            raise OutboxUnavailable(f"{type(item.error).__name__}") from item.error
        return item.delivery_id, item.queued

    def _ensure_thread(self) -> None:
        # Started on first use in each process (gunicorn forks after the app is built).
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="outbox-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._commit(batch)
            except BaseException as exc:
                log.error("outbox write of %d deliveries failed: %s", len(batch), type(exc).__name__)
                for item in batch:
                    item.error = exc
            finally:
                for item in batch:
                    item.done.set()

    def _statement(self, rows: int) -> TextClause:
        """``INSERT … VALUES (…), (…) … ON CONFLICT DO NOTHING RETURNING …`` — one statement per batch size,
        built once. (SQLAlchemy cannot cache its dialect ON CONFLICT inserts; compiling them per batch
        cost more than the INSERT.) The SQL is the same on PostgreSQL and SQLite."""
        stmt = self._statements.get(rows)
        if stmt is None:
            values = ", ".join("(" + ", ".join(f":{c}_{i}" for c in COLUMNS) + ")" for i in range(rows))
            stmt = text(f"INSERT INTO deliveries ({', '.join(COLUMNS)}) VALUES {values}"  # noqa: S608 - no input
                        " ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id, source, dedupe_key")
            stmt = stmt.bindparams(*[bindparam(f"{c}_{i}", type_=TYPES[c]) for i in range(rows) for c in TYPES])
            self._statements[rows] = stmt
        return stmt

    def _commit(self, batch: list[_Item]) -> None:
        params = {f"{c}_{i}": item.values[c] for i, item in enumerate(batch) for c in COLUMNS}
        with self.db.engine.begin() as conn:
            inserted = {(source, key): row_id for row_id, source, key in
                        conn.execute(self._statement(len(batch)), params)}
        new = []
        for item in batch:  # a key twice in one batch: the first is new, the second a duplicate
            item.delivery_id = inserted.pop((item.values["source"], item.values["dedupe_key"]), None)
            if item.delivery_id is not None and item.values["state"] == "dispatched":
                new.append(item)
        if not new:
            return
        queued = self.dispatcher.process_deliveries([item.delivery_id for item in new])
        if not queued:
            self.metrics.enqueue_failures.inc(len(new))
            self._mark_undispatched([item.delivery_id for item in new])
        for item in new:
            item.queued = queued

    def _mark_undispatched(self, ids: list[int]) -> None:
        try:
            with self.db.engine.begin() as conn:
                conn.execute(update(self._table).where(self._table.c.id.in_(ids), self._table.c.state == "dispatched")
                             .values(state="received", dispatched_at=None))
        except SQLAlchemyError as exc:  # the sweeper resends unfinished dispatched rows as well
            log.warning("could not mark %d deliveries undispatched: %s", len(ids), type(exc).__name__)
