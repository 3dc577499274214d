"""``make bench``: the real stack measured side by side, one table, written to docs/benchmarks.md.

    python -m tests.load.bench [--quick]

Phases (each on a fresh stack of private processes: PostgreSQL, Redis, the sandbox, gunicorn, Celery):
  ingest       wrk against POST /webhooks/azure-devops (unique real deliveries) and a trivial Flask endpoint
               on the same gunicorn settings, alternated, medians of the rounds
  end to end   20 PR events/s, zero-latency sandbox: webhook sent → pending status, dbt webhook sent → final status
  concurrency  100 ms on every sandbox API call: queued PR events reconciled per second
  economy      API calls per CI run (measured), next to a polling client (measured, time-scaled)
  burst        10,000 deliveries as fast as the generator sends them: accepted, processed, lost, duplicates, drain
  memory       peak RSS (VmHWM) of a gunicorn worker and of the Celery worker process
  retention    1,000,000 old deliveries and activity entries pruned (beat's task) while wrk sends new ones
  sweep        beat's PR sweep over 2,000 repositories in 20 organizations: Azure DevOps listings per 5 minutes
  history      ingest, relay, sweeper, poller, PR sweep, console pages, CLI lists and /metrics on an empty
               database and on 1,000,000 deliveries, 100,000 PRs and 2,000 repositories: each within 1.2x
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select, text

from bridge.db import Database
from bridge.deliveries.states import DeliveryState
from bridge.dev.sandbox.control import SandboxControl, wait_until
from bridge.dev.stack import (
    CI_JOB,
    HOOK_PASSWORD,
    HOOK_USER,
    ROOT,
    RunningBridge,
    Stack,
    ensure_binaries,
    start_bridge,
)
from bridge.models import Delivery, Repository

console = Console()

# One Celery worker process per core, threads inside each for I/O: a process's consumer loop and Python
# work share one GIL, so a second process (not more threads) is what doubles throughput on 2 cores.
WORKER_PROCESSES = 2
WORKER_CONCURRENCY = 24
WEB_WORKERS = 2
WRK = {"threads": 1, "connections": 16, "seconds": 8}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


@dataclass
class Row:
    measure: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, measure: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(measure, value, target, met))
        mark = {True: "[green]met[/]", False: "[red]NOT met[/]", None: ""}[met]
        console.print(f"  {measure}: [bold]{value}[/] {target} {mark}")


def fresh_stack(extra_env: dict | None = None, **kw) -> tuple[Stack, RunningBridge, Database]:
    stack = Stack.create()
    database_url = stack.start_postgres()
    running = start_bridge(stack, database_url=database_url, web_workers=WEB_WORKERS,
                           worker_concurrency=WORKER_CONCURRENCY, worker_processes=WORKER_PROCESSES,
                           extra_env={"BRIDGE_QUIET_AFTER": "600", **(extra_env or {})}, **kw)
    return stack, running, Database(database_url)


def processed_count(db: Database, source: str = "azure-devops") -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.source == source, Delivery.state.in_(("processed", "ignored", "failed")))) or 0


# -- ingest ------------------------------------------------------------------------------------------

WRK_SCRIPT = """
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  template = io.open(args[1]):read("*a")
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = args[2]
  run = args[3]
end
function request()
  counter = counter + 1
  local body = string.gsub(template, "__EVENT_ID__", run .. "-" .. tid .. "-" .. counter)
  return wrk.format("POST", nil, nil, body)
end
"""


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU these processes have used (/proc/<pid>/stat, clock ticks)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """A process and all its descendants."""
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += _children(found[-1])
    return found


# wrk's keep-alive connections are opened at once, and now and then gunicorn's two processes do not share
# them: one takes all 16 and the run measures one process on one core (half the rate; either endpoint). Such
# a run is measured again, and counted in the table.
LOPSIDED_RETRIES = 3


def _per_worker(master: int) -> dict[str, list[int]]:
    return {f"worker {pid}": [pid] for pid in _children(master)}


def _lopsided(run: dict) -> bool:
    """One gunicorn process did (almost) all of a run's work."""
    shares = [ms for name, ms in run["cpu_ms"].items() if name.startswith("worker ")]
    return len(shares) > 1 and min(shares) < 0.1 * sum(shares)


def run_wrk(url: str, body_file: Path, auth: str, script: Path, run: str,
            measure: dict[str, list[int]] | None = None) -> dict:
    """One wrk run; with ``measure`` ({name: pids}), also the CPU each group spent per request (ms)."""
    measure = measure or {}
    cpu_before = {name: _cpu_seconds(pids) for name, pids in measure.items()}
    argv = [ensure_binaries("wrk")["wrk"], "-t", str(WRK["threads"]), "-c", str(WRK["connections"]),
            "-d", f"{WRK['seconds']}s", "--latency", "-s", str(script), url, "--", str(body_file), auth, run]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    text = out.stdout

    def latency(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    requests_done = int(re.search(r"(\d+) requests in", text).group(1))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)), "p50": latency("50%"),
            "p99": latency("99%"), "non2xx": int(non2xx.group(1)) if non2xx else 0, "requests": requests_done,
            "cpu_ms": {name: 1000 * (_cpu_seconds(pids) - cpu_before[name]) / max(1, requests_done)
                       for name, pids in measure.items()}}


def _wrk_inputs(running: RunningBridge) -> tuple[Path, str, Path]:
    """A real PR delivery as wrk's template (its event id replaced per request), the hook's Basic
    credentials and wrk's script."""
    import base64

    opened = running.sandbox.open_pr(title="ingest template", deliver=False)
    event = running.sandbox._get(f"/events/{opened['event_id']}")
    event["id"] = "__EVENT_ID__"
    event["subscriptionId"], event["notificationId"] = "1e1e1e1e-0000-4000-8000-000000000001", 1
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    body_file, script = work / "body.json", work / "script.lua"
    body_file.write_text(json.dumps(event))
    script.write_text(WRK_SCRIPT)
    return body_file, "Basic " + base64.b64encode(f"{HOOK_USER}:{HOOK_PASSWORD}".encode()).decode(), script


