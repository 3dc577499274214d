"""The outbox relay against real PostgreSQL and Redis: what the receivers commit reaches the broker once.

Each test uses a database and a Redis database of its own, so the session's worker does not consume what
is asserted on here. The relays are the real ones (``workers/relay.py``), fed by the receivers' real
``Outbox``; the messages are read back from Redis as Celery wrote them.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from datetime import timedelta

import psycopg
import pytest
import redis
from sqlalchemy import func, select

from bridge.contracts import DISPATCH_DELIVERIES, PROCESS_DELIVERY, QUEUE
from bridge.db import Database, upgrade
from bridge.deliveries.outbox import Outbox
from bridge.deliveries.states import DeliveryState
from bridge.deliveries.store import NotSent, Selection
from bridge.dev.stack import free_port
from bridge.dispatch import Dispatcher
from bridge.models import Delivery, utcnow
from bridge.settings import Settings
from workers.relay import OutboxRelay


@pytest.fixture
def outbox_db(postgres_url) -> Database:
    name = f"relay_{uuid.uuid4().hex[:8]}"
    admin = postgres_url.replace("postgresql+psycopg", "postgresql").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    db = Database(url)
    yield db
    db.engine.dispose()


@pytest.fixture
def broker(redis_url):
    """A Redis database nobody consumes: (url, client)."""
    url = redis_url.rsplit("/", 1)[0] + "/7"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url, client
    client.flushdb()


def relay(db: Database, broker_url: str, **kw) -> OutboxRelay:
    return OutboxRelay(db, Dispatcher(Settings(broker_url=broker_url)), **{"interval": 0.2, **kw})


def sent_ids(client) -> list[int]:
    """Delivery ids in the Celery messages waiting on the queue."""
    ids = []
    for raw in client.lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        task = message["headers"]["task"]
        assert task in (PROCESS_DELIVERY, DISPATCH_DELIVERIES)
        ids += args if task == PROCESS_DELIVERY else args[0]
    return ids


def store(db: Database, n: int, state: DeliveryState = DeliveryState.RECEIVED) -> list[int]:
    outbox = Outbox(db)
    return [outbox.write(source="azure-devops", dedupe_key=f"relay-{uuid.uuid4()}",
                         event_type="git.pullrequest.updated", event={"pull_request_id": i}, state=state)
            for i in range(n)]


def test_relays_in_parallel_send_every_delivery_exactly_once(outbox_db, broker):
    url, client = broker
    ids = store(outbox_db, 1200)
    ignored = store(outbox_db, 5, state=DeliveryState.IGNORED)
    relays = [relay(outbox_db, url, batch=50) for _ in range(4)]
    threads = [threading.Thread(target=r.drain) for r in relays]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    sent = sent_ids(client)
    assert sorted(sent) == sorted(ids)  # each once, none of the ignored ones
    assert not set(sent) & set(ignored)
    with outbox_db.session() as s:
        states = dict(s.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())
    assert states == {"dispatched": 1200, "ignored": 5}


def test_a_refused_send_leaves_the_deliveries_for_the_next_attempt(outbox_db, broker):
    url, client = broker
    ids = store(outbox_db, 3)
    down = relay(outbox_db, f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(NotSent, match="3 deliveries"):
        down.relay_once()
    with outbox_db.session() as s:
        assert set(s.scalars(select(Delivery.state))) == {"received"}
    assert relay(outbox_db, url).drain() == 3
    assert sorted(sent_ids(client)) == sorted(ids)


def test_a_committed_delivery_wakes_the_relay_at_once(outbox_db, broker):
    url, client = broker
    running = relay(outbox_db, url, interval=60.0)  # it would not look again for a minute by itself
    running.start()
    try:
        time.sleep(0.5)  # listening
        started = time.monotonic()
        [delivery] = store(outbox_db, 1)
        while not client.llen(QUEUE) and time.monotonic() - started < 10:
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        assert sent_ids(client) == [delivery]
        assert elapsed < 5, f"took {elapsed:.2f}s: the notification did not wake the relay"
    finally:
        running.stop()


def test_the_relay_outlives_a_database_restart(outbox_db, broker, infra):
    url, client = broker
    running = relay(outbox_db, url, interval=0.2)
    running.start()
    try:
        first = store(outbox_db, 1)
        deadline = time.monotonic() + 10
        while len(sent_ids(client)) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        infra.stop_postgres()
        time.sleep(1.0)
        infra.start_postgres_again()
        second = store(Database(outbox_db.url), 2)
        deadline = time.monotonic() + 20
        while len(sent_ids(client)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(sent_ids(client)) == sorted(first + second)
    finally:
        running.stop()


def test_the_sweeper_sends_only_what_has_waited_long_enough(outbox_db, broker):
    url, client = broker
    old, new = store(outbox_db, 2)
    with outbox_db.session() as s:
        s.get(Delivery, old).received_at = utcnow() - timedelta(minutes=5)
    assert relay(outbox_db, url).drain(Selection(received_before=utcnow() - timedelta(seconds=15))) == 1
    assert sent_ids(client) == [old]
    with outbox_db.session() as s:
        assert s.get(Delivery, new).state == "received"
