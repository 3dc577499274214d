"""Per-PR locks in a real (private) Redis: the lease is renewed while held, and its holder learns when it is not."""

from __future__ import annotations

import time

import pytest
import redis

from bridge.errors import LockBusy, LockLost
from bridge.locks import redis_lock_factory


@pytest.fixture
def client(redis_url):
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/6")
    yield client
    client.flushdb()


def _until(check, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_held_lease_outlives_its_timeout_and_excludes_others(client):
    lock = redis_lock_factory(client, timeout=0.6)
    with lock("pr:1:7") as lease:
        time.sleep(1.2)  # two timeouts: only the watchdog's renewals keep the key
        assert client.exists("bridge:lock:pr:1:7") and not lease.lost
        lease.check()
        with pytest.raises(LockBusy), redis_lock_factory(client, timeout=0.6)("pr:1:7"):
            pass
    assert not client.exists("bridge:lock:pr:1:7")


def test_a_lease_that_cannot_be_renewed_is_lost_and_its_check_refuses(client):
    lock = redis_lock_factory(client, timeout=0.6)
    with lock("pr:1:8") as lease:
        client.delete("bridge:lock:pr:1:8")  # lapsed under a cut-off holder, then taken by another worker
        assert _until(lambda: lease.lost)
        with pytest.raises(LockLost):
            lease.check()
