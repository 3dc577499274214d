"""Builds API clients for stored organizations and dbt accounts, decrypting their secrets on demand."""

from __future__ import annotations

import threading

import requests

from ..clients.azure_devops import AzureDevOpsClient, Credentials, PersonalAccessToken
from ..clients.dbt_cloud import DbtCloudClient
from ..clients.http import check_base_url
from ..crypto import SecretBox
from ..errors import ConfigError
from ..models import DbtAccount, Organization
from ..settings import Settings


class Connections:
    """One per process. HTTP sessions are kept per thread, so keep-alive works in a threaded worker."""

    def __init__(self, settings: Settings, box: SecretBox):
        self.settings = settings
        self.box = box
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=8)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            self._local.session = session
        return session

    def credentials_for(self, org: Organization) -> Credentials:
        """The identity workers act as in ``org``; fails closed when none is configured."""
        if not org.pat_enc:
            raise ConfigError(f"organization {org.name!r} has no identity for API calls (set `pat`)")
        return PersonalAccessToken(self.box.decrypt(org.pat_enc))

    def azure_devops(self, org: Organization) -> AzureDevOpsClient:
        url = check_base_url(org.url, allow_insecure_http=self.settings.allow_insecure_http,
                             what=f"organization {org.name}")
        return AzureDevOpsClient(url, self.credentials_for(org), session=self._session(),
                                 timeout=self.settings.http_timeout)

    def dbt_cloud(self, account: DbtAccount) -> DbtCloudClient:
        if not account.api_token_enc:
            raise ConfigError(f"dbt Cloud account {account.id} has no api_token")
        url = check_base_url(account.url, allow_insecure_http=self.settings.allow_insecure_http,
                             what=f"dbt Cloud account {account.id}")
        return DbtCloudClient(url, account.id, self.box.decrypt(account.api_token_enc), session=self._session(),
                              timeout=self.settings.http_timeout)
