"""The repository's Azure DevOps service-hook subscriptions: made to exist, enabled, at the bridge's URL,
with credentials of their own; each repair recorded on its row (the console and readiness show problems).
"""

from __future__ import annotations

import contextlib
import logging
import secrets

from sqlalchemy import select

from ..catalog import AdoRepository
from ..clients.azure_devops import AzureDevOpsClient
from ..domain import (
    HookStatus,
    HookSubscription,
    Repair,
    hook_events,
    hook_verdict,
)
from ..errors import ApiError, NotFound
from ..models import HookSubscriptionRecord, utcnow
from .context import OnboardingContext, problem_of

log = logging.getLogger(__name__)


def new_hook_record(ctx: OnboardingContext, s, repository_id: int, organization_id: int,
                    event_type: str) -> HookSubscriptionRecord:
    record = HookSubscriptionRecord(repository_id=repository_id, organization_id=organization_id,
                                    event_type=event_type, username=f"bridge-{secrets.token_hex(8)}",
                                    password_enc=ctx.box.encrypt(secrets.token_urlsafe(32)))
    s.add(record)
    s.flush()
    return record


def ensure_hooks(ctx: OnboardingContext, ado: AzureDevOpsClient, repository_id: int, organization_id: int,
                 repo: AdoRepository, *, by_admin: bool) -> list[tuple[str, str, str]]:
    """Make the repository's subscriptions exist, enabled, at the bridge's URL: [(outcome, event, why)]; the
    events the organization's server cannot deliver as the bridge needs are "skipped", with why."""
    remote = {h.subscription_id: h for h in ado.list_subscriptions()}
    by_username = {h.username: h for h in remote.values() if h.username}
    made, skipped = hook_events(ado.api_version)
    outcomes = [("skipped", event_type, why) for event_type, why in skipped]
    for event_type, version in made:
        with ctx.db.session() as s:
            record = s.scalar(select(HookSubscriptionRecord).where(
                HookSubscriptionRecord.repository_id == repository_id,
                HookSubscriptionRecord.event_type == event_type))
            if record is None:
                record = new_hook_record(ctx, s, repository_id, organization_id, event_type)
            s.expunge(record)
        found = remote.get((record.ado_subscription_id or "").lower()) or by_username.get(record.username)
        outcome, why = repair_hook(ctx, ado, record, found, repo=repo, version=version, by_admin=by_admin)
        outcomes.append((outcome, event_type, why))
    return outcomes


def repair_hook(ctx: OnboardingContext, ado: AzureDevOpsClient, record: HookSubscriptionRecord,
                found: HookSubscription | None, *, repo: AdoRepository, version: str,
                by_admin: bool) -> tuple[str, str]:
    status = found.status if found is not None else HookStatus.MISSING
    verdict = hook_verdict(status, url_ok=found is not None and found.url == ctx.webhook_url(),
                           by_admin=by_admin)
    password = ctx.box.decrypt(record.password_enc)
    args = {"event_type": record.event_type, "resource_version": version, "project_id": repo.project_id,
            "repository_id": repo.id, "url": ctx.webhook_url(), "username": record.username}
    outcome = "unchanged"
    try:
        if verdict.repair is Repair.UPDATE:
            found = ado.replace_subscription(found.subscription_id, password=password, **args)
            outcome = "repaired"
        elif verdict.repair is Repair.RECREATE:
            if found is not None:
                with contextlib.suppress(NotFound):
                    ado.delete_subscription(found.subscription_id)
            outcome = "created" if record.ado_subscription_id is None else "repaired"
            found = ado.create_subscription(password=password, **args)
    except ApiError as exc:
        record_hook(ctx, record.id, found, problem=f"could not repair ({verdict.reason}): {problem_of(exc)}")
        raise
    problem = verdict.reason if verdict.repair is Repair.SURFACE else None
    record_hook(ctx, record.id, found, problem=problem,
                      healed=verdict.reason if outcome == "repaired" else None)
    return outcome, verdict.reason


def record_hook(ctx: OnboardingContext, record_id: int, found: HookSubscription | None, *, problem: str | None,
                 healed: str | None = None) -> None:
    with ctx.db.session() as s:
        record = s.get(HookSubscriptionRecord, record_id)
        if found is not None:
            record.ado_subscription_id, record.status = found.subscription_id, found.status.value
        else:
            record.status = HookStatus.MISSING.value
        record.problem, record.last_checked_at = problem, utcnow()
        if healed:
            record.healed += 1
            record.last_healed_reason = healed
    if healed:
        log.info("healed service hook %s: %s", record_id, healed)
    if problem:
        log.warning("service hook %s needs a person: %s", record_id, problem)
