"""The delivery lifecycle on a real (SQLite) database: the outbox's INSERT, the store's moves and their guards."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.db import Database, upgrade
from bridge.deliveries.outbox import Outbox
from bridge.deliveries.states import FINISHED, REACHED_FROM, DeliveryState, may_move
from bridge.deliveries.store import Claimed, DeliveryStore, NotSent, Selection
from bridge.models import Delivery

S = DeliveryState


@pytest.fixture
def db(tmp_path) -> Database:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    upgrade(url)
    return Database(url)


def write(db: Database, key: str, state: DeliveryState = S.RECEIVED, **extra) -> int:
    return Outbox(db).write(source="azure-devops", dedupe_key=key, event_type="git.pullrequest.updated",
                            event={"pull_request_id": 7, "comment": None}, state=state, **extra)


def test_the_outbox_writes_each_field_to_its_column_and_dedupes(db):
    first = write(db, "k1", repository_id=None, dbt_account_id=99)
    assert write(db, "k1") is None  # the same event again: a duplicate, no second row
    with db.session() as s:
        row = s.get(Delivery, first)
        assert (row.source, row.dedupe_key, row.event_type, row.dbt_account_id) == (
            "azure-devops", "k1", "git.pullrequest.updated", 99)
        assert row.event == {"pull_request_id": 7, "comment": None} and row.state == "received"
        assert row.attempts == 0 and row.received_at is not None and row.dispatched_at is None
        assert s.scalar(select(Delivery.state).where(Delivery.dedupe_key == "k1")) == "received"


def test_the_outbox_writes_new_rows_only_in_the_states_a_receiver_may_write(db):
    with pytest.raises(KeyError):
        write(db, "k1", S.PROCESSED)


def test_a_worker_claims_finishes_and_a_redelivered_message_changes_nothing(db):
    store = DeliveryStore(db)
    delivery = write(db, "k1")
    claimed = store.claim(delivery)
    assert isinstance(claimed, Claimed) and claimed.event["pull_request_id"] == 7
    assert store.finish(delivery, S.PROCESSED)
    assert store.claim(delivery) == "processed"  # a redelivered message: its work is done
    assert not store.finish(delivery, S.FAILED)  # processed is final: the guard refuses the move
    assert store.claim(12345) == "missing"
    with db.session() as s:
        row = s.get(Delivery, delivery)
        assert row.state == "processed" and row.attempts == 1 and row.processed_at is not None


def test_a_delivery_never_finishes_without_being_claimed(db):
    store = DeliveryStore(db)
    delivery = write(db, "k1")
    assert not store.finish(delivery, S.PROCESSED)
    with db.session() as s:
        assert s.get(Delivery, delivery).state == "received"


def test_sending_claims_and_marks_in_one_transaction_or_not_at_all(db):
    store = DeliveryStore(db, batch=2)
    ids = [write(db, f"k{i}") for i in range(5)]
    write(db, "ignored", S.IGNORED)
    sent: list[list[int]] = []
    assert store.drain(lambda batch: sent.append(batch) or True) == 5
    assert sorted(i for batch in sent for i in batch) == ids

    blocked = write(db, "b1")
    store.claim(blocked)
    store.finish(blocked, S.BLOCKED, "reconnect")
    with pytest.raises(NotSent):
        store.dispatch(lambda batch: False, Selection(states=frozenset({S.BLOCKED})))
    with db.session() as s:
        assert s.get(Delivery, blocked).state == "blocked"  # the refused send rolled the claim back
        assert s.scalar(select(Delivery.state).where(Delivery.dedupe_key == "ignored")) == "ignored"
    assert store.dispatch(lambda batch: True, Selection(states=frozenset({S.BLOCKED}), ids=(blocked,))) == 1


def test_a_selection_only_takes_states_that_may_be_sent_again():
    for final in (S.PROCESSED, S.IGNORED):
        with pytest.raises(ValueError, match="cannot be sent"):
            Selection(states=frozenset({final}))
    with pytest.raises(ValueError):
        Selection(states=frozenset())


def test_the_moves_form_a_lifecycle():
    assert not any(may_move(final, S.DISPATCHED) for final in (S.PROCESSED, S.IGNORED))
    assert may_move(S.FAILED, S.DISPATCHED) and may_move(S.BLOCKED, S.DISPATCHED)  # retry, reconnection
    assert all(not may_move(S.RECEIVED, end) for end in FINISHED)  # nothing ends without a worker's claim
    assert set(REACHED_FROM) == set(S) - {S.RECEIVED}  # received is only ever written, never moved to


def test_a_forgotten_repository_leaves_its_deliveries_without_it(tmp_path):
    from bridge.deliveries.store import detach_repository
    from tests.fakes import RecordedTransport
    from tests.orchestration import assemble

    bridge = assemble(tmp_path, RecordedTransport([]))
    kept = write(bridge.db, "k1", repository_id=bridge.repository_id)
    with bridge.db.session() as s:
        detach_repository(s, bridge.repository_id)
    with bridge.db.session() as s:
        row = s.get(Delivery, kept)
        assert row.repository_id is None and row.state == "received"  # history kept, link gone


def test_pruning_deletes_old_finished_deliveries_in_batches_and_never_unfinished_work(db):
    from datetime import timedelta

    from bridge.models import utcnow

    old = utcnow() - timedelta(days=40)
    with db.session() as s:
        for i, state in enumerate([*[S.PROCESSED] * 5, S.IGNORED, S.FAILED, S.RECEIVED, S.DISPATCHED,
                                   S.PROCESSING, S.BLOCKED]):
            s.add(Delivery(source="azure-devops", dedupe_key=f"old{i}", event_type="x", event={}, state=state,
                           received_at=old))
        s.add(Delivery(source="azure-devops", dedupe_key="new", event_type="x", event={}, state=S.PROCESSED))
    store, cutoff = DeliveryStore(db), utcnow() - timedelta(days=30)
    assert store.prune(cutoff, dry_run=True) == 7
    assert store.prune(cutoff, batch=2) == 7  # four batches of at most two rows
    with db.session() as s:
        left = sorted((d.dedupe_key, d.state) for d in s.scalars(select(Delivery)))
    assert left == [("new", "processed"), ("old10", "blocked"), ("old7", "received"), ("old8", "dispatched"),
                    ("old9", "processing")]
    assert store.prune(cutoff) == 0
