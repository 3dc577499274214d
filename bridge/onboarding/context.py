"""Who onboarding acts as and where: the actor, the clients for an organization or a dbt Cloud account, and
the services every onboarding operation shares (``OnboardingContext``).

Everything a person asks for acts with that person's Azure DevOps identity (``Actor``), so Azure DevOps
enforces their permissions; the periodic health check acts as each organization's configured identity.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from sqlalchemy import func, select

from ..clients.azure_devops import AzureDevOpsClient
from ..clients.dbt_cloud import DbtCloudClient
from ..contracts import AZURE_DEVOPS_WEBHOOK_PATH
from ..crypto import SecretBox
from ..db import Database
from ..errors import BridgeError
from ..models import DbtAccount, Organization
from ..people import PersonId
from ..services.connections import Connections
from ..settings import Settings

# Azure DevOps organization names: letters, digits and hyphens, not starting or ending with a hyphen.
ORGANIZATION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?")


class OnboardingError(BridgeError):
    """A request onboarding cannot carry out; the message says what to change."""


@dataclass(frozen=True)
class Actor:
    """Who onboarding acts as: a connected person (``person``) or, with ``person`` None, each organization's
    configured identity. ``name`` is what records and messages call them (display only)."""

    name: str
    person: PersonId | None = None

    @classmethod
    def of(cls, person: PersonId | None, name: str = "",
           otherwise: str = "the organization's configured identity") -> Actor:
        """A connected person, or (``person`` None) each organization's configured identity."""
        return cls(name or str(person), person) if person else cls(otherwise)


def problem_of(exc: Exception) -> str:
    return str(exc)[:500]


class OnboardingContext:
    """The services onboarding's operations share, and the clients they act through."""

    def __init__(self, settings: Settings, db: Database, box: SecretBox, connections: Connections,
                 lock: Callable[[str], AbstractContextManager] | None = None):
        self.settings = settings
        self.db = db
        self.box = box
        self.connections = connections
        # One healer at a time per organization (set-up, beat, the CLI): two would both re-create a subscription.
        self.lock = lock or (lambda _key: nullcontext())

    def organization(self, name: str) -> Organization | None:
        with self.db.session() as s:
            org = s.scalar(select(Organization).where(func.lower(Organization.name) == name.lower()))
            if org is not None:
                s.expunge(org)
            return org

    def org_url(self, name: str, org: Organization | None = None) -> str:
        if org is not None:
            return org.url
        if not ORGANIZATION_NAME.fullmatch(name):
            raise OnboardingError(f"{name!r} is not an Azure DevOps organization name (letters, digits and hyphens)")
        return f"{self.settings.azure_devops_url}/{name}"

    def azure_devops(self, actor: Actor, organization: str) -> AzureDevOpsClient:
        """A client for ``organization`` acting as ``actor`` (one read of the organization's row)."""
        org = self.organization(organization)
        url = self.org_url(organization, org)  # a name that is no name is refused before anything else
        if actor.person:
            credentials = self.connections.connected_person(actor.person, organization=organization)
        elif org is None:
            raise OnboardingError(f"organization {organization!r} is not configured yet: act as a connected "
                                  "person (--as PERSON, or from the console) to set up its first repository")
        else:
            credentials = self.connections.credentials_for(org)
        return self.connections.azure_devops_at(url, credentials, what=f"organization {organization}", org=org)

    def dbt(self, account_id: int) -> DbtCloudClient:
        with self.db.session() as s:
            account = s.get(DbtAccount, account_id)
            if account is None:
                known = ", ".join(str(a) for a in s.scalars(select(DbtAccount.id))) or "none"
                raise OnboardingError(f"dbt Cloud account {account_id} is not configured (configured: {known}); "
                                      "add it in the console (dbt Cloud accounts), with `bridge dbt add-account`, "
                                      "or under dbt_cloud.accounts in the configuration file")
            s.expunge(account)
        return self.connections.dbt_cloud(account)


    def webhook_url(self) -> str:
        return f"{self.settings.public_url}{AZURE_DEVOPS_WEBHOOK_PATH}"