def ingest(report: Report, rounds: int) -> None:
    console.rule("ingest")
    stack, running, db = fresh_stack()
    try:
        # Web only: the worker is stopped so its CPU does not blur the comparison; deliveries queue up.
        for name in [n for n in list(stack.procs) if n.startswith("worker")]:
            stack.stop_process(name, for_good=True)
        body_file, auth, script = _wrk_inputs(running)
        trivial_url = stack.start_web(running.env, workers=WEB_WORKERS, name="trivial",
                                      app="tests.load.trivial:create_app()")
        run_wrk(f"{trivial_url}/trivial", body_file, auth, script, "warm-t")  # warm both, then alternate
        warm = run_wrk(f"{running.web}/webhooks/azure-devops", body_file, auth, script, "warm-b")
        # CPU per request of each gunicorn (master and workers) and of PostgreSQL (whose backends for the
        # receivers' kept connections exist once the warm-up has run), from /proc: steadier than req/s here.
        trivial_cpu = {"web": _tree(stack.procs["trivial"].pid), **_per_worker(stack.procs["trivial"].pid)}
        bridge_cpu = {"web": _tree(stack.procs["web"].pid), "postgres": _tree(stack.procs["postgres"].pid),
                      **_per_worker(stack.procs["web"].pid)}
        bridge_runs, trivial_runs = [], []
        lopsided: dict[str, list[dict]] = {"bridge": [], "trivial": []}
        for i in range(rounds):  # each round a pair, run back to back; which goes first alternates
            pair = [(trivial_runs, f"{trivial_url}/trivial", f"t{i}", trivial_cpu, lopsided["trivial"]),
                    (bridge_runs, f"{running.web}/webhooks/azure-devops", f"b{i}", bridge_cpu, lopsided["bridge"])]
            for runs, url, label, measure, skewed in pair if i % 2 == 0 else reversed(pair):
                for attempt in range(LOPSIDED_RETRIES + 1):
                    run = run_wrk(url, body_file, auth, script, f"{label}.{attempt}", measure)
                    if not _lopsided(run) or attempt == LOPSIDED_RETRIES:
                        break
                    skewed.append(run)
                runs.append(run)
            console.print(f"  round {i + 1}: bridge {bridge_runs[-1]['rps']:.0f} req/s, "
                          f"trivial {trivial_runs[-1]['rps']:.0f} req/s")
        with db.session() as s:
            stored = s.scalar(select(func.count()).select_from(Delivery))
        accepted = sum(r["requests"] - r["non2xx"] for r in [warm, *bridge_runs])
        med = {k: statistics.median(r[k] for r in bridge_runs) for k in ("rps", "p50", "p99")}
        tmed = {k: statistics.median(r[k] for r in trivial_runs) for k in ("rps", "p50", "p99")}
        # This VM's speed drifts within a run (the trivial endpoint alone has swung 2x between rounds), so the
        # targets are judged on the rounds' paired ratios (median), each pair measured back to back.
        ratios = [b["rps"] / t["rps"] for b, t in zip(bridge_runs, trivial_runs, strict=True)]
        p99_ratios = [b["p99"] / t["p99"] for b, t in zip(bridge_runs, trivial_runs, strict=True)]
        ratio, p99_ratio = statistics.median(ratios), statistics.median(p99_ratios)
        report.add("ingest: webhook receiver",
                   f"{med['rps']:.0f} req/s, p50 {med['p50']:.1f} ms, p99 {med['p99']:.1f} ms")
        report.add("ingest: trivial Flask endpoint", f"{tmed['rps']:.0f} req/s, p50 {tmed['p50']:.1f} ms, "
                   f"p99 {tmed['p99']:.1f} ms")
        report.add("ingest: throughput ratio (median of the rounds' pairs)",
                   f"{ratio:.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)}; ratio of the medians above: "
                   f"{med['rps'] / tmed['rps']:.2f})", "≥ 0.5", ratio >= 0.5)
        cpu = {k: statistics.median(r["cpu_ms"][k] for r in bridge_runs) for k in ("web", "postgres")}
        report.add("ingest: CPU per request (medians)", f"receiver {cpu['web']:.2f} ms + PostgreSQL "
                   f"{cpu['postgres']:.2f} ms; trivial endpoint "
                   f"{statistics.median(r['cpu_ms']['web'] for r in trivial_runs):.2f} ms")
        report.add("ingest: p99 ratio (median of the rounds' pairs)", f"{p99_ratio:.2f} (ratio of the medians: "
                   f"{med['p99'] / tmed['p99']:.2f})", "≤ 3", p99_ratio <= 3)
        report.add("ingest: runs measured again (every keep-alive connection on one gunicorn process)",
                   "; ".join(f"{side} {len(runs)}" + (f" (at {statistics.median(r['rps'] for r in runs):.0f} req/s)"
                                                      if runs else "") for side, runs in lopsided.items()))
        accepted += sum(r["requests"] - r["non2xx"] for r in lopsided["bridge"])
        report.add("ingest: durable acceptance", f"{stored} rows for {accepted} 2xx answers "
                   f"({sum(r['non2xx'] for r in bridge_runs)} non-2xx)", "every 2xx stored", stored >= accepted)
    finally:
        stack.stop()


# -- end to end --------------------------------------------------------------------------------------

