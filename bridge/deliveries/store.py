"""Every write to the deliveries table after the receivers' INSERT: state moves, each one ``states`` allows,
and ``detach_repository`` when a repository is forgotten.

``dispatch`` claims rows for the broker and sends them in one transaction: if the broker refuses, the claim
rolls back and the rows stay as they were (the relay, the sweeper, a reconnection and the CLI all send this
way). ``claim`` and ``finish`` are a worker's: one statement each, guarded by the states they move from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from ..db import Database, delete_in_batches
from ..errors import NotSent
from ..history import record as activity
from ..history.record import Cause, Kind

__all__ = ["NEW", "Claimed", "DeliveryStore", "NotSent", "Selection"]
from ..models import Delivery, utcnow
from .states import FINISHED, REACHED_FROM, DeliveryState

S = DeliveryState
FAN_OUT = 25  # ids per message: a claimed batch is spread over that many worker threads, not one


@dataclass(frozen=True)
class Selection:
    """Which deliveries to send: in one of ``states`` (each one that may move to dispatched), and optionally
    only ``ids``, only those received or last dispatched before a time."""

    states: frozenset[DeliveryState] = frozenset({S.RECEIVED})
    ids: tuple[int, ...] = ()
    received_before: datetime | None = None
    dispatched_before: datetime | None = None

    def __post_init__(self):
        refused = set(self.states) - REACHED_FROM[S.DISPATCHED]
        if refused or not self.states:
            raise ValueError(f"deliveries in {sorted(refused) or 'no state'} cannot be sent")

    def criteria(self) -> list:
        where = [Delivery.state.in_(sorted(self.states))]
        if self.ids:
            where.append(Delivery.id.in_(self.ids))
        if self.received_before is not None:
            where.append(Delivery.received_at < self.received_before)
        if self.dispatched_before is not None:
            where.append(Delivery.dispatched_at < self.dispatched_before)
        return where


NEW = Selection()  # what the relay sends: the deliveries received


@dataclass(frozen=True)
class Claimed:
    """A delivery a worker now holds (state processing), with what its work needs."""

    id: int
    source: str
    event: dict[str, Any]
    repository_id: int | None
    dbt_account_id: int | None


def detach_repository(session: Session, repository_id: int) -> None:
    """Keep a forgotten repository's deliveries (their history) without their link to it, in the caller's
    transaction: unlinking forgets a repository and everything of it at once."""
    session.execute(update(Delivery).where(Delivery.repository_id == repository_id).values(repository_id=None))


# Built once: the worker's statements, run for every delivery.
_CLAIM = (update(Delivery).where(Delivery.id == bindparam("delivery_id"),
                                 Delivery.state.in_(sorted(REACHED_FROM[S.PROCESSING])))
          .values(state=S.PROCESSING.value, attempts=Delivery.attempts + 1)
          .returning(Delivery.source, Delivery.event, Delivery.repository_id, Delivery.dbt_account_id))
_STATE = select(Delivery.state).where(Delivery.id == bindparam("delivery_id"))
_FINISH = {state: update(Delivery).where(Delivery.id == bindparam("delivery_id"),
                                         Delivery.state.in_(sorted(REACHED_FROM[state])))
           .values(state=state.value, error=bindparam("new_error"), processed_at=bindparam("finished_at"))
           for state in (S.PROCESSED, S.IGNORED, S.BLOCKED, S.FAILED)}


class DeliveryStore:
    """The deliveries table's writes after the INSERT, and the counts read-outs need."""

    def __init__(self, db: Database, *, batch: int = 500):
        self.db = db
        self.batch = batch

    # -- to the broker ---------------------------------------------------------------------------------

    def dispatch(self, send: Callable[[list[int]], bool], selection: Selection = NEW, *,
                 replayed_by: str | None = None) -> int:
        """Claim up to ``batch`` deliveries ``selection`` picks (``SKIP LOCKED``: concurrent callers never
        claim the same row), mark them dispatched and ``send`` their ids in batches of ``FAN_OUT``, all in
        one transaction; how many were sent. Raises NotSent when ``send`` returns False (nothing is marked).
        ``replayed_by``: a person sends them again, and the activity record says so in the same transaction."""
        claimable = (select(Delivery.id).where(*selection.criteria()).order_by(Delivery.id)
                     .limit(self.batch).with_for_update(skip_locked=True))
        claim = (update(Delivery).where(Delivery.id.in_(claimable))
                 .values(state=S.DISPATCHED.value, dispatched_at=utcnow())
                 .returning(Delivery.id, Delivery.repository_id, Delivery.pull_request_id))
        with self.db.engine.begin() as conn:
            rows = sorted(conn.execute(claim).all())
            ids = [row.id for row in rows]
            if replayed_by is not None:
                for row in rows:
                    activity.execute(conn, Kind.REPLAY, f"delivery {row.id} sent to the workers again",
                                     cause=Cause(delivery_id=row.id, actor=replayed_by),
                                     repository_id=row.repository_id, pull_request_id=row.pull_request_id)
            for start in range(0, len(ids), FAN_OUT):  # a refusal rolls the whole claim back (resending is safe)
                if not send(ids[start:start + FAN_OUT]):
                    raise NotSent(f"{len(ids)} deliveries")
        return len(ids)

    def drain(self, send: Callable[[list[int]], bool], selection: Selection = NEW, *,
              replayed_by: str | None = None) -> int:
        """``dispatch`` until nothing ``selection`` picks is left. A row just sent is dispatched now, so it is
        not picked again, unless the selection takes dispatched rows of any time: then one batch."""
        total = 0
        while (sent := self.dispatch(send, selection, replayed_by=replayed_by)) > 0:
            total += sent
            if sent < self.batch or (S.DISPATCHED in selection.states and selection.dispatched_before is None):
                break
        return total

    # -- a worker's --------------------------------------------------------------------------------------

    def claim(self, delivery_id: int) -> Claimed | str:
        """Mark a delivery as being processed and read what the work needs, in one statement. Returns it, or
        why there is nothing to do: ``missing``, or the state it is in (a redelivered message's work is done)."""
        with self.db.statement() as conn:
            row = conn.execute(_CLAIM, {"delivery_id": delivery_id}).first()
            if row is not None:
                return Claimed(delivery_id, *row)
            return conn.scalar(_STATE, {"delivery_id": delivery_id}) or "missing"

    def finish(self, delivery_id: int, state: DeliveryState, error: str | None = None) -> bool:
        """Record how a delivery ended, or that it waits (blocked): one UPDATE, no read first. False when the
        delivery is not in a state that may move there (then nothing changes)."""
        with self.db.statement() as conn:
            done = conn.execute(_FINISH[state], {"delivery_id": delivery_id, "new_error": error,
                                                 "finished_at": utcnow() if state in FINISHED else None})
            return done.rowcount > 0

    # -- retention ---------------------------------------------------------------------------------------

    def prune(self, received_before: datetime, *, batch: int = 1000, dry_run: bool = False) -> int:
        """Delete finished deliveries (processed, ignored, failed) received before ``received_before``, ``batch``
        rows a transaction so receivers never wait long; never a row of unfinished work. How many (would) go."""
        return delete_in_batches(self.db, Delivery.id, Delivery.state.in_(sorted(FINISHED)),
                                 Delivery.received_at < received_before, batch=batch, dry_run=dry_run)

    # -- read-outs ---------------------------------------------------------------------------------------

    def count(self, states: Iterable[DeliveryState], *, received_before: datetime | None = None) -> int:
        query = select(func.count()).select_from(Delivery).where(Delivery.state.in_(sorted(states)))
        if received_before is not None:
            query = query.where(Delivery.received_at < received_before)
        with self.db.session() as s:
            return s.scalar(query) or 0
