"""Durable acceptance: the receivers' one INSERT into the deliveries table (the outbox).

Each request thread commits its own delivery on a connection it keeps (autocommit: the INSERT is the
transaction, one round trip), so a 2xx always means "committed", and no thread waits on another. Handing
the delivery to Celery is not the web tier's job: on PostgreSQL the same statement NOTIFYs
``OUTBOX_CHANNEL`` when a row to be processed is new, and the relay in every worker (``workers/relay.py``)
claims such rows and sends them.

This is the web tier's hot path, measured (docs/benchmarks.md): building and publishing Celery messages, and
hand-offs between request threads and a group-commit writer, were most of its CPU per delivery; then
SQLAlchemy's per-execution work cost as much as the INSERT itself. So the statement is written once per
dialect and state, with positional values (the timestamp through SQLAlchemy's own type processor), and run
on a cursor each thread keeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading

from sqlalchemy import DateTime, Engine

from ..db import Database, make_engine
from ..dispatch import OUTBOX_CHANNEL, UNDISPATCHED
from ..models import utcnow

COLUMNS = ("source", "dedupe_key", "event_type", "repository_id", "dbt_account_id", "event", "received_at")


# Every state a delivery is written in (a literal in its statement, so only these).
STATES = (UNDISPATCHED, "ignored")
# One encoder, made once (json.dumps with options builds one a call): the stored events and the answers.
compact_json = json.JSONEncoder(separators=(",", ":")).encode


class OutboxUnavailable(Exception):
    """The delivery could not be committed (database down or refusing): answered 503, so it is retried."""


class _Statement:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING id`` (a duplicate returns no row) for deliveries of one
    state, with positional values in the engine's paramstyle (``COLUMNS``' order), optionally wrapped so
    PostgreSQL notifies the relay when the row is new."""

    def __init__(self, engine: Engine, *, state: str, notify: bool):
        dialect = engine.dialect
        mark = "?" if dialect.paramstyle == "qmark" else "%s"  # sqlite3 | psycopg
        sql = (f"INSERT INTO deliveries ({', '.join(COLUMNS)}, state, attempts) "  # noqa: S608 - no input in the SQL
               f"VALUES ({', '.join(mark for _ in COLUMNS)}, '{state}', 0) "
               "ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id")
        if notify:
            sql = f"WITH new AS ({sql}) SELECT id, pg_notify('{OUTBOX_CHANNEL}', '') FROM new"  # noqa: S608
        self.sql = sql
        self.timestamp = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)


class Outbox:
    def __init__(self, db: Database):
        self.url = db.url
        self._notify = db.is_postgres
        self._local = threading.local()
        self._process: tuple[int, Engine, dict[str, _Statement]] | None = None  # pid, engine, statement by state
        self._lock = threading.Lock()

    def write(self, *, source: str, dedupe_key: str, event_type: str, event: dict, state: str,
              repository_id: int | None = None, dbt_account_id: int | None = None) -> int | None:
        """Commit one delivery; its id, or None for a duplicate. Raises OutboxUnavailable (answered 503)."""
        engine, statements = self._setup()
        statement = statements[state]  # KeyError: not a state a delivery is written in
        params = (source, dedupe_key[:300], event_type[:100], repository_id, dbt_account_id,
                  compact_json(event), statement.timestamp(utcnow()))
        dbapi = engine.dialect.loaded_dbapi
        for attempt in (1, 2):
            try:
                cursor = self._cursor(engine)
                cursor.execute(statement.sql, params)
                row = cursor.fetchone()
                return row[0] if row else None
            except dbapi.Error as exc:
                self._drop_connection()
                # A kept connection the database dropped (restart, failover): once more on a new one.
                if attempt == 2 or not isinstance(exc, (dbapi.OperationalError, dbapi.InterfaceError)):
                    raise OutboxUnavailable(type(exc).__name__) from exc
        raise AssertionError("unreachable")

    def _setup(self) -> tuple[Engine, dict[str, _Statement]]:
        """The engine and statements of this process (gunicorn forks after the app is built)."""
        process = self._process
        if process is None or process[0] != os.getpid():
            with self._lock:
                process = self._process
                if process is None or process[0] != os.getpid():
                    engine = make_engine(self.url, pooled=False)
                    process = self._process = (os.getpid(), engine, {  # only new work wakes the relay
                        state: _Statement(engine, state=state, notify=self._notify and state == UNDISPATCHED)
                        for state in STATES})
        return process[1:]

    def _cursor(self, engine: Engine):
        """This thread's cursor on its own autocommit DBAPI connection, opened on first use (and again in a
        new process, whose engine is a new one)."""
        local = self._local
        if getattr(local, "conn", None) is not None and local.engine is engine:
            return local.cursor
        conn = engine.raw_connection()
        try:
            dbapi_conn = conn.dbapi_connection
            if engine.dialect.name == "sqlite":
                dbapi_conn.isolation_level = None  # autocommit
            else:
                dbapi_conn.autocommit = True
            local.cursor = dbapi_conn.cursor()
        except BaseException:
            conn.close()
            raise
        local.conn, local.engine = conn, engine
        return local.cursor

    def _drop_connection(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            with contextlib.suppress(Exception):  # broken already: nothing more to release
                conn.close()
