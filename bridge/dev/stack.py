"""Private Redis, PostgreSQL and bridge processes on free ports, for the demo, the tests and the benchmark.

Everything starts from the system's binaries into a throw-away directory and is torn down afterwards;
nothing depends on services that happen to run on the machine. Missing binaries are installed with
apt-get when running as root, otherwise the error says exactly what to install.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from ..contracts import CONSOLE_QUEUE, QUEUE

ROOT = Path(__file__).resolve().parents[2]  # the checkout: the dev tooling runs from one
PACKAGES = {"redis-server": "redis-server", "postgres": "postgresql", "initdb": "postgresql", "wrk": "wrk",
            "chromium": "chromium", "chromedriver": "chromium-driver", "nginx": "nginx", "haproxy": "haproxy",
            "iptables": "iptables", "ip": "iproute2", "tc": "iproute2"}


# With it in the environment, the product runs from bridge/dev/entry.py: Entra ID served by the sandbox.
ENTRA_TEST_BASE = "BRIDGE_ENTRA_TEST_BASE"


class DevstackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True) + glob.glob(f"/usr/sbin/{name}")
    return candidates[0] if candidates else None


def ensure_binaries(*names: str) -> dict[str, str]:
    missing = [n for n in names if find_binary(n) is None]
    if missing:
        packages = sorted({PACKAGES.get(n, n) for n in missing})
        if os.geteuid() != 0:
            raise DevstackError(f"missing {', '.join(missing)}; install them with: "
                                f"sudo apt-get install -y {' '.join(packages)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True,
                       env=env)
    found = {n: find_binary(n) for n in names}
    still = [n for n, path in found.items() if path is None]
    if still:
        raise DevstackError(f"{', '.join(still)} not found even after installing; check the packages")
    return found  # type: ignore[return-value]


def wait_for(check, *, timeout: float, what: str, interval: float = 0.1, process=None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise DevstackError(f"{what} exited with code {process.returncode}; see {process.log_path}")
        try:
            if check():
                return
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise DevstackError(f"{what} did not come up within {timeout:.0f}s ({last})")


def http_ok(url: str) -> bool:
    return requests.get(url, timeout=1).status_code < 500


class Proc:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], *, log_dir: Path, env: dict | None = None,
                 cwd: Path | None = None, user: str | None = None):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                      cwd=str(cwd or ROOT), start_new_session=True)

    def poll(self):
        return self.popen.poll()

    @property
    def returncode(self):
        return self.popen.returncode

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def _service_user() -> str | None:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return "postgres"


@dataclass
class Stack:
    """A set of private processes sharing one temporary directory."""

    workdir: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    redis_url: str | None = None
    database_url: str | None = None
    cleanup: list[Path] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    _supervised: dict[str, object] = field(default_factory=dict)
    _supervisor: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def create(cls, workdir: Path | None = None) -> Stack:
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="bridge-stack-"))
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "logs").mkdir(exist_ok=True)
        return cls(workdir=workdir)

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def _start(self, name: str, argv: list[str], **kw) -> Proc:
        proc = Proc(name, argv, log_dir=self.logs, **kw)
        self.procs[name] = proc
        return proc

    # -- infrastructure ---------------------------------------------------------------------------

    def start_redis(self, port: int | None = None, *, name: str = "redis", replica_of: int | None = None) -> str:
        """A private Redis; ``replica_of``: a replica of the Redis on that port (for Sentinel to promote)."""
        binary = ensure_binaries("redis-server")["redis-server"]
        port = port or free_port()
        replica = ["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []
        proc = self._start(name, [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", str(self.workdir), *replica])
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        wait_for(client.ping, timeout=15, what=name, process=proc)
        url = f"redis://127.0.0.1:{port}/0"
        if name == "redis":
            self.redis_url, self.redis_port = url, port
        return url

    def start_sentinel(self, master_port: int, *, master: str = "bridge", name: str = "sentinel") -> int:
        """A Redis Sentinel (the same redis-server binary, in sentinel mode) monitoring the Redis on
        ``master_port`` as ``master``, alone in its quorum and quick to fail over; its port."""
        binary = ensure_binaries("redis-server")["redis-server"]
        port = free_port()
        config = self.workdir / f"{name}.conf"  # a sentinel rewrites its file: one of its own
        config.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                          f"sentinel monitor {master} 127.0.0.1 {master_port} 1\n"
                          f"sentinel down-after-milliseconds {master} 1000\n"
                          f"sentinel failover-timeout {master} 4000\n")
        proc = self._start(name, [binary, str(config), "--sentinel"])
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        wait_for(lambda: client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", master), timeout=15,
                 what=name, process=proc)
        return port

    def restart_redis(self) -> None:
        self.procs["redis"].stop()
        self.start_redis(self.redis_port)

    def start_postgres(self) -> str:
        bins = ensure_binaries("postgres", "initdb")
        user = _service_user()
        # Its own directory under the system temp dir: the service user must be able to reach it even
        # when our work directory sits in a private (0700) tree.
        root = Path(tempfile.mkdtemp(prefix="bridge-pg-"))
        self.cleanup.append(root)
        data, sock = root / "data", root / "sock"
        sock.mkdir()
        if user:
            shutil.chown(root, user)
            shutil.chown(sock, user)
        if not data.exists():
            out = subprocess.run((["runuser", "-u", user, "--"] if user else []) +
                                 [bins["initdb"], "-D", str(data), "-U", "bridge", "--auth=trust", "-E", "UTF8",
                                  "--no-sync"], capture_output=True, text=True, check=False)
            if out.returncode:
                raise DevstackError(f"initdb failed: {out.stderr.strip()}")
        port = free_port()
        proc = self._start("postgres", [bins["postgres"], "-D", str(data), "-p", str(port), "-k", str(sock),
                                        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                                        "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                                        "-c", "max_connections=200"], user=user)
        import psycopg

        base = f"postgresql://bridge@127.0.0.1:{port}"
        wait_for(lambda: psycopg.connect(f"{base}/postgres", connect_timeout=1).close() or True, timeout=30,
                 what="postgres", process=proc)
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE bridge")
        self.pg_port, self.pg_argv, self.pg_user = port, self.procs["postgres"].argv, user
        self.database_url = f"postgresql+psycopg://bridge@127.0.0.1:{port}/bridge"
        return self.database_url

    def stop_postgres(self) -> None:
        """Fast shutdown (SIGTERM would wait for every client to disconnect), and wait for the postmaster
        itself: run through runuser (as root), the wrapper can exit first, and a restart would then find
        the cluster still locked."""
        pid_file = Path(self.pg_argv[self.pg_argv.index("-D") + 1]) / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        if postmaster:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGINT)
        self.procs.pop("postgres").stop()
        if postmaster:
            wait_for(lambda: not Path(f"/proc/{postmaster}").exists(), timeout=30, what="postgres to stop")

    def start_postgres_again(self) -> None:
        """Restart the same cluster on the same port (after ``stop_postgres``)."""
        import psycopg

        proc = self._start("postgres", self.pg_argv, user=self.pg_user)
        base = f"postgresql://bridge@127.0.0.1:{self.pg_port}"
        wait_for(lambda: psycopg.connect(f"{base}/postgres", connect_timeout=1).close() or True, timeout=30,
                 what="postgres", process=proc)

    def stop_process(self, name: str, *, for_good: bool = False) -> None:
        """Stop ``name``; ``for_good`` also ends its supervision (else the supervisor would restart it)."""
        if for_good:
            self._supervised.pop(name, None)
        proc = self.procs.pop(name, None)
        if proc:
            proc.stop()

    # -- the bridge's own processes ---------------------------------------------------------------

    def env(self, extra: dict | None = None) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env

    def start_sandbox(self, port: int | None = None) -> str:
        port = port or free_port()
        proc = self._start("sandbox", [sys.executable, "-m", "bridge.cli", "sandbox", "--port", str(port)],
                           env=self.env())
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ok(f"{url}/_sandbox/health"), timeout=20, what="sandbox", process=proc)
        return url

    def start_web(self, env: dict, *, port: int | None = None, workers: int = 2, name: str = "web",
                  app: str | None = None, health: str = "/healthz") -> str:
        port = port or free_port()
        app = app or ("bridge.dev.entry:create_web_app()" if ENTRA_TEST_BASE in env else "bridge.web:create_app()")
        bindir = Path(sys.executable).parent
        proc = self._start(name, [str(bindir / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
                                  "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                                  app], env=self.env(env))
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ok(f"{url}{health}"), timeout=30, what="gunicorn", process=proc)
        return url

    def start_proxy(self, upstream: str, *, name: str = "proxy") -> str:
        """nginx with the shipped site (deploy/nginx/bridge.conf) in front of the gunicorn at ``upstream``: the
        web tier as it is deployed. Returns nginx's URL."""
        binary = ensure_binaries("nginx")["nginx"]
        port, home = free_port(), self.workdir / name
        home.mkdir(exist_ok=True)
        site = (ROOT / "deploy" / "nginx" / "bridge.conf").read_text()
        site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};").replace(
            "server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream.rsplit(':', 1)[1]};")
        (home / "bridge.conf").write_text(site)
        temp = " ".join(f"{kind}_temp_path {home / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                          "scgi"))
        (home / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "") +  # workers must write the temp paths here
            f"daemon off;\nworker_processes 1;\npid {home / 'nginx.pid'};\nerror_log {home / 'error.log'} warn;\n"
            f"events {{ worker_connections 2048; }}\n"
            f"http {{ access_log off; {temp} include {home / 'bridge.conf'}; }}\n")
        proc = self._start(name, [binary, "-c", str(home / "nginx.conf"), "-p", str(home)])
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ok(f"{url}/healthz"), timeout=15, what="nginx", process=proc)
        return url

    def start_worker(self, env: dict, *, name: str = "worker", concurrency: int = 8) -> Proc:
        bindir = Path(sys.executable).parent
        entry = "bridge.dev.worker_entry" if ENTRA_TEST_BASE in env else "workers.entry"
        proc = self._start(name, [str(bindir / "celery"), "-A", entry, "worker", "--pool", "threads",
                                  "--concurrency", str(concurrency), "-Q", f"{QUEUE},{CONSOLE_QUEUE}",
                                  "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                                  "--hostname", f"{name}@%h"],
                           env=self.env(env))
        wait_for(lambda: "ready." in proc.log_path.read_text(errors="replace"), timeout=30,
                 what=f"celery {name}", process=proc)
        return proc

    def start_beat(self, env: dict) -> Proc:
        bindir = Path(sys.executable).parent
        proc = self._start("beat", [str(bindir / "celery"), "-A", "workers.entry", "beat", "--loglevel", "INFO",
                                    "--schedule", str(self.workdir / "beat-schedule")], env=self.env(env))
        wait_for(lambda: "beat: Starting" in proc.log_path.read_text(errors="replace"), timeout=30,
                 what="celery beat", process=proc)
        return proc

    def run_cli(self, env: dict, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bridge.cli", *args], env=self.env(env), cwd=str(ROOT),
                              capture_output=True, text=True, timeout=120, check=False)

    def supervise(self, name: str, start) -> None:
        """Restart ``name`` with ``start()`` whenever it exits on its own, as systemd's Restart=always,
        Kubernetes or a Procfile platform would (Celery's worker can die on a broker connection race)."""
        self._supervised[name] = start
        if self._supervisor is None:
            self._supervisor = threading.Thread(target=self._watch, name="devstack-supervisor", daemon=True)
            self._supervisor.start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for name, start in list(self._supervised.items()):
                proc = self.procs.get(name)
                if proc is not None and proc.poll() is not None and not self._stopping.is_set():
                    self.procs.pop(name, None)
                    proc.stop()
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    with contextlib.suppress(DevstackError):
                        start()

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(5)
        for name in reversed(list(self.procs)):
            self.procs[name].stop()
        self.procs.clear()
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)
        self.cleanup.clear()

    def read_logs(self) -> dict[str, str]:
        return {p.stem: p.read_text(errors="replace") for p in self.logs.glob("*.log")}


