"""Connecting Azure DevOps through Entra ID from the console, for real: gunicorn (2 workers), PostgreSQL,
a Celery worker reading the profile, MSAL against the sandbox's fake identity platform."""

from __future__ import annotations

import re
from html import unescape

import requests
from sqlalchemy import select

from bridge.devstack import ADMIN_TOKEN, ENTRA_USER
from bridge.identity import EntraSettings, http_session
from bridge.models import Connection
from bridge.sandbox.control import wait_until


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def signed_in_browser(bridge) -> requests.Session:
    browser = requests.Session()
    page = browser.get(f"{bridge.web}/console", timeout=10)
    assert page.url.endswith("/console/sign-in?next=/console")  # not signed in: sent to sign in
    answer = browser.post(f"{bridge.web}/console/sign-in", data={"token": ADMIN_TOKEN, "csrf": csrf_of(page.text)},
                          timeout=10)
    assert answer.status_code == 200 and "Signed in as admin" in answer.text
    return browser


def consent(bridge, browser: requests.Session) -> tuple[dict, str]:
    """Start connecting in the console, consent at the (fake) identity platform; returns the form answer."""
    start = browser.get(f"{bridge.web}/login/azure-active-directory", allow_redirects=False, timeout=10)
    assert start.status_code == 302
    auth_uri = start.headers["Location"]
    assert auth_uri.startswith("https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize")
    idp = http_session(EntraSettings(client_id="-", client_secret="-", test_base=bridge.sandbox.url))
    page = idp.get(auth_uri, timeout=10).text
    action = unescape(re.search(r'action="([^"]+)"', page).group(1))
    fields = {k: unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', page)}
    assert action == f"{bridge.web}/complete/azure-active-directory"
    return fields, action


def test_connect_from_the_console_then_disconnect(bridge):
    browser = signed_in_browser(bridge)
    fields, action = consent(bridge, browser)
    done = browser.post(action, data=fields, timeout=10)  # Entra's form_post back to the bridge
    assert done.status_code == 200 and f"Connected {ENTRA_USER['upn']}" in done.text

    def profile_read():
        with bridge.db.session() as s:
            c = s.scalar(select(Connection).where(Connection.upn == ENTRA_USER["upn"]))
            return c if c is not None and c.organizations == ["fabrikam"] else None

    connection = wait_until(profile_read, timeout=30, what="a worker reading the profile")
    assert connection.status == "ok" and connection.connected_by == "admin"
    page = browser.get(f"{bridge.web}/console", timeout=10).text
    assert ENTRA_USER["upn"] in page and "fabrikam" in page
    gone = browser.post(f"{bridge.web}/console/connections/{connection.id}/disconnect",
                        data={"csrf": csrf_of(page)}, timeout=10)
    assert gone.status_code == 200 and "tokens were deleted" in gone.text
    with bridge.db.session() as s:
        assert s.get(Connection, connection.id) is None


def test_replayed_tampered_and_foreign_answers_are_refused(bridge):
    browser = signed_in_browser(bridge)
    fields, action = consent(bridge, browser)
    tampered = browser.post(action, data={**fields, "state": "forged-state"}, timeout=10)
    assert tampered.status_code == 400 and "no connect flow" in tampered.text
    other = requests.Session()  # another browser presenting this answer: not bound to it
    foreign = other.post(action, data=fields, timeout=10)
    assert foreign.status_code == 400 and "someone else" in foreign.text
    fields, action = consent(bridge, browser)
    assert browser.post(action, data=fields, timeout=10).status_code == 200
    replay = browser.post(action, data=fields, timeout=10)
    assert replay.status_code == 400 and "no connect flow" in replay.text


def test_console_forms_need_csrf_and_sign_in(bridge):
    anonymous = requests.Session()
    assert anonymous.get(f"{bridge.web}/login/azure-active-directory", allow_redirects=False,
                         timeout=10).status_code == 302  # to sign-in
    page = anonymous.get(f"{bridge.web}/console/sign-in", timeout=10)
    assert anonymous.post(f"{bridge.web}/console/sign-in", data={"token": ADMIN_TOKEN},
                          timeout=10).status_code == 400  # no CSRF token
    assert anonymous.post(f"{bridge.web}/console/sign-in", data={"token": "wrong", "csrf": csrf_of(page.text)},
                          timeout=10).status_code == 401
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_workers_act_as_the_connected_user_and_stop_when_its_tokens_die(bridge):
    from .conftest import CONFIG

    sb = bridge.sandbox
    config = bridge.stack.workdir / "bridge.yaml"
    as_user = CONFIG.replace("      pat: ${ADO_PAT}\n",
                             "      pat: ${ADO_PAT}\n      identity: {kind: user, upn: ada@fabrikam.example}\n", 1)
    sb._post("/idp/setup", {"token_lifetime": 60})  # below MSAL's 5-minute margin: every use refreshes
    try:
        browser = signed_in_browser(bridge)
        fields, action = consent(bridge, browser)
        assert browser.post(action, data=fields, timeout=10).status_code == 200
        config.write_text(as_user)
        out = bridge.stack.run_cli(bridge.env, "config", "apply", str(config))
        assert out.returncode == 0, out.stdout + out.stderr

        before = len(sb.exchanges())
        pr = sb.open_pr(title="as Ada")["pr"]
        wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=30, what="CI as the connected user")
        ado_calls = [e for e in sb.exchanges()[before:] if e["service"] == "ado" and f"/{pr}" in e["path"]]
        assert ado_calls and {e["as"] for e in ado_calls} == {f"user:{ENTRA_USER['oid']}"}

        sb._post("/idp/revoke", {"oid": ENTRA_USER["oid"]})  # an admin revokes Ada's sessions
        opened = sb.open_pr(title="after revocation")

        def connection():
            with bridge.db.session() as s:
                return s.scalar(select(Connection).where(Connection.upn == ENTRA_USER["upn"]))

        dead = wait_until(lambda: (c := connection()) and c.status == "needs_reauth" and c, timeout=30,
                          what="the connection marked as needing re-authorization")
        assert "AADSTS700082" in dead.status_reason
        assert "needs_reauth" in browser.get(f"{bridge.web}/console", timeout=10).text
        assert sb.statuses(opened["pr"]) == []  # nothing posted, nothing retried in a loop
    finally:
        config.write_text(CONFIG)
        bridge.stack.run_cli(bridge.env, "config", "apply", str(config))
        sb._post("/idp/setup", {"token_lifetime": 3600})


