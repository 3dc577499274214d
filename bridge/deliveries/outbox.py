"""Durable acceptance: the receivers' one INSERT into the deliveries table.

Each request thread commits its own delivery on an autocommit connection it keeps (the INSERT is the
transaction, one round trip), so a 2xx always means "committed". On PostgreSQL the same statement NOTIFYs
``OUTBOX_CHANNEL`` when a row to be processed is new, waking the workers' relay. The statement is compiled
once per process from the table definition and run on the DBAPI cursor (the hot path: docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading

from sqlalchemy import Engine, func, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite

from ..contracts import OUTBOX_CHANNEL
from ..db import Database, make_engine
from ..errors import OutboxUnavailable

__all__ = ["FIELDS", "Outbox", "OutboxUnavailable", "compact_json"]
from ..models import Delivery, utcnow
from .states import WRITTEN, DeliveryState

# What a receiver knows of a delivery, in the table's column order (``write`` passes them so); the rest of the
# row is the table's defaults and the state written.
FIELDS = tuple(c.name for c in Delivery.__table__.columns if c.name in {
    "source", "dedupe_key", "event_type", "repository_id", "dbt_account_id", "pull_request_id", "event", "error",
    "received_at"})

# One encoder, made once (json.dumps with options builds one a call): the stored events and the answers.
compact_json = json.JSONEncoder(separators=(",", ":")).encode


class _Statement:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING id`` (a duplicate returns no row) for deliveries of one
    state, compiled from the table with positional parameters in ``FIELDS``' order; on PostgreSQL wrapped so
    the database notifies the relay when the row is new work."""

    def __init__(self, engine: Engine, *, state: DeliveryState, notify: bool):
        table = Delivery.__table__
        dialect = engine.dialect
        build = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        values = {name: literal_column(f"__{name}__") for name in FIELDS}  # placeholders, replaced below
        statement = (build(table).values(**values, state=literal_column(f"'{state.value}'"),
                                         attempts=literal_column("0"))
                     .on_conflict_do_nothing(index_elements=["source", "dedupe_key"]).returning(table.c.id))
        if notify:
            new = statement.cte("new")
            statement = select(new.c.id, func.pg_notify(literal_column(f"'{OUTBOX_CHANNEL}'"), literal_column("''")))
        sql = str(statement.compile(dialect=dialect))
        placed = sorted(FIELDS, key=lambda name: sql.index(f"__{name}__"))
        if tuple(placed) != FIELDS:
            raise AssertionError(f"the statement places its values as {placed}, not in FIELDS' order")
        mark = "?" if dialect.paramstyle == "qmark" else "%s"  # sqlite3 | psycopg
        for name in FIELDS:
            sql = sql.replace(f"__{name}__", mark)
        self.sql = sql
        stamp = table.c.received_at.type
        self.timestamp = stamp.dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)


class Outbox:
    def __init__(self, db: Database):
        self.url = db.url
        self._notify = db.is_postgres
        self._local = threading.local()
        self._process: tuple[int, Engine, dict[DeliveryState, _Statement]] | None = None  # pid, engine, statements
        self._lock = threading.Lock()

    def write(self, *, source: str, dedupe_key: str, event_type: str, event: dict, state: DeliveryState,
              repository_id: int | None = None, dbt_account_id: int | None = None,
              pull_request_id: int | None = None, reason: str | None = None) -> int | None:
        """Commit one delivery (``reason``: why an ignored one is not worked on); its id, or None for a
        duplicate. Raises OutboxUnavailable (answered 503)."""
        engine, statements = self._setup()
        statement = statements[state]  # KeyError: not a state a new delivery is written in
        params = (source, dedupe_key[:300], event_type[:100], repository_id, dbt_account_id,  # FIELDS
                  pull_request_id, compact_json(event), reason, statement.timestamp(utcnow()))
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

    def _setup(self) -> tuple[Engine, dict[DeliveryState, _Statement]]:
        """The engine and statements of this process (gunicorn forks after the app is built)."""
        process = self._process
        if process is None or process[0] != os.getpid():
            with self._lock:
                process = self._process
                if process is None or process[0] != os.getpid():
                    engine = make_engine(self.url, pooled=False)
                    process = self._process = (os.getpid(), engine, {  # only new work wakes the relay
                        state: _Statement(engine, state=state,
                                          notify=self._notify and state == DeliveryState.RECEIVED)
                        for state in WRITTEN})
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