def end_to_end(report: Report, seconds: float, rate: float = 20.0) -> dict:
    console.rule(f"end to end at {rate:.0f} PR events/s")
    stack, running, _ = fresh_stack(run_seconds=2.0)
    sb = running.sandbox
    try:
        opened: list[dict] = []
        lock = threading.Lock()

        def one() -> None:
            result = sb.open_pr(title="e2e")
            with lock:
                opened.append(result)

        with ThreadPoolExecutor(max_workers=8) as pool:
            start = time.monotonic()
            n = int(seconds * rate)
            for i in range(n):
                pool.submit(one)
                time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
        prs = {o["pr"] for o in opened}
        wait_until(lambda: all(sb.latest_state(pr, 1) == "succeeded" for pr in list(prs)[-20:]), timeout=120,
                   interval=1, what="the last PRs to finish")
        time.sleep(3)
        exchanges = sb.exchanges()
        deliveries = sb.deliveries()
        sent_at = {d["body"]["resource"]["pullRequestId"]: d["sent_at"] for d in deliveries
                   if d["service"] == "ado" and d["body"]["eventType"] == "git.pullrequest.created"}
        pending_at, final_at = {}, {}
        for e in exchanges:
            m = re.search(r"/pullRequests/(\d+)/statuses$", e["path"])
            if e["method"] == "POST" and m and e["status"] == 200:
                pr = int(m.group(1))
                if e["body"]["state"] == "pending":
                    pending_at.setdefault(pr, e["at"])
                elif e["body"]["state"] == "succeeded":
                    run_id = int(re.search(r"/runs/(\d+)/", e["body"]["targetUrl"]).group(1))
                    final_at[run_id] = e["at"]
        completed_sent = {int(d["body"]["data"]["runId"]): d["sent_at"] for d in deliveries
                          if d["service"] == "dbt" and d["body"]["eventType"] == "job.run.completed"}
        leg1 = [(pending_at[pr] - sent_at[pr]) * 1000 for pr in prs if pr in pending_at and pr in sent_at]
        leg2 = [(final_at[r] - completed_sent[r]) * 1000 for r in completed_sent if r in final_at]
        p99_1, p99_2 = percentile(leg1, 99), percentile(leg2, 99)
        report.add("end to end: webhook → pending status",
                   f"p50 {percentile(leg1, 50):.0f} ms, p99 {p99_1:.0f} ms over {len(leg1)} PRs", "p99 ≤ 250 ms",
                   p99_1 <= 250 and len(leg1) == len(prs))
        report.add("end to end: dbt webhook → final status",
                   f"p50 {percentile(leg2, 50):.0f} ms, p99 {p99_2:.0f} ms over {len(leg2)} runs", "p99 ≤ 250 ms",
                   p99_2 <= 250 and len(leg2) == len(prs))
        # API economy, measured on the same runs: every call the bridge made, per CI run.
        per_pr = collections.Counter()
        run_pr = {}
        for r in sb.runs():
            run_pr[r["id"]] = r["trigger"].get("azure_pull_request_id")
        for e in exchanges:
            if e["service"] == "ado":
                m = re.search(r"/pull[rR]equests/(\d+)", e["path"])
                if m:
                    per_pr[int(m.group(1))] += 1
            else:
                m = re.search(r"/runs/(\d+)/", e["path"])
                if m and int(m.group(1)) in run_pr:
                    per_pr[run_pr[int(m.group(1))]] += 1
                elif e["path"].endswith("/run/") and isinstance(e["body"], dict):
                    per_pr[e["body"].get("azure_pull_request_id")] += 1
        calls = [per_pr[pr] for pr in prs]
        return {"calls_per_run": statistics.median(calls) if calls else float("nan"), "max_calls": max(calls or [0])}
    finally:
        stack.stop()


def economy(report: Report, measured: dict) -> None:
    console.rule("API economy")
    # A typical pipeline script: trigger, then GET the run every 10 s until it is done. Measured against the
    # sandbox time-scaled 1:100 (a 10-minute run lasts 6 s, the client polls every 0.1 s).
    stack = Stack.create()
    try:
        url = stack.start_sandbox()
        sb = SandboxControl(url)
        sb.setup(run_defaults={"seconds": 6.0, "queued": 0.0})
        http = requests.Session()
        headers = {"Authorization": "Token sandbox-dbt-token"}
        before = len(sb.exchanges())
        run = http.post(f"{url}/api/v2/accounts/1/jobs/{CI_JOB}/run/", json={"cause": "pipeline", "git_sha": "a" * 40},
                        headers=headers, timeout=10).json()["data"]
        while True:
            time.sleep(0.1)
            data = http.get(f"{url}/api/v2/accounts/1/runs/{run['id']}/", headers=headers, timeout=10).json()["data"]
            if data["is_complete"]:
                break
        polling = len(sb.exchanges()) - before
    finally:
        stack.stop()
    report.add("API calls per CI run: the bridge (steady state)",
               f"{measured['calls_per_run']:.0f} (max {measured['max_calls']}), whatever the run's length",
               "≤ 6", measured["calls_per_run"] <= 6)
    report.add("API calls per CI run: polling client, 10-minute run", f"{polling} (trigger + GET every 10 s)")


# -- worker I/O concurrency ----------------------------------------------------------------------------

