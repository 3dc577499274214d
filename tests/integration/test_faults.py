"""Faults injected for real: servers stopped and restarted, workers SIGKILLed, the sandbox misbehaving.

Each test asserts the end state: every accepted delivery processed, the PR's final status right, exactly
one dbt run per PR head.
"""

from __future__ import annotations

import json
import re
import signal
import time
from datetime import timedelta

from sqlalchemy import select

from bridge.contracts import PROCESS_DELIVERY, QUEUE
from bridge.dev.sandbox.control import wait_until
from bridge.dispatch import Dispatcher
from bridge.models import Delivery, utcnow
from bridge.settings import Settings


def succeeded(bridge, pr: int, iteration: int = 1, timeout: float = 60) -> None:
    wait_until(lambda: bridge.sandbox.latest_state(pr, iteration) == "succeeded", timeout=timeout,
               what=f"PR {pr} iteration {iteration} succeeded")


def deliveries_for(bridge, pr: int) -> list[Delivery]:
    with bridge.db.session() as s:
        rows = s.scalars(select(Delivery).where(Delivery.source == "azure-devops")).all()
        return [r for r in rows if r.event.get("pull_request_id") == pr]


def all_processed(bridge, pr: int) -> bool:
    rows = deliveries_for(bridge, pr)
    return bool(rows) and all(r.state == "processed" for r in rows)


def test_redis_down_while_deliveries_arrive_then_back(bridge, infra, clean_faults):
    infra.procs.pop("redis").stop()
    try:
        started = time.monotonic()
        opened = [bridge.sandbox.open_pr(title=f"while redis is down {i}") for i in range(3)]
        for o in opened:
            answer = o["delivered"][0]
            assert answer["status"] == 202 and '"outcome":"accepted"' in answer["answer"].replace(" ", "")
        assert time.monotonic() - started < 15  # acceptance does not hang on the broker
        assert "broker" in bridge.warnings()  # a warning, not a readiness failure: intake goes on
        assert bridge.http.get(f"{bridge.web}/readyz").status_code == 200
    finally:
        infra.start_redis(infra.redis_port)
    for o in opened:
        succeeded(bridge, o["pr"], timeout=90)
        assert len(bridge.ci_runs(o["pr"])) == 1
        wait_until(lambda o=o: all_processed(bridge, o["pr"]), what="deliveries processed")


def test_redis_restarted_while_tasks_wait_in_the_queue(bridge, infra, clean_faults):
    worker = infra.procs.pop("worker")
    worker.stop()
    try:
        opened = [bridge.sandbox.open_pr(title=f"queued {i}") for i in range(3)]
        assert all(o["delivered"][0]["status"] == 202 for o in opened)
        infra.restart_redis()  # no persistence: the queued tasks are gone
    finally:
        infra.start_worker(bridge.env, concurrency=8)
    for o in opened:
        succeeded(bridge, o["pr"], timeout=90)
        assert len(bridge.ci_runs(o["pr"])) == 1


def test_deliveries_no_worker_takes_are_reported_until_one_does(bridge, infra, clean_faults):
    worker = infra.procs.pop("worker")
    worker.stop()
    try:
        opened = bridge.sandbox.open_pr(title="no worker to take it")
        answer = json.loads(opened["delivered"][0]["answer"])
        with bridge.db.session() as s:  # as if it had waited for over a minute
            s.get(Delivery, answer["delivery"]).received_at = utcnow() - timedelta(minutes=2)
        warnings = bridge.warnings()
        assert any("waited over 60 s for a worker" in w for w in warnings["deliveries-stalled"]), warnings
        wait_until(lambda: "worker-heartbeat" in bridge.warnings(), timeout=20, what="the worker heartbeat warning")
        anonymous = bridge.http.get(f"{bridge.web}/readyz").json()  # a probe learns the verdict, not the why
        assert set(anonymous) == {"status", "checks"} and "worker" not in str(anonymous)
    finally:
        infra.start_worker(bridge.env, concurrency=8)
    succeeded(bridge, opened["pr"], timeout=90)
    assert "deliveries-stalled" not in bridge.warnings()
    wait_until(lambda: "worker-heartbeat" not in bridge.warnings(), timeout=20, what="the worker beating again")


def test_worker_sigkilled_mid_task_redelivers_without_a_duplicate_run(bridge, infra, clean_faults):
    sb = bridge.sandbox
    sb.fault(service="dbt", method="POST", path=r"/jobs/42/run/$", status=0, delay=4, times=1)
    opened = sb.open_pr(title="killed mid-trigger")
    assert opened["delivered"][0]["status"] == 202
    time.sleep(2)  # the worker is now waiting for dbt Cloud to answer the trigger
    worker = infra.procs.pop("worker")
    worker.kill(signal.SIGKILL)
    worker.stop()
    infra.start_worker(bridge.env, concurrency=8)
    succeeded(bridge, opened["pr"], timeout=90)
    assert len(bridge.ci_runs(opened["pr"])) == 1
    wait_until(lambda: all_processed(bridge, opened["pr"]), what="delivery processed")


