"""The README's deployment path, as far as a machine without a container runtime goes: the processes compose
starts, started with the image's own commands (its CMD, compose's release, worker and beat commands) and
compose's settings, on a database and Redis database of their own, behind the shipped nginx; then the first
admin signs in. Connecting and importing are the console tests' (test_console_connect, test_onboarding)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import requests
import yaml

from bridge.crypto import generate_key
from bridge.dev.person import Person, csrf_of
from bridge.dev.sandbox.control import wait_until
from bridge.dev.stack import ADMIN_TOKEN, METRICS_TOKEN, Proc, free_port, http_ok, wait_for

from ..unit.test_deploy_files import image_command

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class OverHttps(Person):
    """The TLS hop is not here: the Secure session cookie is sent as a browser sends it to https://bridge…"""

    def _as_over_https(self) -> None:
        for cookie in self.browser.cookies:
            cookie.secure = False

    def get(self, path: str, **kwargs):
        self._as_over_https()
        return super().get(path, **kwargs)

    def sign_in_with_token(self, token: str):
        """The sign-in's answer itself (a redirect): followed here, its new cookie would not be sent yet."""
        page = self.get("/console/sign-in")
        self._as_over_https()
        return self.browser.post(f"{self.web}/console/sign-in", data={"token": token, "csrf": csrf_of(page.text)},
                                 allow_redirects=False, timeout=10)


def compose() -> dict:
    return yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())


def interpolate(value: object, shell: dict) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` against the operator's environment."""
    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if shell.get(name):
            return shell[name]
        assert op != ":?", f"compose would stop: {name}: {arg}"
        return arg if op == ":-" else ""
    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, str(value))


def local(argv: list[str]) -> list[str]:
    """An image command run from this checkout: its programs from the virtualenv, /app/deploy from deploy/."""
    return [str(BIN / argv[0]) if (BIN / argv[0]).exists() else argv[0],
            *(a.replace("/app/deploy/", f"{ROOT}/deploy/") for a in argv[1:])]


@pytest.fixture
def deployed(infra, postgres_url, redis_url, tmp_path):
    admin = f"postgresql://bridge@127.0.0.1:{infra.pg_port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS deploy_path")
        conn.execute("CREATE DATABASE deploy_path")
    services = compose()["services"]
    # What the README's Deploy puts in .env; compose's settings interpolated with it, as compose does.
    shell = {"BRIDGE_SECRET_KEY": generate_key(), "BRIDGE_PUBLIC_URL": "https://bridge.example.com",
             "BRIDGE_METRICS_TOKEN": METRICS_TOKEN}
    settings = {k: interpolate(v, shell) for k, v in compose()["x-env"].items()}
    settings.update({  # the compose network's postgres and redis are this machine's servers here
        "BRIDGE_DATABASE_URL": f"postgresql+psycopg://bridge@127.0.0.1:{infra.pg_port}/deploy_path",
        "BRIDGE_BROKER_URL": f"{redis_url.rsplit('/', 1)[0]}/7",  # not the session's workers' queue
        "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,  # the first admin's sign-in (README: Deploy, step 4)
        "BRIDGE_HEARTBEAT_TIMEOUT": "6"})
    env = {**{k: v for k, v in infra.env().items() if not k.startswith("BRIDGE_")}, **settings}
    procs: list[Proc] = []
    try:
        release = subprocess.run(local(services["release"]["command"]), env=env, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120, check=False)
        assert release.returncode == 0, release.stderr
        port = free_port()
        web_env = {**env, **{k: interpolate(v, shell) for k, v in services["web"]["environment"].items()
                             if k not in settings},
                   "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2"}
        procs.append(Proc("deploy-web", local(image_command()), log_dir=tmp_path, env=web_env, cwd=tmp_path))
        for name in ("worker", "console-worker", "beat"):
            argv = local(services[name]["command"])
            if name == "beat":
                argv = [a.replace("/tmp/beat-schedule", str(tmp_path / "beat-schedule")) for a in argv]
            procs.append(Proc(f"deploy-{name}", argv, log_dir=tmp_path, env=env, cwd=tmp_path))
        web = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ok(f"{web}/healthz"), timeout=30, what="the image's web command", process=procs[0])
        proxy = infra.start_proxy(web, name="deploy-proxy")
        yield {"web": web, "proxy": proxy, "procs": procs, "env": env}
    finally:
        infra.stop_process("deploy-proxy")
        for proc in procs:
            proc.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS deploy_path WITH (FORCE)")


def test_the_image_commands_bring_up_a_ready_bridge_behind_nginx_and_the_first_admin_signs_in(deployed):
    proxy = deployed["proxy"]
    someone = OverHttps(proxy, proxy)  # signs in with the admin token: no identity platform involved

    signed_in = someone.sign_in_with_token(ADMIN_TOKEN)
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/console"
    home = someone.get("/console")
    assert home.status_code == 200 and "Connections" in home.text and "Sign out" in home.text  # the first admin

    def warnings() -> set[str]:
        body = someone.get("/readyz").json()
        assert someone.get("/console").url.endswith("/console")  # still signed in: this is the admin's view
        return {w["name"] for w in body.get("warnings", [])}

    wait_until(lambda: not {"worker-heartbeat", "beat-heartbeat", "broker"} & warnings(), timeout=60,
               what="the worker and beat started with compose's commands beating")
    ready = requests.get(f"{proxy}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_behind_nginx_a_client_cannot_forge_its_address(deployed):
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
    answer = requests.post(f"{deployed['proxy']}/webhooks/azure-devops", json={"x": 1}, headers=forged,
                           auth=("someone", "wrong-password-long-enough"), timeout=10)
    assert answer.status_code == 401
    log = next(p for p in deployed["procs"] if p.name == "deploy-web").log_path
    wait_until(lambda: "refused an Azure DevOps delivery from" in log.read_text(), timeout=10, what="the log line")
    line = next(x for x in log.read_text().splitlines() if "refused an Azure DevOps delivery from" in x)
    assert re.search(r"from 127\.0\.0\.1: ", line) and "6.6.6.6" not in line, line


def test_a_tls_proxy_in_front_is_counted_as_a_hop(infra, tmp_path, deployed):
    """What Caddy sends (the client's address, https) is believed with BRIDGE_PROXY_HOPS=2, as compose.tls.yaml
    sets it; what a client adds further left still is not."""
    tls = yaml.safe_load((ROOT / "deploy/compose.tls.yaml").read_text())["services"]["web"]["environment"]
    port = free_port()
    env = {**deployed["env"], **tls, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"}
    web = Proc("deploy-web-tls", local(image_command()), log_dir=tmp_path, env=env, cwd=tmp_path)
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=30, what="web", process=web)
        proxy = infra.start_proxy(f"http://127.0.0.1:{port}", name="deploy-proxy-tls")
        as_caddy = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7", "X-Forwarded-Proto": "https"}
        requests.post(f"{proxy}/webhooks/azure-devops", json={"x": 1}, headers=as_caddy,
                      auth=("someone", "wrong-password-long-enough"), timeout=10)
        wait_until(lambda: "refused an Azure DevOps delivery from" in web.log_path.read_text(), timeout=10,
                   what="the log line")
        line = next(x for x in web.log_path.read_text().splitlines() if "refused an Azure DevOps" in x)
        assert "from 203.0.113.7: " in line, line  # the client Caddy saw; not what the client claimed
    finally:
        infra.stop_process("deploy-proxy-tls")
        web.stop()