@contextlib.contextmanager
def stack(workdir: Path | None = None) -> Iterator[Stack]:
    s = Stack.create(workdir)
    try:
        yield s
    finally:
        s.stop()


# -- the whole bridge on a stack: shared by the demo, the integration tests, the soak and the benchmark ----

HOOK_USER = "ado-fabrikam"
HOOK_PASSWORD = "local-hook-password-0123456789"  # noqa: S105 - the sandbox's fake credentials
DBT_WEBHOOK_SECRET = "local-dbt-webhook-secret"  # noqa: S105
CI_JOB, TEARDOWN_JOB = 42, 43
ENTRA_CLIENT_ID = "11111111-aaaa-4bbb-8ccc-000000000001"
ENTRA_CLIENT_SECRET = "local-entra-client-secret"  # noqa: S105 - the fake identity platform's
ADMIN_TOKEN = "local-admin-token-for-the-sandbox-only"  # noqa: S105
METRICS_TOKEN = "local-metrics-token-for-the-sandbox-only"  # noqa: S105
ENTRA_USER = {"oid": "0a0a0a0a-0000-4000-8000-00000000ada1", "tid": "7e7e7e7e-0000-4000-8000-000000000001",
              "upn": "ada@fabrikam.example", "name": "Ada"}
ADMIN_GROUP = "a0a0a0a0-0000-4000-8000-0000000000ad"  # an Entra group whose members are console admins

