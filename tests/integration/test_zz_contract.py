"""Runs last in the integration suite: everything the bridge sent to the sandbox during the suite, and
everything the sandbox answered, agrees with the official specs; and no secret reached a log."""

from __future__ import annotations

from bridge.dev.sandbox.control import wait_until
from tests.specs import check_exchange

from .conftest import DBT_SECRET, HOOK_PASSWORD


def test_every_exchange_of_the_suite_agrees_with_the_specs(bridge):
    pr = bridge.sandbox.open_pr()["pr"]  # at least one full CI loop, even when this module runs alone
    wait_until(lambda: bridge.sandbox.latest_state(pr, 1) == "succeeded", timeout=30, what="CI loop")
    exchanges = bridge.sandbox.exchanges()
    services = {e["service"] for e in exchanges}
    assert services == {"ado", "dbt"}
    operations = {(e["method"], e["path"].split("/_apis/")[-1] if e["service"] == "ado" else e["path"])
                  for e in exchanges}
    assert len(exchanges) > 5 and len(operations) > 5
    problems = sorted({p for e in exchanges for p in check_exchange(e)})
    assert problems == []


def test_no_secret_appears_in_any_log(bridge):
    secrets = [HOOK_PASSWORD, DBT_SECRET, bridge.env["BRIDGE_SECRET_KEY"], bridge.env["ADO_PAT"],
               bridge.env["DBT_CLOUD_TOKEN"], "c2FuZGJveC1wYXQ=",  # base64 of the PAT as sent in Basic auth
               "Token sandbox-dbt-token"]
    # what onboarding generated or was given: each subscription's password, each dbt webhook's secret
    secrets += [h["password"] for h in bridge.sandbox.hooks() if h["password"] and h["password"] != HOOK_PASSWORD]
    secrets += [h["secret"] for h in bridge.sandbox.dbt_webhooks() if h["secret"] != DBT_SECRET]
    logs = bridge.stack.read_logs()
    for name in ("web", "worker", "beat"):
        assert logs.get(name)
    leaks = [(name, secret) for name, text in logs.items() if name != "sandbox" for secret in secrets
             if secret in text]
    assert leaks == []
