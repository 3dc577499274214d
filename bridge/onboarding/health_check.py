"""The periodic check (beat, or `bridge hooks check`): each organization's subscriptions, as its configured
identity, and each account's dbt webhooks; heals what may be healed, records what a person must fix.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from ..domain import HOOK_EVENTS
from ..errors import ApiError, BridgeError, ConfigError
from ..models import (
    DbtWebhookRecord,
    HookSubscriptionRecord,
    Organization,
    Repository,
    utcnow,
)
from .context import Actor, OnboardingContext, problem_of
from .dbt_webhooks import ensure_dbt_webhook
from .service_hooks import repair_hook

log = logging.getLogger(__name__)


def check_health(ctx: OnboardingContext) -> dict:
    """List each organization's subscriptions (as its configured identity) and each account's webhooks;
    heal what may be healed, record what a person must fix. Returns counts by what was found."""
    counts: dict[str, int] = {}
    with ctx.db.session() as s:
        orgs = s.execute(select(Organization.id, Organization.name).where(Organization.id.in_(
            select(HookSubscriptionRecord.organization_id)))).all()
        accounts = s.scalars(select(DbtWebhookRecord.dbt_account_id).distinct()).all()
    for org_id, org_name in orgs:
        with ctx.lock(f"hooks:{org_id}"):
            check_org(ctx, org_id, org_name, counts)
    for account_id in accounts:
        check_account(ctx, account_id, counts)
    return counts


def check_org(ctx: OnboardingContext, org_id: int, org_name: str, counts: dict) -> None:
    with ctx.db.session() as s:
        records = s.scalars(select(HookSubscriptionRecord).where(
            HookSubscriptionRecord.organization_id == org_id)).all()
        repos = {r.id: r.ado for r in s.scalars(select(Repository).where(Repository.organization_id == org_id))}
        for r in records:
            s.expunge(r)
    try:
        ado = ctx.azure_devops(Actor(f"organization {org_name}"), org_name)
        remote = {h.subscription_id: h for h in ado.list_subscriptions()}
    except ConfigError:
        raise  # the checker's own fault (e.g. a key that cannot read the stored token), not the subscriptions'
    except BridgeError as exc:
        problem = (f"could not list service hooks of {org_name} as its configured identity: {problem_of(exc)} "
                   "(it needs View subscriptions permission)")
        with ctx.db.session() as s:
            s.execute(update(HookSubscriptionRecord).where(HookSubscriptionRecord.organization_id == org_id)
                      .values(problem=problem, last_checked_at=utcnow()))
        counts["unchecked"] = counts.get("unchecked", 0) + len(records)
        log.warning(problem)
        return
    versions = dict(HOOK_EVENTS)
    for record in records:
        found = remote.get((record.ado_subscription_id or "").lower())
        try:
            outcome, _why = repair_hook(ctx, ado, record, found, repo=repos[record.repository_id],
                                        version=versions.get(record.event_type, "1.0"), by_admin=False)
        except ApiError:
            outcome = "unhealed"
        key = "healed" if outcome in ("repaired", "created") else outcome
        counts[key] = counts.get(key, 0) + 1


def check_account(ctx: OnboardingContext, account_id: int, counts: dict) -> None:
    with ctx.db.session() as s:
        records = s.execute(select(DbtWebhookRecord.id, DbtWebhookRecord.repository_id, Repository.ci_job_id,
                                   Repository.teardown_job_id).join(Repository, Repository.id ==
                                                                    DbtWebhookRecord.repository_id)
                            .where(DbtWebhookRecord.dbt_account_id == account_id)).all()
    try:
        dbt = ctx.dbt(account_id)
    except ConfigError:
        raise
    except BridgeError as exc:
        log.warning("dbt webhooks of account %s not checked: %s", account_id, exc)
        return
    for _record_id, repository_id, ci_job, teardown in records:
        try:
            outcome, _ = ensure_dbt_webhook(ctx, dbt, repository_id, account_id,
                                                  tuple(j for j in (ci_job, teardown) if j))
        except BridgeError as exc:
            with ctx.db.session() as s:
                s.execute(update(DbtWebhookRecord).where(DbtWebhookRecord.id == _record_id).values(
                    problem=f"could not check or heal: {problem_of(exc)}", last_checked_at=utcnow()))
            outcome = "unhealed"
        key = "healed" if outcome in ("repaired", "created") else outcome
        counts[f"dbt {key}"] = counts.get(f"dbt {key}", 0) + 1
