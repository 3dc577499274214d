"""Work that resumes by itself: a run dbt Cloud refused to start (its token was rotated) starts once a person
saves the new token, with no new event and no comment; ``bridge prs rerun`` for anything else."""

from __future__ import annotations

from sqlalchemy import select

from bridge.dev.sandbox.control import wait_until
from bridge.models import DbtAccount

from .conftest import CI_JOB

STORED = "sandbox-dbt-token"
ROTATED = "rotated-dbt-token-value"


def add_account(bridge, token: str):
    return bridge.stack.run_cli({**bridge.env, "TOKEN_1": token}, "dbt", "add-account", "1", "--url",
                                bridge.sandbox.url, "--token-env", "TOKEN_1")


def stored_token(bridge) -> str:
    with bridge.db.session() as s:
        return s.scalar(select(DbtAccount.api_token_enc).where(DbtAccount.id == 1))


def test_a_run_refused_for_a_rotated_token_starts_once_the_new_token_is_saved(bridge):
    sb = bridge.sandbox
    sb.setup(dbt_token={"1": ROTATED})  # rotated in dbt Cloud, not yet in the bridge
    try:
        opened = sb.open_pr(title="refused, then resumed")
        wait_until(lambda: sb.latest_state(opened["pr"], 1) == "error", timeout=40, what="the refused start")
        assert "Could not start dbt Cloud CI: HTTP 401" in sb.statuses(opened["pr"])[-1]["description"]
        before = stored_token(bridge)
        refused = add_account(bridge, "still-not-the-token")
        assert refused.returncode == 1 and "nothing was saved" in refused.stderr, refused.stderr
        assert stored_token(bridge) == before  # a token dbt Cloud refuses never replaces the one kept

        fixed = add_account(bridge, ROTATED)
        assert fixed.returncode == 0 and "being run again" in fixed.stdout, fixed.stdout + fixed.stderr
        wait_until(lambda: sb.latest_state(opened["pr"], 1) == "succeeded", timeout=60,
                   what="the run started again by itself")
        assert len(bridge.ci_runs(opened["pr"])) == 1  # one run in dbt Cloud: the refused try never ran
        assert sb.pr(opened["pr"])["threads"] == []  # resumed without a comment
    finally:
        sb.setup(dbt_token={"1": STORED})
        assert add_account(bridge, STORED).returncode == 0


def test_prs_rerun_starts_a_fresh_run_of_the_head(bridge):
    sb = bridge.sandbox
    opened = sb.open_pr(title="rerun from the CLI")
    wait_until(lambda: sb.latest_state(opened["pr"], 1) == "succeeded", timeout=40, what="the first run")
    out = bridge.stack.run_cli(bridge.env, "prs", "rerun", "fabrikam/Fabrikam-Fiber-Git/dbt-analytics",
                               str(opened["pr"]))
    assert out.returncode == 0 and "queued" in out.stdout, out.stderr
    wait_until(lambda: len(sb.runs_for(opened["pr"], CI_JOB)) == 2, timeout=40, what="a second run")
    wait_until(lambda: sb.latest_state(opened["pr"], 1) == "succeeded", timeout=40, what="its status")
    unknown = bridge.stack.run_cli(bridge.env, "prs", "rerun", "fabrikam/Fabrikam-Fiber-Git/nope", "1")
    assert unknown.returncode == 1 and "is not linked" in unknown.stderr
