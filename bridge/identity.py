"""Microsoft Entra ID through MSAL: the connect flow, and tokens for the identities workers act as.

One MSAL application object per process and authority (sharing one HTTP cache, so OIDC discovery is not
repeated); the token cache of each connection is a ``SerializableTokenCache`` stored encrypted by the
caller, loaded before use and saved only when MSAL changed it. Errors that no retry can fix (consent
missing, refresh token expired or revoked, MFA now required, wrong tenant) become :class:`ReauthRequired`
with the reason, so the work stops instead of retrying uselessly.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import msal
import requests

from .errors import FlowRejected, IdentityError, ReauthRequired
from .settings import EntraSettings

__all__ = ["EntraSettings", "FlowRejected", "Identity", "IdentityError", "ReauthRequired"]

AZURE_DEVOPS_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
USER_SCOPES = [f"{AZURE_DEVOPS_RESOURCE}/user_impersonation"]
APP_SCOPES = [f"{AZURE_DEVOPS_RESOURCE}/.default"]
REDIRECT_PATH = "/complete/azure-active-directory"

# Entra error codes that mean "a person must sign in again"; retrying cannot help (reference/auth.md §1.8).
REAUTH_CODES = {
    50076: "multi-factor authentication is now required",
    50079: "multi-factor authentication enrolment is required",
    50072: "multi-factor authentication enrolment is required",
    50173: "the grant was revoked",
    65001: "consent is missing (the user or an admin must consent to the app)",
    70008: "the refresh token expired or was revoked",
    700082: "the refresh token expired after 90 days without use",
    70043: "the sign-in frequency policy requires a new sign-in",
    50020: "the user is not a member or guest of the tenant (wrong tenant for this organization)",
}


def _unchanged(url: str) -> str:
    return url


@dataclass(frozen=True)
class IdentityHosts:
    """How this process reaches the identity platform: the HTTP session MSAL and the profile client use, and
    where a person's browser is sent. Microsoft's own hosts unless the dev tooling injects its fake."""

    session: Callable[[], requests.Session] = field(default=requests.Session)
    browser_url: Callable[[str], str] = field(default=_unchanged)


def _reason(result: Mapping) -> tuple[str, bool]:
    """(a reason without secrets, whether a person must sign in again) for an MSAL error dict."""
    codes = result.get("error_codes") or [
        int(c) for c in re.findall(r"AADSTS(\d+)", str(result.get("error_description") or ""))[:1]]
    for code in codes:
        if code in REAUTH_CODES:
            return f"{REAUTH_CODES[code]} (AADSTS{code})", True
    error = result.get("error", "unknown_error")
    if error in ("invalid_grant", "interaction_required", "consent_required", "login_required"):
        return f"Entra ID answered {error}" + (f" (AADSTS{codes[0]})" if codes else ""), True
    return f"Entra ID answered {error}" + (f" (AADSTS{codes[0]})" if codes else ""), False


class Identity:
    """One per process: builds MSAL applications, runs the connect flow, hands out access tokens."""

    def __init__(self, settings: EntraSettings, *, redirect_uri: str, hosts: IdentityHosts | None = None):
        self.settings = settings
        self.redirect_uri = redirect_uri
        self.hosts = hosts or IdentityHosts()
        self._http = self.hosts.session()
        self._http_cache: dict = {}
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._lock = threading.Lock()

    def _app(self, authority: str | None = None, cache: msal.TokenCache | None = None,
             credential: str | None = None, client_id: str | None = None) -> msal.ConfidentialClientApplication:
        return msal.ConfidentialClientApplication(
            client_id or self.settings.client_id, client_credential=credential or self.settings.client_secret,
            authority=authority or self.settings.authority, token_cache=cache, http_client=self._http,
            http_cache=self._http_cache, instance_discovery=False, timeout=10)

    # -- connecting a user ------------------------------------------------------------------------------

    def browser_uri(self, uri: str) -> str:
        """Where to send a person's browser: ``uri`` itself, but for an injected fake identity platform."""
        return self.hosts.browser_url(uri)

    def http_session(self) -> requests.Session:
        """A new session to the identity platform's hosts (and the Azure DevOps profile host)."""
        return self.hosts.session()

    def authority_for(self, tenant: str | None) -> str:
        """The configured authority, or the same host with a specific tenant (a guest signing in there)."""
        if not tenant:
            return self.settings.authority
        parts = urlsplit(self.settings.authority)
        return f"{parts.scheme}://{parts.netloc}/{tenant}"

    def begin_connect(self, *, login_hint: str | None = None, sign_in_only: bool = False,
                      tenant: str | None = None) -> dict:
        """Start MSAL's auth-code flow (PKCE S256, state, nonce). The flow must be kept secret: server-side, or
        sealed (encrypted) in the browser's cookie.
        ``sign_in_only`` asks for no API access: OpenID Connect sign-in to the console. ``tenant`` signs in
        to that tenant instead of the configured authority's."""
        return self._app(self.authority_for(tenant)).initiate_auth_code_flow([] if sign_in_only else USER_SCOPES,
                                                   redirect_uri=self.redirect_uri,
                                                   state=secrets.token_urlsafe(32), login_hint=login_hint,
                                                   response_mode="form_post")

    def finish_connect(self, flow: dict, auth_response: Mapping[str, str], *,
                       tenant: str | None = None) -> tuple[str, dict]:
        """Redeem the code. Returns (serialized token cache, id token claims)."""
        cache = msal.SerializableTokenCache()
        try:
            result = self._app(self.authority_for(tenant), cache=cache).acquire_token_by_auth_code_flow(
                flow, dict(auth_response))
        except ValueError:
            raise FlowRejected("the sign-in answer does not match the connect flow (state)") from None
        except RuntimeError:
            raise FlowRejected("the sign-in answer does not match the connect flow (nonce)") from None
        if "error" in result:
            reason, _ = _reason(result)
            raise IdentityError(reason, code=result.get("error"))
        return cache.serialize(), result.get("id_token_claims") or {}

    # -- tokens for work --------------------------------------------------------------------------------

    def user_token(self, cache_blob: str, *, tenant: str | None = None) -> tuple[str, str | None]:
        """An access token for Azure DevOps from a connection's cache, refreshed silently when due.

        Returns (access token, the cache to store again or None if unchanged). Raises ReauthRequired
        when a person must connect again, IdentityError for other refusals.
        """
        cache = msal.SerializableTokenCache()
        cache.deserialize(cache_blob)
        app = self._app(self.authority_for(tenant), cache=cache)
        accounts = app.get_accounts()
        if not accounts:
            raise ReauthRequired("no account in the stored token cache")
        result = app.acquire_token_silent_with_error(USER_SCOPES, account=accounts[0])
        if result is None:
            raise ReauthRequired("the stored token cache holds no usable token")
        if "error" in result:
            reason, reauth = _reason(result)
            raise (ReauthRequired if reauth else IdentityError)(reason, code=result.get("error"))
        return result["access_token"], cache.serialize() if cache.has_state_changed else None

    def app_token(self, *, tenant: str, client_id: str, secret: str) -> str:
        """A service principal's token (client credentials) against the organization's own tenant."""
        authority = self.authority_for(tenant)
        key = f"{authority}|{client_id}"
        with self._lock:  # one application object (and its in-memory token cache) per tenant and client
            app = self._apps.get(key)
            if app is None:
                app = self._apps[key] = self._app(authority=authority, credential=secret, client_id=client_id)
        result = app.acquire_token_for_client(APP_SCOPES)
        if "error" in result:
            reason, _ = _reason(result)
            raise ReauthRequired(f"service principal {client_id}: {reason}", code=result.get("error"))
        return result["access_token"]

    def remove_user(self, cache_blob: str) -> str:
        """Forget every token of a connection's cache (Entra has no refresh-token revocation endpoint)."""
        cache = msal.SerializableTokenCache()
        cache.deserialize(cache_blob)
        app = self._app(cache=cache)
        for account in app.get_accounts():
            app.remove_account(account)
        return cache.serialize()
