"""Durable acceptance: the receivers' one INSERT into the deliveries table (the outbox).

Each request thread commits its own delivery on a connection it keeps (autocommit: the INSERT is the
transaction, one round trip), so a 2xx always means "committed", and no thread waits on another. Handing
the delivery to Celery is not the web tier's job: on PostgreSQL the same statement NOTIFYs
``OUTBOX_CHANNEL`` when a row to be processed is new, and the relay in every worker (``workers/relay.py``)
claims such rows and sends them. Measured (docs/benchmarks.md): building and publishing Celery messages,
and the hand-offs between request threads and a group-commit writer, were most of the web tier's CPU per
delivery.
"""

from __future__ import annotations

import contextlib
import os
import threading

from sqlalchemy import JSON, Connection, DateTime, Engine, TextClause, bindparam, text
from sqlalchemy.exc import DBAPIError

from ..db import Database, make_engine
from ..dispatch import OUTBOX_CHANNEL, UNDISPATCHED
from ..models import utcnow

COLUMNS = ("source", "dedupe_key", "event_type", "repository_id", "dbt_account_id", "event", "state", "attempts",
           "received_at")


def _statement(*, notify: bool) -> TextClause:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING id`` (a duplicate returns no row), optionally wrapped so
    PostgreSQL notifies the relay when the row is new. Built once; the same SQL on PostgreSQL and SQLite."""
    sql = (f"INSERT INTO deliveries ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)})"  # noqa: S608
           " ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id")
    if notify:
        sql = f"WITH new AS ({sql}) SELECT id, pg_notify('{OUTBOX_CHANNEL}', '') FROM new"  # noqa: S608 - no input
    return text(sql).bindparams(bindparam("event", type_=JSON()),
                                bindparam("received_at", type_=DateTime(timezone=True)))


class Outbox:
    def __init__(self, db: Database):
        self.url = db.url
        self._notify = db.is_postgres
        self._plain = _statement(notify=False)
        self._new_work = _statement(notify=self._notify)
        self._local = threading.local()
        self._engine: Engine | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def write(self, *, source: str, dedupe_key: str, event_type: str, event: dict, state: str,
              repository_id: int | None = None, dbt_account_id: int | None = None) -> int | None:
        """Commit one delivery; its id, or None for a duplicate. Raises SQLAlchemyError (answered 503)."""
        values = {"source": source, "dedupe_key": dedupe_key[:300], "event_type": event_type[:100],
                  "repository_id": repository_id, "dbt_account_id": dbt_account_id, "event": event,
                  "state": state, "attempts": 0, "received_at": utcnow()}
        statement = self._new_work if state == UNDISPATCHED else self._plain
        try:
            return self._connection().execute(statement, values).scalar()
        except DBAPIError as exc:
            self._drop_connection()
            if not exc.connection_invalidated:
                raise
        # The kept connection was dropped (database restart, failover): once more on a new one.
        return self._connection().execute(statement, values).scalar()

    def _connection(self) -> Connection:
        """This thread's own autocommit connection, opened on first use (gunicorn forks after the app is
        built, so the engine is made in the process that uses it)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._pid == os.getpid() and not conn.closed and not conn.invalidated:
            return conn
        with self._lock:
            if self._engine is None or self._pid != os.getpid():
                self._engine, self._pid = make_engine(self.url, pooled=False), os.getpid()
        conn = self._local.conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return conn

    def _drop_connection(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            with contextlib.suppress(DBAPIError):
                conn.close()
