"""Onboarding from the command line, for real: `bridge repos setup` registers service hooks (with their own
credentials), a dbt Cloud webhook (with its own secret) and a branch policy in the sandbox; PRs then get their
statuses through those; the health check heals what Azure DevOps or dbt Cloud disabled; credentials rotate
without a lost delivery; a person lacking permission is refused with the reason; undo removes it all."""

from __future__ import annotations

import base64
import json
import re

import pytest
import requests
from sqlalchemy import select

from bridge.dev.person import Person
from bridge.dev.sandbox.control import wait_until
from bridge.dev.stack import ADMIN_TOKEN, ENTRA_USER
from bridge.dispatch import Dispatcher
from bridge.models import DbtAccount, DbtWebhookRecord, HookSubscriptionRecord, Repository
from bridge.settings import Settings

ORG, PROJECT = "fabrikam", "Data-Platform"
SALES, FINANCE, WEB, ARCHIVE = "dbt-sales", "dbt-finance", "web-app", "dbt-archive"
DBT_CI_ENV, DBT_PROD_ENV = 9, 8


def cli(bridge, *args: str):
    out = bridge.stack.run_cli({**bridge.env, "COLUMNS": "250"}, *args)  # wide enough for rich's tables
    return out.returncode, out.stdout + out.stderr


@pytest.fixture(scope="module")
def project(bridge):
    """A project with three repositories and no subscriptions for them (the suite's own hooks are
    organization-wide; they are switched off here so only what set-up registers delivers)."""
    for name in (SALES, FINANCE, WEB):
        bridge.sandbox._post("/repos", {"org": ORG, "project": PROJECT, "name": name})
    bridge.sandbox._post("/repos", {"org": ORG, "project": PROJECT, "name": ARCHIVE, "disabled": True})
    bridge.sandbox.setup(hooks=[])
    yield
    bridge.hooks(bridge.web)
    bridge.dbt_hooks()


def hooks_of(bridge, repo_name: str) -> list[dict]:
    listed = requests.get(f"{bridge.sandbox.url}/{ORG}/{PROJECT}/_apis/git/repositories",
                          params={"api-version": "7.1"}, headers=_pat(), timeout=10).json()["value"]
    repo_id = next(r for r in listed if r["name"] == repo_name)["id"]
    return [h for h in bridge.sandbox.hooks() if h["publisherInputs"].get("repository") == repo_id]


def _pat() -> dict:
    return {"Authorization": "Basic " + base64.b64encode(b":sandbox-pat").decode()}


def test_discover_lists_what_the_caller_sees(bridge, project):
    code, out = cli(bridge, "repos", "list")
    assert code == 0 and "fabrikam" in out
    code, out = cli(bridge, "repos", "list", "--org", ORG)
    assert code == 0 and PROJECT in out and "Fabrikam-Fiber-Git" in out
    code, out = cli(bridge, "repos", "list", "--org", ORG, "--project", PROJECT, "--search", "dbt-")
    assert code == 0 and SALES in out and FINANCE in out and WEB not in out
    code, out = cli(bridge, "repos", "list", "--org", ORG, "--project", PROJECT, "--page-size", "1", "--page", "2")
    assert code == 0 and "page 2 of 4, 4 in all" in out


