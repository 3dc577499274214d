"""Connecting Azure DevOps through Entra ID from the console, for real: gunicorn (2 workers), PostgreSQL,
a Celery worker reading the profile, MSAL against the sandbox's fake identity platform."""

from __future__ import annotations

import requests
from sqlalchemy import select

from bridge.dev.person import Person, csrf_of
from bridge.dev.sandbox.control import wait_until
from bridge.dev.stack import ADMIN_GROUP, ADMIN_TOKEN, ENTRA_USER
from bridge.models import Connection


def admin(bridge) -> Person:
    """A person signed in to the console with the local admin token."""
    someone = Person(bridge.web, bridge.sandbox.url)
    page = someone.get("/console")
    assert page.url.endswith("/console/sign-in?next=/console")  # not signed in: sent to sign in
    answer = someone.sign_in_with_token(ADMIN_TOKEN)
    assert answer.status_code == 200 and "Signed in as admin (admin)" in answer.text
    return someone


def pending_answer(someone: Person, **params) -> tuple[str, dict]:
    """Start connecting and consent, but keep the identity platform's answer instead of posting it."""
    start = someone.get("/login/azure-active-directory", params=params or None, allow_redirects=False)
    assert start.status_code == 302
    tenant = params.get("tenant", "organizations")
    # the fake identity platform is where a browser is sent in tests (login.microsoftonline.com otherwise)
    assert start.headers["Location"].startswith(f"{someone.idp_url}/idp/{tenant}/oauth2/v2.0/authorize")
    action, fields = someone.at_identity_platform(start.headers["Location"])
    return action, fields


def test_connect_from_the_console_then_disconnect(bridge):
    someone = admin(bridge)
    action, fields = pending_answer(someone)
    assert action == f"{bridge.web}/complete/azure-active-directory"
    done = someone.browser.post(action, data=fields, timeout=10)  # Entra's form_post back to the bridge
    assert done.status_code == 200 and f"Connected {ENTRA_USER['upn']}" in done.text

    def profile_read():
        with bridge.db.session() as s:
            c = s.scalar(select(Connection).where(Connection.upn == ENTRA_USER["upn"]))
            return c if c is not None and c.organizations == ["fabrikam"] else None

    connection = wait_until(profile_read, timeout=30, what="a worker reading the profile")
    assert connection.status == "ok"
    assert (connection.connected_by, connection.connected_by_name) == ("token:admin", "admin")
    page = someone.get("/console").text
    assert ENTRA_USER["upn"] in page and "fabrikam" in page
    gone = someone.post_form(f"/console/connections/{connection.id}/disconnect", {"confirmed": "1"}, page=page)
    assert gone.status_code == 200 and "tokens were deleted" in gone.text
    with bridge.db.session() as s:
        assert s.get(Connection, connection.id) is None


def test_replayed_tampered_and_foreign_answers_are_refused(bridge):
    someone = admin(bridge)
    action, fields = pending_answer(someone)
    tampered = someone.browser.post(action, data={**fields, "state": "forged-state"}, timeout=10)
    assert tampered.status_code == 400 and "no connect flow" in tampered.text
    other = requests.Session()  # another browser presenting this answer: not bound to it
    foreign = other.post(action, data=fields, timeout=10)
    assert foreign.status_code == 400 and "someone else" in foreign.text
    # … and it did not use the flow up: its owner still finishes it
    assert someone.browser.post(action, data=fields, timeout=10).status_code == 200
    replay = someone.browser.post(action, data=fields, timeout=10)
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
        someone = admin(bridge)
        assert someone.connect_azure_devops().status_code == 200
        config.write_text(as_user)
        out = bridge.stack.run_cli(bridge.env, "config", "apply", str(config))  # resolves repos as Ada
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
        assert "needs_reauth" in someone.get("/console").text
        assert sb.statuses(opened["pr"]) == []  # nothing posted, nothing retried in a loop
        assert any("wait for an identity to be reconnected" in w for w in bridge.warnings()["deliveries-blocked"])

        assert someone.connect_azure_devops().status_code == 200  # Ada connects again: the waiting work runs
        wait_until(lambda: sb.latest_state(opened["pr"], 1) == "succeeded", timeout=45,
                   what="the delivery blocked on the dead connection, resumed on reconnect")
        assert connection().status == "ok"
    finally:
        config.write_text(CONFIG)
        bridge.stack.run_cli(bridge.env, "config", "apply", str(config))
        sb._post("/idp/setup", {"token_lifetime": 3600})


def person(name: str, n: int, **extra) -> dict:
    return {"oid": f"0b0b0b0b-0000-4000-8000-{n:012d}", "tid": ENTRA_USER["tid"], "upn": f"{name}@fabrikam.example",
            "name": name.title(), **extra}


def signed_in_as(bridge, user: dict) -> tuple[Person, requests.Response]:
    someone, page = Person.signed_in_with_entra(bridge.web, bridge.sandbox.url, user)
    start = someone.get("/console/sign-in/entra", allow_redirects=False)
    assert "user_impersonation" not in start.headers["Location"]  # sign-in asks for no Azure DevOps access
    return someone, page