def concurrency(report: Report, events: int) -> None:
    console.rule("worker I/O concurrency, 100 ms per API call")
    stack, running, db = fresh_stack(run_seconds=3600.0)
    sb = running.sandbox
    try:
        workers = [name for name in list(stack.procs) if name.startswith("worker")]
        for name in workers:
            stack.stop_process(name, for_good=True)
        sb.setup(latency_ms=100)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _: sb.open_pr(title="concurrency"), range(events)))
        assert processed_count(db) == 0
        transactions = _transactions(db)
        started = time.monotonic()
        pids = [pid for name in workers
                for pid in _tree(stack.start_worker(running.env, concurrency=WORKER_CONCURRENCY, name=name).pid)]
        samples = []  # (seconds since the workers were started, events processed, CPU seconds of the workers)
        while not samples or samples[-1][1] < events:
            if time.monotonic() - started > 600:
                raise TimeoutError(f"{samples[-1][1]} of {events} events processed in 600 s")
            time.sleep(0.25)
            samples.append((time.monotonic() - started, processed_count(db), _cpu_seconds(pids)))
        took = samples[-1][0]
        time.sleep(1.5)  # PostgreSQL publishes its transaction counts within a second
        transactions = _transactions(db) - transactions
        # Steady state: from the first sample past 10 % of the events to the first past 90 % (both workers up,
        # no start-up and no tail), so CPU per event is not diluted by imports and connecting.
        first = next(x for x in samples if x[1] >= events * 0.1)
        last = next(x for x in samples if x[1] >= events * 0.9)
        steady = (last[1] - first[1]) / (last[0] - first[0])
        cpu_ms = 1000 * (last[2] - first[2]) / (last[1] - first[1])
        rate = events / took
        report.add("worker: PR events reconciled per second at 100 ms API latency",
                   f"{rate:.1f}/s ({events} events in {took:.1f} s from starting {WORKER_PROCESSES} worker processes "
                   f"x {WORKER_CONCURRENCY} threads; steady state {steady:.1f}/s)", "≥ 50/s", rate >= 50)
        report.add("worker: CPU and database work per reconciled PR event",
                   f"{cpu_ms:.1f} ms CPU in the worker processes (steady state); "
                   f"{transactions / events:.1f} database transactions (all processes, start-up included)")
    finally:
        stack.stop()


