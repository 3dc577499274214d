"""Console basics a new admin meets first: / leads to the console, errors are the console's own pages, sign-in
returns to the page asked for (same origin only) and shows the form again after a wrong token."""

from __future__ import annotations

import pytest

from bridge.dev.person import Person
from bridge.dev.stack import ADMIN_TOKEN


def test_the_root_leads_to_the_console(bridge):
    answer = bridge.http.get(f"{bridge.web}/", allow_redirects=False, timeout=10)
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/console")


@pytest.mark.parametrize("path", ["/no-such-page", "/console/jobs/999999999"])
def test_errors_are_the_consoles_own_pages(bridge, path):
    admin = Person(bridge.web, bridge.sandbox.url)
    admin.sign_in_with_token(ADMIN_TOKEN)
    answer = admin.get(path)
    assert answer.status_code == 404
    assert "<h2>404 — Not Found</h2>" in answer.text and 'href="/console/repositories"' in answer.text  # navigation
    assert "Back to the console" in answer.text and "Content-Security-Policy" in answer.headers


def test_a_bad_form_post_gets_the_consoles_400_page(bridge):
    admin = Person(bridge.web, bridge.sandbox.url)
    admin.sign_in_with_token(ADMIN_TOKEN)
    answer = admin.browser.post(f"{bridge.web}/console/sign-out", data={"csrf": "forged"}, timeout=10)
    assert answer.status_code == 400 and "missing or wrong CSRF token" in answer.text and "<h2>400" in answer.text


def test_sign_in_returns_to_the_page_asked_for(bridge):
    someone = Person(bridge.web, bridge.sandbox.url)
    asked = someone.get("/console/dbt-accounts")  # not signed in: sent to sign in, remembering where to
    assert asked.url.endswith("/console/sign-in?next=/console/dbt-accounts")
    landed = someone.post_form("/console/sign-in", {"token": ADMIN_TOKEN}, page=asked.text)
    assert landed.url == f"{bridge.web}/console/dbt-accounts" and "dbt Cloud accounts" in landed.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"])
def test_next_never_leads_off_the_site(bridge, target):
    someone = Person(bridge.web, bridge.sandbox.url)
    form = someone.get("/console/sign-in", params={"next": target})
    landed = someone.post_form("/console/sign-in", {"token": ADMIN_TOKEN}, page=form.text)
    assert landed.url == f"{bridge.web}/console"


def test_a_wrong_admin_token_shows_the_form_again(bridge):
    someone = Person(bridge.web, bridge.sandbox.url)
    answer = someone.sign_in_with_token("w" * 30)
    assert answer.status_code == 401 and "Wrong admin token." in answer.text
    assert 'name="token"' in answer.text  # try again without going back
    assert someone.post_form("/console/sign-in", {"token": ADMIN_TOKEN}, page=answer.text).status_code == 200