def test_entra_sign_in_decides_admins_users_and_strangers(bridge):
    sb = bridge.sandbox
    try:
        assert "Sign in with Microsoft" in requests.get(f"{bridge.web}/console/sign-in", timeout=10).text
        _, ada = signed_in_as(bridge, ENTRA_USER)
        assert ada.status_code == 200 and f"Signed in as {ENTRA_USER['upn']} (admin)" in ada.text
        _, by_group = signed_in_as(bridge, person("carol", 2, groups=["x", ADMIN_GROUP]))
        assert by_group.status_code == 200 and "(admin)" in by_group.text
        _, user = signed_in_as(bridge, person("bob", 1))  # same tenant, no admin: a user
        assert user.status_code == 200 and "Signed in as bob@fabrikam.example (user)" in user.text
        stranger = {**person("mallory", 3), "tid": "00000000-0000-4000-8000-00000000beef"}
        _, refused = signed_in_as(bridge, stranger)
        assert refused.status_code == 403 and "may not use this console" in refused.text
        _, unreadable = signed_in_as(bridge, {**stranger, "groups": [f"g{i}" for i in range(250)]})
        assert unreadable.status_code == 403 and "groupMembershipClaims" in unreadable.text
    finally:
        sb._post("/idp/setup", {"sign_in": ENTRA_USER["oid"]})


def test_people_see_and_disconnect_only_their_own_connections(bridge):
    sb = bridge.sandbox
    sb._post("/idp/setup", {"sign_in": ENTRA_USER["oid"]})
    try:
        assert admin(bridge).connect_azure_devops().status_code == 200  # the admin connects Ada's account
        dan, home = signed_in_as(bridge, person("dan", 4))
        assert "(user)" in home.text and ENTRA_USER["upn"] not in home.text  # not Dan's connection
        mine = dan.connect_azure_devops()  # Dan connects his own
        assert mine.status_code == 200 and "Connected dan@fabrikam.example" in mine.text
        with bridge.db.session() as s:
            ids = {c.upn: c.id for c in s.scalars(select(Connection))}
        refused = dan.post_form(f"/console/connections/{ids[ENTRA_USER['upn']]}/disconnect", {"confirmed": "1"},
                                page=mine.text)
        assert refused.status_code == 404
        gone = dan.post_form(f"/console/connections/{ids['dan@fabrikam.example']}/disconnect", {"confirmed": "1"},
                             page=mine.text)
        assert gone.status_code == 200
        with bridge.db.session() as s:
            assert {c.upn for c in s.scalars(select(Connection))} >= {ENTRA_USER["upn"]}
            assert s.scalar(select(Connection).where(Connection.upn == "dan@fabrikam.example")) is None
    finally:
        sb._post("/idp/setup", {"sign_in": ENTRA_USER["oid"]})


def test_a_guest_of_the_organizations_tenant_is_told_and_connects_through_that_tenant(bridge):
    from .conftest import CONFIG

    sb = bridge.sandbox
    resource_tenant = "5e5e5e5e-0000-4000-8000-000000000005"  # fabrikam's Azure DevOps is connected here
    grace = person("grace", 5, guest_in=[resource_tenant])
    sb._post("/setup", {"org_tenants": {"fabrikam": resource_tenant}})
    sb._post("/idp/setup", {"users": [grace], "sign_in": grace["oid"]})

    def connections():
        with bridge.db.session() as s:
            return {(c.sign_in_tenant or "home"): c for c in s.scalars(
                select(Connection).where(Connection.upn == grace["upn"]))}

    try:
        # the admin names Grace's home account (object id and tenant): the one that cannot reach fabrikam
        out = bridge.stack.run_cli(bridge.env, "orgs", "identity", "fabrikam", "--kind", "user", "--user",
                                   f"{grace['oid']}@{grace['tid']}")
        assert out.returncode == 0, out.stdout + out.stderr
        someone = admin(bridge)
        # through "organizations": Grace lands in her home tenant, which fabrikam does not trust
        assert someone.connect_azure_devops().status_code == 200
        home = wait_until(lambda: (c := connections().get("home")) and c.status == "needs_reauth" and c,
                          timeout=30, what="the home-tenant connection found not to reach fabrikam")
        assert "reaches no organization named fabrikam" in home.status_reason and "guest" in home.status_reason

        action, fields = pending_answer(someone, tenant=resource_tenant)
        assert someone.browser.post(action, data=fields, timeout=10).status_code == 200
        guest = wait_until(lambda: (c := connections().get(resource_tenant)) and c.organizations == ["fabrikam"]
                           and c, timeout=30, what="the guest connection reaching fabrikam")
        assert guest.status == "ok" and guest.tenant_id == resource_tenant
        # two accounts share her sign-in name now: naming it is ambiguous, the object id and tenant are not
        out = bridge.stack.run_cli(bridge.env, "orgs", "identity", "fabrikam", "--kind", "user", "--user",
                                   grace["upn"])
        assert out.returncode == 1 and "2 connected accounts are named" in out.stdout + out.stderr
        out = bridge.stack.run_cli(bridge.env, "orgs", "identity", "fabrikam", "--kind", "user", "--user",
                                   f"{grace['oid']}@{resource_tenant}")
        assert out.returncode == 0, out.stdout + out.stderr

        opened = sb.open_pr(title="as a guest")
        wait_until(lambda: sb.latest_state(opened["pr"], 1) == "succeeded", timeout=30, what="CI as the guest")
        posts = [e for e in sb.exchanges() if e["method"] == "POST" and f"pullRequests/{opened['pr']}/" in e["path"]]
        assert posts and {e["as"] for e in posts} == {f"user:{grace['oid']}"}

        assert someone.get("/login/azure-active-directory", params={"tenant": "<script>"}).status_code == 400
        stranger_tenant = someone.connect_azure_devops(tenant="0c0c0c0c-0000-4000-8000-00000000000c")
        assert stranger_tenant.status_code == 400 and "AADSTS50020" in stranger_tenant.text
    finally:
        sb._post("/setup", {"org_tenants": {}})
        sb._post("/idp/setup", {"sign_in": ENTRA_USER["oid"]})
        config = bridge.stack.workdir / "bridge.yaml"
        config.write_text(CONFIG)
        bridge.stack.run_cli(bridge.env, "config", "apply", str(config))
