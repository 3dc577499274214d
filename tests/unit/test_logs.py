"""Log lines: text or one JSON object per line, carrying the ids of the work they are about."""

from __future__ import annotations

import json
import logging

import pytest

from bridge.errors import ConfigError
from bridge.logs import configure, log_context
from bridge.settings import Settings


@pytest.fixture
def root():
    top = logging.getLogger()
    handlers, level = top.handlers[:], top.level
    yield logging.getLogger("bridge.test")
    top.handlers[:] = handlers
    top.setLevel(level)


def test_json_lines_carry_the_ids_set_around_the_work(root, capsys):
    configure("json")
    with log_context(delivery_id=41, pr=None):
        with log_context(repository_id=3, pr=17):
            root.info("reconciled %s", "it")
        root.warning("after")
    root.info("outside")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in lines] == ["reconciled it", "after", "outside"]
    assert {k: lines[0][k] for k in ("delivery_id", "repository_id", "pr")} == {
        "delivery_id": 41, "repository_id": 3, "pr": 17}
    assert lines[1]["delivery_id"] == 41 and "pr" not in lines[1] and "repository_id" not in lines[1]
    assert "delivery_id" not in lines[2] and lines[2]["level"] == "INFO" and lines[2]["logger"] == "bridge.test"


def test_an_exception_stays_inside_its_json_line(root, capsys):
    configure("json")
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        root.exception("failed")
    [line] = capsys.readouterr().err.splitlines()
    assert "RuntimeError: boom" in json.loads(line)["exception"]


def test_text_lines_name_the_ids_at_the_end(root, capsys):
    configure("text")
    with log_context(delivery_id=7, dbt_run_id=1234):
        root.info("settled")
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith("INFO bridge.test settled [delivery_id=7 dbt_run_id=1234]")


def test_the_format_is_a_setting_and_a_wrong_one_is_refused():
    assert Settings.from_env({"BRIDGE_LOG_FORMAT": "json"}).log_format == "json"
    assert Settings.from_env({}).log_format == "text"
    with pytest.raises(ConfigError, match="BRIDGE_LOG_FORMAT must be text or json"):
        Settings.from_env({"BRIDGE_LOG_FORMAT": "xml"})