def test_setup_registers_everything_and_prs_get_statuses_through_it(bridge, project):
    sb = bridge.sandbox
    code, out = cli(bridge, "repos", "setup", "--org", ORG, "--project", PROJECT, SALES, "--dbt-account", "1",
                    "--create-job", str(DBT_CI_ENV), "--defer-to", str(DBT_PROD_ENV), "--teardown-job", "43",
                    "--policy")
    assert code == 0, out
    assert "set-up of fabrikam/Data-Platform/dbt-sales: created" in out
    hooks = hooks_of(bridge, SALES)
    assert sorted(h["eventType"] for h in hooks) == sorted([
        "git.pullrequest.created", "git.pullrequest.updated", "git.pullrequest.merged",
        "ms.vss-code.git-pullrequest-comment-event"])
    assert {h["consumerInputs"]["url"] for h in hooks} == {f"{bridge.web}/webhooks/azure-devops"}
    assert len({h["consumerInputs"]["basicAuthUsername"] for h in hooks}) == 4  # each its own credentials
    with bridge.db.session() as s:
        records = s.scalars(select(HookSubscriptionRecord)).all()
        assert {h["password"] for h in hooks}.isdisjoint({r.password_enc for r in records})  # stored encrypted
        repo = s.scalar(select(Repository).where(Repository.name == SALES))
        assert repo.ci_job_id >= 100 and repo.policy_id and repo.target_branches == ["refs/heads/main"]
        webhook = s.scalar(select(DbtWebhookRecord).where(DbtWebhookRecord.repository_id == repo.id))
    dbt_hook = next(h for h in sb.dbt_webhooks() if h["id"] == webhook.dbt_webhook_id)
    assert dbt_hook["job_ids"] == [repo.ci_job_id, 43] and dbt_hook["secret"] not in (webhook.secret_enc or "")
    [policy] = [p for p in sb.policies() if p["id"] == repo.policy_id]
    assert policy["settings"]["statusGenre"] == "dbt-cloud" and policy["settings"]["invalidateOnSourceUpdate"]

    opened = sb.open_pr(repository=SALES, title="New sales model", deliver=False)
    sb.outcome(sha=opened["head"], seconds=3)
    delivered = sb.deliver(opened["event_id"])["delivered"]
    assert [d["status"] for d in delivered] == [202]  # through the bridge's own subscription
    completed, blocking = sb.complete(opened["pr"])
    assert not completed and blocking == ["dbt-cloud/ci"]  # the policy holds the PR until dbt is green
    wait_until(lambda: sb.latest_state(opened["pr"], 1) == "succeeded", timeout=40, what="status via set-up hooks")
    assert sb.complete(opened["pr"]) == (True, [])
    teardown = wait_until(lambda: sb.runs_for(opened["pr"], 43), timeout=30, what="teardown after completion")
    assert teardown[0]["trigger"]["schema_override"] == f"dbt_cloud_pr_{repo.ci_job_id}_{opened['pr']}"

    code, out = cli(bridge, "repos", "setup", "--org", ORG, "--project", PROJECT, SALES, "--dbt-account", "1",
                    "--create-job", str(DBT_CI_ENV), "--defer-to", str(DBT_PROD_ENV), "--teardown-job", "43",
                    "--policy")
    assert code == 0 and "dbt-sales: unchanged" in out, out  # idempotent: nothing duplicated
    assert len(hooks_of(bridge, SALES)) == 4 and len([p for p in sb.policies() if p["id"] == repo.policy_id]) == 1
    assert sum(1 for h in sb.dbt_webhooks() if h["url"] == f"{bridge.web}/webhooks/dbt-cloud"
               and repo.ci_job_id in h["job_ids"]) == 1


