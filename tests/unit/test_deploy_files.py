"""The deployment files parse and name the same process commands as the Procfile."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_procfile_declares_the_four_process_types():
    kinds = {line.split(":", 1)[0] for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()}
    assert kinds == {"web", "worker", "beat", "release"}
    assert "-Q bridge,bridge-console" in (ROOT / "Procfile").read_text()  # one worker serves both queues


def test_the_kubernetes_base_validates_offline_and_keeps_the_rules():
    """Every object of deploy/kubernetes/base against the Kubernetes schemas (no cluster, no kubectl: `make
    deploy-check` renders the overlays too), and the bridge's rules for them."""
    from tests.kubernetes_manifests import base_objects, check_objects

    objects = base_objects()
    assert check_objects(objects) == []
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ConfigMap", "Deployment", "Deployment", "Deployment", "Deployment", "HorizontalPodAutoscaler",
                     "HorizontalPodAutoscaler", "Job", "PodDisruptionBudget", "PodDisruptionBudget", "Service"]
    web = next(o for o in objects if o["metadata"]["name"] == "ado-dbt-bridge-web" and o["kind"] == "Deployment")
    containers = {c["name"]: c for c in web["spec"]["template"]["spec"]["containers"]}
    assert {"name": "GUNICORN_BIND", "value": "127.0.0.1:8000"} in containers["web"]["env"]
    assert "ports" not in containers["web"]
    assert containers["proxy"]["ports"] == [{"name": "http", "containerPort": 8080}]
    service = next(o for o in objects if o["kind"] == "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    site = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["default.conf"]
    assert site == (ROOT / "deploy/nginx/bridge.conf").read_text()  # the one the slow-client test runs
    job = next(o for o in objects if o["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["bridge", "db", "upgrade"]


@pytest.mark.parametrize(("break_it", "found"), [
    (lambda o: o["kind"] == "Deployment" and o["metadata"]["name"].endswith("beat")
     and o["spec"].update(replicas=2), "beat must be one replica"),
    (lambda o: o["kind"] == "Deployment" and o["metadata"]["name"].endswith("beat")
     and o["spec"].update(strategy={"type": "RollingUpdate"}), "beat must be one replica"),
    (lambda o: o["kind"] == "HorizontalPodAutoscaler" and o["metadata"]["name"].endswith("web")
     and o["spec"]["scaleTargetRef"].update(name="ado-dbt-bridge-beat"), "nothing may scale beat"),
    (lambda o: o["kind"] == "PodDisruptionBudget" and o["spec"]["selector"]["matchLabels"].update(process="x"),
     "selects no pods"),
    (lambda o: o["kind"] == "Deployment" and o["metadata"]["name"].endswith("worker")
     and o["spec"]["template"]["spec"]["containers"][0].update(envFrom=[]), "from the Secret"),
    (lambda o: o["kind"] == "Deployment" and o["metadata"]["name"].endswith("web")
     and o["spec"]["template"]["spec"]["containers"][1]["readinessProbe"]["httpGet"].update(path="/healthz"),
     "ready by /readyz"),
    (lambda o: o["kind"] == "Service" and o["spec"].update(ports=[{"port": "eighty"}]), "Service"),
])
def test_the_rules_catch_a_broken_manifest(break_it, found):
    from tests.kubernetes_manifests import base_objects, check_objects

    objects = base_objects()
    for o in objects:
        break_it(o)
    assert any(found in problem for problem in check_objects(objects))


def test_every_kustomization_names_files_that_exist():
    for kustomization in (ROOT / "deploy").rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for entry in [*spec.get("resources", []), *spec.get("components", []),
                      *(p["path"] for p in spec.get("patches", []) if "path" in p)]:
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry}"
    overlays = sorted(p.name for p in (ROOT / "deploy/kubernetes/overlays").iterdir())
    assert overlays == ["production", "single-node"]


def test_kubernetes_and_compose_files_parse_and_use_the_entry_points():
    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    assert {"web", "proxy", "worker", "console-worker", "beat", "release", "postgres", "redis"} <= set(
        compose["services"])
    assert compose["services"]["proxy"]["network_mode"] == "service:web"
    assert compose["services"]["web"]["environment"]["GUNICORN_BIND"] == "127.0.0.1:8000"
    queues = {name: s["command"][s["command"].index("-Q") + 1] for name, s in compose["services"].items()
              if "command" in s and "-Q" in s["command"]}
    assert queues == {"worker": "bridge", "console-worker": "bridge-console"}
    text = "".join(p.read_text() for p in (ROOT / "deploy/kubernetes/base").glob("*.yaml")) + (
        ROOT / "deploy/compose.yaml").read_text()
    assert "workers.entry" in text and "bridge.web:create_app()" in (ROOT / "deploy/Dockerfile").read_text()


def test_the_wheel_ships_the_product_without_the_dev_tooling(tmp_path):
    import subprocess
    import sys
    import zipfile

    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    [wheel] = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "bridge/web/receivers.py" in names and "bridge/deliveries/outbox.py" in names
    assert "bridge/migrations/versions/0001_initial_schema.py" in names and "workers/tasks.py" in names
    assert not [n for n in names if n.startswith("bridge/dev/")]


def test_without_the_dev_tooling_the_cli_says_where_sandbox_and_demo_are():
    import subprocess
    import sys

    code = ("import sys\n"
            "class NoDev:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'bridge.dev' or name.startswith('bridge.dev.'):\n"
            "            raise ModuleNotFoundError(name=name)\n"
            "sys.meta_path.insert(0, NoDev())\n"
            "from bridge.cli import main\n"
            "main(sys.argv[1:])\n")
    for command in ("sandbox", "demo"):
        out = subprocess.run([sys.executable, "-c", code, command, "--port", "1"], capture_output=True, text=True,
                             cwd=ROOT, timeout=60, check=False)
        assert out.returncode == 1, out.stderr
        assert f"'bridge {command}' is dev tooling: run it from a checkout" in out.stderr
    out = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, cwd=ROOT,
                         timeout=60, check=False)
    assert out.returncode == 0 and "deliveries" in out.stdout


COMPOSE_FILES = ("deploy/compose.yaml", "deploy/compose.tls.yaml")


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_files_follow_the_compose_specification(name):
    import json

    import jsonschema

    schema = json.loads((ROOT / "tests/data/compose/compose-spec.json").read_text())
    document = yaml.safe_load((ROOT / name).read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []


def test_the_compose_schema_check_catches_a_mistake():
    import json

    import jsonschema

    schema = json.loads((ROOT / "tests/data/compose/compose-spec.json").read_text())
    broken = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    broken["services"]["web"]["restart"] = ["always"]  # a list where the spec wants a string
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_only_caddy_faces_the_world_and_the_hops_add_up():
    base = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    tls = yaml.safe_load((ROOT / "deploy/compose.tls.yaml").read_text())
    assert base["services"]["web"]["ports"] == ["127.0.0.1:8000:8080"]  # without TLS: this machine only
    assert tls["services"]["tls"]["ports"] == ["80:80", "443:443"]
    assert tls["services"]["web"]["environment"]["BRIDGE_PROXY_HOPS"] == "2"  # Caddy, then nginx
    assert "reverse_proxy web:8080" in (ROOT / "deploy/caddy/Caddyfile").read_text()
    assert "BRIDGE_PUBLIC_URL:?" in (ROOT / "deploy/compose.yaml").read_text()  # never a default public URL


def _final_stage() -> list[str]:
    """The Dockerfile's last stage, one instruction a line (continuations joined)."""
    text = (ROOT / "deploy/Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    start = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return lines[start:]


def test_the_image_runs_as_a_user_installs_from_the_lock_and_copies_no_dev_tooling():
    stage = _final_stage()
    users = [line.split()[1] for line in stage if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    installs = [line for line in stage if line.startswith("RUN pip install")]
    assert any("--require-hashes -r /app/requirements.lock" in line for line in installs)
    copies = [line.split()[1:] for line in stage if line.startswith("COPY ")]
    sources = {c[-2] for c in copies if not c[0].startswith("--from")}
    assert sources == {"requirements/runtime.lock", "deploy/gunicorn.conf.py"}, sources  # no tests/, no bridge/dev
    build = (ROOT / "deploy/Dockerfile").read_text().split("FROM python:3.11-slim\n")[0]
    assert "COPY tests" not in build and "pip wheel" in build  # the wheel leaves bridge.dev out (test above)


def image_command() -> list[str]:
    """The image's start command (its CMD), as JSON."""
    import json

    (cmd,) = [line for line in _final_stage() if line.startswith("CMD ")]
    return json.loads(cmd[len("CMD "):])


def test_the_license_is_the_one_pyproject_names():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text


@pytest.mark.parametrize(("hops", "client_sent", "expected"), [
    (1, None, ("http", "198.51.100.1")),                             # nginx alone
    (1, ("6.6.6.6", "https"), ("http", "198.51.100.1")),             # a client forging both, nginx alone
    (2, ("203.0.113.7", "https"), ("https", "203.0.113.7")),         # Caddy in front (compose.tls.yaml)
    (2, ("6.6.6.6, 203.0.113.7", "http,https"), ("https", "203.0.113.7")),  # a client forging, Caddy in front
])
def test_nginx_headers_and_the_hop_count_agree(hops, client_sent, expected):
    """What deploy/nginx/bridge.conf sends upstream, read as the web process reads it (ProxyFix, hop count)."""
    from werkzeug.middleware.proxy_fix import ProxyFix
    from werkzeug.test import EnvironBuilder

    site = (ROOT / "deploy/nginx/bridge.conf").read_text()
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in site
    assert 'proxy_set_header X-Forwarded-Proto "$http_x_forwarded_proto,$scheme";' in site
    # nginx's peer is the client (198.51.100.1) alone, or Caddy (10.0.0.2) in front; $proxy_add_x_forwarded_for
    # appends that peer, and the proto header appends nginx's own scheme (http).
    peer = "198.51.100.1" if hops == 1 else "10.0.0.2"
    forwarded_for = f"{client_sent[0]}, {peer}" if client_sent else peer
    forwarded_proto = f"{client_sent[1] if client_sent else ''},http"
    seen = {}

    def app(environ, start_response):
        seen.update(scheme=environ["wsgi.url_scheme"], address=environ["REMOTE_ADDR"])
        start_response("200 OK", [])
        return [b""]

    environ = EnvironBuilder(headers={"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": forwarded_proto},
                             environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()
    list(ProxyFix(app, x_for=hops, x_proto=hops)(environ, lambda *a: None))
    assert (seen["scheme"], seen["address"]) == expected