def _transactions(db: Database) -> int:
    """Transactions PostgreSQL has counted in the bridge's database (commits and rollbacks)."""
    with db.session() as s:
        return s.scalar(text("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                             "WHERE datname = current_database()"))


# -- burst ---------------------------------------------------------------------------------------------

def burst(report: Report, deliveries: int) -> None:
    console.rule(f"burst of {deliveries} deliveries")
    stack, running, db = fresh_stack(run_seconds=3600.0)
    sb = running.sandbox
    try:
        prs = deliveries // 2
        with ThreadPoolExecutor(max_workers=8) as pool:
            opened = list(pool.map(lambda _: sb.open_pr(title="burst", deliver=False), range(prs)))
            list(pool.map(lambda o: sb.act(o["pr"], "push", deliver=False), opened))
        bodies = [json.dumps(e).encode() for e in sb._get("/events")]
        console.print(f"  {len(bodies)} deliveries prepared ({prs} PRs, each created + pushed)")
        answers = collections.Counter()
        lock = threading.Lock()
        local = threading.local()

        def send(chunk: list[bytes]) -> None:
            http = getattr(local, "http", None) or requests.Session()
            local.http = http
            for body in chunk:
                try:
                    status = http.post(f"{running.web}/webhooks/azure-devops", data=body,
                                       auth=(HOOK_USER, HOOK_PASSWORD), headers={"Content-Type": "application/json"},
                                       timeout=30).status_code
                except requests.RequestException:
                    status = "error"
                with lock:
                    answers[status] += 1

        chunks = [bodies[i::16] for i in range(16)]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(send, chunks))
        sent_in = time.monotonic() - started
        accepted = answers[202] + answers[200]
        wait_until(lambda: processed_count(db) >= accepted, timeout=1800, interval=2, what="the burst to drain")
        drained = time.monotonic() - started
        with db.session() as s:
            stored = s.scalar(select(func.count()).select_from(Delivery).where(Delivery.source == "azure-devops"))
            done = processed_count(db)
        runs = [r for r in sb.runs() if r["job_definition_id"] == CI_JOB]
        heads = collections.Counter((r["trigger"]["azure_pull_request_id"], r["trigger"]["git_sha"]) for r in runs)
        duplicates = sum(n - 1 for n in heads.values() if n > 1)
        lost = accepted - stored
        report.add("burst: sent", f"{len(bodies)} in {sent_in:.1f} s ({len(bodies) / sent_in:.0f}/s); "
                   f"answers {dict(answers)}")
        report.add("burst: accepted / processed", f"{accepted} / {done}")
        report.add("burst: lost", str(lost), "0", lost == 0 and done >= accepted)
        report.add("burst: duplicate dbt runs", f"{duplicates} ({len(runs)} runs for {prs} PR heads)", "0",
                   duplicates == 0 and len(runs) == prs)
        report.add("burst: time to drain", f"{drained:.0f} s ({accepted / drained:.0f} deliveries/s end to end)")
        memory(report, stack)
    finally:
        stack.stop()


# -- retention ----------------------------------------------------------------------------------------

OLD_ROWS = """
INSERT INTO deliveries (source, dedupe_key, event_type, event, state, attempts, received_at, processed_at)
SELECT 'azure-devops', 'old-' || g, 'git.pullrequest.updated', '{}'::json,
       CASE WHEN g % 1000 = 0 THEN 'blocked' ELSE 'processed' END, 1,
       now() - interval '40 days' - g * interval '1 second', now() - interval '40 days'
FROM generate_series(1, :rows) AS g;
INSERT INTO activity (at, kind, repository_id, pull_request_id, actor, message)
SELECT now() - interval '40 days' - g * interval '1 second', 'decision', 1, g % 5000, 'worker',
       'new head commit 1a2b3c4d: start a CI run'
FROM generate_series(1, :rows) AS g;
ANALYZE deliveries; ANALYZE activity;
"""


def prune(report: Report, rows: int) -> None:
    """Beat's hourly retention task on a history of ``rows`` old deliveries and as many activity entries,
    while wrk sends new deliveries: the receiver's rate and p99 next to the same without pruning."""
    from bridge.deliveries.store import DeliveryStore
    from bridge.history import record as activity
    from bridge.models import utcnow

    console.rule(f"retention: pruning {rows:,} deliveries and {rows:,} activity entries under ingest")
    stack, running, db = fresh_stack()
    try:
        for name in [n for n in list(stack.procs) if n.startswith("worker")]:
            stack.stop_process(name, for_good=True)  # as in ingest: the receiver alone, deliveries queue up
        body_file, auth, script = _wrk_inputs(running)
        with db.engine.begin() as conn:
            for statement in OLD_ROWS.split(";"):
                if statement.strip():
                    conn.execute(text(statement), {"rows": rows})
        url = f"{running.web}/webhooks/azure-devops"
        run_wrk(url, body_file, auth, script, "warm-p")
        before = [run_wrk(url, body_file, auth, script, f"before-{i}") for i in range(3)]
        pruned: dict[str, float] = {}

        def retention() -> None:  # what the beat task runs, with its batch sizes
            started = time.monotonic()
            cutoff = utcnow() - datetime.timedelta(days=30)
            pruned["deliveries"] = DeliveryStore(db).prune(cutoff)
            pruned["activity"] = activity.prune(db, cutoff)
            pruned["seconds"] = time.monotonic() - started

        worker = threading.Thread(target=retention, name="retention")
        worker.start()
        during = []
        while worker.is_alive() or not during:
            during.append(run_wrk(url, body_file, auth, script, f"during-{len(during)}"))
        worker.join()
        with db.session() as s:
            kept = s.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.dedupe_key.like("old-%"))) or 0
        rate = {k: statistics.median(r["rps"] for r in runs) for k, runs in (("before", before), ("during", during))}
        worst = max(r["p99"] for r in during)
        ratio = rate["during"] / rate["before"]
        errors = sum(r["non2xx"] for r in during)
        report.add("retention: pruned", f"{pruned['deliveries']:,.0f} deliveries + {pruned['activity']:,.0f} activity "
                   f"entries in {pruned['seconds']:.0f} s (batches of 1000); {kept} old unfinished deliveries kept",
                   f"{rows // 1000} kept", kept == rows // 1000 and pruned["deliveries"] == rows - rows // 1000)
        report.add("retention: ingest while pruning", f"{rate['during']:.0f} req/s ({ratio:.2f}x of "
                   f"{rate['before']:.0f} before; {len(during)} runs), worst p99 {worst:.1f} ms "
                   f"(before {max(r['p99'] for r in before):.1f} ms), {errors} non-2xx",
                   "≥ 0.5x, p99 ≤ 250 ms, 0 non-2xx", ratio >= 0.5 and worst <= 250 and errors == 0)
    finally:
        stack.stop()


# -- costs as history grows ---------------------------------------------------------------------------

# What is configured, on both stacks: the comparison is of history, not of how many repositories are linked.
CONFIGURATION = """
INSERT INTO organizations (name, url, identity_kind, api_version, created_at, updated_at)
SELECT 'hist' || o, CAST(:sandbox AS text) || '/hist' || o, 'pat', '7.1', now(), now() FROM generate_series(1, 20) AS o;
INSERT INTO repositories (organization_id, ado_project_id, ado_project_name, ado_repository_id, name, dbt_account_id,
                          ci_job_id, target_branches, drafts, status_genre, status_name, created_at, updated_at)
SELECT org.id, 'p-' || org.id || '-' || (r % 10), 'P' || (r % 10), md5(org.id || '-' || r), 'repo-' || r, 1, 42,
       '[]', 'skip', 'dbt-cloud', 'ci', now(), now()
FROM organizations AS org, generate_series(1, 100) AS r WHERE org.name LIKE 'hist%'
"""
HISTORY = """
INSERT INTO pull_requests (repository_id, pull_request_id, title, status, is_draft, target_ref, source_ref,
                           head_commit, last_reason, reconciled_at)
SELECT repo.id, p, 'history PR ' || p, CASE WHEN p % 10 = 0 THEN 'active' ELSE 'completed' END, false,
       'refs/heads/main', 'refs/heads/feature/' || p, md5(repo.id || '-' || p), 'new head commit',
       now() - (p * 43 + repo.id % 43) * interval '1 hour'
FROM repositories AS repo, generate_series(1, 50) AS p WHERE repo.name LIKE 'repo-%';
INSERT INTO ci_runs (pull_request_ref, kind, commit, dbt_account_id, dbt_job_id, dbt_run_id, status, superseded,
                     cancel_requested, posted_state, duration_seconds, created_at, updated_at, finished_at)
SELECT pr.id, 'ci', pr.head_commit, 1, 42, 100000000 + pr.id, CASE WHEN pr.id % 7 = 0 THEN 20 ELSE 10 END, false,
       false, 'succeeded', 120, pr.reconciled_at, pr.reconciled_at, pr.reconciled_at
FROM pull_requests AS pr WHERE pr.title LIKE 'history PR%';
INSERT INTO deliveries (source, dedupe_key, event_type, repository_id, pull_request_id, event, state, attempts,
                        received_at, dispatched_at, processed_at)
SELECT 'azure-devops', 'hist-' || g, 'git.pullrequest.updated', NULL, g % 50 + 1, '{}'::json, 'processed', 1,
       now() - g * interval '1 second', now() - g * interval '1 second', now() - g * interval '1 second'
FROM generate_series(1, :deliveries) AS g;
INSERT INTO activity (at, kind, repository_id, pull_request_id, ci_run_id, actor, message)
SELECT pr.reconciled_at, k, pr.repository_id, pr.pull_request_id, NULL, 'worker', 'history'
FROM pull_requests AS pr, unnest(ARRAY['decision', 'run-started', 'status-posted']) AS k
WHERE pr.title LIKE 'history PR%'
"""


def _timed(action, times: int = 11) -> float:
    """The median of ``times`` runs of ``action``, in milliseconds."""
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        spent.append(1000 * (time.perf_counter() - started))
    return statistics.median(spent)


def _history_measures(running: RunningBridge, stack: Stack, body_file: Path, auth: str, script: Path,
                      label: str) -> dict[str, float]:
    """Everything whose cost could grow with history, measured once on the stack as it is now."""
    from bridge.dev.person import Person
    from bridge.dev.stack import ADMIN_TOKEN
    from bridge.settings import Settings
    from workers import tasks
    from workers.app import create_celery_app
    from workers.runtime import runtime_of

    measures: dict[str, float] = {}
    workers = [n for n in list(stack.procs) if n.startswith("worker")]
    for name in workers:  # the receiver alone, as in the ingest phase
        stack.stop_process(name, for_good=True)
    url = f"{running.web}/webhooks/azure-devops"
    runs = [run_wrk(url, body_file, auth, script, f"{label}-{i}") for i in range(3)]
    measures["ingest req/s"] = statistics.median(r["rps"] for r in runs)
    measures["ingest p99 ms"] = statistics.median(r["p99"] for r in runs)
    db = Database(running.database_url)
    with db.engine.begin() as conn:  # wrk's deliveries name one PR many times: not work worth measuring here
        conn.execute(text("UPDATE deliveries SET state = 'processed', processed_at = now() "
                          "WHERE state IN ('received', 'dispatched')"))  # dispatched: sent before the stop
    stack.start_worker(running.env, concurrency=WORKER_CONCURRENCY)
    sb = running.sandbox
    for _ in range(5):  # warm-up: the worker's relay is listening and its connections are open
        sb.deliver(sb.open_pr(title="relay warm-up", deliver=False)["event_id"])
    wait_until(lambda: processed_count(db) >= _received_total(db), timeout=120, interval=1, what="warm-up rows")
    since = datetime.datetime.now(datetime.UTC)
    for _ in range(100):  # the relay: from a receiver's commit to the broker, at a calm 20 a second
        sb.deliver(sb.open_pr(title="relay latency", deliver=False)["event_id"])
        time.sleep(0.05)
    wait_until(lambda: processed_count(db) >= _received_total(db), timeout=120, interval=1, what="relay rows")
    with db.session() as s:
        lags = [1000 * (d - r).total_seconds() for r, d in s.execute(select(Delivery.received_at,
                Delivery.dispatched_at).where(Delivery.received_at >= since, Delivery.dispatched_at.is_not(None)))]
    measures["relay wake-to-send p50 ms"] = statistics.median(lags)
    measures["relay wake-to-send p99 ms"] = percentile(lags, 99)
    app = create_celery_app(Settings.from_env({k: v for k, v in running.env.items() if k.startswith("BRIDGE_")}))
    runtime = runtime_of(app)
    measures["sweeper query ms"] = _timed(lambda: runtime.deliveries.count(
        [DeliveryState.RECEIVED], received_before=datetime.datetime.now(datetime.UTC)))
    measures["sweeper round ms"] = _timed(tasks.sweep_deliveries)
    measures["poller round ms"] = _timed(tasks.poll_quiet_runs)
    with db.session() as s:
        org_id, project_id = s.execute(select(Repository.organization_id, Repository.ado_project_id)
                                       .order_by(Repository.id).limit(1)).one()
    measures["PR sweep of a project ms"] = _timed(lambda: runtime.reconciler.stale_in_project(org_id, project_id))
    admin = Person(running.web, sb.url)
    admin.sign_in_with_token(ADMIN_TOKEN)
    for path in ("/console/overview", "/console/prs", "/console/deliveries", "/console/deliveries?state=failed",
                 "/console/repositories", "/console/repositories/1", "/console/repositories/1/prs/1"):
        measures[f"page {path} ms"] = _timed(lambda path=path: admin.get(path).raise_for_status())
    for command in (["deliveries", "list", "--json"], ["runs", "list", "--json"], ["prs", "list", "--json"]):
        measures[f"bridge {' '.join(command)} ms"] = _timed(lambda c=command: stack.run_cli(running.env, *c), 3)
    measures["/metrics ms"] = _timed(lambda: requests.get(f"{running.web}/metrics", timeout=30, headers={
        "Authorization": f"Bearer {running.env['BRIDGE_METRICS_TOKEN']}"}).raise_for_status())
    return measures


def _received_total(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Delivery).where(Delivery.source == "azure-devops")) or 0