def test_health_check_heals_what_may_be_healed_and_surfaces_the_rest(bridge, project):
    sb = bridge.sandbox
    hooks = {h["eventType"]: h for h in hooks_of(bridge, SALES)}
    created, updated = hooks["git.pullrequest.created"], hooks["git.pullrequest.updated"]
    sb.set_hook_status(created["id"], "disabledBySystem")
    sb.set_hook_status(updated["id"], "disabledByInactiveIdentity")
    with bridge.db.session() as s:
        webhook_id = s.scalar(select(DbtWebhookRecord.dbt_webhook_id).join(
            Repository, Repository.id == DbtWebhookRecord.repository_id).where(Repository.name == SALES))
    sb.deactivate_dbt_webhook(webhook_id)

    code, out = cli(bridge, "hooks", "check")
    assert code == 0 and "healed" in out, out
    now = {h["eventType"]: h for h in hooks_of(bridge, SALES)}
    assert now["git.pullrequest.created"]["status"] == "enabled"
    assert now["git.pullrequest.created"]["id"] != created["id"]  # a PUT cannot revive it: re-created
    assert now["git.pullrequest.updated"]["status"] == "disabledByInactiveIdentity"  # a person must act
    assert next(h for h in sb.dbt_webhooks() if h["id"] == webhook_id)["active"]

    code, out = cli(bridge, "hooks", "status")
    assert code == 1 and "creator lost access" in out, out
    with bridge.db.session() as s:
        healed = s.scalar(select(HookSubscriptionRecord).where(
            HookSubscriptionRecord.event_type == "git.pullrequest.created",
            HookSubscriptionRecord.repository_id == select(Repository.id).where(Repository.name == SALES)
            .scalar_subquery()))
        assert healed.healed == 1 and "disabled by Azure DevOps" in healed.last_healed_reason  # the record of why
    assert any("creator lost access" in w for w in bridge.warnings()["subscription-unhealthy"])
    metrics = bridge.metrics()
    assert 'bridge_subscription_problems{kind="azure-devops"} 1.0' in metrics

    # the same, as beat does it: the worker's task (scheduled every BRIDGE_HOOK_CHECK_INTERVAL seconds)
    merged = now["git.pullrequest.merged"]
    sb.set_hook_status(merged["id"], "onProbation")
    assert Dispatcher(Settings.from_env(bridge.env)).check_subscriptions()
    wait_until(lambda: {h["eventType"]: h for h in hooks_of(bridge, SALES)}["git.pullrequest.merged"]["status"]
               == "enabled", timeout=30, what="the worker re-enabling a subscription on probation")

    opened = sb.open_pr(repository=SALES, title="after healing")  # the re-created subscription delivers
    assert 202 in {d["status"] for d in opened["delivered"]}
    wait_until(lambda: sb.latest_state(opened["pr"], 1) == "succeeded", timeout=40, what="status after healing")

    code, out = cli(bridge, "repos", "setup", "--org", ORG, "--project", PROJECT, SALES, "--dbt-account", "1",
                    "--create-job", str(DBT_CI_ENV), "--defer-to", str(DBT_PROD_ENV), "--teardown-job", "43",
                    "--policy")  # an admin re-running set-up repairs the rest
    assert code == 0 and "repaired" in out, out
    assert {h["status"] for h in hooks_of(bridge, SALES)} == {"enabled"}
    assert cli(bridge, "hooks", "status")[0] == 0


def test_rotation_keeps_every_delivery(bridge, project):
    sb = bridge.sandbox
    before = {h["eventType"]: h for h in hooks_of(bridge, SALES)}
    code, out = cli(bridge, "hooks", "rotate", "--repo", f"{ORG}/{PROJECT}/{SALES}")
    assert code == 0 and out.count("rotated") >= 4, out
    after = {h["eventType"]: h for h in hooks_of(bridge, SALES)}
    assert all(after[e]["password"] != before[e]["password"] for e in before)
    # a delivery Azure DevOps sent with the old password just before the switch is still accepted
    old = before["git.pullrequest.created"]
    event = sb.open_pr(repository=SALES, title="old credentials in flight", deliver=False)
    body = dict(sb._get(f"/events/{event['event_id']}"))
    body.pop("org", None)
    late = requests.post(f"{bridge.web}/webhooks/azure-devops", data=json.dumps(body),
                         auth=(old["consumerInputs"]["basicAuthUsername"], old["password"]),
                         headers={"Content-Type": "application/json"}, timeout=10)
    assert late.status_code == 202
    wrong = requests.post(f"{bridge.web}/webhooks/azure-devops", data=json.dumps(body),
                          auth=(old["consumerInputs"]["basicAuthUsername"], "not-the-password"),
                          headers={"Content-Type": "application/json"}, timeout=10)
    assert wrong.status_code == 401
    fresh = sb.open_pr(repository=SALES, title="new credentials")
    assert {d["status"] for d in fresh["delivered"]} == {202}


def test_bulk_setup_then_unlink(bridge, project):
    sb = bridge.sandbox
    code, out = cli(bridge, "repos", "setup", "--org", ORG, "--project", PROJECT, "--match", "dbt-*",
                    "--dbt-account", "1", "--ci-job", "42")
    assert code == 0, out
    assert "dbt-finance" in out and "created" in out and "web-app" not in out
    assert re.search(r"dbt-archive\s*│\s*skipped", out) and "1 skipped" in out
    assert len(hooks_of(bridge, FINANCE)) == 4 and hooks_of(bridge, WEB) == [] and hooks_of(bridge, ARCHIVE) == []

    code, out = cli(bridge, "repos", "unlink", f"{ORG}/{PROJECT}/{FINANCE}", "--remove-policy")
    assert code == 0 and "no longer acts" in out, out
    assert hooks_of(bridge, FINANCE) == []
    with bridge.db.session() as s:
        assert s.scalar(select(Repository).where(Repository.name == FINANCE)) is None
    opened = sb.open_pr(repository=FINANCE, title="after unlink")
    assert opened["delivered"] == []  # nothing registered any more
    code, out = cli(bridge, "repos", "unlink", f"{ORG}/{PROJECT}/{FINANCE}")
    assert code == 1 and "is not linked" in out


