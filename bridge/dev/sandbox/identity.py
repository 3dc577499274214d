"""A fake Microsoft identity platform (Entra ID) for tests and the demo.

MSAL insists on https authorities, so the real authority URL is kept and the bridge's HTTP client is
pointed here for local testing only (``BRIDGE_ENTRA_TEST_BASE``): ``https://login.microsoftonline.com/…``
is served under ``/idp/…``. It implements what MSAL uses: OIDC discovery, the authorize endpoint (which
consents at once as the chosen user), and the token endpoint for the authorization-code (PKCE S256,
nonce, exact redirect URI, single-use codes), refresh-token (rotating) and client-credentials grants.
Errors follow Entra's shapes (``invalid_grant`` with AADSTS codes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from html import escape
from urllib.parse import urlencode

from flask import Blueprint, jsonify, redirect, request

AUTHORITY_HOST = "https://login.microsoftonline.com"
ADO_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
GROUPS_LIMIT = 200  # groups a JWT carries before Entra switches to an overage claim


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@dataclass
class User:
    oid: str
    tid: str
    upn: str
    name: str
    mfa_required: bool = False
    groups: tuple[str, ...] = ()
    guest_in: tuple[str, ...] = ()   # other tenants this person was invited to (Entra B2B guest)


@dataclass
class IdentityState:
    users: dict[str, User] = field(default_factory=dict)
    current: str | None = None                   # who "signs in" at the authorize endpoint
    codes: dict[str, dict] = field(default_factory=dict)
    refresh_tokens: dict[str, dict] = field(default_factory=dict)
    access_tokens: dict[str, dict] = field(default_factory=dict)
    clients: dict[str, str] = field(default_factory=dict)   # client_id → secret
    service_principals: dict[str, dict] = field(default_factory=dict)  # client_id → {oid, tid}
    token_lifetime: int = 3600
    lock: threading.RLock = field(default_factory=threading.RLock)

    def who(self, bearer: str) -> dict | None:
        """The identity an access token stands for, if it is still valid."""
        with self.lock:
            token = self.access_tokens.get(bearer)
            if token is None or token["expires"] < time.time():
                return None
            return token


def _error(code: str, aadsts: int, description: str, status: int = 400, **extra):
    return jsonify({"error": code, "error_description": f"AADSTS{aadsts}: {description}",
                    "error_codes": [aadsts], "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ"),
                    "trace_id": secrets.token_hex(8), "correlation_id": secrets.token_hex(8), **extra}), status


def _specific(tenant: str) -> bool:
    return tenant not in ("organizations", "common", "consumers")


def _signed_in_tenant(user: User, tenant: str) -> str | None:
    """The tenant a sign-in through ``/<tenant>/`` lands in: the home tenant for the multi-tenant endpoints,
    the named one when the person is at home or a guest there, and None (AADSTS50020) otherwise."""
    if not _specific(tenant):
        return user.tid
    return tenant if tenant in (user.tid, *user.guest_in) else None


def _refused_at_authorize(args, aadsts: int, description: str):
    """Entra sends the browser back with an error instead of a code."""
    return _answer(args, {"error": "access_denied", "error_description": f"AADSTS{aadsts}: {description}",
                          "state": args.get("state", "")})


def _answer(args, query: dict):
    """Send the browser back to the client: a self-posting form (form_post) or a redirect; every value the
    caller sent is escaped, as a real page must."""
    if args.get("response_mode") == "form_post":
        fields = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in query.items())
        return (f'<html><body onload="document.forms[0].submit()"><form method="post" '
                f'action="{escape(args.get("redirect_uri") or "")}">{fields}</form></body></html>')
    return redirect(f"{args.get('redirect_uri')}?{urlencode(query)}")


def create_identity_blueprint(state: IdentityState) -> Blueprint:
    bp = Blueprint("idp", __name__)

    @bp.get("/idp/<tenant>/v2.0/.well-known/openid-configuration")
    def discovery(tenant):
        base = f"{AUTHORITY_HOST}/{tenant}"
        return jsonify({"authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                        "token_endpoint": f"{base}/oauth2/v2.0/token",
                        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                        "issuer": f"{AUTHORITY_HOST}/{{tenantid}}/v2.0",
                        "response_modes_supported": ["query", "fragment", "form_post"]})

    @bp.get("/idp/<tenant>/oauth2/v2.0/authorize")
    def authorize(tenant):
        args = request.args
        with state.lock:
            user = state.users.get(args.get("login_hint") or state.current or "")
            if user is None:
                return "no user is signed in at the fake identity platform", 400
            signed_in_to = _signed_in_tenant(user, tenant)
            if signed_in_to is None:
                return _refused_at_authorize(args, 50020, f"User account '{user.upn}' from identity provider "
                                             "does not exist in tenant and cannot access the application in that "
                                             "tenant. The account needs to be added as an external user first.")
            code = secrets.token_urlsafe(24)
            state.codes[code] = {"client_id": args.get("client_id"), "redirect_uri": args.get("redirect_uri"),
                                 "nonce": args.get("nonce"), "challenge": args.get("code_challenge"),
                                 "scope": args.get("scope", ""), "user": user.oid, "used": False,
                                 "tenant": signed_in_to}
        query = {"code": code, "state": args.get("state", ""),
                 "client_info": _b64({"uid": user.oid, "utid": user.tid}), "session_state": secrets.token_hex(8)}
        return _answer(args, query)

    def issue(user: User, client_id: str, scope: str, *, nonce: str | None = None, refresh: bool = True,
              tenant: str | None = None) -> dict:
        """Tokens for ``user`` signed in to ``tenant`` (their home tenant unless they are a guest there)."""
        tid = tenant or user.tid
        access = secrets.token_urlsafe(32)
        with state.lock:
            state.access_tokens[access] = {"oid": user.oid, "tid": tid, "upn": user.upn,
                                           "expires": time.time() + state.token_lifetime, "client_id": client_id}
        resource_scopes = " ".join(s for s in scope.split() if s not in ("openid", "profile", "offline_access"))
        now = int(time.time())
        claims = {"iss": f"{AUTHORITY_HOST}/{tid}/v2.0", "aud": client_id, "sub": user.oid, "oid": user.oid,
                  "tid": tid, "preferred_username": user.upn, "name": user.name, "iat": now, "nbf": now,
                  "exp": now + 3600}
        if nonce:
            claims["nonce"] = nonce
        if len(user.groups) > GROUPS_LIMIT:  # Entra's "overage": the token points at Graph instead
            claims["_claim_names"] = {"groups": "src1"}
            claims["_claim_sources"] = {"src1": {"endpoint": f"https://graph.microsoft.com/v1.0/users/{user.oid}"
                                                             "/getMemberObjects"}}
        elif user.groups:
            claims["groups"] = list(user.groups)
        body = {"token_type": "Bearer", "access_token": access, "expires_in": state.token_lifetime,
                "ext_expires_in": state.token_lifetime, "scope": resource_scopes}
        if refresh:  # a user: Entra adds who it is; an app (client credentials) gets only the access token
            body["id_token"] = f"{_b64({'typ': 'JWT', 'alg': 'none'})}.{_b64(claims)}.sig"
            body["client_info"] = _b64({"uid": user.oid, "utid": user.tid})
            rt = secrets.token_urlsafe(32)
            with state.lock:
                state.refresh_tokens[rt] = {"user": user.oid, "client_id": client_id, "scope": scope, "tenant": tid}
            body["refresh_token"] = rt
        return body

    @bp.post("/idp/<tenant>/oauth2/v2.0/token")
    def token(tenant):
        form = request.form
        client_id = form.get("client_id", "")
        with state.lock:
            secret = state.clients.get(client_id)
        if secret is None or form.get("client_secret") != secret:
            return _error("invalid_client", 7000215, "Invalid client secret provided.", 401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            with state.lock:
                issued = state.codes.get(form.get("code", ""))
                if issued is None:
                    return _error("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
                if issued["used"]:
                    return _error("invalid_grant", 54005, "OAuth2 Authorization code was already redeemed.")
                issued["used"] = True
            if issued["redirect_uri"] != form.get("redirect_uri"):
                return _error("invalid_grant", 50011, "The redirect URI does not match the one used to authorize.")
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if challenge != issued["challenge"]:
                return _error("invalid_grant", 501481, "The Code_Verifier does not match the code_challenge.")
            user = state.users[issued["user"]]
            if user.mfa_required:
                return _error("interaction_required", 50076, "Due to a configuration change … you must use "
                              "multi-factor authentication.", suberror="basic_action")
            return jsonify(issue(user, client_id, form.get("scope", issued["scope"]), nonce=issued["nonce"],
                                 tenant=issued["tenant"]))
        if grant == "refresh_token":
            with state.lock:
                held = state.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if held is None:
                return _error("invalid_grant", 700082, "The refresh token has expired due to inactivity. The token "
                              "was issued on … and was inactive for 90.00:00:00.", suberror="bad_token")
            user = state.users[held["user"]]
            if user.mfa_required:
                return _error("interaction_required", 50076, "Due to a configuration change … you must use "
                              "multi-factor authentication.", suberror="basic_action")
            refreshed_in = _signed_in_tenant(user, tenant) if _specific(tenant) else held["tenant"]
            if refreshed_in is None:
                return _error("invalid_grant", 50020, f"User account '{user.upn}' does not exist in tenant.")
            return jsonify(issue(user, client_id, form.get("scope", held["scope"]), tenant=refreshed_in))
        if grant == "client_credentials":
            with state.lock:
                sp = state.service_principals.get(client_id)
            if sp is None:
                return _error("unauthorized_client", 700016, "Application was not found in the directory.")
            principal = User(oid=sp["oid"], tid=sp["tid"], upn=f"sp-{client_id}", name=f"service principal {client_id}")
            return jsonify(issue(principal, client_id, form.get("scope", ""), refresh=False))
        return _error("unsupported_grant_type", 70003, f"The app requested an unsupported grant type {grant!r}.")

    # -- control ----------------------------------------------------------------------------------------

    @bp.post("/_sandbox/idp/setup")
    def control_setup():
        body = request.get_json(force=True)
        with state.lock:
            for client_id, secret in (body.get("clients") or {}).items():
                state.clients[client_id] = secret
            for u in body.get("users") or []:
                state.users[u["oid"]] = User(u["oid"], u["tid"], u["upn"], u.get("name", u["upn"]),
                                             bool(u.get("mfa_required", False)), tuple(u.get("groups") or ()),
                                             tuple(u.get("guest_in") or ()))
            if "sign_in" in body:
                state.current = body["sign_in"]
            for client_id, sp in (body.get("service_principals") or {}).items():
                state.service_principals[client_id] = sp
            if "token_lifetime" in body:
                state.token_lifetime = int(body["token_lifetime"])
        return jsonify({"ok": True})

    @bp.post("/_sandbox/idp/revoke")
    def control_revoke():
        """Revoke a user's refresh tokens (an admin's revokeSignInSessions, or 90 days of inactivity)."""
        oid = request.get_json(force=True)["oid"]
        with state.lock:
            for rt in [rt for rt, held in state.refresh_tokens.items() if held["user"] == oid]:
                state.refresh_tokens.pop(rt)
            for at in [at for at, held in state.access_tokens.items() if held["oid"] == oid]:
                state.access_tokens.pop(at)
        return jsonify({"ok": True})

    @bp.post("/_sandbox/idp/expire-access-tokens")
    def control_expire():
        with state.lock:
            for held in state.access_tokens.values():
                held["expires"] = 0
        return jsonify({"ok": True})

    return bp
