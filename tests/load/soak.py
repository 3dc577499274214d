"""``make soak``: a sustained stream of pull-request events while faults are injected at random, then a
reckoning — accepted, processed, lost (must be 0), duplicated dbt runs (must be 0).

    python -m tests.load.soak --seconds 300 --rate 5 --seed 7

Runs the real stack (PostgreSQL, Redis, the sandbox, gunicorn, a Celery worker and beat) on private
ports. Faults: Redis restarted, the worker SIGKILLed, PostgreSQL stopped for a few seconds, dbt Cloud
answering 429/503/timeouts/resets/HTML, Azure DevOps answering 503/429, dbt webhooks switched off.
"""

from __future__ import annotations

import argparse
import collections
import random
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from bridge.db import Database
from bridge.dev.sandbox.control import SandboxControl
from bridge.dev.stack import CI_JOB, DBT_WEBHOOK_SECRET, DevstackError, Stack, start_bridge
from bridge.models import Delivery

console = Console()


class Soak:
    def __init__(self, stack: Stack, env: dict, web: str, sandbox: SandboxControl, db, rng: random.Random):
        self.stack, self.env, self.web, self.sandbox, self.db, self.rng = stack, env, web, sandbox, db, rng
        self.lock = threading.Lock()
        self.active: list[int] = []
        self.closed: set[int] = set()
        self.sent = collections.Counter()
        self.answers = collections.Counter()
        self.events: list[tuple[str, str, int]] = []   # (event type, event id, answer)
        self.faults = collections.Counter()

    # -- traffic ------------------------------------------------------------------------------------

    def act(self) -> None:
        with self.lock:
            active = list(self.active)
        roll = self.rng.random()
        if not active or roll < 0.55:
            result = self.sandbox.open_pr(title="soak", target="main")
            kind = "open"
            with self.lock:
                self.active.append(result["pr"])
        elif roll < 0.85:
            pr = self.rng.choice(active)
            result, kind = self.sandbox.act(pr, "push"), "push"
        else:
            pr = self.rng.choice(active)
            action = self.rng.choice(["abandon", "complete"])
            with self.lock:
                if pr not in self.active:
                    return
                self.active.remove(pr)
                self.closed.add(pr)
            result, kind = self.sandbox.act(pr, action), action
        status = result["delivered"][0]["status"] if result["delivered"] else None
        with self.lock:
            self.sent[kind] += 1
            self.answers[status] += 1
            self.events.append((kind, result["event_id"], status))

    # -- faults -------------------------------------------------------------------------------------

    def inject(self) -> str:
        sb = self.sandbox
        choice = self.rng.choice(["redis-restart", "worker-kill", "postgres-blip", "dbt-429", "dbt-503",
                                  "dbt-timeout", "dbt-reset", "dbt-html", "ado-503", "ado-429", "dbt-webhooks-off"])
        if choice == "redis-restart":
            self.stack.restart_redis()
        elif choice == "worker-kill":
            worker = self.stack.procs.pop("worker")
            worker.kill(signal.SIGKILL)
            worker.stop()
            self.stack.start_worker(self.env, concurrency=16)
        elif choice == "postgres-blip":
            self.stack.stop_postgres()
            time.sleep(3)
            self.stack.start_postgres_again()
        elif choice == "dbt-429":
            sb.fault(service="dbt", method="POST", path=r"/run/$", status=429, retry_after=2, times=3)
        elif choice == "dbt-503":
            sb.fault(service="dbt", method="*", path=r"/api/v2/", status=503, times=5)
        elif choice == "dbt-timeout":
            sb.fault(service="dbt", method="POST", path=r"/run/$", status=0, delay=4, times=2)
        elif choice == "dbt-reset":
            sb.fault(service="dbt", method="POST", path=r"/cancel/$|/run/$", status=-1, times=2)
        elif choice == "dbt-html":
            sb.fault(service="dbt", method="POST", path=r"/run/$", status=-2, times=2, after=True)
        elif choice == "ado-503":
            sb.fault(service="ado", method="*", path=r"/_apis/", status=503, retry_after=1, times=5)
        elif choice == "ado-429":
            sb.fault(service="ado", method="GET", path=r"/pullrequests/", status=429, retry_after=2, times=3)
        elif choice == "dbt-webhooks-off":
            sb.setup(dbt_webhooks=[])
            threading.Timer(8, lambda: sb.setup(dbt_webhooks=self.dbt_webhooks)).start()
        self.faults[choice] += 1
        return choice

    # -- reckoning ----------------------------------------------------------------------------------

    def _not_green(self) -> list[tuple[int, str | None]]:
        wrong = []
        for pr in list(self.active):
            data = self.sandbox.pr(pr)
            state = self.sandbox.latest_state(pr, data["iterations"][-1]["id"])
            if state != "succeeded":
                wrong.append((pr, state))
        return wrong

    def reckon(self, drain_seconds: float) -> dict:
        accepted_ids = {event_id for _, event_id, status in self.events if status in (200, 202)}
        deadline = time.monotonic() + drain_seconds
        while True:
            with self.db.session() as s:
                rows = s.execute(select(Delivery.dedupe_key, Delivery.state).where(
                    Delivery.source == "azure-devops")).all()
            by_event = {key.split(":", 1)[1]: state for key, state in rows}
            pending = [e for e in accepted_ids if by_event.get(e) not in ("processed", "ignored", "failed")]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(2)
        mine = set(self.active) | self.closed
        runs = [r for r in self.sandbox.runs() if r["trigger"].get("azure_pull_request_id") in mine]
        per_head = collections.Counter((r["trigger"].get("azure_pull_request_id"), r["trigger"].get("git_sha"))
                                       for r in runs if r["job_definition_id"] == CI_JOB)
        duplicated = sum(n - 1 for n in per_head.values() if n > 1)
        live_heads = collections.Counter(r["trigger"].get("azure_pull_request_id") for r in runs
                                         if r["job_definition_id"] == CI_JOB and r["in_progress"])
        with self.db.session() as s:
            failed = s.scalar(select(func.count()).select_from(Delivery).where(Delivery.state == "failed"))
        wrong_final = self._not_green()
        while wrong_final and time.monotonic() < deadline:
            time.sleep(2)
            wrong_final = self._not_green()
        for pr, state in wrong_final[:10]:
            console.print(f"[red]PR {pr}[/]: head iteration shows {state!r}")
        return {
            "events sent": len(self.events),
            "accepted (2xx)": len(accepted_ids),
            "refused by the bridge (non-2xx after Azure DevOps-style retries)": sum(
                1 for *_, s in self.events if s not in (200, 202)),
            "processed": sum(1 for e in accepted_ids if by_event.get(e) in ("processed", "ignored")),
            "failed visibly": failed,
            "lost": len([e for e in accepted_ids if e not in by_event]) + len(pending),
            "duplicate dbt runs": duplicated,
            "PRs with more than one live run": sum(1 for n in live_heads.values() if n > 1),
            "open PRs whose head is not green": len(wrong_final),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to send events")
    parser.add_argument("--rate", type=float, default=5.0, help="PR events per second")
    parser.add_argument("--fault-every", type=float, default=12.0, help="mean seconds between injected faults")
    parser.add_argument("--drain", type=float, default=180.0, help="seconds allowed to settle at the end")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    console.rule(f"soak: {args.seconds:.0f}s at {args.rate}/s, a fault every ~{args.fault_every:.0f}s, seed {seed}")
    stack = Stack.create()
    try:
        database_url = stack.start_postgres()
        running = start_bridge(stack, database_url=database_url, worker_concurrency=16, extra_env={
            "BRIDGE_VISIBILITY_TIMEOUT": "30", "BRIDGE_REDISPATCH_AFTER": "20", "BRIDGE_HTTP_TIMEOUT": "3",
            "BRIDGE_QUIET_AFTER": "5", "BRIDGE_POLL_INTERVAL": "2", "BRIDGE_TASK_MAX_RETRIES": "10"})
    except DevstackError as exc:
        stack.stop()
        console.print(f"[red]{exc}[/]")
        return 2
    console.print(f"stack in {stack.workdir}: web {running.web}, sandbox {running.sandbox.url}")
    env, web, sandbox = running.env, running.web, running.sandbox
    soak = Soak(stack, env, web, sandbox, Database(database_url), rng)
    soak.dbt_webhooks = [{"account_id": 1, "url": f"{web}/webhooks/dbt-cloud", "secret": DBT_WEBHOOK_SECRET}]
    try:
        stop_at = time.monotonic() + args.seconds
        next_fault = time.monotonic() + rng.expovariate(1 / args.fault_every)
        with ThreadPoolExecutor(max_workers=8) as pool:
            while time.monotonic() < stop_at:
                tick = time.monotonic()
                pool.submit(soak.act)
                if tick >= next_fault:
                    console.print(f"[yellow]fault[/] {soak.inject()} at {args.seconds - (stop_at - tick):.0f}s")
                    next_fault = time.monotonic() + rng.expovariate(1 / args.fault_every)
                time.sleep(max(0.0, 1 / args.rate - (time.monotonic() - tick)))
        sandbox.fault(clear=True)
        sandbox.setup(dbt_webhooks=soak.dbt_webhooks)
        console.print("traffic stopped; waiting for the system to settle …")
        report = soak.reckon(args.drain)
    finally:
        stack.stop()
    table = Table(title=f"soak result (seed {seed})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in report.items():
        table.add_row(key, str(value))
    for fault, n in sorted(soak.faults.items()):
        table.add_row(f"fault: {fault}", str(n))
    for name, n in sorted(stack.restarts.items()):
        table.add_row(f"{name} restarted by the supervisor after dying on its own", str(n))
    console.print(table)
    ok = report["lost"] == 0 and report["duplicate dbt runs"] == 0 and report["PRs with more than one live run"] == 0
    console.print("[green]PASS[/]" if ok else "[red]FAIL[/]: something was lost or duplicated")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
