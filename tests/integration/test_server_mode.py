"""The CI loop and repository set-up against Azure DevOps Server 2022 and 2020 (the sandbox in Server mode:
collections under /tfs, REST API 7.0 and 6.0, PAT only), beside the cloud organization, on the real stack."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bridge.dev.sandbox.control import wait_until
from bridge.dev.stack import HOOK_PASSWORD, HOOK_USER
from bridge.models import Delivery, HookSubscriptionRecord, Organization, Repository

from .conftest import CONFIG, TEARDOWN_JOB

COLLECTIONS = {"Coll2022": "7.0", "Coll2020": "6.0"}
PROJECT = "Data Platform ü"
REPO, SETUP_REPO = "dbt-onprem", "dbt-onprem-setup"


def server_config(versions: dict[str, str]) -> str:
    """The session's configuration plus one Server collection per entry, each with its own hook credentials."""
    orgs = "".join(f"    - name: {c}\n      url: ${{SANDBOX_URL}}/tfs/{c}\n      pat: ${{ADO_PAT}}\n"
                   f"      api_version: '{v}'\n"
                   f"      webhook: {{username: hook-{c.lower()}, password: {HOOK_PASSWORD}}}\n"
                   for c, v in versions.items())
    repos = "".join(f"  - organization: {c}\n    project: {PROJECT}\n    repository: {REPO}\n    dbt_account: 1\n"
                    f"    ci_job: 42\n    teardown_job: {TEARDOWN_JOB}\n" for c in versions)
    head, rest = CONFIG.split("dbt_cloud:", 1)
    return head + orgs + "dbt_cloud:" + rest + repos


def apply(bridge, text: str):
    path = bridge.stack.workdir / "bridge-server.yaml"
    path.write_text(text)
    return bridge.stack.run_cli(bridge.env, "config", "apply", str(path))


@pytest.fixture(scope="module")
def collections(bridge):
    sb = bridge.sandbox
    sb.setup(servers=COLLECTIONS)
    for collection in COLLECTIONS:
        for name in (REPO, SETUP_REPO):
            sb._post("/repos", {"org": collection, "project": PROJECT, "name": name})
    out = apply(bridge, server_config(COLLECTIONS))
    assert out.returncode == 0, out.stdout + out.stderr
    hooks = [{"org": "fabrikam", "url": f"{bridge.web}/webhooks/azure-devops", "username": HOOK_USER,
              "password": HOOK_PASSWORD}]
    hooks += [{"org": c, "url": f"{bridge.web}/webhooks/azure-devops", "username": f"hook-{c.lower()}",
               "password": HOOK_PASSWORD} for c in COLLECTIONS]
    sb.setup(hooks=hooks)
    yield out.stdout
    sb.setup(servers={})
    bridge.hooks(bridge.web)
    path = bridge.stack.workdir / "bridge.yaml"
    path.write_text(CONFIG)
    bridge.stack.run_cli(bridge.env, "config", "apply", str(path))


