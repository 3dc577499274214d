"""The Celery tasks are module-level functions: called directly here, on SQLite, with no broker or worker."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from bridge.db import upgrade
from bridge.deliveries.codec import encode
from bridge.deliveries.outbox import Outbox
from bridge.deliveries.states import DeliveryState
from bridge.domain import DbtRunEvent, RunStatus
from bridge.errors import ConfigError
from bridge.models import Delivery
from bridge.settings import Settings


@pytest.fixture
def app(tmp_path):
    from workers.app import create_celery_app

    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    upgrade(url)
    return create_celery_app(Settings(database_url=url, broker_url="redis://127.0.0.1:9/0",
                                      secret_keys=(Fernet.generate_key().decode(),)))


def test_a_task_runs_as_a_plain_function_and_ends_its_delivery(app):
    from workers import tasks

    db = tasks.runtime_of(app).db
    event = DbtRunEvent(event_id="e-1", event_type="job.run.completed", account_id=1, run_id=1, job_id=42,
                        status=RunStatus.SUCCESS, status_message=None, started_at=None, finished_at=None)
    delivery = Outbox(db).write(source="dbt-cloud", dedupe_key="run-1", event_type="job.run.completed",
                                event=encode(event), state=DeliveryState.RECEIVED, dbt_account_id=1)
    assert tasks.process_delivery(delivery) == "ignored"  # no CI run of the bridge's has that id
    with db.session() as s:
        row = s.scalar(select(Delivery).where(Delivery.id == delivery))
        assert (row.state, row.error, row.attempts) == ("ignored", "run was not started by the bridge", 1)
    assert tasks.process_delivery(delivery) == "ignored"  # a redelivered message: nothing more happens
    assert tasks.process_delivery(10_000) == "missing"


def test_a_row_whose_event_does_not_decode_fails_with_why(app):
    from workers import tasks

    db = tasks.runtime_of(app).db
    delivery = Outbox(db).write(source="dbt-cloud", dedupe_key="run-2", event_type="job.run.completed",
                                event={"run_id": 2}, state=DeliveryState.RECEIVED, dbt_account_id=1)
    assert tasks.process_delivery(delivery) == "failed"
    with db.session() as s:
        row = s.get(Delivery, delivery)
        assert row.state == "failed" and "stored dbt-cloud event does not decode" in row.error


def test_a_celery_app_not_made_by_the_factory_has_no_runtime():
    from celery import Celery

    from workers.runtime import runtime_of

    with pytest.raises(ConfigError, match="not made by create_celery_app"):
        runtime_of(Celery("elsewhere", set_as_current=False))


def test_the_retention_task_prunes_old_finished_deliveries_and_activity_only(app):
    from datetime import timedelta

    from bridge.history import record as activity
    from bridge.models import Activity, utcnow
    from workers import tasks

    db = tasks.runtime_of(app).db
    old = utcnow() - timedelta(days=31)  # the default retention is 30 days
    with db.session() as s:
        for n, (state, received) in enumerate([("processed", old), ("blocked", old), ("failed", utcnow())]):
            s.add(Delivery(source="azure-devops", dedupe_key=f"d{n}", event_type="x", event={}, state=state,
                           received_at=received))
        s.add(Activity(**{**activity.entry(activity.Kind.DECISION, "old"), "at": old}))
        s.add(Activity(**activity.entry(activity.Kind.DECISION, "new")))
    assert tasks.prune_history() == 2
    with db.session() as s:
        assert sorted(s.scalars(select(Delivery.dedupe_key))) == ["d1", "d2"]  # unfinished work stays
        assert list(s.scalars(select(Activity.message))) == ["new"]
