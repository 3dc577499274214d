"""New Basic credentials for each service hook without dropping a delivery: the receiver accepts the old
password for a grace period while Azure DevOps switches; a refused change keeps the old credentials.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select

from ..domain import HOOK_EVENTS
from ..errors import BridgeError
from ..models import (
    HookSubscriptionRecord,
    Organization,
    Repository,
    utcnow,
)
from .context import Actor, OnboardingContext, OnboardingError, problem_of
from .report import Step


def rotate(ctx: OnboardingContext, actor: Actor, *, repository_id: int | None = None,
           grace: timedelta = timedelta(minutes=10)) -> list[Step]:
    """New Basic credentials for each subscription without dropping deliveries: the receiver accepts the old
    password for ``grace`` while Azure DevOps switches; if Azure DevOps refuses the change, the old
    credentials stay in force."""
    with ctx.db.session() as s:
        query = select(HookSubscriptionRecord).where(HookSubscriptionRecord.ado_subscription_id.is_not(None))
        if repository_id is not None:
            query = query.where(HookSubscriptionRecord.repository_id == repository_id)
        records = s.scalars(query.order_by(HookSubscriptionRecord.id)).all()
        work = [(r.id, r.repository_id, r.event_type, r.ado_subscription_id, r.username, r.password_enc)
                for r in records]
        repos = {r.id: (org, r.ado) for r, org in s.execute(
            select(Repository, Organization.name).join(Organization).where(Repository.id.in_({w[1] for w in work})))}
    if not work:
        raise OnboardingError("no service-hook subscriptions to rotate" +
                              (f" for repository {repository_id}" if repository_id else ""))
    versions = dict(HOOK_EVENTS)
    steps, clients = [], {}
    for record_id, repo_id, event_type, subscription_id, username, old_enc in work:
        org_name, repo = repos[repo_id]
        new_password = secrets.token_urlsafe(32)
        with ctx.db.session() as s:  # first the receiver learns to accept both
            record = s.get(HookSubscriptionRecord, record_id)
            record.previous_password_enc, record.previous_valid_until = old_enc, utcnow() + grace
            record.password_enc = ctx.box.encrypt(new_password)
        try:
            ado = clients.get(org_name) or clients.setdefault(org_name, ctx.azure_devops(actor, org_name))
            ado.replace_subscription(subscription_id, event_type=event_type,
                                     resource_version=versions.get(event_type, "1.0"),
                                     project_id=repo.project_id, repository_id=repo.id,
                                     url=ctx.webhook_url(), username=username, password=new_password)
        except BridgeError as exc:
            with ctx.db.session() as s:  # Azure DevOps still sends the old password: keep it
                record = s.get(HookSubscriptionRecord, record_id)
                record.password_enc, record.previous_password_enc = old_enc, None
                record.previous_valid_until = None
            steps.append(Step(f"{org_name} {event_type}", "failed", f"kept the old credentials: {problem_of(exc)}"))
            continue
        steps.append(Step(f"{org_name} {event_type}", "rotated",
                          f"{username}: old password accepted until {grace.total_seconds():.0f}s from now"))
    return steps