def test_a_person_sees_only_their_projects_and_is_refused_without_permission(bridge, project):
    sb = bridge.sandbox
    erin = {"oid": "0e0e0e0e-0000-4000-8000-00000000e1e1", "tid": ENTRA_USER["tid"], "upn": "erin@fabrikam.example",
            "name": "Erin"}
    sb._post("/idp/setup", {"users": [erin], "sign_in": erin["oid"]})
    sb.setup(members={erin["oid"]: {ORG: {"projects": [PROJECT], "permissions": ["GenericRead",
                                                                                  "ViewSubscriptions"]}}})
    try:
        admin = Person(bridge.web, sb.url)
        admin.sign_in_with_token(ADMIN_TOKEN)
        assert admin.connect_azure_devops().status_code == 200  # the admin connects Erin's account

        def connected():
            code, out = cli(bridge, "repos", "list", "--as", erin["upn"])
            return code == 0 and ORG in out

        wait_until(connected, timeout=30, what="Erin's organizations read by a worker")
        code, out = cli(bridge, "repos", "list", "--org", ORG, "--as", erin["upn"])
        assert code == 0 and PROJECT in out and "Fabrikam-Fiber-Git" not in out  # not hers to see
        code, out = cli(bridge, "repos", "setup", "--org", ORG, "--project", PROJECT, WEB, "--dbt-account", "1",
                        "--ci-job", "42", "--as", erin["upn"])
        assert code == 1
        assert "erin@fabrikam.example lacks Edit subscriptions" in out and "Project Administrator" in out, out
        assert "--only 'permissions'" in out
        assert hooks_of(bridge, WEB) == []

        erin_browser, home = Person.signed_in_with_entra(bridge.web, sb.url, erin)  # the console, her own token
        assert "(user)" in home.text
        assert "<option>fabrikam</option>" in erin_browser.get("/console/import").text
        start = erin_browser.get("/console/import").text
        projects = finished(erin_browser, erin_browser.press(start, "Show projects", {"org": ORG}))
        assert PROJECT in projects.text and "Fabrikam-Fiber-Git" not in projects.text
        repos = finished(erin_browser, erin_browser.press(projects.text, PROJECT))
        assert WEB in repos.text and "Set up CI" not in repos.text  # looking, not setting up
    finally:
        sb.setup(members={})
        sb._post("/idp/setup", {"sign_in": ENTRA_USER["oid"]})


def finished(someone: Person, response: requests.Response) -> requests.Response:
    """Follow a console job page until it stops refreshing itself."""
    url = response.url
    return wait_until(lambda: (r := someone.browser.get(url, timeout=10)) and 'http-equiv="refresh"' not in r.text
                      and r, timeout=30, what=f"the job at {url}")


