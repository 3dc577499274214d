"""Redis Sentinel: the bridge reaches the broker, its per-PR locks and its heartbeats through Sentinel
(``BRIDGE_BROKER_URL=sentinel://…``, ``BRIDGE_SENTINEL_MASTER``), and follows a failover without a restart:
the primary is killed while the bridge runs, Sentinel promotes the replica, and the next pull request gets its
one run and its statuses as before. Real redis-server processes (the sentinel is the same binary with
``--sentinel``), gunicorn, Celery worker and beat, against the sandbox."""

from __future__ import annotations

import collections

import pytest
import redis

from bridge.dev.sandbox.control import wait_until
from bridge.dev.stack import CI_JOB, Stack, start_bridge

MASTER = "bridge"


@pytest.fixture(scope="module")
def through_sentinel():
    stack = Stack.create()
    try:
        stack.start_redis()
        primary = stack.redis_port
        replica = int(stack.start_redis(name="redis-replica", replica_of=primary).rsplit(":", 1)[1].split("/")[0])
        wait_until(lambda: redis.Redis(port=replica).info("replication").get("master_link_status") == "up",
                   timeout=15, what="the replica in sync")
        sentinel = stack.start_sentinel(primary, master=MASTER)
        running = start_bridge(stack, extra_env={
            "BRIDGE_BROKER_URL": f"sentinel://127.0.0.1:{sentinel}", "BRIDGE_SENTINEL_MASTER": MASTER,
            "BRIDGE_HEARTBEAT_TIMEOUT": "6", "BRIDGE_TASK_MAX_RETRIES": "8"})
        yield stack, running, {"primary": primary, "replica": replica, "sentinel": sentinel}
    finally:
        stack.stop()


def master_port(sentinel: int) -> int:
    _, port = redis.Redis(port=sentinel, decode_responses=True).execute_command(
        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
    return int(port)


def test_the_bridge_works_through_sentinel_and_follows_a_failover(through_sentinel):
    stack, running, ports = through_sentinel
    sb = running.sandbox
    first = sb.open_pr(title="through sentinel")["pr"]
    wait_until(lambda: sb.latest_state(first, 1) == "succeeded", timeout=40, what="a run through Sentinel")
    primary = redis.Redis(port=ports["primary"])
    assert primary.keys("bridge:heartbeat:*"), "the heartbeats are written to the master Sentinel names"

    stack.stop_process("redis", for_good=True)  # the primary dies; Sentinel promotes the replica
    wait_until(lambda: master_port(ports["sentinel"]) == ports["replica"], timeout=30,
               what="Sentinel promoting the replica")
    second = sb.open_pr(title="after the failover")["pr"]
    wait_until(lambda: sb.latest_state(second, 1) == "succeeded", timeout=60, what="a run after the failover")
    promoted = redis.Redis(port=ports["replica"])
    wait_until(lambda: promoted.keys("bridge:heartbeat:*"), timeout=20,
               what="the worker's and beat's heartbeats on the new master")

    runs = [r for r in sb.runs() if r["job_definition_id"] == CI_JOB]
    per_head = collections.Counter((r["trigger"]["azure_pull_request_id"], r["trigger"]["git_sha"]) for r in runs)
    assert sorted(pr for pr, _ in per_head) == [first, second] and set(per_head.values()) == {1}  # one run each
    swept = running.stack.run_cli(running.env, "prs", "sweep")  # the CLI sends through Sentinel too
    assert swept.returncode == 0 and "sweep queued" in swept.stdout, swept.stderr
