"""Package hygiene the import-linter contracts do not cover (those are in pyproject.toml, and proven able to
fail by test_layer_contracts.py): no grab-bag modules, no side effects on import."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def modules(pattern: str) -> list[Path]:
    return sorted(ROOT.glob(pattern))


def test_no_grab_bag_modules():
    names = {p.stem for p in modules("bridge/**/*.py") + modules("workers/*.py")}
    assert not names & {"util", "utils", "helpers", "misc", "common"}


def test_importing_the_package_has_no_side_effects():
    import subprocess
    import sys

    code = ("import os, sys; os.environ.pop('BRIDGE_DATABASE_URL', None);"
            "import bridge.web, bridge.cli, bridge.ci.reconcile, bridge.deliveries.store;"
            "import workers.app, workers.tasks;"
            "import threading; assert threading.active_count() == 1, threading.enumerate()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
