"""The dependency rules of DESIGN.md, checked on the import graph."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def modules(pattern: str) -> list[Path]:
    return sorted(ROOT.glob(pattern))


def ours(names: set[str]) -> set[str]:
    return {n for n in names if n.startswith(("bridge", "workers"))}


def test_domain_imports_nothing_of_ours_but_errors():
    assert ours(imports_of(ROOT / "bridge/domain.py")) <= {"bridge.errors"}


def test_parsers_and_clients_import_only_domain_errors_and_their_own():
    allowed = ("bridge.domain", "bridge.errors", "bridge.clients", "bridge.webhooks")
    for path in modules("bridge/webhooks/*.py") + modules("bridge/clients/*.py"):
        bad = {n for n in ours(imports_of(path)) if not n.startswith(allowed) and n != "bridge"}
        assert not bad, f"{path.name} imports {bad}"


def test_web_never_imports_clients_services_or_workers():
    for path in modules("bridge/web/*.py"):
        bad = {n for n in ours(imports_of(path))
               if n.startswith(("bridge.clients", "bridge.services", "workers"))}
        assert not bad, f"{path.name} imports {bad}"


def test_workers_never_import_flask():
    for path in modules("workers/*.py"):
        assert not {n for n in imports_of(path) if n.split(".")[0] == "flask"}, path.name


def test_no_grab_bag_modules():
    names = {p.stem for p in modules("bridge/**/*.py") + modules("workers/*.py")}
    assert not names & {"util", "utils", "helpers", "misc", "common"}


def test_importing_the_package_has_no_side_effects():
    import subprocess
    import sys

    code = ("import os, sys; os.environ.pop('BRIDGE_DATABASE_URL', None);"
            "import bridge.web, bridge.cli, bridge.services.reconcile, workers.app, workers.tasks;"
            "import threading; assert threading.active_count() == 1, threading.enumerate()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
