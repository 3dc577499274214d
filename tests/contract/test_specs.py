"""The API clients and the sandbox agree with the official specs, in both directions.

Each client call goes to a real sandbox server; every request it sent and every answer the sandbox gave
is then validated against ../shared/specs. The integration suite does the same for everything the
running bridge sent (tests/integration/test_zz_contract.py).
"""

from __future__ import annotations

import pytest

from bridge import errors
from bridge.clients.azure_devops import AzureDevOpsClient, PersonalAccessToken
from bridge.clients.dbt_cloud import DbtCloudClient
from bridge.dev.sandbox import serving
from bridge.dev.sandbox.control import SandboxControl, wait_until
from bridge.domain import RunStatus, StatusContext, StatusState, StatusUpdate
from tests.specs import check_exchange, find_operation


@pytest.fixture(scope="module")
def sandbox():
    with serving() as (url, app):
        yield url, app.extensions["world"]


def test_specs_are_readable_and_have_the_operations_we_use():
    assert find_operation("ado", "POST", "/o/p/_apis/git/repositories/r/pullRequests/1/statuses")
    assert find_operation("ado", "GET", "/o/p/_apis/git/repositories/r/pullRequests/1/iterations")
    assert find_operation("dbt", "POST", "/api/v2/accounts/1/runs/5/cancel/")
    assert find_operation("dbt", "GET", "/api/v2/accounts/1/runs/")
    assert find_operation("ado", "GET", "/o/p/_apis/git/nope") is None


def test_checker_catches_wrong_bodies():
    bad = {"service": "dbt", "method": "POST", "path": "/api/v2/accounts/1/jobs/2/run/", "query": {},
           "body": {"git_sha": "abc"}, "status": 400, "response": None}
    assert any("'cause' is a required property" in p for p in check_exchange(bad))
    bad_ado = {"service": "ado", "method": "POST", "path": "/o/p/_apis/git/repositories/r/pullRequests/1/statuses",
               "query": {}, "body": {"iterationId": "one"}, "status": 400, "response": None}
    problems = check_exchange(bad_ado)
    assert any("api-version" in p for p in problems) and any("'one' is not of type 'integer'" in p for p in problems)


def test_clients_and_sandbox_agree_with_the_specs(sandbox):
    url, _world = sandbox
    control = SandboxControl(url)
    control.setup(run_defaults={"seconds": 0.3, "queued": 0.1})
    opened = control.open_pr(title="Contract", deliver=False)
    pr_id = opened["pr"]
    control.act(pr_id, "push", deliver=False)

    ado = AzureDevOpsClient(f"{url}/fabrikam", PersonalAccessToken("sandbox-pat"))
    repo = ado.get_repository("Fabrikam-Fiber-Git", "dbt-analytics")
    assert repo.name == "dbt-analytics"
    pr = ado.get_pull_request(repo.project_id, repo.id, pr_id)
    assert pr.pull_request_id == pr_id and pr.head_commit
    iterations = ado.list_iterations(repo.project_id, repo.id, pr_id)
    assert [it.iteration_id for it in iterations] == [1, 2]
    assert iterations[-1].source_commit == pr.head_commit
    context = StatusContext("dbt-cloud", "ci")
    ado.post_status(repo.project_id, repo.id, pr_id, context,
                    StatusUpdate(StatusState.PENDING, "queued", 2, "https://example.test/run/1"))
    assert ado.list_statuses(repo.project_id, repo.id, pr_id)[0]["iterationId"] == 2
    in_project = list(ado.list_project_pull_requests(repo.project_id, page_size=1))  # paged a PR a call
    assert [p.pull_request_id for p in in_project if p.repository_id == repo.id] == [pr_id]
    assert pr_id in [p.pull_request_id for p in in_project] and {p.repository_id for p in in_project} >= {repo.id}
    with pytest.raises(errors.NotFound):
        ado.get_pull_request(repo.project_id, repo.id, 9999)
    control.act(pr_id, "comment", content="/dbt rerun", deliver=False)
    threads = ado.call("GET", f"/{repo.project_id}/_apis/git/repositories/{repo.id}/pullRequests/{pr_id}"
                              "/threads", params={"api-version": "7.1"})
    assert threads["value"][0]["comments"][0]["content"] == "/dbt rerun"

    dbt = DbtCloudClient(url, 1, "sandbox-dbt-token")
    run = dbt.trigger_run(42, cause="contract", git_sha=pr.head_commit, pull_request_id=pr_id,
                          schema_override=f"dbt_cloud_pr_42_{pr_id}")
    assert run.status is RunStatus.QUEUED and run.href
    done = wait_until(lambda: dbt.get_run(run.run_id).status.is_terminal, what="run to finish", timeout=10)
    assert done
    finished = dbt.get_run(run.run_id)
    assert finished.status is RunStatus.SUCCESS and finished.duration_seconds is not None
    second = dbt.trigger_run(42, cause="contract 2", git_sha=pr.head_commit, pull_request_id=pr_id)
    cancelled = dbt.cancel_run(second.run_id)
    assert cancelled.status is RunStatus.CANCELLED
    listed = list(dbt.list_runs(42, page_size=1))
    assert [r.run_id for r, _ in listed] == [second.run_id, run.run_id]
    assert listed[1][1]["azure_pull_request_id"] == pr_id
    live = list(dbt.list_runs(42, statuses=(RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING)))
    assert live == []
    with pytest.raises(errors.Unauthorized):
        DbtCloudClient(url, 1, "wrong").get_run(run.run_id)
    with pytest.raises(errors.NotFound):
        dbt.trigger_run(999, cause="no such job")

    exchanges = control.exchanges()
    assert len(exchanges) >= 12
    problems = [p for e in exchanges for p in check_exchange(e)]
    assert problems == []


