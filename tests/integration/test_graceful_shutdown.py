"""SIGTERM, as Kubernetes, systemd and compose send it before a restart: web finishes the requests it has
(gunicorn's graceful stop, ``graceful_timeout``) and takes no new ones; a worker finishes the task in hand
(Celery's warm shutdown) and hands back what it had reserved (late acknowledgement), so nothing is lost and
no run is started twice across the restart. Only the main process is signalled, as a container runtime does."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

from bridge.dev.sandbox.control import wait_until
from bridge.dev.stack import HOOK_PASSWORD, HOOK_USER
from bridge.models import Delivery

from .test_faults import all_processed, succeeded


def _post_slowly(url: str, body: bytes, *, halfway) -> tuple[int, bytes]:
    """POST a delivery in two halves with ``halfway()`` called between them; the status and the body."""
    import base64

    host, port = url.removeprefix("http://").split(":")
    auth = base64.b64encode(f"{HOOK_USER}:{HOOK_PASSWORD}".encode()).decode()
    head = (f"POST /webhooks/azure-devops HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head + body[: len(body) // 2])
        halfway()
        conn.sendall(body[len(body) // 2:])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def test_web_finishes_a_delivery_in_flight_when_told_to_stop(bridge, infra):
    sb = bridge.sandbox
    url = infra.start_web(bridge.env, workers=1, name="web-draining")
    web = infra.procs["web-draining"]
    opened = sb.open_pr(title="in flight at shutdown", deliver=False)
    body = json.dumps(sb._get(f"/events/{opened['event_id']}")).encode()

    def stop_the_web():
        time.sleep(0.3)  # the worker thread is reading the body
        os.kill(web.popen.pid, signal.SIGTERM)  # the master only, as a container runtime signals PID 1
        time.sleep(1.0)

    status, answer = _post_slowly(url, body, halfway=stop_the_web)
    assert status == 202, answer  # answered, and so stored, although the web was stopping
    assert web.popen.wait(timeout=30) == 0  # then it stopped by itself, well within graceful_timeout
    infra.procs.pop("web-draining", None)
    delivery_id = json.loads(answer)["delivery"]
    with bridge.db.session() as s:
        assert s.get(Delivery, delivery_id) is not None
    succeeded(bridge, opened["pr"])


def test_a_worker_told_to_stop_finishes_its_task_and_nothing_runs_twice(bridge, infra, clean_faults):
    sb = bridge.sandbox
    # a slow trigger, answered within BRIDGE_HTTP_TIMEOUT (3 s here): the worker is stopped while it waits
    sb.fault(service="dbt", method="POST", path=r"/jobs/42/run/$", status=0, delay=2.5, times=1)
    opened = sb.open_pr(title="stopping mid-trigger")
    assert opened["delivered"][0]["status"] == 202
    queued = [sb.open_pr(title=f"queued behind it {n}") for n in range(3)]
    time.sleep(1)  # the worker now waits for dbt Cloud to answer the trigger
    worker = infra.procs.pop("worker")
    os.kill(worker.popen.pid, signal.SIGTERM)  # Celery's warm shutdown
    assert worker.popen.wait(timeout=60) == 0  # it finished the task in hand, then stopped by itself
    worker.stop()
    assert len(bridge.ci_runs(opened["pr"])) == 1  # the trigger it was waiting on completed before it stopped
    infra.start_worker(bridge.env, concurrency=8)
    for pr in [opened["pr"], *(q["pr"] for q in queued)]:
        succeeded(bridge, pr, timeout=90)
        assert len(bridge.ci_runs(pr)) == 1, pr  # nothing started twice across the restart
        wait_until(lambda pr=pr: all_processed(bridge, pr), what=f"PR {pr}'s deliveries processed")
