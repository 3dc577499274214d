"""Engine and session factory. Built by the factories from Settings; nothing connects at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, delete, event, func, select
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).parent / "migrations"
# A peer that went silent (a partition, a lost host) fails a PostgreSQL connection within seconds: libpq's
# keepalives and tcp_user_timeout, instead of the kernel's minutes of retransmissions.
PG_CONNECT_ARGS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3,
                   "keepalives_count": 3, "tcp_user_timeout": 10000}


def make_engine(url: str, *, pool_size: int = 5, pre_ping: bool = True, pooled: bool = True) -> Engine:
    """``pooled=False``: every ``connect()`` opens a connection of its own, for a caller that keeps it."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               **({} if pooled else {"poolclass": NullPool}))

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # several processes share the file: WAL + wait on locks
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if not pooled:
        return create_engine(url, poolclass=NullPool, connect_args=PG_CONNECT_ARGS)
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=pre_ping,
                         pool_recycle=1800, connect_args=PG_CONNECT_ARGS)


class Database:
    """One engine and session factory per process."""

    def __init__(self, url: str, *, pool_size: int = 5, pre_ping: bool = True):
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, pre_ping=pre_ping)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def statement(self) -> Connection:
        """A pooled connection for statements that each stand alone (one UPDATE, one UPDATE … RETURNING): no
        BEGIN and COMMIT around them, so each is one round trip. Use as ``with db.statement() as conn:``."""
        return self._autocommit.connect()

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"


def delete_in_batches(db: Database, key, *where, order_by=None, batch: int = 1000, dry_run: bool = False) -> int:
    """Delete the rows of ``key``'s table that ``where`` picks, ``batch`` a transaction in ``order_by`` (default:
    the key), so writers never wait on a long delete; how many rows (would) go. Retention's one mechanism."""
    if dry_run:
        with db.session() as s:
            return s.scalar(select(func.count()).select_from(key.table).where(*where)) or 0
    total = 0
    while True:
        with db.session() as s:
            ids = s.scalars(select(key).where(*where).order_by(key if order_by is None else order_by)
                            .limit(batch)).all()
            if ids:
                s.execute(delete(key.table).where(key.in_(ids)))
        total += len(ids)
        if len(ids) < batch:
            return total


def describe_database_error(exc: BaseException) -> str:
    """One line an operator can act on: the driver's own first line (the host and cause), never the URL."""
    if isinstance(exc, NoSuchModuleError):
        return ("BRIDGE_DATABASE_URL names a database driver that is not installed or misspelt; use "
                "postgresql+psycopg://USER@HOST/DB or sqlite:///PATH")
    if isinstance(exc, ArgumentError):
        return "BRIDGE_DATABASE_URL is not a database URL; use postgresql+psycopg://USER@HOST/DB or sqlite:///PATH"
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)