def history(report: Report, *, deliveries: int, rounds: int = 3) -> None:
    """The same measures on two stacks side by side, both with 2,000 repositories in 20 organizations linked:
    one with no history, one with a realistic history (``deliveries`` deliveries, 100,000 PRs with a run and
    three activity entries each). Measured in alternating rounds (this VM's speed drifts within minutes, as the ingest
    phase found), each measure judged on the median of the rounds' ratios."""
    from bridge.dev.stack import ADMIN_TOKEN

    console.rule(f"costs as history grows: empty vs {deliveries:,} deliveries and 100,000 PRs, {rounds} rounds")
    env = {"BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN, "BRIDGE_PR_SWEEP_INTERVAL": "0"}
    stacks = {"empty": fresh_stack(extra_env=env), "history": fresh_stack(extra_env=env)}
    try:
        inputs = {}
        for name, (_, running, _) in stacks.items():
            inputs[name] = _wrk_inputs(running)
            run_wrk(f"{running.web}/webhooks/azure-devops", *inputs[name], f"warm-{name}")
        started = time.monotonic()
        for name, (_, running, db) in stacks.items():
            with db.engine.begin() as conn:
                for statement in (CONFIGURATION + (";" + HISTORY if name == "history" else "")).split(";"):
                    if statement.strip():
                        conn.execute(text(statement), {"deliveries": deliveries, "sandbox": running.sandbox.url})
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))  # a database in service is vacuumed: measure that, not a backlog
        console.print(f"  history written and vacuumed in {time.monotonic() - started:.0f} s")
        measured: dict[str, list[dict[str, float]]] = {"empty": [], "history": []}
        for n in range(rounds):
            for name in (["empty", "history"] if n % 2 == 0 else ["history", "empty"]):
                stack, running, _ = stacks[name]
                body_file, auth, script = inputs[name]
                measured[name].append(_history_measures(running, stack, body_file, auth, script, f"{name}-{n}"))
            console.print(f"  round {n + 1} of {rounds} measured")
        for measure in measured["empty"][0]:
            pairs = [(e[measure], h[measure]) for e, h in zip(measured["empty"], measured["history"], strict=True)]
            ratios = [(e / h if measure == "ingest req/s" else h / e) for e, h in pairs]
            ratio = statistics.median(ratios)
            report.add(f"history: {measure}", f"{statistics.median(h for _, h in pairs):.1f} with history, "
                       f"{statistics.median(e for e, _ in pairs):.1f} empty; {ratio:.2f}x (rounds: "
                       f"{', '.join(f'{r:.2f}' for r in ratios)})", "≤ 1.2x", ratio <= 1.2)
    finally:
        for stack, _, _ in stacks.values():
            stack.stop()


