"""Records the sandbox's answers to the reconciler, one file per scenario (tests/data/http/<scenario>.json).

Run ``python -m tests.data.http.record`` after changing the sandbox or what the reconciler asks; the unit
tests replay these files (tests/fakes.py). The sandbox runs in this process; nothing else is started.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from pathlib import Path

from werkzeug.serving import make_server

from bridge.clients.http import RequestsTransport
from bridge.dev.sandbox import create_sandbox_app
from bridge.dev.sandbox.control import SandboxControl, wait_until
from bridge.dev.stack import free_port
from bridge.models import CiRun
from bridge.onboarding import Actor, SetupRequest
from tests.orchestration import MARTS_REPOSITORY_ID, assemble

HERE = Path(__file__).parent
MARTS_SETUP = SetupRequest(organization="fabrikam", project="Fabrikam-Fiber-Git", repository="dbt-marts",
                           dbt_account=1, ci_job=42, teardown_job=43, policy=True, status_name="ci-marts")


def pr_passes(sandbox: SandboxControl, bridge) -> None:
    """A PR opened: one run for its head, pending; the run succeeds: succeeded."""
    opened = sandbox.open_pr(title="Add orders model", deliver=False)
    bridge.reconciler.reconcile(bridge.repository_id, opened["pr"])
    wait_until(lambda: sandbox.runs_for(opened["pr"])[0]["status"] == 10, what="run finished")
    bridge.reconciler.settle_run(_only_run(bridge))


def push_supersedes(sandbox: SandboxControl, bridge) -> None:
    """A new push while the first run is live: that run is cancelled, the old iteration marked not applicable,
    a run started for the new head."""
    sandbox.setup(run_defaults={"seconds": 60, "queued": 0.1, "outcome": "success"})
    opened = sandbox.open_pr(title="Two pushes", deliver=False)
    bridge.reconciler.reconcile(bridge.repository_id, opened["pr"])
    sandbox.act(opened["pr"], "push", deliver=False)
    bridge.reconciler.reconcile(bridge.repository_id, opened["pr"])


def draft_waits(sandbox: SandboxControl, bridge) -> None:
    """A draft PR gets no run until it is published."""
    opened = sandbox.open_pr(title="Work in progress", draft=True, deliver=False)
    bridge.reconciler.reconcile(bridge.repository_id, opened["pr"])
    sandbox.act(opened["pr"], "publish", deliver=False)
    bridge.reconciler.reconcile(bridge.repository_id, opened["pr"])


def abandoned_tears_down(sandbox: SandboxControl, bridge) -> None:
    """An abandoned PR: its live run cancelled, the teardown job run once."""
    sandbox.setup(run_defaults={"seconds": 60, "queued": 0.1, "outcome": "success"})
    opened = sandbox.open_pr(title="Given up", deliver=False)
    bridge.reconciler.reconcile(bridge.repository_id, opened["pr"])
    sandbox.act(opened["pr"], "abandon", deliver=False)
    bridge.reconciler.reconcile(bridge.repository_id, opened["pr"])
    bridge.reconciler.reconcile(bridge.repository_id, opened["pr"])  # a repeated delivery: nothing more


def setup_twice(sandbox: SandboxControl, bridge) -> None:
    """A repository set up with an existing CI job, a teardown job and a required status policy; then the same
    set-up again, which finds everything in place and changes nothing."""
    sandbox._post("/repos", {"project": "Fabrikam-Fiber-Git", "name": "dbt-marts", "id": MARTS_REPOSITORY_ID})
    for _ in range(2):
        bridge.onboarding.setup(MARTS_SETUP, Actor.of(None))


SCENARIOS = (pr_passes, push_supersedes, draft_waits, abandoned_tears_down, setup_twice)


def _only_run(bridge) -> int:
    with bridge.db.session() as s:
        [run_id] = s.query(CiRun.id).all()[0]
        return run_id


def record(scenario) -> list[dict]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_sandbox_app(url)
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sandbox = SandboxControl(url)
        sandbox.setup(run_defaults={"seconds": 0.5, "queued": 0.1, "outcome": "success"})
        with tempfile.TemporaryDirectory() as workdir:
            bridge = assemble(Path(workdir), RequestsTransport(), sandbox=url)
            since = len(sandbox.exchanges())
            scenario(sandbox, bridge)
            time.sleep(0.2)
            exchanges = [{k: e[k] for k in ("method", "path", "query", "body", "status", "response")}
                         for e in sandbox.exchanges(since) if not e["path"].startswith("/_sandbox")]
            # the sandbox's address changes with every run; the recording names one fixed host instead
            return json.loads(json.dumps(exchanges).replace(url, "https://sandbox.example"))
    finally:
        server.shutdown()
        app.extensions["world"].stop()


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    for scenario in SCENARIOS:
        exchanges = record(scenario)
        path = HERE / f"{scenario.__name__}.json"
        path.write_text(json.dumps({"scenario": scenario.__doc__, "made_by": "python -m tests.data.http.record",
                                    "exchanges": exchanges}, indent=1) + "\n")
        print(f"{path.name}: {len(exchanges)} exchanges")


if __name__ == "__main__":
    main()
