"""Onboarding: find repositories, set up their CI, undo it, keep the subscriptions healthy, rotate their
credentials. One module per feature (``discovery``, ``dbt_accounts``, ``setup``, ``service_hooks``, ``dbt_webhooks``,
``unlink``, ``health_check``, ``rotation``) over one ``OnboardingContext``; ``Onboarding`` is the context with
the operations the workers, the CLI and the console's jobs call. The decisions (what a subscription's state
calls for) are pure rules in ``domain``; these modules carry them out.
"""

from __future__ import annotations

from datetime import timedelta

from ..catalog import AdoProject, DbtCatalog, DbtEnvironment, DbtJob, RepositoryOffer
from . import dbt_accounts, discovery, health_check, rotation, setup, unlink
from .context import Actor, OnboardingContext, OnboardingError
from .report import SetupReport, Step
from .setup import NewJob, SetupRequest

__all__ = ["Actor", "NewJob", "Onboarding", "OnboardingError", "SetupReport", "SetupRequest", "Step"]


class Onboarding(OnboardingContext):
    """The onboarding operations, each in its feature's module."""

    def organizations(self, actor: Actor) -> list[str]:
        return discovery.organizations(self, actor)

    def projects(self, actor: Actor, organization: str, *, search: str = "") -> list[AdoProject]:
        return discovery.projects(self, actor, organization, search=search)

    def repositories(self, actor: Actor, organization: str, project: str, *,
                     search: str = "") -> list[RepositoryOffer]:
        return discovery.repositories(self, actor, organization, project, search=search)

    def matching_repositories(self, actor: Actor, organization: str, project: str,
                              pattern: str) -> list[RepositoryOffer]:
        return discovery.matching_repositories(self, actor, organization, project, pattern)

    def dbt_jobs(self, account_id: int) -> list[DbtJob]:
        return discovery.dbt_jobs(self, account_id)

    def save_dbt_account(self, account_id: int, url: str, token: str) -> DbtCatalog:
        return dbt_accounts.save_checked(self, account_id, url, token)

    def dbt_environments(self, account_id: int) -> list[DbtEnvironment]:
        return discovery.dbt_environments(self, account_id)

    def dbt_catalog(self, account_id: int) -> DbtCatalog:
        return discovery.dbt_catalog(self, account_id)

    def setup(self, request: SetupRequest, actor: Actor) -> SetupReport:
        return setup.setup(self, request, actor)

    def unlink(self, repository_id: int, actor: Actor, *, remove_policy: bool = False) -> list[Step]:
        return unlink.unlink(self, repository_id, actor, remove_policy=remove_policy)

    def check_health(self) -> dict:
        return health_check.check_health(self)

    def rotate(self, actor: Actor, *, repository_id: int | None = None,
               grace: timedelta = timedelta(minutes=10)) -> list[Step]:
        return rotation.rotate(self, actor, repository_id=repository_id, grace=grace)