def test_database_down_answers_503_and_azure_devops_retries(bridge, infra, clean_faults):
    bridge.sandbox.setup(delivery_backoff=0.5)
    infra.stop_postgres()
    try:
        opened = bridge.sandbox.open_pr(title="while the database is down", deliver=False)
        import threading

        result: dict = {}
        sender = threading.Thread(target=lambda: result.update(bridge.sandbox.deliver(opened["event_id"])))
        sender.start()
        time.sleep(3)
    finally:
        infra.start_postgres_again()
    sender.join(60)
    delivery = result["delivered"][0]
    assert delivery["status"] == 202 and delivery["attempts"] > 1
    succeeded(bridge, opened["pr"], timeout=90)
    assert len(bridge.ci_runs(opened["pr"])) == 1
    bridge.sandbox.setup(delivery_backoff=0.25)


def test_dbt_timeouts_resets_and_html_answers(bridge, clean_faults):
    sb = bridge.sandbox
    # a trigger that takes longer than our timeout (it still starts the run), a reset connection, an HTML page
    sb.fault(service="dbt", method="POST", path=r"/jobs/42/run/$", status=0, delay=4, times=1)
    first = sb.open_pr(title="slow dbt")
    succeeded(bridge, first["pr"])
    assert len(bridge.ci_runs(first["pr"])) == 1

    sb.fault(service="dbt", method="POST", path=r"/jobs/42/run/$", status=-1, times=1)
    second = sb.open_pr(title="reset connection")
    succeeded(bridge, second["pr"])
    assert len(bridge.ci_runs(second["pr"])) == 1

    sb.fault(service="dbt", method="POST", path=r"/jobs/42/run/$", status=-2, times=1, after=True)
    third = sb.open_pr(title="html answer")
    succeeded(bridge, third["pr"])
    assert len(bridge.ci_runs(third["pr"])) == 1


def test_azure_devops_429_with_retry_after_is_honoured(bridge, clean_faults):
    sb = bridge.sandbox
    sb.fault(service="ado", method="GET", path=r"/pullrequests/\d+$", status=429, retry_after=2, times=1)
    started = time.monotonic()
    opened = sb.open_pr(title="rate limited")
    succeeded(bridge, opened["pr"])
    assert time.monotonic() - started >= 2
    gets = [e for e in sb.exchanges() if e["method"] == "GET" and e["path"].endswith(f"/pullrequests/{opened['pr']}")]
    assert [e["status"] for e in gets][:2] == [429, 200]


def test_status_rejected_by_policy_fails_visibly_once(bridge, clean_faults):
    sb = bridge.sandbox
    sb.fault(service="ado", method="POST", path=r"/statuses$", status=403, times=1,
             body={"message": "TF401027: Pull request status rejected by status policy.",
                   "typeKey": "GitPullRequestStatusRejectedByPolicyException"})
    opened = sb.open_pr(title="policy says no")

    def failed():
        rows = deliveries_for(bridge, opened["pr"])
        return rows and rows[0].state == "failed" and rows[0]

    row = wait_until(failed, timeout=30, what="delivery failed")
    assert row.attempts == 1 and "rejected by status policy" in row.error
    # the run started; its completion still gets its status posted
    succeeded(bridge, opened["pr"])


def test_a_message_for_a_finished_or_unknown_delivery_changes_nothing(bridge, infra):
    """A message sent again (the sweeper resending one it thought lost, a broker redelivery) finds its delivery
    finished and leaves it as it is; one for a delivery that does not exist is dropped."""
    opened = bridge.sandbox.open_pr(title="its delivery sent twice")
    succeeded(bridge, opened["pr"])
    wait_until(lambda: all_processed(bridge, opened["pr"]), what="delivery processed")
    (row,) = deliveries_for(bridge, opened["pr"])
    runs = len(bridge.ci_runs(opened["pr"]))
    log = infra.procs["worker"].log_path
    app = Dispatcher(Settings(broker_url=bridge.env["BRIDGE_BROKER_URL"])).app
    sent = {app.send_task(PROCESS_DELIVERY, args=[delivery_id], queue=QUEUE).id: answer
            for delivery_id, answer in ((row.id, "processed"), (10**9, "missing"))}
    for task_id, answer in sent.items():  # the worker logs each task's end with its id and its return value
        wait_until(lambda task_id=task_id, answer=answer: re.search(
            rf"\[{task_id}\] succeeded in [\d.]+s: '{answer}'", log.read_text(errors="replace")),
            what=f"task {task_id} answered {answer!r}")
    (again,) = deliveries_for(bridge, opened["pr"])
    assert (again.state, again.attempts, again.processed_at, again.error) == (
        "processed", row.attempts, row.processed_at, row.error)
    assert len(bridge.ci_runs(opened["pr"])) == runs
