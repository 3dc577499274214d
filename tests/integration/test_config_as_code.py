"""Configuration as code against the sandbox, on a database of its own: ``config plan`` shows the diff and
changes nothing, ``apply`` leaves what the file dropped alone unless ``--prune``, which unlinks it."""

from __future__ import annotations

from sqlalchemy import select

from bridge.crypto import generate_key
from bridge.db import Database
from bridge.models import DbtAccount, Organization, Repository

from .conftest import CONFIG


def test_plan_shows_the_diff_then_apply_prune_removes_what_the_file_dropped(bridge, infra, tmp_path):
    url = f"sqlite:///{tmp_path / 'config.db'}"
    env = {**bridge.env, "BRIDGE_DATABASE_URL": url, "BRIDGE_SECRET_KEY": generate_key(), "COLUMNS": "200"}
    assert infra.run_cli(env, "db", "upgrade").returncode == 0
    first = tmp_path / "bridge.yaml"
    first.write_text(CONFIG)
    applied = infra.run_cli(env, "config", "apply", str(first))
    assert applied.returncode == 0, applied.stderr

    unchanged = infra.run_cli(env, "config", "plan", str(first))
    assert unchanged.returncode == 0 and "updated" not in unchanged.stdout, unchanged.stdout

    marts = CONFIG[CONFIG.rindex("  - organization: fabrikam"):]
    second = tmp_path / "second.yaml"
    second.write_text(CONFIG.replace(marts, "").replace("ADO_HOOK_PASSWORD", "ROTATED_HOOK_PASSWORD"))
    env["ROTATED_HOOK_PASSWORD"] = "a-rotated-hook-password-value"
    database = Database(url)

    def names() -> list[str]:
        with database.session() as s:
            return sorted(s.scalars(select(Repository.name)))

    before = names()
    plan = infra.run_cli(env, "config", "plan", "--prune", str(second))
    assert plan.returncode == 1, plan.stdout + plan.stderr  # something would change
    assert "webhook.password: ••• → ••• (new)" in plan.stdout, plan.stdout
    assert env["ROTATED_HOOK_PASSWORD"] not in plan.stdout and "sandbox-pat" not in plan.stdout  # secrets masked
    assert "would be removed" in plan.stdout and "dbt-marts" in plan.stdout
    assert names() == before  # a plan changes nothing

    kept = infra.run_cli(env, "config", "apply", str(second))
    assert kept.returncode == 0 and "not in the file" in kept.stdout, kept.stdout
    assert "apply --prune` removes them" in kept.stdout
    assert names() == before  # never removed without the flag

    pruned = infra.run_cli(env, "config", "apply", "--prune", str(second))
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert "dbt-marts" in pruned.stdout and names() == [n for n in before if n != "dbt-marts"]

    nothing = tmp_path / "empty.yaml"
    nothing.write_text("repositories: []\n")
    assert infra.run_cli(env, "config", "apply", "--prune", str(nothing)).returncode == 0
    with database.session() as s:
        assert s.scalars(select(Organization)).all() == [] and s.scalars(select(DbtAccount)).all() == []
        assert s.scalars(select(Repository)).all() == []