def test_onboarding_calls_agree_with_the_specs(sandbox):
    from bridge.domain import HOOK_EVENTS, CiJobSpec, HookStatus, StatusPolicy

    url, _world = sandbox
    control = SandboxControl(url)
    since = len(control.exchanges())
    ado = AzureDevOpsClient(f"{url}/fabrikam", PersonalAccessToken("sandbox-pat"))
    projects = list(ado.list_projects(page_size=1))
    assert [p.name for p in projects] == ["Fabrikam-Fiber-Git"]
    repo = ado.list_repositories(projects[0].id)[0]
    assert repo.name == "dbt-analytics"
    assert ado.has_permissions([("cb594ebe-87dd-4fc9-ac2c-6a10a4c92046", f"PublisherSecurity/{repo.project_id}",
                                 2)]) == [True]
    event_type, version = HOOK_EVENTS[0]
    created = ado.create_subscription(event_type=event_type, resource_version=version, project_id=repo.project_id,
                                      repository_id=repo.id, url="https://bridge.example/webhooks/azure-devops",
                                      username="bridge-hook-1", password="a-very-long-hook-secret")
    assert created.status is HookStatus.ENABLED and created.username == "bridge-hook-1"
    assert created.subscription_id in {h.subscription_id for h in ado.list_subscriptions()}
    control.set_hook_status(created.subscription_id, "disabledByUser")
    assert ado.get_subscription(created.subscription_id).status is HookStatus.DISABLED_BY_USER
    again = ado.replace_subscription(created.subscription_id, event_type=event_type, resource_version=version,
                                     project_id=repo.project_id, repository_id=repo.id,
                                     url="https://bridge.example/webhooks/azure-devops", username="bridge-hook-1")
    assert again.status is HookStatus.ENABLED
    ado.delete_subscription(created.subscription_id)
    with pytest.raises(errors.NotFound):
        ado.get_subscription(created.subscription_id)
    wanted = StatusPolicy(repo.id, "main", StatusContext("dbt-cloud", "ci"))
    assert ado.find_status_policy(repo.project_id, wanted) is None
    policy = ado.create_status_policy(repo.project_id, wanted)
    assert [p["id"] for p in ado.list_status_policies(repo.project_id)] == [policy]
    assert ado.find_status_policy(repo.project_id, wanted) == policy
    ado.delete_policy(repo.project_id, policy)

    dbt = DbtCloudClient(url, 1, "sandbox-dbt-token")
    assert 42 in {j.id for j in dbt.list_jobs()}
    project = dbt.list_projects()[0]
    environments = dbt.list_environments(project)
    assert {e.deployment_type for e in environments} == {"production", "staging"}
    job = dbt.create_job(CiJobSpec(account_id=1, project_id=project.id, environment_id=9, name="PR CI",
                                   deferring_environment_id=8))
    assert dbt.get_job(job.id).execute_steps == ("dbt build --select state:modified+",)
    hook = dbt.create_webhook(name="bridge", url="https://bridge.example/webhooks/dbt-cloud", job_ids=(job.id,),
                              event_types=("job.run.completed", "job.run.errored"))
    assert hook.hmac_secret and hook.job_ids == (job.id,)
    assert hook.webhook_id in {h.webhook_id for h in dbt.list_webhooks()}
    control.deactivate_dbt_webhook(hook.webhook_id)
    assert not next(h for h in dbt.list_webhooks() if h.webhook_id == hook.webhook_id).active
    revived = dbt.update_webhook(hook.webhook_id, name="bridge", url="https://bridge.example/webhooks/dbt-cloud",
                                 job_ids=(job.id,), event_types=("job.run.completed", "job.run.errored"))
    assert revived.active and revived.hmac_secret is None
    dbt.delete_webhook(hook.webhook_id)

    exchanges = [e for e in control.exchanges() if e["seq"] >= since]
    assert len(exchanges) >= 20
    problems = [p for e in exchanges for p in check_exchange(e)]
    assert problems == []
