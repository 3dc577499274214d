"""Undoing a set-up: the subscriptions, the dbt webhook and (when asked) the branch policy removed, then the
repository forgotten. A refusal stops before anything is forgotten, so the undo can be retried.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, select

from ..deliveries.store import detach_repository
from ..errors import NotFound
from ..history import record as activity
from ..models import (
    CiRun,
    DbtWebhookRecord,
    HookSubscriptionRecord,
    PullRequestRecord,
    Repository,
)
from .context import Actor, OnboardingContext, OnboardingError
from .report import Step

log = logging.getLogger(__name__)


def unlink(ctx: OnboardingContext, repository_id: int, actor: Actor, *, remove_policy: bool = False) -> list[Step]:
    """Remove a repository's subscriptions, dbt webhook and (when asked) the branch policy, then forget
    the repository. What Azure DevOps or dbt Cloud no longer has is fine; a refusal stops before
    forgetting anything, so the undo can be retried."""
    with ctx.db.session() as s:
        repo = s.get(Repository, repository_id)
        if repo is None:
            raise OnboardingError(f"no repository {repository_id} is linked")
        org_name, project_id, policy_id = repo.organization.name, repo.ado_project_id, repo.policy_id
        account_id = repo.dbt_account_id
        hooks = [(h.id, h.ado_subscription_id, h.event_type) for h in s.scalars(
            select(HookSubscriptionRecord).where(HookSubscriptionRecord.repository_id == repository_id))]
        dbt_hook = s.scalar(select(DbtWebhookRecord.dbt_webhook_id).where(
            DbtWebhookRecord.repository_id == repository_id))
    steps: list[Step] = []
    ado = ctx.azure_devops(actor, org_name)
    gone = 0
    for _, subscription_id, _event in hooks:
        if subscription_id:
            try:
                ado.delete_subscription(subscription_id)
                gone += 1
            except NotFound:
                pass
    steps.append(Step("service hooks", "removed", f"{gone} of {len(hooks)} subscriptions deleted "
                                                  "(the rest were already gone)"))
    if dbt_hook:
        try:
            ctx.dbt(account_id).delete_webhook(dbt_hook)
            steps.append(Step("dbt webhook", "removed", dbt_hook))
        except NotFound:
            steps.append(Step("dbt webhook", "removed", f"{dbt_hook} was already gone"))
    if remove_policy and policy_id:
        try:
            ado.delete_policy(project_id, policy_id)
            steps.append(Step("branch policy", "removed", f"policy {policy_id}"))
        except NotFound:
            steps.append(Step("branch policy", "removed", f"policy {policy_id} was already gone"))
    elif policy_id:
        steps.append(Step("branch policy", "kept", f"policy {policy_id} still requires the status: remove it "
                                                   "in Azure DevOps or unlink with the policy"))
    with ctx.db.session() as s:
        s.execute(delete(HookSubscriptionRecord).where(HookSubscriptionRecord.repository_id == repository_id))
        s.execute(delete(DbtWebhookRecord).where(DbtWebhookRecord.repository_id == repository_id))
        s.execute(delete(CiRun).where(CiRun.pull_request_ref.in_(
            select(PullRequestRecord.id).where(PullRequestRecord.repository_id == repository_id))))
        s.execute(delete(PullRequestRecord).where(PullRequestRecord.repository_id == repository_id))
        detach_repository(s, repository_id)
        activity.forget_repository(s, repository_id)
        s.execute(delete(Repository).where(Repository.id == repository_id))
    steps.append(Step("link", "removed", "the bridge no longer acts on this repository's pull requests"))
    log.info("unlinked repository %s (%s) by %s", repository_id, org_name, actor.name)
    return steps
