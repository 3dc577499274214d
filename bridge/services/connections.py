"""Builds API clients for stored organizations and dbt accounts, decrypting their secrets on demand."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

import requests
from sqlalchemy import select

from ..api_calls import ApiCalls
from ..clients.azure_devops import API_VERSION, AzureDevOpsClient, Credentials, PersonalAccessToken
from ..clients.dbt_cloud import DbtCloudClient
from ..clients.http import CountedTransport, RequestsTransport, Transport, plain_session
from ..crypto import SecretBox
from ..db import Database
from ..errors import ConfigError, VersionOutOfRange
from ..identity import REDIRECT_PATH, Identity, IdentityHosts, ReauthRequired
from ..models import Connection, DbtAccount, Organization
from ..people import PersonId
from ..settings import Settings
from ..urls import check_base_url
from .entra import ConnectionStore


class ServicePrincipalCredentials:
    """An Entra service principal added to the organization: client credentials in the org's tenant."""

    def __init__(self, identity: Identity, *, tenant: str, client_id: str, secret: str):
        self._identity, self._tenant, self._client_id, self._secret = identity, tenant, client_id, secret

    def authorization(self) -> str:
        token = self._identity.app_token(tenant=self._tenant, client_id=self._client_id, secret=self._secret)
        return f"Bearer {token}"

    def __repr__(self) -> str:
        return f"ServicePrincipalCredentials({self._client_id}@{self._tenant})"


