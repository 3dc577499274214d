"""The `bridge` command's contract: names outside tools rely on, and helpful errors."""

from __future__ import annotations

from click.testing import CliRunner
from cryptography.fernet import Fernet

from bridge.cli import main
from tests.unit.test_config_file import ENV, GOOD


def run(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_help_lists_the_commands_outside_tools_use():
    out = run("--help").output
    for command in ("db", "config", "sandbox", "keys", "demo", "status"):
        assert command in out
    assert "upgrade" in run("db", "--help").output
    assert "apply" in run("config", "--help").output


def test_config_check_reads_bridge_config_and_reports_lines(tmp_path):
    good = tmp_path / "bridge.yaml"
    good.write_text(GOOD)
    result = run("config", "check", env={**ENV, "BRIDGE_CONFIG": str(good)})
    assert result.exit_code == 0 and "valid (1 organizations, 1 dbt accounts, 1 repositories)" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("ci_job: 42", "ci_job: x"))
    result = run("config", "check", str(bad), env=ENV)
    assert result.exit_code == 1 and "line 18: repositories[0].ci_job: Not a valid integer." in result.output
    assert run("config", "check").exit_code == 2  # neither FILE nor BRIDGE_CONFIG


def test_config_apply_refuses_without_an_encryption_key(tmp_path):
    good = tmp_path / "bridge.yaml"
    good.write_text(GOOD)
    result = run("config", "apply", str(good), env={**ENV, "BRIDGE_SECRET_KEY": "",
                                                     "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert result.exit_code == 1 and "BRIDGE_SECRET_KEY is not set" in result.output


def test_keys_generate_prints_a_fernet_key():
    key = run("keys", "generate").output.strip()
    Fernet(key.encode())  # raises if it is not a key
