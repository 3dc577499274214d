"""Entra ID with the real MSAL library, offline: connect, silent use, refresh, expiry, revocation, replay.

The fake identity platform is the sandbox's (``bridge/dev/sandbox/identity.py``), reached through MSAL's
injected HTTP client; MSAL itself runs unmodified.
"""

from __future__ import annotations

import re
from html import unescape

import pytest
import requests

from bridge.clients.azure_devops import AzureDevOpsClient
from bridge.dev.entra_redirect import hosts_from_env, sandbox_hosts
from bridge.dev.sandbox import serving
from bridge.errors import ConfigError
from bridge.identity import EntraSettings, FlowRejected, Identity, IdentityError, ReauthRequired

CLIENT_ID, SECRET = "11111111-aaaa-4bbb-8ccc-000000000001", "app-secret-value"
ADA = {"oid": "0a0a0a0a-0000-4000-8000-00000000ada1", "tid": "7e7e7e7e-0000-4000-8000-000000000001",
       "upn": "ada@fabrikam.example", "name": "Ada"}


@pytest.fixture(scope="module")
def sandbox():
    with serving() as (url, _app):
        requests.post(f"{url}/_sandbox/idp/setup", json={"clients": {CLIENT_ID: SECRET}, "users": [ADA],
                                                          "sign_in": ADA["oid"]}, timeout=5).raise_for_status()
        yield url


@pytest.fixture
def identity(sandbox):
    settings = EntraSettings(client_id=CLIENT_ID, client_secret=SECRET)
    return Identity(settings, redirect_uri="https://bridge.example/complete/azure-active-directory",
                    hosts=sandbox_hosts(sandbox))