SANDBOX_CONFIG = """\
azure_devops:
  organizations:
    - name: fabrikam
      url: ${SANDBOX_URL}/fabrikam
      pat: ${ADO_PAT}
      webhook: {username: ado-fabrikam, password: ${ADO_HOOK_PASSWORD}}
dbt_cloud:
  accounts:
    - id: 1
      url: ${SANDBOX_URL}
      api_token: ${DBT_CLOUD_TOKEN}
      webhook_secret: ${DBT_CLOUD_WEBHOOK_SECRET}
repositories:
  - organization: fabrikam
    project: Fabrikam-Fiber-Git
    repository: dbt-analytics
    dbt_account: 1
    ci_job: 42
    target_branches: [refs/heads/main]
    drafts: skip
    status: {genre: dbt-cloud, name: ci}
    teardown_job: 43
"""


@dataclass
class RunningBridge:
    stack: Stack
    env: dict
    web: str
    sandbox: object  # SandboxControl
    database_url: str

    def hooks(self, *targets: str, subscriptions: int = 1) -> None:
        """Point the sandbox's service hooks (and as many subscriptions per target) at these web URLs."""
        self.sandbox.setup(hooks=[{"org": "fabrikam", "url": f"{t}/webhooks/azure-devops", "username": HOOK_USER,
                                   "password": HOOK_PASSWORD} for t in targets for _ in range(subscriptions)])

    def dbt_hooks(self, enabled: bool = True) -> None:
        self.sandbox.setup(dbt_webhooks=[{"account_id": 1, "url": f"{self.web}/webhooks/dbt-cloud",
                                          "secret": DBT_WEBHOOK_SECRET, "job_ids": [CI_JOB, TEARDOWN_JOB]}]
                           if enabled else [])