# -- the PR sweep's Azure DevOps budget ----------------------------------------------------------------

def sweep_budget(report: Report, *, organizations: int, projects: int, repositories: int, seconds: float,
                 interval: float = 30.0) -> None:
    """Beat's PR sweep over ``organizations`` x ``projects`` x ``repositories`` linked repositories for
    ``seconds``: the Azure DevOps listings per organization per five minutes (the sandbox's own log and the
    bridge's counters in Redis), against the sweep's share of the 200 TSTU budget."""
    import redis as redis_lib

    from bridge.api_calls import ApiCalls
    from bridge.domain import RATE_LIMIT_TSTU
    from bridge.settings import Settings

    total = organizations * projects * repositories
    console.rule(f"PR sweep over {total:,} repositories in {organizations} organizations")
    stack, running, _ = fresh_stack(extra_env={"BRIDGE_PR_SWEEP_INTERVAL": str(interval)})
    sb = running.sandbox
    try:
        lines = ["azure_devops:", "  organizations:"]
        repos = ["repositories:"]
        names = [f"org{o:02d}" for o in range(organizations)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda args: sb._post("/repos", {"org": args[0], "project": args[1], "name": args[2]}),
                          [(org, f"P{p}", f"repo-{p}-{r}") for org in names for p in range(projects)
                           for r in range(repositories)]))
        for org in names:
            lines += [f"    - name: {org}", f"      url: ${{SANDBOX_URL}}/{org}", "      pat: ${ADO_PAT}",
                      f"      webhook: {{username: ado-{org}, password: ${{ADO_HOOK_PASSWORD}}}}"]
            repos += [f"  - {{organization: {org}, project: P{p}, repository: repo-{p}-{r}, dbt_account: 1, "
                      f"ci_job: {CI_JOB}}}" for p in range(projects) for r in range(repositories)]
        dbt = ["dbt_cloud:", "  accounts:", "    - {id: 1, url: '${SANDBOX_URL}', api_token: '${DBT_CLOUD_TOKEN}',",
               "       webhook_secret: '${DBT_CLOUD_WEBHOOK_SECRET}'}"]
        config = stack.workdir / "sweep.yaml"
        config.write_text("\n".join(lines + dbt + repos) + "\n")
        applied = stack.run_cli(running.env, "config", "apply", str(config))
        if applied.returncode:
            raise RuntimeError(f"config apply failed: {applied.stderr[-2000:]}")
        started, mark = time.monotonic(), len(sb.exchanges())
        time.sleep(seconds)
        listings = [e for e in sb.exchanges(mark) if e["method"] == "GET" and e["path"].endswith("/pullrequests")]
        per_org = collections.Counter(e["path"].split("/")[1] for e in listings if e["path"].split("/")[1] in names)
        elapsed = time.monotonic() - started
        window = ApiCalls(redis_lib.Redis.from_url(running.env["BRIDGE_BROKER_URL"])).last_window(names)
        per_window = {org: n * 300 / elapsed for org, n in per_org.items()}
        share = Settings.from_env({k: v for k, v in running.env.items() if k.startswith("BRIDGE_")}).pr_sweep_share
        budget = int(RATE_LIMIT_TSTU * share)
        listed = {e["path"].split("/_apis")[0] for e in listings if e["path"].split("/")[1] in names}
        report.add("PR sweep: listings per organization per 5 minutes", f"max {max(per_window.values()):.0f}, "
                   f"median {statistics.median(per_window.values()):.0f} (sandbox's log, {len(listings)} listings "
                   f"in {elapsed:.0f} s at a {interval:.0f} s interval; bridge's counters: max "
                   f"{max(w['sweep'] for w in window.values())})", f"≤ {budget} ({share:g} of {RATE_LIMIT_TSTU})",
                   max(per_window.values()) <= budget and max(w["sweep"] for w in window.values()) <= budget)
        report.add("PR sweep: projects listed", f"{len(listed)} of {organizations * projects} in {elapsed:.0f} s "
                   f"({total:,} repositories; listing each repository would take {projects * repositories} calls "
                   "per organization per round)", f"all {organizations * projects}",
                   len(listed) == organizations * projects)
    finally:
        stack.stop()


# -- memory -------------------------------------------------------------------------------------------

def _hwm_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def memory(report: Report, stack: Stack) -> None:
    web_master = stack.procs["web"].pid
    web = max((_hwm_mb(p) for p in _children(web_master)), default=float("nan"))
    worker = max(_hwm_mb(p.pid) for name, p in stack.procs.items() if name.startswith("worker"))
    report.add("memory: gunicorn web worker peak RSS (after the burst)", f"{web:.0f} MB", "≤ 120 MB", web <= 120)
    report.add("memory: Celery worker process peak RSS (after the burst)", f"{worker:.0f} MB", "≤ 200 MB",
               worker <= 200)


