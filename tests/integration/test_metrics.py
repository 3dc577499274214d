"""Metrics that add up: the web tier's counters summed over its gunicorn processes, each worker's served by
itself, and refused credentials counted and logged (rate-limited, never the password)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import requests

from bridge.dev.sandbox.control import wait_until

from .conftest import HOOK_USER, METRICS_TOKEN, WORKER_METRICS_PORT
from .test_receivers import real_event

WRONG = "a-wrong-password-of-some-length"


def value(text: str, name: str, **labels) -> float:
    """One sample of an exposition (0 when absent)."""
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))) == labels:
            return float(m.group(2))
    return 0.0


def scrape(web: str) -> str:
    answer = requests.get(f"{web}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
    answer.raise_for_status()
    return answer.text


def refuse(web: str, body: dict, n: int) -> None:
    def once(_):  # a connection each, from several threads: both gunicorn processes take some
        return requests.post(f"{web}/webhooks/azure-devops", json=body, auth=(HOOK_USER, WRONG), timeout=10)

    with ThreadPoolExecutor(8) as pool:
        assert {a.status_code for a in pool.map(once, range(n))} == {401}


LABELS = {"source": "azure-devops", "organization": "fabrikam", "reason": "wrong password"}


def test_web_counters_add_up_across_gunicorn_processes(bridge):
    body, _ = real_event(bridge)
    before = value(scrape(bridge.web), "bridge_webhook_refusals_total", **LABELS)
    delivered = value(scrape(bridge.web), "bridge_deliveries_total", source="azure-devops", outcome="unauthorized")
    refuse(bridge.web, body, 40)
    for _ in range(10):  # whichever process answers the scrape, it reports all of them
        text = scrape(bridge.web)
        assert value(text, "bridge_webhook_refusals_total", **LABELS) == before + 40
        assert value(text, "bridge_deliveries_total", source="azure-devops", outcome="unauthorized") == \
            delivered + 40


def test_a_refused_login_is_logged_once_a_minute_per_sender_without_the_password(bridge, infra):
    url = infra.start_web(bridge.env, workers=1, name="web-refusals")
    try:
        body, _ = real_event(bridge)
        refuse(url, body, 5)
        requests.post(f"{url}/webhooks/azure-devops", json=body, auth=("nobody-we-know", WRONG), timeout=10)
        text = scrape(url)
        assert value(text, "bridge_webhook_refusals_total", **LABELS) == 5
        log = infra.procs["web-refusals"].log_path.read_text()
        lines = [line for line in log.splitlines() if "refused an Azure DevOps delivery from 127.0.0.1" in line]
        assert len(lines) == 1, lines  # five refusals, one line: the rest are counted for the next one
        assert f"wrong password for user '{HOOK_USER}' (fabrikam)" in lines[0]
        assert WRONG not in log
    finally:
        infra.stop_process("web-refusals")


def test_each_worker_serves_its_own_counters(bridge):
    opened = bridge.sandbox.open_pr(title="counted by the worker")
    wait_until(lambda: bridge.sandbox.latest_state(opened["pr"], 1) == "succeeded", timeout=60, what="the run")
    text = requests.get(f"http://127.0.0.1:{WORKER_METRICS_PORT}/metrics", timeout=10).text
    assert value(text, "bridge_dbt_runs_started_total", kind="ci", result="started") >= 1
    assert value(text, "bridge_pr_statuses_posted_total", state="succeeded") >= 1
