"""The repository's dbt Cloud webhook: made to exist, active, for its CI and teardown jobs, at the bridge's
URL; its signing secret stored encrypted.
"""

from __future__ import annotations

from sqlalchemy import select

from ..clients.dbt_cloud import DbtCloudClient
from ..contracts import DBT_CLOUD_WEBHOOK_PATH
from ..domain import (
    DBT_WEBHOOK_EVENTS,
    DbtWebhook,
    Repair,
    dbt_webhook_verdict,
)
from ..models import DbtWebhookRecord, utcnow
from .context import OnboardingContext


def ensure_dbt_webhook(ctx: OnboardingContext, dbt: DbtCloudClient, repository_id: int, account_id: int,
                        job_ids: tuple[int, ...]) -> tuple[str, str]:
    url = f"{ctx.settings.public_url}{DBT_CLOUD_WEBHOOK_PATH}"
    with ctx.db.session() as s:
        record = s.scalar(select(DbtWebhookRecord).where(DbtWebhookRecord.repository_id == repository_id))
        if record is None:
            record = DbtWebhookRecord(repository_id=repository_id, dbt_account_id=account_id)
            s.add(record)
            s.flush()
        record_id, webhook_id = record.id, record.dbt_webhook_id
    found: DbtWebhook | None = next((h for h in dbt.list_webhooks() if h.webhook_id == webhook_id), None) \
        if webhook_id else None
    verdict = dbt_webhook_verdict(found, url=url, job_ids=job_ids)
    name = f"ado-dbt bridge (repository {repository_id})"
    outcome, secret = "unchanged", None
    if verdict.repair is Repair.RECREATE:
        created = dbt.create_webhook(name=name, url=url, job_ids=job_ids, event_types=DBT_WEBHOOK_EVENTS)
        found, secret = created, created.hmac_secret
        outcome = "created" if webhook_id is None else "repaired"
    elif verdict.repair is Repair.UPDATE:
        found = dbt.update_webhook(found.webhook_id, name=name, url=url,
                                   job_ids=tuple(sorted(set(job_ids) | set(found.job_ids))),
                                   event_types=tuple(sorted(set(DBT_WEBHOOK_EVENTS) | set(found.event_types))))
        outcome = "repaired"
    problem = None
    with ctx.db.session() as s:
        record = s.get(DbtWebhookRecord, record_id)
        record.dbt_webhook_id, record.dbt_account_id = found.webhook_id, account_id
        record.status = "active" if found.active else "inactive"
        if secret:
            record.secret_enc = ctx.box.encrypt(secret)
        elif outcome == "created" or record.secret_enc is None:
            problem = ("dbt Cloud did not return this webhook's secret: copy it from Account settings → "
                       "Webhooks into the account's webhook_secret")
        record.problem, record.last_checked_at = problem, utcnow()
        if outcome == "repaired":
            record.healed += 1
            record.last_healed_reason = verdict.reason
    detail = f"{found.webhook_id} for jobs {', '.join(map(str, job_ids))} ({verdict.reason})"
    return outcome, detail + (f"; {problem}" if problem else "")