NOTES = """\
### Reading the table

- **Ingest.** The receiver does what the trivial endpoint does not: it authenticates the delivery, parses it,
  and commits it to PostgreSQL before answering (durable acceptance: the *durable acceptance* row counts the
  rows against the 2xx answers). It does not talk to Redis: the outbox relay in each worker sends committed
  deliveries on (`workers/relay.py`, woken by the INSERT's `NOTIFY`), and the worker is stopped during this
  phase, as the trivial endpoint has nothing to hand on. PostgreSQL, the load generator and both web tiers
  share the same two cores, so the receiver's rate pays for PostgreSQL's CPU as well. Each round runs the two
  back to back (alternating which goes first) and the targets are judged on the median of the rounds' ratios;
  the ratio of the medians is shown beside it. *CPU per request* (from `/proc`, per process tree) is the
  steadier measure of what a delivery costs: the throughput ratio is close to the ratio of the CPU costs.
  How the receiver got to its cost, step by step, is in docs/performance-history.md.
- **Lopsided runs.** wrk opens its 16 keep-alive connections in the same instant, and the gunicorn process
  that wakes first often accepts all of them: the run then measures one process on one core, at half the
  rate, for either endpoint (found by the CPU of each gunicorn process; this, not the VM, was the 2x swing
  between rounds that earlier notes blamed on the machine). Such a run is measured again, up to three times,
  and counted in the table with its rate. Connections opened as load arrives spread over the processes; a
  client that opens all its connections at once may not (*Scale on paper* says what to do about it).
- **Worker.** The rate is judged from the moment the worker processes are started (their start-up counted)
  over 1,500 queued PR events; the steady-state rate (10th to 90th percentile of the events) and the CPU per
  event are shown beside it. A new PR event is one Celery task (and a 25th of a fan-out batch), four API
  calls (read the PR, its iterations, trigger the run, post *pending*) and about seven database transactions.
  24 threads per worker process is past the point where waiting is the limit (docs/performance-history.md
  has the sweep).
- Well over 1,000 acknowledged, durable deliveries per second on 2 shared cores is some 100x the rate of a
  busy Azure DevOps organization; the receiver is not the bottleneck of the product (see *Scale on paper*).
- API economy is measured: the bridge's calls per CI run do not grow with the run's length (webhooks, not
  polling); the polling client is measured against the sandbox time-scaled 1:100.
"""


# -- the report ---------------------------------------------------------------------------------------

def machine() -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024 // 1024
    pg = subprocess.run([ensure_binaries("postgres")["postgres"], "--version"], capture_output=True, text=True,
                        check=False).stdout.strip()
    redis = subprocess.run([ensure_binaries("redis-server")["redis-server"], "--version"], capture_output=True,
                           text=True, check=False).stdout.split()[2]
    return [
        f"- machine: {os.cpu_count()} cores ({cpu}), {mem} GiB, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; flask {version('flask')}, gunicorn {version('gunicorn')}, "
        f"celery {version('celery')}, kombu {version('kombu')}, SQLAlchemy {version('sqlalchemy')}, "
        f"psycopg {version('psycopg')}, marshmallow {version('marshmallow')}; {pg}; Redis {redis}",
        f"- gunicorn: {WEB_WORKERS} gthread workers x 16 threads (deploy/gunicorn.conf.py); Celery: "
        f"{WORKER_PROCESSES} worker processes, threads pool x {WORKER_CONCURRENCY}; load generator on the same "
        f"machine: wrk -t{WRK['threads']} "
        f"-c{WRK['connections']} -d{WRK['seconds']}s and Python threads",
    ]


def write(report: Report, command: str, started: datetime.datetime) -> Path:
    lines = ["# Benchmarks", "", f"Measured {started:%Y-%m-%d %H:%M} UTC with `{command}` "
             "(the real stack on private ports: PostgreSQL, Redis, the sandbox, gunicorn, Celery worker and beat).",
             "", *machine(), "", "| measure | result | target | |", "| --- | --- | --- | --- |"]
    for row in report.rows:
        mark = {True: "met", False: "**not met**", None: ""}[row.met]
        lines.append(f"| {row.measure} | {row.value} | {row.target} | {mark} |")
    lines += ["", NOTES, *report.notes]
    scale = ROOT / "docs" / "scaling.md"
    if scale.exists():
        lines += ["", scale.read_text().strip()]
    path = ROOT / "docs" / "benchmarks.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the harness)")
    parser.add_argument("--only", nargs="*", default=None,
                        choices=["ingest", "e2e", "concurrency", "burst", "prune", "sweep", "history"],
                        help="run only these phases")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    ensure_binaries("wrk", "redis-server", "postgres", "initdb")
    started = datetime.datetime.now(datetime.UTC)
    report = Report()
    only = set(args.only or ["ingest", "e2e", "concurrency", "burst", "prune", "sweep", "history"])
    if args.quick:
        WRK["seconds"] = 3
    if "ingest" in only:
        ingest(report, rounds=1 if args.quick else 7)
    if "e2e" in only:
        measured = end_to_end(report, seconds=3 if args.quick else 20)
        economy(report, measured)
    if "concurrency" in only:
        concurrency(report, events=100 if args.quick else 1500)
    if "burst" in only:
        burst(report, deliveries=1000 if args.quick else 10_000)
    if "prune" in only:
        prune(report, rows=20_000 if args.quick else 1_000_000)
    if "history" in only:
        history(report, deliveries=50_000 if args.quick else 1_000_000)
    if "sweep" in only:
        sweep_budget(report, organizations=4 if args.quick else 20, projects=10, repositories=5 if args.quick else 10,
                     seconds=100 if args.quick else 150)
    table = Table(title="ado-dbt bridge benchmark")
    for col in ("measure", "result", "target", ""):
        table.add_column(col)
    for row in report.rows:
        table.add_row(row.measure, row.value, row.target,
                      {True: "[green]met[/]", False: "[red]NOT met[/]", None: ""}[row.met])
    console.print(table)
    if not args.no_write:
        command = "make bench" if not argv and not args.quick else "python -m tests.load.bench " + " ".join(argv or [])
        console.print(f"written to {write(report, command, started)}")
    return 0 if all(r.met is not False for r in report.rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
