"""Settings are checked at start-up, every problem in one round with a line each, and every variable the code
reads is in the README's settings table."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from bridge.crypto import generate_key
from bridge.errors import ConfigError
from bridge.settings import OTHER_VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[2]


def problems(env: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    return str(caught.value).splitlines()


def test_every_problem_is_reported_in_one_round_a_line_each():
    lines = problems({
        "BRIDGE_PUBLIC_URL": "bridge.example.com",
        "BRIDGE_POLL_INTERVAL": "often",
        "BRIDGE_WORKER_PREFETCH": "1.5",
        "BRIDGE_ALLOW_INSECURE_HTTP": "maybe",
        "BRIDGE_DATABASE_URL": "postgres://bridge@db/bridge",
        "BRIDGE_PUBLIC_ULR": "https://bridge.example.com",
        "BRIDGE_LOG_FORMAT": "xml",
        "BRIDGE_ADMIN_TOKEN": "short",
    })
    expected = [
        "BRIDGE_PUBLIC_URL: 'bridge.example.com' is not an absolute http(s) URL",
        "BRIDGE_POLL_INTERVAL must be a number, got 'often'",
        "BRIDGE_WORKER_PREFETCH must be a whole number, got '1.5'",
        "BRIDGE_ALLOW_INSECURE_HTTP must be 1 or 0",
        "BRIDGE_DATABASE_URL uses postgres://, which loads no installed driver: use postgresql+psycopg://",
        "BRIDGE_PUBLIC_ULR is not a setting (did you mean BRIDGE_PUBLIC_URL?)",
        "BRIDGE_LOG_FORMAT must be text or json, got 'xml'",
        "BRIDGE_ADMIN_TOKEN must be at least 24 characters long",
    ]
    for text in expected:
        assert sum(text in line for line in lines) == 1, (text, lines)
    assert len(lines) == len(expected), lines


@pytest.mark.parametrize(("env", "expected"), [
    ({"BRIDGE_PUBLIC_URL": "http://bridge.example.com"}, "uses plain http; use https"),
    ({"BRIDGE_PUBLIC_URL": "https://bridge.example.com/?x=1"}, "must not carry credentials, a query or a fragment"),
    ({"BRIDGE_AZURE_DEVOPS_URL": "ftp://dev.azure.com"}, "is not an absolute http(s) URL"),
    ({"BRIDGE_HTTP_TIMEOUT": "0"}, "BRIDGE_HTTP_TIMEOUT must be above 0"),
    ({"BRIDGE_PROXY_HOPS": "-1"}, "BRIDGE_PROXY_HOPS must be 0 or more"),
    ({"BRIDGE_BROKER_URL": "amqp://guest:s3cret@rabbit//"}, "must be a Redis URL"),
    ({"BRIDGE_DATABASE_URL": "mysql://root:s3cret@db/bridge"}, "must be postgresql+psycopg://"),
    ({"BRIDGE_LOG_LEVEL": "loud"}, "BRIDGE_LOG_LEVEL must be debug or info or warning or error"),
])
def test_each_setting_is_checked(env, expected):
    (line,) = problems(env)
    assert expected in line
    assert "s3cret" not in line  # a password in a URL is never repeated


def test_good_settings_are_taken():
    settings = Settings.from_env({
        "BRIDGE_PUBLIC_URL": "https://bridge.example.com/", "BRIDGE_SECRET_KEY": generate_key(),
        "BRIDGE_DATABASE_URL": "postgresql+psycopg://bridge@db/bridge", "BRIDGE_BROKER_URL": "redis://redis:6379/0",
        "BRIDGE_PR_SWEEP_INTERVAL": "0", "BRIDGE_ALLOW_INSECURE_HTTP": "off", "BRIDGE_LOG_LEVEL": "WARNING"})
    assert settings.public_url == "https://bridge.example.com" and settings.pr_sweep_interval == 0
    assert settings.allow_insecure_http is False and settings.log_level == "warning"
    assert Settings.from_env({"BRIDGE_PUBLIC_URL": "http://127.0.0.1:8000",
                              "BRIDGE_ALLOW_INSECURE_HTTP": "1"}).public_url == "http://127.0.0.1:8000"


def _read_by_the_code() -> set[str]:
    """Every environment variable the product and its deployment files read."""
    names = {f"BRIDGE_{f.name.upper()}" for f in fields(Settings)
             if f.name not in {"secret_keys", "config_file", "entra", "access"}} | set(OTHER_VARIABLES)
    names -= {"BRIDGE_ENTRA_TEST_BASE"}  # dev tooling: documented as such, checked below
    pattern = re.compile(r"""(?:os\.environ|\benv)\.get\(\s*["']([A-Z][A-Z0-9_]+)["']"""
                         r"""|os\.environ\[["']([A-Z][A-Z0-9_]+)["']""")
    for path in [*ROOT.joinpath("bridge").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py"),
                 *ROOT.joinpath("deploy").rglob("*.py")]:
        if "dev" in path.relative_to(ROOT).parts:
            continue
        for match in pattern.finditer(path.read_text()):
            names.add(match.group(1) or match.group(2))
    return names


def test_every_variable_the_code_reads_is_in_the_readme_settings_table():
    readme = ROOT.joinpath("README.md").read_text()
    table = readme[readme.index("## Settings"):]
    table = table[:table.index("\n## ", 1)]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    read = _read_by_the_code()
    assert {"FORWARDED_ALLOW_IPS", "BRIDGE_LOG_LEVEL", "WEB_CONCURRENCY"} <= read  # the scan finds them
    assert sorted(read - documented) == []
    assert "BRIDGE_ENTRA_TEST_BASE" in documented
