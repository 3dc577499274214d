"""The Kubernetes base read as Kustomize would, without kubectl, and the rules every rendering must keep.

``base_objects()`` loads deploy/kubernetes/base's resources and the nginx component's ConfigMap (what
``configMapGenerator`` makes, less its hash suffix); ``check_objects`` validates each object against the
Kubernetes schemas kubernetes-validate ships (offline) and checks the bridge's own rules. ``make test`` runs
them on the base; ``make deploy-check`` (``python -m tests.kubernetes_manifests``) renders each overlay with
``kubectl kustomize`` and runs the same checks on the result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
VERSION = "1.31"
SECRET = "ado-dbt-bridge"
CRDS = {"keda.sh/v1alpha1"}  # custom resources: no schema ships for them; checked by hand below


def base_objects() -> list[dict]:
    base = yaml.safe_load((KUBERNETES / "base" / "kustomization.yaml").read_text())
    objects = [doc for name in base["resources"]
               for doc in yaml.safe_load_all((KUBERNETES / "base" / name).read_text()) if doc]
    for component in base.get("components", []):
        folder = (KUBERNETES / "base" / component).resolve()
        spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
        for generator in spec.get("configMapGenerator", []):
            data = {}
            for entry in generator["files"]:
                key, _, path = entry.partition("=")
                data[key] = (folder / path).read_text()
            objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]},
                            "data": data})
    return objects


def _named(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _pods(objects: list[dict]) -> list[dict]:
    return [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "Job")]


def check_objects(objects: list[dict]) -> list[str]:
    """Every problem found (none: the manifests are valid and keep the rules)."""
    import kubernetes_validate

    problems = []
    for o in objects:
        if o["apiVersion"] in CRDS:
            continue
        try:
            kubernetes_validate.validate(o, VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{o['kind']} {o['metadata']['name']}: {exc.message}")
    deployments = _named(objects, "Deployment")
    beat = deployments.get("ado-dbt-bridge-beat")
    if beat is None or beat["spec"].get("replicas") != 1 or beat["spec"].get("strategy", {}).get("type") != "Recreate":
        problems.append("beat must be one replica with strategy Recreate (never two schedulers)")
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in _named(objects, "HorizontalPodAutoscaler").values()}
    scaled |= {s["spec"]["scaleTargetRef"]["name"] for s in _named(objects, "ScaledObject").values()}
    if "ado-dbt-bridge-beat" in scaled:
        problems.append("nothing may scale beat")
    problems += [f"{name} scales {name!r}, which is no Deployment" for name in scaled - set(deployments)]
    for name, budget in _named(objects, "PodDisruptionBudget").items():
        selector = budget["spec"]["selector"]["matchLabels"]
        if not any(selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                   for d in deployments.values()):
            problems.append(f"PodDisruptionBudget {name} selects no pods")
    web = deployments.get("ado-dbt-bridge-web")
    if web is not None:
        containers = {c["name"]: c for c in web["spec"]["template"]["spec"]["containers"]}
        if containers.get("proxy", {}).get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
            problems.append("the web pod is ready by /readyz")
        if "/healthz" not in " ".join(containers.get("web", {}).get("livenessProbe", {}).get("exec", {}).get(
                "command", [])):
            problems.append("the web container is alive by /healthz")
        mounted = {v["configMap"]["name"] for v in web["spec"]["template"]["spec"]["volumes"] if "configMap" in v}
        problems += [f"the web pod mounts ConfigMap {m}, which is not rendered" for m in mounted
                     if m not in _named(objects, "ConfigMap")]  # kustomize renames both to the hashed name
    for pod in _pods(objects):
        pod_non_root = pod.get("securityContext", {}).get("runAsNonRoot") is True
        for c in pod["containers"]:
            if c["image"].startswith("nginx"):
                continue
            if {"secretRef": {"name": SECRET}} not in c.get("envFrom", []):
                problems.append(f"container {c['name']} must take its settings from the Secret {SECRET}")
            if not (pod_non_root or c.get("securityContext", {}).get("runAsNonRoot") is True):
                problems.append(f"container {c['name']} must run as a non-root user")
    for s in _named(objects, "ScaledObject").values():
        if s["spec"]["scaleTargetRef"]["name"] != "ado-dbt-bridge-worker":
            problems.append("KEDA scales the workers only")
        if "ado-dbt-bridge-worker" in {h["spec"]["scaleTargetRef"]["name"]
                                       for h in _named(objects, "HorizontalPodAutoscaler").values()}:
            problems.append("with KEDA, the workers' CPU autoscaler must be gone (two would fight)")
    return problems


def render(folder: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize failed: {out.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def main() -> int:
    if shutil.which("kubectl") is None:
        print("make deploy-check renders the overlays with kubectl (its built-in kustomize): install kubectl, "
              "e.g. `apt-get install -y kubectl` from the Kubernetes apt repository, or see "
              "https://kubernetes.io/docs/tasks/tools/", file=sys.stderr)
        return 2
    failed = False
    with tempfile.TemporaryDirectory() as scratch:  # the optional KEDA component, on the single-node overlay
        keda = Path(scratch)
        (keda / "kustomization.yaml").write_text(yaml.safe_dump({  # kustomize takes relative paths only
            "resources": [os.path.relpath(KUBERNETES / "overlays" / "single-node", keda)],
            "components": [os.path.relpath(KUBERNETES / "components" / "keda", keda)]}))
        targets = [(f"overlays/{p.name}", p) for p in sorted((KUBERNETES / "overlays").iterdir())]
        for label, folder in [*targets, ("overlays/single-node + components/keda", keda)]:
            try:
                objects = render(folder)
            except RuntimeError as exc:
                print(f"{label}: {exc}")
                failed = True
                continue
            problems = check_objects(objects)
            kinds = sorted({o["kind"] for o in objects})
            print(f"{label}: {len(objects)} objects ({', '.join(kinds)}): "
                  + ("valid" if not problems else "PROBLEMS"))
            for problem in problems:
                print(f"  - {problem}")
            failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
