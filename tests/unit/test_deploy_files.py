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


def kustomized() -> list[dict]:
    """What `kubectl apply -k deploy/` applies."""
    import shutil
    import subprocess

    if shutil.which("kubectl") is None:
        pytest.fail("kubectl (with its built-in kustomize) renders deploy/kustomization.yaml: install kubectl")
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy")], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return list(yaml.safe_load_all(out.stdout))


def test_kubernetes_manifests_are_valid_and_put_nginx_in_front_of_gunicorn():
    import kubernetes_validate

    docs = kustomized()
    for doc in docs:
        kubernetes_validate.validate(doc, "1.31", strict=True)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "Deployment", "Deployment", "Deployment", "Job", "Service"]
    beat = next(d for d in docs if d["metadata"]["name"].endswith("beat"))
    assert beat["spec"]["replicas"] == 1
    web = next(d for d in docs if d["metadata"]["name"] == "ado-dbt-bridge-web" and d["kind"] == "Deployment")
    containers = {c["name"]: c for c in web["spec"]["template"]["spec"]["containers"]}
    assert {"name": "GUNICORN_BIND", "value": "127.0.0.1:8000"} in containers["web"]["env"]
    assert "ports" not in containers["web"] and containers["proxy"]["ports"] == [{"containerPort": 8080}]
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["ports"][0]["targetPort"] == 8080
    site = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["default.conf"]
    assert site == (ROOT / "deploy/nginx/bridge.conf").read_text()  # the one the slow-client test runs


def test_kubernetes_and_compose_files_parse_and_use_the_entry_points():
    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    assert {"web", "proxy", "worker", "console-worker", "beat", "release", "postgres", "redis"} <= set(
        compose["services"])
    assert compose["services"]["proxy"]["network_mode"] == "service:web"
    assert compose["services"]["web"]["environment"]["GUNICORN_BIND"] == "127.0.0.1:8000"
    queues = {name: s["command"][s["command"].index("-Q") + 1] for name, s in compose["services"].items()
              if "command" in s and "-Q" in s["command"]}
    assert queues == {"worker": "bridge", "console-worker": "bridge-console"}
    text = (ROOT / "deploy/kubernetes/bridge.yaml").read_text() + (ROOT / "deploy/compose.yaml").read_text()
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
