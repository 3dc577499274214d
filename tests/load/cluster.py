"""``make cluster``: the bridge as a distributed system on one machine, and the faults across hosts it survives.

Hosts (``tests/load/hosts.py``): PostgreSQL; three Redis hosts (primary, replica, spare) with a Sentinel on
each; HAProxy in front of two web hosts; two worker hosts; a beat host; the sandbox (Azure DevOps and dbt
Cloud). Each scenario runs under a steady stream of PR events and dbt completions and ends with a reckoning —
deliveries lost, duplicate dbt runs, PRs whose head lacks its right final status (each must be 0) — and the
time to recover: from the fault's end (its healing, or the moment of a kill the system must absorb) until no
accepted delivery has waited longer than ``SETTLED`` seconds. Needs root; not part of ``make test``.

    sudo make cluster                                  # every scenario; the table goes to docs/reliability.md
    python -m tests.load.cluster --only redis-failover,beat-killed --rate 3
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from rich.console import Console
from rich.table import Table
from sqlalchemy import bindparam, text

from bridge.contracts import CONSOLE_QUEUE, QUEUE
from bridge.db import Database
from bridge.deliveries.states import IN_FLIGHT
from bridge.dev.sandbox.control import SandboxControl
from bridge.dev.stack import (
    ROOT,
    DevstackError,
    RunningBridge,
    Stack,
    _service_user,
    bridge_env,
    configure_bridge,
    find_binary,
    http_ok,
    wait_for,
)
from tests.load.hosts import Host, Network, require_root, sh
from tests.load.soak import Soak

console = Console(width=160)

ADDRESSES = {"pg": 10, "redis-a": 21, "redis-b": 22, "redis-c": 23, "lb": 30, "web1": 31, "web2": 32,
             "sandbox": 40, "worker1": 51, "worker2": 52, "beat": 60}
MASTER = "bridge"
SETTLED = 5.0  # a delivery waiting longer than this means the system has not caught up yet
RESULTS = ROOT / "docs" / "reliability.md"
MARK = "<!-- make cluster -->"
# Short enough that a scenario sees a lost message come back; the settings an operator would shorten too.
TIMINGS = {"BRIDGE_VISIBILITY_TIMEOUT": "30", "BRIDGE_REDISPATCH_AFTER": "20", "BRIDGE_HTTP_TIMEOUT": "5",
           "BRIDGE_QUIET_AFTER": "5", "BRIDGE_POLL_INTERVAL": "2", "BRIDGE_TASK_MAX_RETRIES": "10"}
HAPROXY = """\
global
    maxconn 4000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 15s
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response 503
frontend bridge
    bind {lb}:8080
    default_backend web
backend web
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
    server web1 {web1}:8000 check
    server web2 {web2}:8000 check
