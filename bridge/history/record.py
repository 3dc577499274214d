"""The activity record's writes: one row per thing the bridge decided or did, added to the transaction of the
change it records (so the record and the change commit or roll back together), never updated afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, delete, insert
from sqlalchemy.orm import Session

from ..db import Database, delete_in_batches
from ..models import Activity, utcnow

MESSAGE_LIMIT = 2000


class Kind(StrEnum):
    DECISION = "decision"            # a reconcile's plan and its reason
    RUN_STARTED = "run-started"
    RUN_REFUSED = "run-refused"      # dbt Cloud would not start it
    RUN_RECOVERED = "run-recovered"  # a start whose answer was lost, found again in dbt Cloud
    RUN_CANCELLED = "run-cancelled"
    RUN_SETTLED = "run-settled"      # dbt Cloud's news of a run changed its state
    STATUS_POSTED = "status-posted"
    COMMAND = "command"              # a person asked for something (a rerun)
    REPLAY = "replay"                # a person sent deliveries again
    DUPLICATE = "duplicate"          # a delivery stored already came again


@dataclass(frozen=True)
class Cause:
    """Why the work runs: the delivery it processes (if any) and who asked (``worker`` for the bridge itself)."""

    delivery_id: int | None = None
    actor: str = "worker"


WORKER = Cause()


def entry(kind: Kind, message: str, *, cause: Cause = WORKER, repository_id: int | None = None,
          pull_request_id: int | None = None, ci_run_id: int | None = None, dbt_run_id: int | None = None) -> dict:
    return {"at": utcnow(), "kind": kind.value, "message": message[:MESSAGE_LIMIT], "actor": cause.actor[:400],
            "delivery_id": cause.delivery_id, "repository_id": repository_id, "pull_request_id": pull_request_id,
            "ci_run_id": ci_run_id, "dbt_run_id": dbt_run_id}


def add(session: Session, kind: Kind, message: str, **about) -> None:
    """Append to the session's transaction (an ORM unit of work)."""
    session.add(Activity(**entry(kind, message, **about)))


def execute(conn: Connection, kind: Kind, message: str, **about) -> None:
    """Append on a connection, inside the transaction the caller holds open on it."""
    conn.execute(insert(Activity).values(**entry(kind, message, **about)))


def forget_repository(session: Session, repository_id: int) -> None:
    """A repository unlinked is forgotten with its history, in the caller's transaction."""
    session.execute(delete(Activity).where(Activity.repository_id == repository_id))


def prune(db: Database, before: datetime, *, batch: int = 1000, dry_run: bool = False) -> int:
    """Delete activity older than ``before``, ``batch`` rows a transaction (oldest first, by the ``at`` index) so
    the writers never wait long; how many rows (would) go."""
    return delete_in_batches(db, Activity.id, Activity.at < before, order_by=Activity.at, batch=batch,
                             dry_run=dry_run)