def bridge_env(*, database_url: str, broker_url: str, sandbox_url: str, public_url: str,
               extra: dict | None = None) -> dict:
    """The bridge's settings against the sandbox, quick to poll and sweep (shared by the stack and the cluster)."""
    from ..crypto import generate_key

    return {
        "BRIDGE_DATABASE_URL": database_url,
        "BRIDGE_BROKER_URL": broker_url,
        "BRIDGE_SECRET_KEY": generate_key(),
        "BRIDGE_PUBLIC_URL": public_url,
        "BRIDGE_ALLOW_INSECURE_HTTP": "1",
        "BRIDGE_POLL_INTERVAL": "2",
        "BRIDGE_QUIET_AFTER": "4",
        "BRIDGE_SWEEP_INTERVAL": "2",
        "BRIDGE_SWEEP_AFTER": "4",
        "BRIDGE_AZURE_DEVOPS_URL": sandbox_url,  # organizations found through a connection live in the sandbox
        "SANDBOX_URL": sandbox_url,
        "ADO_PAT": "sandbox-pat",
        "ADO_HOOK_PASSWORD": HOOK_PASSWORD,
        "DBT_CLOUD_TOKEN": "sandbox-dbt-token",
        "DBT_CLOUD_WEBHOOK_SECRET": DBT_WEBHOOK_SECRET,
        "BRIDGE_METRICS_TOKEN": METRICS_TOKEN,
        **(extra or {}),
    }