def test_console_import_in_a_couple_of_clicks_then_undo(bridge, project):
    sb = bridge.sandbox
    admin = Person(bridge.web, sb.url)
    admin.sign_in_with_token(ADMIN_TOKEN)  # the local admin acts as the organization's configured identity
    start = admin.get("/console/import")
    assert start.status_code == 200 and '<option>fabrikam</option>' in start.text
    projects = finished(admin, admin.press(start.text, "Show projects", {"org": ORG}))
    repos = finished(admin, admin.press(projects.text, PROJECT))
    assert SALES in repos.text and "Repair set-up" in repos.text  # dbt-sales is linked already
    assert f"3. repository in {ORG}/{PROJECT}</h2>" in repos.text  # names, not the project's GUID
    web_row = repos.text[repos.text.index(f"<td>{WEB}</td>"):]
    form = finished(admin, admin.press(web_row, "Set up CI"))
    assert "dbt Cloud account 1" in form.text and "Set up CI" in form.text
    assert f"4. dbt Cloud job for {PROJECT}/{WEB}</h2>" in form.text
    # Job 42 already serves dbt-sales: marked, with a warning, and not chosen for this repository unasked.
    assert f"already runs CI for {ORG}/{PROJECT}/{SALES}" in form.text and "serves\nanother repository" in form.text
    assert not re.search(r'<option value="42" selected>', form.text)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.text))
    answer = admin.browser.post(f"{bridge.web}/console/import/setup", timeout=10, data={
        **fields, "dbt_account": "1", "job_choice": "existing", "ci_job": "42", "target_branch": "main",
        "policy": "1", "reset_on_new_changes": "1", "drafts": "skip"})
    result = finished(admin, answer)
    assert "Set-up of fabrikam" in result.text and ": created" in result.text, result.text
    assert result.text.count(">created<") >= 3 and "refused" not in result.text
    assert len(hooks_of(bridge, WEB)) == 4

    opened = sb.open_pr(repository=WEB, title="imported from the console")
    wait_until(lambda: sb.latest_state(opened["pr"], 1) == "succeeded", timeout=40, what="CI after console import")
    listing = admin.get("/console/repositories").text
    assert "fabrikam/Data-Platform/web-app" in listing and "4 of 4" in listing

    with bridge.db.session() as s:
        repo_id = s.scalar(select(Repository.id).where(Repository.name == WEB))
    asked = admin.get(f"/console/repositories/{repo_id}/unlink")  # Unlink… asks first
    undo = admin.press(asked.text, "Unlink", {"remove_policy": "1"})
    done = finished(admin, undo)
    assert "removed" in done.text and hooks_of(bridge, WEB) == []


def test_console_import_is_for_admins_and_a_failed_step_can_be_retried(bridge, project):
    sb = bridge.sandbox
    bob = {"oid": "0b0b0b0b-0000-4000-8000-0000000000b2", "tid": ENTRA_USER["tid"], "upn": "bob2@fabrikam.example",
           "name": "Bob"}
    try:
        user, home = Person.signed_in_with_entra(bridge.web, sb.url, bob)
        assert "(user)" in home.text
        looking = user.get("/console/import")  # anyone signed in may look around, with their own token
        assert looking.status_code == 200 and "connect your Azure DevOps account" in looking.text
        assert user.post_form("/console/import/dbt", {"org": ORG, "project": PROJECT, "repo": WEB}
                              ).status_code == 403  # setting up spends the bridge's dbt Cloud token: admins only
        assert user.post_form("/console/import/setup", {"organization": ORG}).status_code == 403
    finally:
        sb._post("/idp/setup", {"sign_in": ENTRA_USER["oid"]})

    admin = Person(bridge.web, sb.url)
    admin.sign_in_with_token(ADMIN_TOKEN)
    sb.fault(service="ado", method="POST", path="/_apis/hooks/subscriptions$", status=503, times=20)
    try:
        form = finished(admin, admin.post_form("/console/import/dbt", {"org": ORG, "project": PROJECT,
                                                                        "repo": WEB, "name": WEB}))
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.text))
        failed = finished(admin, admin.browser.post(f"{bridge.web}/console/import/setup", timeout=10, data={
            **fields, "dbt_account": "1", "job_choice": "existing", "ci_job": "42", "target_branch": "main"}))
        assert ": failed" in failed.text and "Retry this step" in failed.text
    finally:
        sb.fault(clear=True)
    retried = finished(admin, admin.post_form(failed.url.replace(bridge.web, "") + "/retry",
                                              {"step": "service hooks"}, page=failed.text))
    assert ": repaired" in retried.text or ": created" in retried.text, retried.text
    assert len(hooks_of(bridge, WEB)) == 4


