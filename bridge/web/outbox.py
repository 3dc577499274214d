"""Durable acceptance: the receivers' one INSERT into the deliveries table (the outbox).

Each request thread commits its own delivery on a connection it keeps (autocommit: the INSERT is the
transaction, one round trip), so a 2xx always means "committed", and no thread waits on another. Handing
the delivery to Celery is not the web tier's job: on PostgreSQL the same statement NOTIFYs
``OUTBOX_CHANNEL`` when a row to be processed is new, and the relay in every worker (``workers/relay.py``)
claims such rows and sends them.

This is the web tier's hot path, measured (docs/benchmarks.md): building and publishing Celery messages, and
hand-offs between request threads and a group-commit writer, were most of its CPU per delivery; then
SQLAlchemy's per-execution work cost as much as the INSERT itself. So the statement is written once per
dialect, its values converted by SQLAlchemy's own type processors, and run on the DBAPI cursor.
"""

from __future__ import annotations

import contextlib
import os
import threading

from sqlalchemy import JSON, DateTime, Engine

from ..db import Database, make_engine
from ..dispatch import OUTBOX_CHANNEL, UNDISPATCHED
from ..models import utcnow

COLUMNS = ("source", "dedupe_key", "event_type", "repository_id", "dbt_account_id", "event", "state", "attempts",
           "received_at")
TYPED = {"event": JSON(), "received_at": DateTime(timezone=True)}


class OutboxUnavailable(Exception):
    """The delivery could not be committed (database down or refusing): answered 503, so it is retried."""


class _Statement:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING id`` (a duplicate returns no row) in the engine's
    paramstyle, optionally wrapped so PostgreSQL notifies the relay when the row is new."""

    def __init__(self, engine: Engine, *, notify: bool):
        dialect = engine.dialect
        mark = "%({})s" if dialect.paramstyle == "pyformat" else ":{}"  # psycopg | sqlite3 (named works)
        sql = (f"INSERT INTO deliveries ({', '.join(COLUMNS)}) "  # noqa: S608 - no input in the SQL
               f"VALUES ({', '.join(mark.format(c) for c in COLUMNS)}) "
               "ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id")
        if notify:
            sql = f"WITH new AS ({sql}) SELECT id, pg_notify('{OUTBOX_CHANNEL}', '') FROM new"  # noqa: S608
        self.sql = sql
        self.processors = [(name, p) for name, t in TYPED.items()
                           if (p := t.dialect_impl(dialect).bind_processor(dialect)) is not None]

    def params(self, values: dict) -> dict:
        for name, process in self.processors:
            values[name] = process(values[name])
        return values


class Outbox:
    def __init__(self, db: Database):
        self.url = db.url
        self._notify = db.is_postgres
        self._local = threading.local()
        self._process: tuple[int, Engine, _Statement, _Statement] | None = None  # pid, engine, statements
        self._lock = threading.Lock()

    def write(self, *, source: str, dedupe_key: str, event_type: str, event: dict, state: str,
              repository_id: int | None = None, dbt_account_id: int | None = None) -> int | None:
        """Commit one delivery; its id, or None for a duplicate. Raises OutboxUnavailable (answered 503)."""
        engine, plain, new_work = self._setup()
        statement = new_work if state == UNDISPATCHED else plain
        params = statement.params({
            "source": source, "dedupe_key": dedupe_key[:300], "event_type": event_type[:100],
            "repository_id": repository_id, "dbt_account_id": dbt_account_id, "event": event, "state": state,
            "attempts": 0, "received_at": utcnow()})
        dbapi = engine.dialect.loaded_dbapi
        for attempt in (1, 2):
            try:
                cursor = self._connection(engine).cursor()
                try:
                    cursor.execute(statement.sql, params)
                    row = cursor.fetchone()
                finally:
                    cursor.close()
                return row[0] if row else None
            except dbapi.Error as exc:
                self._drop_connection()
                # A kept connection the database dropped (restart, failover): once more on a new one.
                if attempt == 2 or not isinstance(exc, (dbapi.OperationalError, dbapi.InterfaceError)):
                    raise OutboxUnavailable(type(exc).__name__) from exc
        raise AssertionError("unreachable")

    def _setup(self) -> tuple[Engine, _Statement, _Statement]:
        """The engine and statements of this process (gunicorn forks after the app is built)."""
        process = self._process
        if process is None or process[0] != os.getpid():
            with self._lock:
                process = self._process
                if process is None or process[0] != os.getpid():
                    engine = make_engine(self.url, pooled=False)
                    process = self._process = (os.getpid(), engine, _Statement(engine, notify=False),
                                               _Statement(engine, notify=self._notify))
        return process[1:]

    def _connection(self, engine: Engine):
        """This thread's own autocommit DBAPI connection, opened on first use (and again in a new process,
        whose engine is a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.engine is engine:
            return conn.dbapi_connection
        conn = engine.raw_connection()
        try:
            dbapi_conn = conn.dbapi_connection
            if engine.dialect.name == "sqlite":
                dbapi_conn.isolation_level = None  # autocommit
            else:
                dbapi_conn.autocommit = True
        except BaseException:
            conn.close()
            raise
        self._local.conn, self._local.engine = conn, engine
        return dbapi_conn

    def _drop_connection(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            with contextlib.suppress(Exception):  # broken already: nothing more to release
                conn.close()
