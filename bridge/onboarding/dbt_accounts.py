"""Adding a dbt Cloud account, or giving it a new service token: saved only once dbt Cloud accepts the token,
so a wrong token never replaces a working one. The caller then has the runs dbt Cloud refused retried."""

from __future__ import annotations

from ..catalog import DbtCatalog
from ..models import DbtAccount
from ..urls import check_base_url
from .context import OnboardingContext


def save_checked(ctx: OnboardingContext, account_id: int, url: str, token: str) -> DbtCatalog:
    """Check ``token`` against dbt Cloud (its jobs and environments), then store it; raises the client's
    ApiError (nothing stored) when dbt Cloud refuses it."""
    url = check_base_url(url, allow_insecure_http=ctx.settings.allow_insecure_http, what="the access URL")
    candidate = DbtAccount(id=account_id, url=url, api_token_enc=ctx.box.encrypt(token))  # not in a session
    dbt = ctx.connections.dbt_cloud(candidate)
    catalog = DbtCatalog(account_id, tuple(dbt.list_jobs()),
                         tuple(e for p in dbt.list_projects() for e in dbt.list_environments(p)))
    with ctx.db.session() as s:
        account = s.get(DbtAccount, account_id)
        if account is None:
            s.add(candidate)
        else:
            account.url, account.api_token_enc = url, candidate.api_token_enc
    return catalog