def test_config_apply_and_orgs_check_read_what_each_server_is(bridge, collections):
    assert "Coll2022: Azure DevOps Server, REST API 7.0 answered" in collections
    assert "Coll2020: Azure DevOps Server, REST API 6.0 answered" in collections
    checked = bridge.stack.run_cli(bridge.env, "orgs", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "fabrikam: Azure DevOps Services, REST API 7.1 answered" in checked.stdout
    assert "Coll2020: Azure DevOps Server, REST API 6.0 answered" in checked.stdout
    refused = bridge.stack.run_cli(bridge.env, "orgs", "api-version", "Coll2020", "7.0")
    assert refused.returncode == 1 and "set api_version: '6.0'" in refused.stderr
    with bridge.db.session() as s:
        assert s.scalar(select(Organization.api_version).where(Organization.name == "Coll2020")) == "6.0"
    assert bridge.stack.run_cli(bridge.env, "orgs", "api-version", "Coll2020", "6.0").returncode == 0
    no_entra = bridge.stack.run_cli(bridge.env, "orgs", "identity", "Coll2020", "--kind", "user", "--user",
                                    "0a0a0a0a-0000-4000-8000-00000000ada1@7e7e7e7e-0000-4000-8000-000000000001")
    assert no_entra.returncode == 1 and "knows no Microsoft Entra ID" in no_entra.stderr


@pytest.mark.parametrize("collection", list(COLLECTIONS))
def test_the_ci_loop_runs_against_a_server_collection(bridge, collections, collection):
    sb, version = bridge.sandbox, COLLECTIONS[collection]
    since = len(sb.exchanges())
    opened = sb.open_pr(org=collection, repository=REPO, title=f"on {collection}", deliver=False)
    pr = opened["pr"]
    sb.outcome(sha=opened["head"], seconds=30)  # the first run stays live, for the push to make it stale
    sb.deliver(opened["event_id"])
    wait_until(lambda: sb.latest_state(pr, 1) == "pending", timeout=30, what=f"pending on {collection}")
    pushed = sb.act(pr, "push")
    wait_until(lambda: sb.latest_state(pr, 2) == "succeeded", timeout=40, what=f"CI on {collection}")
    runs = bridge.ci_runs(pr)
    assert [r["trigger"]["git_sha"] for r in runs] == [opened["head"], pushed["head"]]
    assert runs[0]["status_humanized"] == "Cancelled" and sb.latest_state(pr, 1) == "notApplicable"
    sb.act(pr, "abandon")
    teardown = wait_until(lambda: sb.runs_for(pr, TEARDOWN_JOB), timeout=30, what="the teardown run")
    assert teardown[0]["trigger"]["schema_override"] == f"dbt_cloud_pr_42_{pr}"
    sent = [e for e in sb.exchanges()[since:] if e["service"] == "ado" and f"/{collection}/" in e["path"]]
    assert sent and all(e["path"].startswith(f"/tfs/{collection}/") for e in sent)
    assert {e["query"]["api-version"][0].removesuffix("-preview") for e in sent} == {version}
    assert all(e["status"] < 400 for e in sent), [e for e in sent if e["status"] >= 400]


@pytest.mark.parametrize("collection", list(COLLECTIONS))
def test_set_up_on_a_server_subscribes_what_it_can_and_says_what_it_skips(bridge, collections, collection):
    out = bridge.stack.run_cli({**bridge.env, "COLUMNS": "400"}, "repos", "setup", "--org", collection,
                               "--project", PROJECT, SETUP_REPO, "--dbt-account", "1", "--ci-job", "42", "--policy")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "/dbt commands are unavailable here" in text
    with bridge.db.session() as s:
        repo_id = s.scalar(select(Repository.id).join(Organization).where(
            Organization.name == collection, Repository.name == SETUP_REPO))
        events = set(s.scalars(select(HookSubscriptionRecord.event_type)
                               .where(HookSubscriptionRecord.repository_id == repo_id)))
    assert events == {"git.pullrequest.created", "git.pullrequest.updated", "git.pullrequest.merged"}
    made = [h for h in bridge.sandbox.hooks() if h["url"].startswith(f"{bridge.sandbox.url}/tfs/{collection}/")
            and h["eventType"] in events]
    assert made and {h["resourceVersion"] for h in made} == {"1.0"}


def test_a_server_asked_for_a_version_it_does_not_serve_fails_once_and_says_what_to_set(bridge, collections):
    refused = apply(bridge, server_config({"Coll2020": "7.0"}))
    assert refused.returncode == 1
    assert "set api_version: '6.0'" in refused.stderr and "nothing was changed" in refused.stderr
    with bridge.db.session() as s:  # as if the server had been downgraded under a configured organization
        s.scalar(select(Organization).where(Organization.name == "Coll2020")).api_version = "7.0"
    try:
        opened = bridge.sandbox.open_pr(org="Coll2020", repository=REPO, title="too new a version")

        def failed():
            with bridge.db.session() as s:
                row = s.get(Delivery, int(json.loads(opened["delivered"][0]["answer"])["delivery"]))
                return row if row.state == "failed" else None

        row = wait_until(failed, timeout=30, what="the delivery failed")
        assert "out of range" in (row.error or "") and "api_version to 6.0" in row.error
        assert row.attempts == 1  # a setting to change: not retried
    finally:
        with bridge.db.session() as s:
            s.scalar(select(Organization).where(Organization.name == "Coll2020")).api_version = "6.0"
