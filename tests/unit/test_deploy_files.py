"""The deployment files parse and name the same process commands as the Procfile."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_procfile_declares_the_four_process_types():
    kinds = {line.split(":", 1)[0] for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()}
    assert kinds == {"web", "worker", "beat", "release"}


def test_kubernetes_and_compose_files_parse_and_use_the_entry_points():
    docs = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/bridge.yaml").read_text()))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["Deployment", "Deployment", "Deployment", "Job", "Service"]
    beat = next(d for d in docs if d["metadata"]["name"].endswith("beat"))
    assert beat["spec"]["replicas"] == 1
    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    assert {"web", "worker", "beat", "release", "postgres", "redis"} <= set(compose["services"])
    text = (ROOT / "deploy/kubernetes/bridge.yaml").read_text() + (ROOT / "deploy/compose.yaml").read_text()
    assert "workers.entry" in text and "bridge.web:create_app()" in (ROOT / "deploy/Dockerfile").read_text()
