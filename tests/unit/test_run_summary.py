"""The run summary's rules on artifacts real dbt wrote (tests/data/dbt, remade by its make_artifacts.sh): what
failed, what warned, the status's line, and the thread's Markdown kept safe and under Azure DevOps' limit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.ci.summary import (
    COMMENT_LIMIT,
    ArtifactError,
    NodeResult,
    RunFacts,
    Summary,
    fenced,
    read_run_results,
    redact,
    status_line,
    thread_markdown,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "dbt"
FACTS = RunFacts(run_id=1234, commit="0123456789abcdef0123", duration="4m 12s",
                 run_url="https://cloud.getdbt.com/deploy/1/projects/1/runs/1234")


def artifact(name: str) -> dict:
    return json.loads((DATA / f"run_results_{name}.json").read_text())


def test_a_failing_build_names_the_model_that_errored_and_the_test_that_failed():
    summary = read_run_results(artifact("failing"))
    assert [(n.resource_type, n.name, n.status) for n in summary.failures] == [
        ("model", "order_margins", "error"), ("test", "not_null_customer_revenue_revenue", "fail")]
    [model, _] = summary.failures
    assert model.relation == '"tiny_shop"."dbt_cloud_pr_42_7"."order_margins"'
    assert 'Referenced column "cost" not found' in model.message
    assert [(n.name, n.status) for n in summary.warnings] == [("unique_stg_customers_customer_id", "warn")]
    assert summary.counts[("model", "skipped")] == 1 and not summary.passed
    assert status_line(summary, run_id=1234, duration="4m 12s") == \
        "dbt Cloud CI failed: 1 model, 1 test (run 1234, 4m 12s)"


def test_a_passing_build_says_what_ran():
    summary = read_run_results(artifact("passing"))
    assert summary.passed and not summary.warnings
    assert status_line(summary, run_id=1235, duration="12s") == "dbt Cloud CI passed: 1 model, 2 tests (run 1235, 12s)"


def test_the_thread_lists_failures_warnings_counts_and_links():
    text = thread_markdown(read_run_results(artifact("failing")), FACTS)
    assert text.startswith("### dbt Cloud CI failed")
    assert "**Failed (2)**" in text and "**Warnings (1)**" in text
    assert "- **model** order\\_margins → `\"tiny_shop\".\"dbt_cloud_pr_42_7\".\"order_margins\"` — error" in text
    assert "Binder Error: Referenced column \"cost\" not found" in text  # verbatim, inside a code block
    assert "Results: 1 errored, 1 failed, 6 passed, 1 skipped, 1 warned" in text
    assert f"[run 1234]({FACTS.run_url})" in text and "`0123456789ab`" in text


@pytest.mark.parametrize("raw", [[], "run_results", {}, {"metadata": {"dbt_schema_version": "nope"}, "results": []}])
def test_what_is_not_a_run_results_file_is_refused_clearly(raw):
    with pytest.raises(ArtifactError):
        read_run_results(raw)


def test_dbt_words_cannot_format_link_or_inject_html():
    hostile = NodeResult("model", "x_[click](javascript:alert(1))<img src=x>", None, "error",
                         "```\n</pre><script>alert(1)</script>\n```\n[phish](https://evil.example)")
    text = thread_markdown(Summary((hostile,)), FACTS)
    assert "[click](javascript" not in text and "<img" not in text
    assert "x\\_\\[click\\]\\(javascript:alert\\(1\\)\\)&lt;img src=x&gt;" in text
    assert "\n  </pre><script>alert(1)</script>\n" in text  # inside a code block: shown, never run
    assert "\n  ````text\n" in text  # the fence outgrows the message's own backticks


@given(st.text())
def test_no_message_can_close_its_fence(message):
    block = fenced(message)
    fence = block.split("\n", 1)[0].removesuffix("text")
    assert set(fence) == {"`"} and fence not in message


def test_credentials_a_message_echoes_are_redacted():
    said = redact("could not connect to postgresql://dbt:hunter2@db.internal/x (password=s3cr3t, token: abc123)")
    assert "hunter2" not in said and "s3cr3t" not in said and "abc123" not in said
    node = NodeResult("model", "m", None, "error", "auth failed: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x")
    assert "eyJhbGci" not in thread_markdown(Summary((node,)), FACTS)


def test_a_huge_run_stays_under_the_comment_limit_and_says_how_many_more():
    nodes = tuple(NodeResult("test", f"t{n}", None, "fail", "x" * 5000) for n in range(2000))
    text = thread_markdown(Summary(nodes), FACTS)
    assert len(text) <= COMMENT_LIMIT
    assert re.search(r"… and 1950 more", text)
