"""/readyz tells the truth: it fails when a delivery could not be accepted, and names what degrades the
service without stopping intake (the broker, the workers' and beat's heartbeats, hooks gone quiet)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.crypto import SecretBox, generate_key
from bridge.dev.sandbox.control import wait_until
from bridge.dev.stack import free_port
from bridge.models import HookSubscriptionRecord, Repository

from .test_receivers import ado_post, real_event

ROOT = Path(__file__).resolve().parents[2]


def test_a_wrong_secret_key_fails_readiness_and_deliveries_get_503_not_500(bridge, infra):
    env = {**bridge.env, "BRIDGE_SECRET_KEY": generate_key()}  # a valid key, but not the one secrets were sealed with
    url = infra.start_web(env, workers=1, name="web-wrong-key")
    try:
        ready = bridge.http.get(f"{url}/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["secret_key"] == "failing"
        detail = bridge.readiness(url)["checks"]["secret_key"]
        assert "cannot be decrypted with the configured keys" in detail, detail
        for _ in range(2):
            body, _ = real_event(bridge)
            answer = ado_post(bridge, body, url=url)
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "30", answer.text
            assert answer.json()["outcome"] == "misconfigured"
        log = infra.procs["web-wrong-key"].log_path.read_text()
        assert log.count("deliveries are answered 503 until the configuration is fixed") == 1, log
        assert "Traceback" not in log
        assert bridge.http.get(f"{bridge.web}/readyz").status_code == 200  # the right key: ready
    finally:
        infra.stop_process("web-wrong-key")


def test_no_key_at_all_answers_503_not_401(bridge, infra):
    env = {k: v for k, v in bridge.env.items() if k != "BRIDGE_SECRET_KEY"}
    url = infra.start_web(env, workers=1, name="web-no-key")
    try:
        assert bridge.http.get(f"{url}/readyz").json()["checks"]["secret_key"] == "failing"
        body, _ = real_event(bridge)
        answer = ado_post(bridge, body, url=url)  # right credentials, but the bridge cannot read its own
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
    finally:
        infra.stop_process("web-no-key")


def test_beat_that_stops_beating_is_a_warning_that_keeps_readiness(bridge, infra):
    assert "beat-heartbeat" not in bridge.warnings()
    infra.stop_process("beat", for_good=True)
    try:
        wait_until(lambda: "beat-heartbeat" in bridge.warnings(), timeout=20, what="the beat heartbeat warning")
        assert bridge.http.get(f"{bridge.web}/readyz").status_code == 200
        assert "only one" in bridge.warnings()["beat-heartbeat"][0]
    finally:
        infra.start_beat(bridge.env)
        infra.supervise("beat", lambda: infra.start_beat(bridge.env))
    wait_until(lambda: "beat-heartbeat" not in bridge.warnings(), timeout=20, what="beat beating again")


def test_hooks_gone_quiet_while_repositories_are_linked_is_a_warning(bridge, infra):
    url = infra.start_web({**bridge.env, "BRIDGE_DELIVERY_QUIET": "3"}, workers=1, name="web-quiet")
    try:
        wait_until(lambda: "deliveries-quiet" in bridge.warnings(url), timeout=20, what="the quiet warning")
        assert "bridge hooks check" in bridge.warnings(url)["deliveries-quiet"][0]
        assert bridge.http.get(f"{url}/readyz").status_code == 200
        bridge.sandbox.open_pr(title="a delivery ends the quiet")
        assert "deliveries-quiet" not in bridge.warnings(url)
    finally:
        infra.stop_process("web-quiet")


def test_hooks_check_with_a_wrong_key_fails_and_blames_no_subscription(bridge, infra):
    box = SecretBox((bridge.env["BRIDGE_SECRET_KEY"],))
    with bridge.db.session() as s:  # a subscription of the bridge's, as set-up would have recorded it
        repo = s.scalar(select(Repository).where(Repository.name == "dbt-analytics"))
        record = HookSubscriptionRecord(repository_id=repo.id, organization_id=repo.organization_id,
                                        event_type="test.readiness", username="readiness-check",
                                        password_enc=box.encrypt("p" * 32), status="enabled")
        s.add(record)
    try:
        out = infra.run_cli({**bridge.env, "BRIDGE_SECRET_KEY": generate_key()}, "hooks", "check")
        assert out.returncode == 3, out  # a configuration fault
        assert "cannot be decrypted with the configured keys" in out.stderr and "Traceback" not in out.stderr, out
        with bridge.db.session() as s:
            assert s.get(HookSubscriptionRecord, record.id).problem is None  # not blamed on the subscription
    finally:
        with bridge.db.session() as s:
            s.delete(s.get(HookSubscriptionRecord, record.id))


def test_hooks_check_with_redis_down_says_so_rather_than_already_running(bridge, infra):
    out = infra.run_cli({**bridge.env, "BRIDGE_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}, "hooks", "check")
    assert out.returncode == 5 and "could not reach Redis, the broker (BRIDGE_BROKER_URL)" in out.stderr, out
    assert "already running" not in out.stderr


@pytest.mark.parametrize("process", ["web", "worker"])
def test_wrong_settings_stop_a_process_at_start_up_with_a_line_per_problem(process, tmp_path):
    bindir = Path(sys.executable).parent
    argv = {"web": [str(bindir / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{free_port()}",
                    "--workers", "1", "bridge.web:create_app()"],
            "worker": [str(bindir / "celery"), "-A", "workers.entry", "worker", "--pool", "solo"]}[process]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update({"BRIDGE_PUBLIC_URL": "bridge.example.com", "BRIDGE_POLL_INTERVAL": "abc",
                "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    out = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("bridge: configuration problem: ")]
    assert len(lines) == 2 and "BRIDGE_POLL_INTERVAL must be a number, got 'abc'" in lines[0], out.stderr
    assert "is not an absolute http(s) URL" in lines[1]
    assert "Traceback" not in out.stderr
