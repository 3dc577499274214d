"""A CLI that fails in one line: the cause and the fix, an exit code per kind of fault, no traceback unless
``--debug``, and no database created by accident."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy.exc import OperationalError

from bridge.cli import main
from bridge.history.read import outcome_of as run_outcome
from bridge.models import CiRun, Delivery, PullRequestRecord, Repository

from .test_cli import _configured


def run(*args, env=None, catch=False):
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200", **(env or {})}, catch_exceptions=catch)


def one_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_a_command_outside_its_environment_refuses_and_creates_no_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("status", env={"BRIDGE_DATABASE_URL": None})
    assert result.exit_code == 3
    line = one_line(result)
    assert "there is no database at" in line and "BRIDGE_DATABASE_URL is not set" in line
    assert "bridge db upgrade" in line
    assert list(tmp_path.iterdir()) == []  # no stray bridge.db


def test_db_upgrade_is_the_one_command_that_creates_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert run("db", "upgrade", env={"BRIDGE_DATABASE_URL": url}).exit_code == 0
    assert run("status", env={"BRIDGE_DATABASE_URL": url}).exit_code == 0


@pytest.mark.parametrize(("url", "expected"), [
    ("postgres://bridge@127.0.0.1/bridge", "uses postgres://, which loads no installed driver"),
    ("not a url", "must be postgresql+psycopg://USER@HOST/DB or sqlite:///PATH"),
    ("postgresql+nodriver://bridge@127.0.0.1/bridge", "names a database driver that is not installed or misspelt"),
    ("postgresql+psycopg://bridge@127.0.0.1:1/bridge", "Connection refused"),
])
def test_database_faults_are_one_line_with_the_cause(url, expected):
    result = run("status", env={"BRIDGE_DATABASE_URL": url})
    assert result.exit_code in (3, 4), result.output
    assert expected in one_line(result)


def test_a_database_without_the_schema_says_to_upgrade(tmp_path):
    (tmp_path / "empty.db").write_bytes(b"")
    result = run("status", env={"BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    assert result.exit_code == 4 and "run `bridge db upgrade`" in one_line(result)


def test_debug_lets_the_traceback_through():
    result = run("--debug", "status", env={"BRIDGE_DATABASE_URL": "postgresql+psycopg://bridge@127.0.0.1:1/bridge"},
                 catch=True)
    assert isinstance(result.exception, OperationalError)


def test_a_bad_setting_is_a_configuration_fault(tmp_path):
    result = run("status", env={"BRIDGE_POLL_INTERVAL": "often"})
    assert result.exit_code == 3 and "BRIDGE_POLL_INTERVAL must be a number" in one_line(result)


def test_status_json_is_one_document_with_each_runs_outcome(tmp_path):
    database, env, _ = _configured(tmp_path)
    with database.session() as s:
        repo = s.query(Repository).first()
        pr = PullRequestRecord(repository_id=repo.id, pull_request_id=11, head_commit="e297ba41" * 5,
                               last_reason="new head commit e297ba41")
        s.add(pr)
        s.flush()
        s.add_all([CiRun(pull_request_ref=pr.id, kind="ci", dbt_account_id=1, dbt_job_id=42,
                         start_error="HTTP 401: Invalid token."),
                   CiRun(pull_request_ref=pr.id, kind="teardown", dbt_account_id=1, dbt_job_id=43, dbt_run_id=1006,
                         status=10),
                   Delivery(source="azure-devops", dedupe_key="k", event_type="git.pullrequest.updated", event={},
                            state="processed")])
    result = run("status", "--json", env=env)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    (shown,) = document["pull_requests"]
    assert shown["repository"] == f"fabrikam/{repo.ado_project_name}/{repo.name}"
    assert [r["outcome"] for r in shown["runs"]] == ["could not start: HTTP 401: Invalid token.", "succeeded"]
    assert document["deliveries"] == [{"source": "azure-devops", "state": "processed", "count": 1}]
    table = run("status", env=env).output
    assert "teardown 1006: succeeded" in table and "HTTP 401: Invalid token." in table


def test_run_outcomes_in_words():
    assert run_outcome(CiRun(status=30, superseded=True)) == "cancelled (superseded)"
    assert run_outcome(CiRun(status=3, dbt_run_id=5)) == "running"
    assert run_outcome(CiRun(dbt_run_id=None)) == "starting"
    assert run_outcome(CiRun(status=None, dbt_run_id=7, posted_state="pending")) == "pending"
