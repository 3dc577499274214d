"""A scripted person with a browser (a cookie-keeping HTTP session): signs in to the bridge's console and
consents at the sandbox's fake identity platform. The demo and the tests use it the way people click."""

from __future__ import annotations

import re
from html import unescape

import requests

from ..identity import REDIRECT_PATH
from .entra_redirect import LocalRedirect

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
FORM_FIELD = re.compile(r'name="([^"]+)" value="([^"]*)"')
FORM = re.compile(r'<form[^>]*method="post"[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    if found is None:
        raise AssertionError("the page carries no CSRF token")
    return found.group(1)


class Person:
    def __init__(self, web: str, sandbox_url: str):
        self.web = web.rstrip("/")
        self.browser = requests.Session()
        self.idp_url = sandbox_url.rstrip("/")
        # What the person's browser does at login.microsoftonline.com is served by the sandbox.
        self._idp = LocalRedirect(sandbox_url)

    @classmethod
    def signed_in_with_entra(cls, web: str, sandbox_url: str, user: dict) -> tuple[Person, requests.Response]:
        """``user`` (oid, tid, upn, name, …) registered at the fake identity platform, signed in there, and then
        signed in to the console: (the person, the page the console answered)."""
        response = requests.post(f"{sandbox_url.rstrip('/')}/_sandbox/idp/setup",
                                 json={"users": [user], "sign_in": user["oid"]}, timeout=10)
        response.raise_for_status()
        someone = cls(web, sandbox_url)
        return someone, someone.sign_in_with_entra()

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.browser.get(f"{self.web}{path}", timeout=10, **kwargs)

    def post_form(self, path: str, data: dict | None = None, *, page: str | None = None) -> requests.Response:
        """Submit a console form, with the CSRF token of ``page`` (default: the console's home page)."""
        page = page if page is not None else self.get("/console").text
        return self.browser.post(f"{self.web}{path}", data={**(data or {}), "csrf": csrf_of(page)}, timeout=10)

    def press(self, page: str, button: str, data: dict | None = None) -> requests.Response:
        """Press the button labelled ``button`` on ``page``: post its form's hidden fields (and ``data``)."""
        for action, body in FORM.findall(page):
            if re.search(rf"<button>\s*{re.escape(button)}\s*</button>", body):
                fields = {unescape(k): unescape(v) for k, v in HIDDEN.findall(body)}
                return self.browser.post(f"{self.web}{unescape(action)}", data={**fields, **(data or {})},
                                         timeout=10)
        raise AssertionError(f"the page has no button {button!r}")

    def sign_in_with_token(self, token: str) -> requests.Response:
        page = self.get("/console/sign-in")
        return self.post_form("/console/sign-in", {"token": token}, page=page.text)

    def at_identity_platform(self, auth_uri: str) -> tuple[str, dict]:
        """Consent as whoever the fake identity platform has signed in; returns its form_post (action, fields)."""
        page = self._idp.get(auth_uri, timeout=10).text
        action = re.search(r'action="([^"]+)"', page)
        if action is None:
            raise AssertionError(f"the identity platform answered no form: {page[:200]}")
        return unescape(action.group(1)), {k: unescape(v) for k, v in FORM_FIELD.findall(page)}

    def sign_in_with_entra(self) -> requests.Response:
        start = self.get("/console/sign-in/entra", allow_redirects=False)
        action, fields = self.at_identity_platform(start.headers["Location"])
        return self.browser.post(action, data=fields, timeout=10)

    def connect_azure_devops(self, *, tenant: str | None = None) -> requests.Response:
        """Console → Connect Azure DevOps → consent → back at the bridge (which stores the connection)."""
        start = self.get("/login/azure-active-directory", params={"tenant": tenant} if tenant else None,
                         allow_redirects=False)
        if start.status_code != 302:
            return start
        action, fields = self.at_identity_platform(start.headers["Location"])
        if not action.endswith(REDIRECT_PATH):
            raise AssertionError(f"the identity platform answered to {action}, not the bridge")
        return self.browser.post(action, data=fields, timeout=10)