class Connections:
    """One per process: API clients with the credentials each organization and account is configured with."""

    def __init__(self, settings: Settings, box: SecretBox, *, db: Database | None = None,
                 entra: ConnectionStore | None = None, transport: Transport | None = None,
                 calls: ApiCalls | None = None):
        self.settings = settings
        self.box = box
        self.db = db
        self.entra = entra
        self.transport = transport  # None: a RequestsTransport per thread (keep-alive in a threaded worker)
        self.calls = calls  # counts each organization's Azure DevOps calls (the rate limit's window)
        self._local = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings, db: Database, box: SecretBox,
                      lock: Callable[[str], AbstractContextManager] | None = None, *,
                      identity_hosts: IdentityHosts | None = None, calls: ApiCalls | None = None) -> Connections:
        """The one way workers and the CLI assemble credentials: Entra ID connections when configured."""
        entra = None
        if settings.entra is not None:
            identity = Identity(settings.entra, redirect_uri=f"{settings.public_url}{REDIRECT_PATH}",
                                hosts=identity_hosts)
            entra = ConnectionStore(db, box, identity, lock)
        return cls(settings, box, db=db, entra=entra, calls=calls)

    def _transport(self, ca_bundle: str | None = None) -> Transport:
        """This thread's transport (one per CA bundle an organization trusts)."""
        if self.transport is not None:
            return self.transport
        if not hasattr(self._local, "transports"):
            self._local.transports = {}
        transports = self._local.transports
        transport = transports.get(ca_bundle)
        if transport is None:
            session = plain_session()  # the transport passes what the environment says (http.environment_settings)
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=8)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            transport = transports[ca_bundle] = RequestsTransport(session, ca_bundle=ca_bundle)
        return transport

    def credentials_for(self, org: Organization) -> Credentials:
        """The identity workers act as in ``org`` (a PAT, a connected person, a service principal); fails
        closed when none is configured."""
        kind = org.identity_kind or "pat"
        if kind == "user":
            return self._connected_user(org)
        if kind == "service_principal":
            if self.entra is None or not (org.sp_tenant_id and org.sp_client_id and org.sp_secret_enc):
                raise ConfigError(f"organization {org.name!r} acts as a service principal, but Entra ID or the "
                                  "principal's tenant/client_id/client_secret is not configured")
            return ServicePrincipalCredentials(self.entra.identity, tenant=org.sp_tenant_id,
                                               client_id=org.sp_client_id,
                                               secret=self.box.decrypt(org.sp_secret_enc))
        if not org.pat_enc:
            raise ConfigError(f"organization {org.name!r} has no identity for API calls (set `pat`)")
        return PersonalAccessToken(self.box.decrypt(org.pat_enc))

    def _connected_user(self, org: Organization) -> Credentials:
        if self.entra is None or self.db is None:
            raise ConfigError(f"organization {org.name!r} acts as a connected user, but Entra ID is not configured")
        if not (org.identity_tid and org.identity_oid):
            raise ConfigError(f"organization {org.name!r} acts as a connected user, but which one is not known: "
                              f"choose one with `bridge orgs identity {org.name} --kind user --user <oid>@<tid>`")
        return self.connected_person(PersonId(org.identity_tid, org.identity_oid), organization=org.name)

    def connected_person(self, person: PersonId, *, organization: str | None = None) -> Credentials:
        """The credentials of a person connected through Entra ID, by tenant and object id. A person may be
        connected more than once (at home, and as a guest of an organization's tenant): a healthy connection
        that reaches ``organization`` is preferred."""
        if self.entra is None or self.db is None:
            raise ConfigError("acting as a connected person needs Entra ID (BRIDGE_ENTRA_CLIENT_ID)")
        with self.db.session() as s:
            candidates = s.execute(select(Connection.id, Connection.organizations, Connection.status)
                                   .where(Connection.of(person)).order_by(Connection.id)).all()
        wanted = (organization or "").lower()
        candidates = sorted(candidates, key=lambda c: (wanted not in {o.lower() for o in c[1] or []},
                                                       c[2] != "ok"))
        if not candidates:
            raise ReauthRequired(f"no Azure DevOps account of {person} is connected; connect it in the console "
                                 "(/console → Connect Azure DevOps)")
        return self.entra.credentials(candidates[0][0])

    def azure_devops_at(self, url: str, credentials: Credentials, *, what: str, org: Organization | None = None,
                        transport: Transport | None = None) -> AzureDevOpsClient:
        """A client for an organization URL with given credentials (onboarding acts as the person asking),
        speaking the organization's API version and trusting its CA bundle when it is a configured one."""
        url = check_base_url(url, allow_insecure_http=self.settings.allow_insecure_http, what=what)
        api_version = org.api_version if org is not None and org.api_version else API_VERSION
        return AzureDevOpsClient(url, credentials, api_version=api_version,
                                 transport=transport or self._transport(org.ca_bundle if org is not None else None),
                                 timeout=self.settings.http_timeout)

    def azure_devops(self, org: Organization, *, kind: str = "work") -> AzureDevOpsClient:
        """A client acting as the organization's identity; its calls are counted as ``kind`` (``sweep`` for
        the PR sweep's listings) against the organization's rate-limit window."""
        transport = self._transport(org.ca_bundle)
        if self.calls is not None:
            name, calls = org.name, self.calls
            transport = CountedTransport(transport, lambda: calls.count(name, kind=kind))
        return self.azure_devops_at(org.url, self.credentials_for(org), what=f"organization {org.name}", org=org,
                                    transport=transport)

    def dbt_cloud(self, account: DbtAccount) -> DbtCloudClient:
        if not account.api_token_enc:
            raise ConfigError(f"dbt Cloud account {account.id} has no api_token")
        url = check_base_url(account.url, allow_insecure_http=self.settings.allow_insecure_http,
                             what=f"dbt Cloud account {account.id}")
        return DbtCloudClient(url, account.id, self.box.decrypt(account.api_token_enc), transport=self._transport(),
                              timeout=self.settings.http_timeout)


DEPLOYMENTS = {"hosted": "Azure DevOps Services", "onPremises": "Azure DevOps Server"}


def check_server(client: AzureDevOpsClient, organization: str) -> str:
    """What the organization's server is, read with one cheap call (connectionData) at the organization's API
    version; a ConfigError saying which version to set when the server does not serve that one."""
    try:
        found = client.connection_data()
    except VersionOutOfRange as exc:
        newest = f"; set api_version: '{exc.supported}'" if exc.supported else ""
        raise ConfigError(f"organization {organization}: {client.base_url} does not serve REST API "
                          f"{client.api_version}{newest} for it (7.0 for Server 2022, 6.0 for Server 2020)") from None
    kind = DEPLOYMENTS.get(found["deployment"], found["deployment"])
    note = "" if found["deployment"] == "hosted" or client.api_version != API_VERSION else \
        " (an on-premises server: set api_version to what it serves, 7.0 for Server 2022, 6.0 for Server 2020)"
    return f"{kind}, REST API {client.api_version} answered{note}"
