"""Set-up, step by step, on SQLite, answered by recorded sandbox exchanges (tests/data/http/setup_twice.json)."""

from __future__ import annotations

from sqlalchemy import select

from bridge.models import DbtWebhookRecord, HookSubscriptionRecord, Repository
from bridge.onboarding import Actor
from tests.data.http.record import MARTS_SETUP
from tests.fakes import RecordedTransport
from tests.orchestration import MARTS_REPOSITORY_ID, assemble


def test_a_set_up_reports_each_step_and_a_second_one_changes_nothing(tmp_path):
    transport = RecordedTransport.load("setup_twice")
    bridge = assemble(tmp_path, transport)
    first = bridge.onboarding.setup(MARTS_SETUP, Actor.of(None))
    assert [(s.step, s.outcome) for s in first.steps] == [
        ("repository", "unchanged"), ("permissions", "unchanged"), ("ci job", "linked"), ("link", "created"),
        ("service hooks", "created"), ("dbt webhook", "created"), ("branch policy", "created")]
    assert first.outcome == "created"

    hooks = transport.sent("POST", "/_apis/hooks/subscriptions")
    assert len(hooks) == 4 and {h["body"]["consumerInputs"]["url"] for h in hooks} == {
        "http://127.0.0.1:8000/webhooks/azure-devops"}
    assert all(h["body"]["publisherInputs"]["repository"] == MARTS_REPOSITORY_ID for h in hooks)
    [webhook] = transport.sent("POST", "/webhooks/subscriptions")
    assert webhook["body"]["job_ids"] == [42, 43]
    assert webhook["body"]["client_url"] == "http://127.0.0.1:8000/webhooks/dbt-cloud"
    [policy] = transport.sent("POST", "/_apis/policy/configurations")
    assert policy["body"]["settings"]["statusName"] == "ci-marts" and policy["body"]["isBlocking"]

    with bridge.db.session() as s:
        repo = s.scalar(select(Repository).where(Repository.ado_repository_id == MARTS_REPOSITORY_ID))
        assert repo.ci_job_id == 42 and repo.teardown_job_id == 43 and repo.policy_id is not None
        records = s.scalars(select(HookSubscriptionRecord).where(
            HookSubscriptionRecord.repository_id == repo.id)).all()
        assert len(records) == 4 and all(r.ado_subscription_id and r.problem is None for r in records)
        sent = {h["body"]["consumerInputs"]["basicAuthUsername"]: h["body"]["consumerInputs"]["basicAuthPassword"]
                for h in hooks}
        box = bridge.onboarding.box  # stored encrypted, and what Azure DevOps was given to send
        assert all(r.password_enc != sent[r.username] and box.decrypt(r.password_enc) == sent[r.username]
                   for r in records)
        assert s.scalar(select(DbtWebhookRecord.secret_enc).where(DbtWebhookRecord.repository_id == repo.id))

    again = bridge.onboarding.setup(MARTS_SETUP, Actor.of(None))
    assert again.outcome == "unchanged", [(s.step, s.outcome, s.detail) for s in again.steps]
    assert len(transport.sent("POST", "/_apis/hooks/subscriptions")) == 4  # nothing duplicated
    assert len(transport.sent("POST", "/_apis/policy/configurations")) == 1
    assert not transport.unused