def configure_bridge(stack: Stack, env: dict, *, config: str = SANDBOX_CONFIG, before_config=None) -> None:
    """The schema and the configuration file applied, through the CLI as an operator would."""
    out = stack.run_cli(env, "db", "upgrade")
    if out.returncode:
        raise DevstackError(f"bridge db upgrade failed:\n{out.stdout}{out.stderr}")
    if before_config is not None:
        before_config()
    path = stack.workdir / "bridge.yaml"
    path.write_text(config)
    out = stack.run_cli(env, "config", "apply", str(path))
    if out.returncode:
        raise DevstackError(f"bridge config apply failed:\n{out.stdout}{out.stderr}")


def start_bridge(stack: Stack, *, database_url: str | None = None, config: str = SANDBOX_CONFIG,
                 web_workers: int = 2, worker_concurrency: int = 8, worker_processes: int = 1,
                 extra_env: dict | None = None,
                 before_config=None, run_seconds: float = 1.0, entra: bool = False) -> RunningBridge:
    """Redis (if not yet), the sandbox, the schema, the configuration, web, worker and beat."""
    from .sandbox.control import SandboxControl

    redis_url = stack.redis_url or stack.start_redis()
    sandbox_url = stack.start_sandbox()
    sandbox = SandboxControl(sandbox_url)
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    env = bridge_env(database_url=database_url or f"sqlite:///{stack.workdir / 'bridge.db'}", broker_url=redis_url,
                     sandbox_url=sandbox_url, public_url=web, extra=extra_env)
    if entra:  # Entra ID against the sandbox's fake identity platform, and the local admin sign-in
        env.update({"BRIDGE_ENTRA_CLIENT_ID": ENTRA_CLIENT_ID, "BRIDGE_ENTRA_CLIENT_SECRET": ENTRA_CLIENT_SECRET,
                    "BRIDGE_ENTRA_TEST_BASE": sandbox_url, "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
                    "BRIDGE_ADMINS": f"{ENTRA_USER['oid']}@{ENTRA_USER['tid']}", "BRIDGE_ADMIN_GROUPS": ADMIN_GROUP,
                    "BRIDGE_CONSOLE_TENANTS": ENTRA_USER["tid"]})
        sandbox._post("/idp/setup", {"clients": {ENTRA_CLIENT_ID: ENTRA_CLIENT_SECRET}, "users": [ENTRA_USER],
                                     "sign_in": ENTRA_USER["oid"]})
    configure_bridge(stack, env, config=config,
                     before_config=None if before_config is None else lambda: before_config(sandbox))
    running = RunningBridge(stack=stack, env=env, web=web, sandbox=sandbox, database_url=env["BRIDGE_DATABASE_URL"])
    running.hooks(web)
    running.dbt_hooks()
    sandbox.setup(run_defaults={"seconds": run_seconds, "queued": 0.2, "outcome": "success"})
    stack.start_web(env, port=port, workers=web_workers)
    for n in range(worker_processes):
        name = "worker" if n == 0 else f"worker{n + 1}"
        stack.start_worker(env, concurrency=worker_concurrency, name=name)
        stack.supervise(name, lambda name=name: stack.start_worker(env, concurrency=worker_concurrency, name=name))
    stack.start_beat(env)
    stack.supervise("beat", lambda: stack.start_beat(env))
    return running