def browser_consent(identity: Identity, flow: dict) -> dict:
    """What the person's browser does: visit auth_uri, consent, and post the answer back (form_post)."""
    page = identity.http_session().get(flow["auth_uri"], timeout=5)
    page.raise_for_status()
    return {name: unescape(value) for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', page.text)}


def connect(identity: Identity) -> tuple[str, dict]:
    flow = identity.begin_connect()
    return identity.finish_connect(flow, browser_consent(identity, flow))


def test_flow_uses_pkce_state_nonce_and_the_azure_devops_scope(identity):
    flow = identity.begin_connect()
    assert {"state", "nonce", "code_verifier", "auth_uri"} <= set(flow)
    uri = flow["auth_uri"]
    assert "code_challenge_method=S256" in uri and "response_mode=form_post" in uri
    assert "499b84ac-1321-427f-aa17-267ca6975798%2Fuser_impersonation" in uri
    assert uri.startswith("https://login.microsoftonline.com/organizations/")


def test_connect_then_use_the_token_against_azure_devops(identity, sandbox):
    blob, claims = connect(identity)
    assert claims["oid"] == ADA["oid"] and claims["preferred_username"] == ADA["upn"]
    assert "refresh_token" not in claims and SECRET not in blob
    token, changed = identity.user_token(blob)
    assert changed is None  # served from the cache: nothing to save

    class Bearer:
        def authorization(self):
            return f"Bearer {token}"

    ado = AzureDevOpsClient(f"{sandbox}/fabrikam", Bearer())
    assert ado.get_repository("Fabrikam-Fiber-Git", "dbt-analytics").name == "dbt-analytics"
    me = requests.get(f"{sandbox}/vssps/_apis/profile/profiles/me", headers={"Authorization": f"Bearer {token}"},
                      params={"api-version": "7.1"}, timeout=5).json()
    assert me["id"] == ADA["oid"]


def test_a_cache_moved_to_another_process_refreshes_silently_and_rotates(identity, sandbox):
    requests.post(f"{sandbox}/_sandbox/idp/setup", json={"token_lifetime": 60}, timeout=5)  # < MSAL's 5 min margin
    try:
        blob, _ = connect(identity)
        # a fresh process's object
        worker = Identity(identity.settings, redirect_uri=identity.redirect_uri, hosts=identity.hosts)
        first, saved = worker.user_token(blob)
        assert saved is not None and saved != blob  # refreshed: the rotated refresh token must be stored
        second, saved_again = worker.user_token(saved)
        assert second != first and saved_again is not None
        with pytest.raises(ReauthRequired, match="90 days"):
            worker.user_token(blob)  # the first refresh token was rotated away
    finally:
        requests.post(f"{sandbox}/_sandbox/idp/setup", json={"token_lifetime": 3600}, timeout=5)


def test_revoked_grant_requires_reauthorization(identity, sandbox):
    requests.post(f"{sandbox}/_sandbox/idp/setup", json={"token_lifetime": 60}, timeout=5)
    try:
        blob, _ = connect(identity)
        requests.post(f"{sandbox}/_sandbox/idp/revoke", json={"oid": ADA["oid"]}, timeout=5)
        with pytest.raises(ReauthRequired) as info:
            identity.user_token(blob)
        assert "AADSTS700082" in info.value.reason and "eyJ" not in info.value.reason
    finally:
        requests.post(f"{sandbox}/_sandbox/idp/setup", json={"token_lifetime": 3600}, timeout=5)


def test_mfa_required_is_a_reauthorization(identity, sandbox):
    flow = identity.begin_connect()
    answer = browser_consent(identity, flow)
    requests.post(f"{sandbox}/_sandbox/idp/setup", json={"users": [{**ADA, "mfa_required": True}]}, timeout=5)
    try:
        with pytest.raises(IdentityError, match="multi-factor"):
            identity.finish_connect(flow, answer)
    finally:
        requests.post(f"{sandbox}/_sandbox/idp/setup", json={"users": [ADA]}, timeout=5)


def test_tampered_state_and_replayed_code_are_refused(identity):
    flow = identity.begin_connect()
    answer = browser_consent(identity, flow)
    with pytest.raises(FlowRejected):
        identity.finish_connect(flow, {**answer, "state": "attacker-state"})
    other = identity.begin_connect()  # an attacker's flow cannot redeem the victim's answer
    with pytest.raises(FlowRejected):
        identity.finish_connect(other, answer)
    identity.finish_connect(flow, answer)
    with pytest.raises(IdentityError, match="AADSTS54005"):
        identity.finish_connect(flow, answer)  # the same code a second time


def test_disconnect_forgets_every_token(identity):
    blob, _ = connect(identity)
    emptied = identity.remove_user(blob)
    with pytest.raises(ReauthRequired, match="no account"):
        identity.user_token(emptied)


def test_service_principal_gets_an_app_token_from_the_org_tenant(identity, sandbox):
    requests.post(f"{sandbox}/_sandbox/idp/setup", json={
        "clients": {"sp-client": "sp-secret"},
        "service_principals": {"sp-client": {"oid": "5e5e5e5e-0000-4000-8000-000000000005", "tid": ADA["tid"]}}},
        timeout=5)
    token = identity.app_token(tenant=ADA["tid"], client_id="sp-client", secret="sp-secret")
    assert token and identity.app_token(tenant=ADA["tid"], client_id="sp-client", secret="sp-secret") == token
    with pytest.raises(ReauthRequired, match="invalid_client"):
        identity.app_token(tenant=ADA["tid"], client_id="sp-client-2", secret="wrong")


def test_settings_fail_closed(sandbox):
    assert EntraSettings.from_env({}) is None
    with pytest.raises(Exception, match="CLIENT_SECRET"):
        EntraSettings.from_env({"BRIDGE_ENTRA_CLIENT_ID": "x"})
    with pytest.raises(ConfigError, match="local testing only"):
        hosts_from_env({"BRIDGE_ENTRA_TEST_BASE": sandbox})
    assert hosts_from_env({}) is None


# -- connections: flows kept server-side, encrypted caches, worker credentials ----------------------------

@pytest.fixture
def store(identity, tmp_path):
    """The worker side (tokens, profile, disconnect); ``store.flows`` is the web side (connect flow)."""
    from bridge.connect import ConnectFlows
    from bridge.crypto import SecretBox, generate_key
    from bridge.db import Database, upgrade
    from bridge.services.entra import ConnectionStore

    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    upgrade(url)
    db, box = Database(url), SecretBox((generate_key(),))
    store = ConnectionStore(db, box, identity)
    store.flows = ConnectFlows(db, box, identity)
    return store


def consent_to(store, auth_uri: str) -> dict:
    page = store.identity.http_session().get(auth_uri, timeout=5)
    return {name: unescape(value) for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', page.text)}


def test_connect_stores_an_encrypted_cache_and_who_the_user_is(store, sandbox):
    answer = consent_to(store, store.flows.start(owner="admin"))
    connection = store.flows.complete("admin", answer)
    assert connection.upn == ADA["upn"] and connection.status == "ok" and connection.connected_by == "admin"
    assert store.refresh_profile(connection.id) == ["fabrikam"]  # a worker reads it with the user's token
    with store.db.engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT token_cache_enc FROM connections").scalar()
    assert raw.startswith("gAAAA") and "refresh" not in raw.lower() and "access_token" not in raw
    ado = AzureDevOpsClient(f"{sandbox}/fabrikam", store.credentials(connection.id))
    assert ado.get_repository("Fabrikam-Fiber-Git", "dbt-analytics").name == "dbt-analytics"


def test_flow_is_single_use_owned_and_survives_other_processes(store, identity):
    from bridge.connect import ConnectFlows

    auth_uri = store.flows.start(owner="alice")
    answer = consent_to(store, auth_uri)
    with pytest.raises(FlowRejected, match="someone else"):
        store.flows.complete("mallory", answer)   # the flow is gone now: a stolen answer is spent, not reusable
    auth_uri = store.flows.start(owner="alice")
    answer = consent_to(store, auth_uri)
    elsewhere = Identity(identity.settings, redirect_uri=identity.redirect_uri, hosts=identity.hosts)
    other_process = ConnectFlows(store.db, store.box, elsewhere)
    assert other_process.complete("alice", answer).upn == ADA["upn"]  # any worker or host can finish it
    with pytest.raises(FlowRejected, match="no connect flow"):
        other_process.complete("alice", answer)  # replay


def test_dead_tokens_mark_the_connection_and_reconnecting_heals_it(store, sandbox):
    requests.post(f"{sandbox}/_sandbox/idp/setup", json={"token_lifetime": 60}, timeout=5)
    try:
        connection = store.flows.complete("admin", consent_to(store, store.flows.start(owner="admin")))
        store.token(connection.id)
        requests.post(f"{sandbox}/_sandbox/idp/revoke", json={"oid": ADA["oid"]}, timeout=5)
        with pytest.raises(ReauthRequired):
            store.token(connection.id)
        with store.db.session() as s:
            from bridge.models import Connection

            row = s.get(Connection, connection.id)
            assert row.status == "needs_reauth" and "AADSTS700082" in row.status_reason
        with pytest.raises(ReauthRequired, match="700082"):
            store.token(connection.id)   # no retry storm: refused without asking Entra again
        again = store.flows.complete("admin", consent_to(store, store.flows.start(owner="admin")))
        assert again.id == connection.id and again.status == "ok"
        assert store.token(connection.id)
    finally:
        requests.post(f"{sandbox}/_sandbox/idp/setup", json={"token_lifetime": 3600}, timeout=5)


def test_disconnect_deletes_the_tokens(store):
    connection = store.flows.complete("admin", consent_to(store, store.flows.start(owner="admin")))
    assert store.flows.disconnect(connection.id)
    with pytest.raises(ReauthRequired, match="disconnected"):
        store.token(connection.id)
