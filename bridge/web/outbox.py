"""Group commit of accepted deliveries: the receivers' path to the outbox.

Each gunicorn worker runs request threads; they hand their delivery to one writer thread per process,
which takes everything waiting, INSERTs it in one statement (``ON CONFLICT DO NOTHING`` recognises
duplicates) and commits, on a connection it keeps. A second thread hands the new ids of every batch
committed meanwhile to the workers as one task, and only then releases the requests. Every 2xx still
means "committed" (and says whether the broker took it), but the commit is paid once per batch and the
broker send — Celery's message building is the costliest part of a delivery in the web tier — once per
several batches under load. With one request waiting, the batch is that one request: nothing is held
back to fill a batch.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass, field

from sqlalchemy import JSON, DateTime, TextClause, bindparam, text, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

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
        self._committed: queue.SimpleQueue[list[_Item]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pid: int | None = None
        self._conn = None  # the writer thread's own connection
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

    def _alive(self) -> bool:
        return self._pid == os.getpid() and len(self._threads) == 2 and all(t.is_alive() for t in self._threads)

    def _ensure_thread(self) -> None:
        # Started on first use in each process (gunicorn forks after the app is built).
        if self._alive():
            return
        with self._lock:
            if not self._alive():
                self._pid, self._conn = os.getpid(), None
                self._threads = [threading.Thread(target=self._run, name="outbox-writer", daemon=True),
                                 threading.Thread(target=self._publish_loop, name="outbox-publisher", daemon=True)]
                for thread in self._threads:
                    thread.start()

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
                    item.done.set()
                continue
            self._committed.put(batch)

    def _publish_loop(self) -> None:
        while True:
            batches = [self._committed.get()]
            while True:  # everything committed while the last send was under way goes in one message
                try:
                    batches.append(self._committed.get_nowait())
                except queue.Empty:
                    break
            items = [item for batch in batches for item in batch]
            try:
                self._publish(items)
            except BaseException as exc:  # committed already: the sweeper dispatches what was not sent
                log.error("handing %d deliveries to the broker failed: %s", len(items), type(exc).__name__)
            finally:
                for item in items:
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

    def _insert(self, batch: list[_Item]) -> dict:
        params = {f"{c}_{i}": item.values[c] for i, item in enumerate(batch) for c in COLUMNS}
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.db.engine.connect()
        try:
            with self._conn.begin():
                return {(source, key): row_id for row_id, source, key in
                        self._conn.execute(self._statement(len(batch)), params)}
        except BaseException:
            if self._conn.invalidated:
                self._conn.close()
                self._conn = None
            raise

    def _commit(self, batch: list[_Item]) -> None:
        try:
            inserted = self._insert(batch)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            inserted = self._insert(batch)  # the kept connection was dropped (restart, failover): once more
        for item in batch:  # a key twice in one batch: the first is new, the second a duplicate
            item.delivery_id = inserted.pop((item.values["source"], item.values["dedupe_key"]), None)

    def _publish(self, items: list[_Item]) -> None:
        new = [item for item in items if item.delivery_id is not None and item.values["state"] == "dispatched"]
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