def test_entra_sign_in_for_admins_only(bridge):
    sb = bridge.sandbox
    bob = {"oid": "0b0b0b0b-0000-4000-8000-000000000b0b", "tid": ENTRA_USER["tid"], "upn": "bob@fabrikam.example",
           "name": "Bob"}

    def sign_in_as(user: dict) -> requests.Response:
        sb._post("/idp/setup", {"users": [user], "sign_in": user["oid"]})
        browser = requests.Session()
        start = browser.get(f"{bridge.web}/console/sign-in/entra", allow_redirects=False, timeout=10)
        auth_uri = start.headers["Location"]
        assert "user_impersonation" not in auth_uri  # sign-in asks for no Azure DevOps access
        idp = http_session(EntraSettings(client_id="-", client_secret="-", test_base=sb.url))
        page = idp.get(auth_uri, timeout=10).text
        fields = {k: unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', page)}
        return browser.post(f"{bridge.web}/complete/azure-active-directory", data=fields, timeout=10)

    try:
        assert "Sign in with Microsoft" in requests.get(f"{bridge.web}/console/sign-in", timeout=10).text
        admin = sign_in_as(ENTRA_USER)
        assert admin.status_code == 200 and f"Signed in as {ENTRA_USER['upn']}" in admin.text
        refused = sign_in_as(bob)
        assert refused.status_code == 403 and "not a bridge admin" in refused.text
    finally:
        sb._post("/idp/setup", {"sign_in": ENTRA_USER["oid"]})