"""


class Cluster:
    """The services on their hosts, started and restarted by name."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.stack = Stack.create(workdir)  # its CLI runner and work directory; no processes of its own
        self.net = Network(ADDRESSES, self.stack.logs)
        self.env: dict = {}
        self.pg_root: Path | None = None
        self.bin = Path(sys.executable).parent

    def __getitem__(self, name: str) -> Host:
        return self.net[name]

    # -- building ---------------------------------------------------------------------------------

    def up(self) -> RunningBridge:
        self.net.build()
        self.start_postgres()
        for name in ("redis-a", "redis-b", "redis-c"):
            self.start_redis(name, replica_of=None if name == "redis-a" else self["redis-a"])
        for name in ("redis-a", "redis-b", "redis-c"):
            self.start_sentinel(name)
        self.start_sandbox()
        lb = f"http://{self['lb'].ip}:8080"
        sentinels = ";".join(f"sentinel://{self[n].ip}:26379" for n in ("redis-a", "redis-b", "redis-c"))
        self.env = bridge_env(database_url=f"postgresql+psycopg://bridge@{self['pg'].ip}:5432/bridge",
                              broker_url=sentinels, sandbox_url=self.sandbox_url, public_url=lb,
                              extra={"BRIDGE_SENTINEL_MASTER": MASTER, **TIMINGS})
        configure_bridge(self.stack, self.env)
        sandbox = self.sandbox = SandboxControl(self.sandbox_url)
        running = RunningBridge(stack=self.stack, env=self.env, web=lb, sandbox=sandbox,
                                database_url=self.env["BRIDGE_DATABASE_URL"])
        running.hooks(lb)
        running.dbt_hooks()
        sandbox.setup(run_defaults={"seconds": 1.0, "queued": 0.2, "outcome": "success"})
        for name in ("web1", "web2"):
            self.start_web(name)
        self.start_haproxy()
        for name in ("worker1", "worker2"):
            self.start_worker(name)
        self.start_beat()
        return running

    def down(self) -> None:
        self.net.teardown()
        if self.pg_root is not None:
            shutil.rmtree(self.pg_root, ignore_errors=True)

    def start_postgres(self) -> None:
        host, user = self["pg"], _service_user()
        self.pg_root = Path(tempfile.mkdtemp(prefix="bridge-cluster-pg-"))
        data, sock = self.pg_root / "data", self.pg_root / "sock"
        sock.mkdir()
        if user:
            shutil.chown(self.pg_root, user)
            shutil.chown(sock, user)
        sh(*(["runuser", "-u", user, "--"] if user else []), find_binary("initdb"), "-D", str(data), "-U", "bridge",
           "--auth=trust", "-E", "UTF8", "--no-sync")
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {host.ip.rsplit('.', 1)[0]}.0/24 trust\n")
        proc = host.start("postgres", [find_binary("postgres"), "-D", str(data), "-p", "5432", "-k", str(sock),
                                       "-c", f"listen_addresses={host.ip}", "-c", "fsync=off",
                                       "-c", "synchronous_commit=off", "-c", "max_connections=300"], user=user)
        base = f"postgresql://bridge@{host.ip}:5432"
        wait_for(lambda: psycopg.connect(f"{base}/postgres", connect_timeout=1).close() or True, timeout=30,
                 what="postgres", process=proc)
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE bridge")

    def start_redis(self, name: str, *, replica_of: Host | None) -> None:
        host = self[name]
        replica = ["--replicaof", replica_of.ip, "6379"] if replica_of else []
        proc = host.start("redis", [find_binary("redis-server"), "--port", "6379", "--bind", host.ip,
                                    "--protected-mode", "no", "--save", "", "--appendonly", "no",
                                    "--dir", str(self.workdir), *replica])
        client = redis.Redis(host=host.ip, port=6379, socket_connect_timeout=0.5)
        wait_for(client.ping, timeout=15, what=f"redis on {name}", process=proc)

    def start_sentinel(self, name: str) -> None:
        host = self[name]
        config = self.workdir / f"sentinel-{name}.conf"  # a sentinel rewrites its file: one of its own
        config.write_text(f"port 26379\nbind {host.ip}\nprotected-mode no\ndir {self.workdir}\n"
                          f"sentinel monitor {MASTER} {self['redis-a'].ip} 6379 2\n"
                          f"sentinel down-after-milliseconds {MASTER} 2000\n"
                          f"sentinel failover-timeout {MASTER} 10000\n")
        proc = host.start("sentinel", [find_binary("redis-server"), str(config), "--sentinel"])
        client = redis.Redis(host=host.ip, port=26379, socket_connect_timeout=0.5)
        wait_for(lambda: client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER), timeout=15,
                 what=f"sentinel on {name}", process=proc)

    def master(self) -> str:
        """The address the sentinels now give for the master."""
        client = redis.Redis(host=self["redis-c"].ip, port=26379, socket_connect_timeout=1)
        return client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)[0].decode()

    def start_sandbox(self) -> None:
        host = self["sandbox"]
        proc = host.start("sandbox", [sys.executable, "-m", "bridge.cli", "sandbox", "--host", host.ip,
                                      "--port", "8000"], env=self.stack.env())
        self.sandbox_url = f"http://{host.ip}:8000"
        wait_for(lambda: http_ok(f"{self.sandbox_url}/_sandbox/health"), timeout=20, what="sandbox", process=proc)

    def start_web(self, name: str) -> None:
        host = self[name]
        proc = host.start("web", [str(self.bin / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
                                  "--bind", f"{host.ip}:8000", "--workers", "2", "bridge.web:create_app()"],
                          env=self.stack.env(self.env))
        wait_for(lambda: http_ok(f"http://{host.ip}:8000/healthz"), timeout=30, what=f"gunicorn on {name}",
                 process=proc)

    def start_haproxy(self) -> None:
        host = self["lb"]
        config = self.workdir / "haproxy.cfg"
        config.write_text(HAPROXY.format(lb=host.ip, web1=self["web1"].ip, web2=self["web2"].ip))
        proc = host.start("haproxy", [find_binary("haproxy"), "-W", "-db", "-f", str(config)])
        wait_for(lambda: http_ok(f"http://{host.ip}:8080/healthz"), timeout=15, what="haproxy", process=proc)

    def start_worker(self, name: str) -> None:
        self._start_logged(name, "worker", [str(self.bin / "celery"), "-A", "workers.entry", "worker",
                                            "--pool", "threads", "--concurrency", "8", "-Q", f"{QUEUE},{CONSOLE_QUEUE}",
                                            "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                                            "--hostname", f"worker@{name}"], ready="ready.")

    def start_beat(self) -> None:
        self._start_logged("beat", "beat", [str(self.bin / "celery"), "-A", "workers.entry", "beat", "--loglevel",
                                            "INFO", "--schedule", str(self.workdir / "beat-schedule")],
                           ready="beat: Starting")

    def _start_logged(self, host_name: str, name: str, argv: list[str], *, ready: str) -> None:
        """Start and wait for ``ready`` in what this start adds to the log (a restart appends to it)."""
        host = self[host_name]
        log = host.logs / f"{host.name}-{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        proc = host.start(name, argv, env=self.stack.env(self.env))

        def started() -> bool:
            with log.open("rb") as f:
                f.seek(offset)
                return ready in f.read().decode(errors="replace")

        wait_for(started, timeout=45, what=f"{name} on {host_name}", process=proc)

    def restart(self, name: str) -> None:
        """Bring a host's bridge process back after a kill or a stop."""
        if name.startswith("web"):
            self.start_web(name)
        elif name.startswith("worker"):
            self.start_worker(name)
        elif name == "beat":
            self.start_beat()


# -- the load and the reckoning ------------------------------------------------------------------------

class Loop:
    """A thread that runs ``_run`` until stopped."""

    def __init__(self, name: str):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        raise NotImplementedError


class Traffic(Loop):
    """PR events at a steady rate (opened, pushed, completed, abandoned) through the sandbox, which delivers
    each to HAProxy with Azure DevOps' retries; dbt Cloud's completions follow from the runs they start."""

    def __init__(self, soak: Soak, rate: float):
        super().__init__("traffic")
        self.soak, self.rate = soak, rate
        self.errors: collections.Counter = collections.Counter()

    def _act(self) -> None:
        try:
            self.soak.act()
        except Exception as exc:  # the sandbox itself unreachable: counted, the stream goes on
            self.errors[type(exc).__name__] += 1

    def _run(self) -> None:
        with ThreadPoolExecutor(max_workers=48) as pool:
            while not self._stop.wait(1 / self.rate):
                pool.submit(self._act)


class Backlog(Loop):
    """Samples the age of the oldest unfinished delivery, to tell when the system has caught up."""

    def __init__(self, db: Database):
        super().__init__("backlog")
        self.db = db
        self.samples: list[tuple[float, float]] = []  # (wall time, oldest age in seconds)

    def _run(self) -> None:
        oldest = text("SELECT EXTRACT(EPOCH FROM now() - min(received_at)) FROM deliveries WHERE state IN :states"
                      ).bindparams(bindparam("states", expanding=True))
        states = [str(s) for s in IN_FLIGHT]
        while not self._stop.wait(0.5):
            try:
                with self.db.session() as s:
                    age = s.execute(oldest, {"states": states}).scalar()
            except Exception:  # the database cut off from the runner: no sample this time
                continue
            self.samples.append((time.time(), float(age or 0.0)))

    def recovered_after(self, since: float) -> float | None:
        """Seconds from ``since`` to the first sample from which on every delivery waits under SETTLED."""
        later = [(t, age) for t, age in self.samples if t >= since]
        for i, (t, _) in enumerate(later):
            if all(age < SETTLED for _, age in later[i:]):
                return t - since
        return None

    def worst(self, since: float) -> float:
        return max((age for t, age in self.samples if t >= since), default=0.0)


# -- the scenarios -------------------------------------------------------------------------------------

@dataclass
class Scenario:
    name: str
    fault: str                          # what is done, for the table
    inject: Callable[[Cluster], dict]   # returns facts worth reporting about the moment of the fault
    heal: Callable[[Cluster, float], dict] | None  # given when the fault began; returns facts too
    hold: float                         # seconds between the fault and its healing
    after: Callable[[Cluster], None] | None = None  # put the cluster back for the next scenario (not timed)


def _in_flight_on(c: Cluster, host: Host, at: float) -> int:
    """Triggers ``host`` had sent to dbt Cloud and was still waiting on at ``at``."""
    return sum(1 for e in c.sandbox.exchanges() if e.get("client") == host.ip and e["method"] == "POST"
               and e["path"].endswith("/run/") and e["at"] < at < e["at"] + e["elapsed"])


def _slow_trigger_answers(c: Cluster) -> None:
    """dbt Cloud starts each run at once but answers the trigger 6 s late: reconciles are mid-call when the
    fault comes (the reconciler recorded the trigger before sending it, and holds the PR's lock)."""
    c.sandbox.fault(service="dbt", method="POST", path=r"/run/$", status=0, delay=6, after=True, times=20)
    time.sleep(3)


def _partition_worker(c: Cluster) -> dict:
    _slow_trigger_answers(c)
    cut = time.time()
    c["worker1"].cut_off(c["pg"], c["redis-a"], c["redis-b"], c["redis-c"])
    time.sleep(6.5)  # the answers in flight at the cut reach the cut-off host meanwhile
    return {"triggers in flight on the cut-off host": _in_flight_on(c, c["worker1"], cut)}


def _heal_worker(c: Cluster, _began: float) -> dict:
    c["worker1"].heal()
    return {}


def _kill_worker_host(c: Cluster) -> dict:
    _slow_trigger_answers(c)
    killed = time.time()
    c["worker1"].kill()
    time.sleep(6.5)
    return {"triggers in flight on the killed host": _in_flight_on(c, c["worker1"], killed)}


def _cut_web_from_db(c: Cluster) -> dict:
    c["web1"].cut_off(c["pg"])
    return {}


def _heal_web(c: Cluster, began: float) -> dict:
    c["web1"].heal()
    resent = [d for d in c.sandbox.deliveries() if d["sent_at"] >= began and d["attempts"] > 1]
    return {"deliveries Azure DevOps had to resend": len(resent),
            "answered 2xx in the end": sum(1 for d in resent if d["status"] in (200, 202))}


def _kill_redis_primary(c: Cluster) -> dict:
    before = c.master()
    primary = next(h for h in (c["redis-a"], c["redis-b"], c["redis-c"]) if h.ip == before)
    primary.procs.pop("redis").kill()
    started = time.time()
    wait_for(lambda: c.master() != before, timeout=60, what="sentinel to promote a replica", interval=0.2)
    return {"promoted": f"{c.master()} in {time.time() - started:.1f}s"}


def _bring_back_old_primary(c: Cluster) -> None:
    killed = next(h for h in (c["redis-a"], c["redis-b"], c["redis-c"]) if "redis" not in h.procs)
    c.start_redis(killed.name, replica_of=next(h for h in c.net.hosts.values() if h.ip == c.master()))


def _degrade_apis(c: Cluster) -> dict:
    # The sandbox holds each API answer 400 ms (200 ms each way; no netem in this kernel), and 2 % of the
    # packets between the workers and it are dropped each way (real loss: TCP retransmits, SYNs time out).
    c.sandbox.setup(latency_ms=400)
    for name in ("worker1", "worker2"):
        c[name].lose(c["sandbox"], percent=2)
    return {}


def _restore_apis(c: Cluster, _began: float) -> dict:
    c.sandbox.setup(latency_ms=0)
    for name in ("worker1", "worker2"):
        c[name].heal()
    return {}


def _kill_beat(c: Cluster) -> dict:
    c["beat"].kill()
    return {}


def _rolling_restart(c: Cluster) -> dict:
    """Every bridge host in turn: SIGTERM (it drains), wait for it to exit, start it, wait until ready."""
    took = {}
    for name, service in (("web1", "web"), ("web2", "web"), ("worker1", "worker"), ("worker2", "worker"),
                          ("beat", "beat")):
        started = time.time()
        c[name].stop(service)
        c.restart(name)
        took[name] = round(time.time() - started, 1)
        time.sleep(2)
    return {"restart seconds": took}


SCENARIOS = [
    Scenario("worker-partition", "worker1 cut off from Redis and PostgreSQL mid-reconcile for 25 s (its locks' "
             "15 s leases lapse), then healed", _partition_worker, _heal_worker, hold=25 - 9.5),
    Scenario("worker-host-killed", "worker1's host killed (every process SIGKILL); worker2 carries on",
             _kill_worker_host, None, hold=0, after=lambda c: c.restart("worker1")),
    Scenario("web-cut-from-db", "web1 cut off from PostgreSQL for 20 s (503; HAProxy's check and Azure "
             "DevOps' retries carry the traffic), then healed", _cut_web_from_db, _heal_web, hold=20),
    Scenario("redis-failover", "the Redis primary killed; Sentinel promotes the replica", _kill_redis_primary,
             None, hold=0, after=_bring_back_old_primary),
    Scenario("api-latency-loss", "200 ms each way added to every API call and 2 % of the packets between the "
             "workers and the APIs lost each way, for 30 s",
             _degrade_apis, _restore_apis, hold=30),
    Scenario("beat-killed", "the beat host killed, restarted 20 s later", _kill_beat,
             lambda c, _began: c.restart("beat") or {}, hold=20),
    Scenario("rolling-restart", "every web, worker and beat host restarted in turn (SIGTERM, drain, start)",
             _rolling_restart, None, hold=0),
]


def run_scenario(c: Cluster, running: RunningBridge, db: Database, scenario: Scenario, *, rate: float,
                 warm: float, tail: float, drain: float, seed: int) -> dict:
    sandbox = running.sandbox
    soak = Soak(c.stack, running.env, running.web, sandbox, db, random.Random(seed))
    traffic, backlog = Traffic(soak, rate), Backlog(db)
    backlog.start()
    traffic.start()
    time.sleep(warm)
    began = time.time()
    console.print(f"[yellow]{scenario.name}[/]: {scenario.fault}")
    facts = scenario.inject(c)
    time.sleep(scenario.hold)
    if scenario.heal is not None:
        facts.update(scenario.heal(c, began))
    ended = time.time()
    time.sleep(tail)
    traffic.stop()
    sandbox.fault(clear=True)
    report = soak.reckon(drain)
    backlog.stop()
    if scenario.after is not None:
        scenario.after(c)
    recovered = backlog.recovered_after(ended)
    return {
        "scenario": scenario.name, "fault": scenario.fault, "facts": facts,
        "events": report["events sent"], "accepted": report["accepted (2xx)"],
        "refused": report["refused by the bridge (non-2xx after Azure DevOps-style retries)"],
        "lost": report["lost"], "duplicate runs": report["duplicate dbt runs"],
        "wrong status": report["open PRs whose head is not green"] + report["PRs with more than one live run"],
        "failed visibly": report["failed visibly"],
        "fault seconds": round(ended - began, 1),
        "recovered": None if recovered is None else round(recovered, 1),
        "oldest wait": round(backlog.worst(began), 1),
        "traffic errors": dict(traffic.errors),
    }


def table(results: list[dict]) -> Table:
    t = Table(title="make cluster")
    for column in ("scenario", "events", "lost", "duplicate runs", "wrong status", "fault s", "recovered s",
                   "oldest wait s"):
        t.add_column(column, justify="left" if column == "scenario" else "right")
    for r in results:
        t.add_row(r["scenario"], str(r["accepted"]), str(r["lost"]), str(r["duplicate runs"]), str(r["wrong status"]),
                  str(r["fault seconds"]), "—" if r["recovered"] is None else str(r["recovered"]),
                  str(r["oldest wait"]))
    return t


def markdown(results: list[dict], command: str) -> str:
    lines = [MARK, "", f"Reproduce: `{command}` (as root). Each row: the fault under a steady stream of PR events "
             "and dbt completions; *recovered* is the time from the fault's end (its healing, or the kill) until no "
             f"accepted delivery had waited over {SETTLED:.0f} s; *oldest wait* the longest any waited meanwhile.",
             "", "| scenario | fault | deliveries accepted | lost | duplicate runs | wrong or missing final status "
             "| recovered (s) | oldest wait (s) | notes |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        notes = "; ".join(f"{k}: {v}" for k, v in r["facts"].items())
        if r["refused"]:
            notes += ("; " if notes else "") + f"{r['refused']} events refused after every retry"
        lines.append(f"| {r['scenario']} | {r['fault']} | {r['accepted']} | {r['lost']} | {r['duplicate runs']} | "
                     f"{r['wrong status']} | {'—' if r['recovered'] is None else r['recovered']} | "
                     f"{r['oldest wait']} | {notes} |")
    return "\n".join(lines) + "\n"


def write_results(results: list[dict], command: str) -> None:
    """Replace the section after MARK in docs/reliability.md (the heading above it stays)."""
    doc = RESULTS.read_text()
    head = doc.split(MARK)[0] if MARK in doc else doc.rstrip() + "\n\n## Faults across hosts (`make cluster`)\n\n"
    RESULTS.write_text(head + markdown(results, command))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated scenario names: " +
                        ", ".join(s.name for s in SCENARIOS))
    parser.add_argument("--rate", type=float, default=3.0, help="PR events per second")
    parser.add_argument("--warm", type=float, default=8.0, help="seconds of traffic before each fault")
    parser.add_argument("--tail", type=float, default=20.0, help="seconds of traffic after each fault ends")
    parser.add_argument("--drain", type=float, default=150.0, help="seconds allowed to settle at the end")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="leave docs/reliability.md alone")
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only.split(",")]
    try:
        require_root()
    except DevstackError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="bridge-cluster-")))
    results = []
    try:
        console.print(f"building the cluster in {cluster.workdir} …")
        running = cluster.up()
        db = Database(running.database_url)
        for n, scenario in enumerate(chosen):
            results.append(run_scenario(cluster, running, db, scenario, rate=args.rate, warm=args.warm,
                                        tail=args.tail, drain=args.drain, seed=args.seed + n))
            console.print(table(results[-1:]))
    except DevstackError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    finally:
        cluster.down()
    console.print(table(results))
    for r in results:
        console.print(f"{r['scenario']}: {r['facts']}; failed visibly {r['failed visibly']}; refused after every "
                      f"retry {r['refused']}; sandbox unreachable {r['traffic errors'] or 0}")
    ok = all(r["lost"] == 0 and r["duplicate runs"] == 0 and r["wrong status"] == 0 and r["recovered"] is not None
             for r in results)
    if not args.keep and not args.only:
        write_results(results, "make cluster")
    console.print("[green]PASS[/]" if ok else "[red]FAIL[/]: something was lost, duplicated or left wrong")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