def test_dbt_cloud_accounts_are_added_and_checked_from_the_console_and_the_cli(bridge, project):
    sb = bridge.sandbox
    sb.setup(dbt_token={"1": "sandbox-dbt-token", "2": "second-account-token"})
    admin = Person(bridge.web, sb.url)
    admin.sign_in_with_token(ADMIN_TOKEN)
    form = admin.get("/console/dbt-accounts")
    wrong = finished(admin, admin.post_form("/console/dbt-accounts", {
        "account_id": "2", "url": sb.url, "api_token": "not-the-token"}, page=form.text))
    assert "Invalid token" in wrong.text
    with bridge.db.session() as s:
        assert s.get(DbtAccount, 2) is None  # a token dbt Cloud refuses is not saved
    right = finished(admin, admin.post_form("/console/dbt-accounts", {
        "account_id": "2", "url": sb.url, "api_token": "second-account-token"}, page=form.text))
    assert "dbt Cloud answered: 0 jobs" in right.text
    listing = admin.get("/console/dbt-accounts").text
    assert "second-account-token" not in listing and "stored" in listing
    refused = admin.post_form("/console/dbt-accounts", {"account_id": "3", "url": "ftp://x", "api_token": "t"},
                              page=form.text)
    assert refused.status_code == 400 and "not an absolute http(s) URL" in refused.text

    def add_account(token: str):
        return bridge.stack.run_cli({**bridge.env, "TOKEN_2": token}, "dbt", "add-account", "2", "--url", sb.url,
                                    "--token-env", "TOKEN_2")

    refused = add_account("nope")
    assert refused.returncode == 1 and "dbt Cloud refused the token, so nothing was saved" in refused.stderr
    works = add_account("second-account-token")
    assert works.returncode == 0 and "the token works (0 jobs)" in works.stdout


def test_console_onboarding_refuses_bad_input_and_other_peoples_jobs(bridge, project):
    sb = bridge.sandbox
    admin = Person(bridge.web, sb.url)
    admin.sign_in_with_token(ADMIN_TOKEN)
    form = {"organization": ORG, "project": PROJECT, "repository": WEB, "dbt_account": "1", "job_choice": "existing",
            "ci_job": "42"}
    no_csrf = admin.browser.post(f"{bridge.web}/console/import/setup", data=form, timeout=10)
    assert no_csrf.status_code == 400
    page = admin.get("/console").text  # any page with a form carries the session's CSRF token
    assert admin.post_form("/console/import/setup", {**form, "ci_job": "42; drop"}, page=page).status_code == 400
    bad_steps = admin.post_form("/console/import/setup", {**form, "job_choice": "create", "environment_id": "9",
                                                          "job_steps": "rm -rf /"}, page=page)
    assert bad_steps.status_code == 400 and "dbt command" in bad_steps.text
    missing = admin.post_form("/console/import/setup", {**form, "ci_job": ""}, page=page)
    assert missing.status_code == 400
    job = finished(admin, admin.post_form("/console/import/projects", {"org": ORG}, page=page))
    started = admin.post_form("/console/import/projects", {"org": "evil.example/x"}, page=page)
    assert started.status_code == 200  # a job…
    hostile = finished(admin, started)
    assert "not an Azure DevOps organization name" in hostile.text  # …that refuses to leave the configured host

    bob = {"oid": "0b0b0b0b-0000-4000-8000-0000000000b3", "tid": ENTRA_USER["tid"], "upn": "bob3@fabrikam.example",
           "name": "Bob"}
    try:
        other, home = Person.signed_in_with_entra(bridge.web, sb.url, bob)
        assert "(user)" in home.text
        assert other.browser.get(job.url, timeout=10).status_code == 404  # someone else's job is not there
    finally:
        sb._post("/idp/setup", {"sign_in": ENTRA_USER["oid"]})


def test_a_health_check_that_cannot_list_says_so_and_recovers(bridge, project):
    sb = bridge.sandbox
    sb.fault(service="ado", method="GET", path="/_apis/hooks/subscriptions$", status=403, times=1,
             body={"message": "TF400813: not allowed to view subscriptions", "typeKey": "UnauthorizedRequestException"})
    try:
        code, out = cli(bridge, "hooks", "check")
        assert code == 1 and "unchecked" in out, out
        code, out = cli(bridge, "hooks", "status")
        assert code == 1 and "could not list service hooks of fabrikam" in out and "View subscriptions" in out
    finally:
        sb.fault(clear=True)
    code, out = cli(bridge, "hooks", "check")
    assert code == 0 and "unchecked" not in out, out
    assert cli(bridge, "hooks", "status")[0] == 0  # the problem is gone once the check succeeds
