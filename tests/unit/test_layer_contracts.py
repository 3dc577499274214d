"""The layer contracts in pyproject.toml can fail: each is run on a tree that breaks it on purpose.

The tree is built in a temporary folder from the contracts themselves (an empty module for every module they
name), so it follows the contracts as they change; each case then adds one forbidden import, direct or
through another module, and expects exactly that contract to be reported broken.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def contracts() -> list[dict]:
    return tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]


def named_modules() -> set[str]:
    """Every module of ours that a contract names."""
    names: set[str] = set()
    for contract in contracts():
        for key in ("source_modules", "forbidden_modules", "modules"):
            names.update(m for m in contract.get(key, []) if m.split(".")[0] in ("bridge", "workers"))
    return names


def write_module(root: Path, module: str, body: str = "") -> None:
    """``module`` as a package (``__init__.py``) under ``root``, with every parent package."""
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        init = root.joinpath(*parts[:depth], "__init__.py")
        init.parent.mkdir(parents=True, exist_ok=True)
        if not init.exists():
            init.write_text("")
    if body:
        path = root.joinpath(*parts, "__init__.py")
        path.write_text(path.read_text() + body)


def lint(tree: Path, contract: str | None = None) -> subprocess.CompletedProcess:
    args = [str(LINT_IMPORTS), str(CONFIG), "--no-cache"] + (["--contract", contract] if contract else [])
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(args, capture_output=True, text=True, cwd=tree, env=env, timeout=120, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for module in named_modules():
        write_module(tmp_path, module)
    return tmp_path


def test_a_tree_that_keeps_every_rule_passes(tree):
    out = lint(tree)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


# (contract id, the modules written with the imports that break it): direct, indirect, third-party, nested
BREAKS = [
    ("domain-pure", {"bridge.domain": "import requests\n"}),
    ("domain-pure", {"bridge.domain": "from bridge import models\n"}),
    ("domain-pure", {"bridge.domain": "from bridge import errors\n", "bridge.errors": "import sqlalchemy\n"}),
    ("domain-pure", {"bridge.catalog": "import marshmallow\n"}),
    ("web-edge", {"bridge.web.console.deep": "from bridge.clients import azure_devops\n"}),
    ("web-edge", {"bridge.web": "import bridge.settings\n", "bridge.settings": "import bridge.services\n"}),
    ("web-edge", {"bridge.web": "import importlib\nfrom workers import tasks\n"}),
    ("workers-no-web", {"workers": "import bridge.config_file\n", "bridge.config_file": "from flask import g\n"}),
    ("workers-no-web", {"workers.tasks": "from bridge.web import pages\n"}),
    ("no-framework-below-tiers", {"bridge.clients.x": "from celery import shared_task\n"}),
    ("no-framework-below-tiers", {"bridge.services": "from flask import request\n"}),
    ("no-framework-below-tiers", {"bridge.deliveries": "from werkzeug import Request\n"}),
    ("parsers-clients-independent", {"bridge.webhooks.y": "from bridge.clients import dbt_cloud\n"}),
    ("parsers-clients-independent", {"bridge.clients": "import bridge.webhooks\n"}),
    ("dev-fenced", {"bridge.services": "from bridge.dev import stack\n"}),
    ("dev-fenced", {"workers": "import bridge.metrics\n", "bridge.metrics": "import bridge.dev.sandbox\n"}),
    ("sandbox-independent", {"bridge.dev.sandbox.world": "from bridge.domain import RunStatus\n"}),
]


@pytest.mark.parametrize(("contract", "modules"), BREAKS, ids=[f"{c}-{n}" for n, (c, _) in enumerate(BREAKS)])
def test_each_contract_fails_on_a_tree_that_breaks_it(tree, contract, modules):
    for module, body in modules.items():
        write_module(tree, module, body)
    out = lint(tree, contract)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 broken" in out.stdout, out.stdout + out.stderr


def test_every_contract_is_broken_by_some_case():
    assert {c["id"] for c in contracts()} == {contract for contract, _ in BREAKS}


def test_the_dev_fence_covers_every_top_level_module_of_the_product():
    fence = next(c for c in contracts() if c["id"] == "dev-fenced")
    product = {f"bridge.{p.stem if p.suffix == '.py' else p.name}" for p in (ROOT / "bridge").iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert set(fence["source_modules"]) == (product - {"bridge.cli", "bridge.dev"}) | {"workers"}
    sandbox = next(c for c in contracts() if c["id"] == "sandbox-independent")
    assert set(sandbox["forbidden_modules"]) == set(fence["source_modules"])
