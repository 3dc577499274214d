"""The console's first pages: sign in, connect or disconnect Azure DevOps through Entra ID, see connections.

People sign in with Entra ID (OpenID Connect); ``access.decide`` says who is an admin and who may only
manage their own connections. A local admin token (``BRIDGE_ADMIN_TOKEN``, off unless set) exists for first
set-up and the demo. Session cookies are HttpOnly, SameSite=Lax and Secure on
https; every form carries a CSRF token. The connect flow is bound to the browser that started it by a
secret cookie (SameSite=None on https, because Entra answers with a cross-site form POST that would not
carry a Lax cookie), and is finished server-side by whichever web worker receives the answer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import (
    Blueprint,
    Response,
    abort,
    make_response,
    redirect,
        request,
    session,
    url_for,
)
from sqlalchemy import select

from ..access import decide
from ..identity import REDIRECT_PATH, FlowRejected, IdentityError
from ..models import Connection
from .pages import check_csrf, is_admin, page, signed_in
from .services import services

bp = Blueprint("console", __name__)

BINDING_COOKIE = "bridge_connect"


@bp.get("/console/sign-in")
def sign_in():
    entra, token = services().flows is not None, bool(services().settings.admin_token)
    return page("sign in", "sign_in.html", entra=entra, token=token, status=200 if entra or token else 503)


@bp.get("/console/sign-in/entra")
def sign_in_entra():
    flows = services().flows
    if flows is None:
        abort(404)
    return _start_flow(flows, purpose="sign-in", started_by="")


def _finish_sign_in(flows, owner: str, answer: dict) -> Response:
    claims = flows.complete_sign_in(owner, answer)
    decision = decide(claims, services().settings.access)
    if decision.role is None:
        return make_response(page("sign in", message=decision.reason + ".", error=True, status=403))
    _begin_session((claims.get("preferred_username") or claims.get("oid") or "").lower(), decision.role,
                   via="entra")
    return redirect(url_for("console.home"))


def _begin_session(user: str, role: str, *, via: str) -> None:
    session.clear()
    session["user"], session["role"], session["via"] = user, role, via
    session["csrf"] = secrets.token_urlsafe(32)  # a new session, a new CSRF token


def _visible(connection: Connection) -> bool:
    """Admins see every connection; other people only their own."""
    me = session.get("user", "")
    return is_admin() or me in ((connection.upn or "").lower(), (connection.connected_by or "").lower())


@bp.post("/console/sign-in")
def sign_in_submit():
    check_csrf()
    expected = services().settings.admin_token
    given = request.form.get("token", "")
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        return page("sign in", message="Wrong admin token.", error=True, status=401)
    _begin_session("admin", "admin", via="token")
    return redirect(url_for("console.home"))


@bp.post("/console/sign-out")
def sign_out():
    check_csrf()
    session.clear()
    return redirect(url_for("console.sign_in"))


@bp.get("/console")
@signed_in
def home():
    with services().db.session() as s:
        connections = [c for c in s.scalars(select(Connection).order_by(Connection.id)) if _visible(c)]
    return page("console", "home.html", message=request.args.get("message", ""), user=session["user"],
                role=session.get("role", "admin"), connections=connections, connect=services().flows is not None)


@bp.post("/console/connections/<int:connection_id>/disconnect")
@signed_in
def disconnect(connection_id: int):
    check_csrf()
    flows = services().flows
    with services().db.session() as s:
        connection = s.get(Connection, connection_id)
        mine = connection is not None and _visible(connection)
    if flows is None or not mine or not flows.disconnect(connection_id):
        abort(404)  # someone else's connection is as good as absent
    return redirect(url_for("console.home", message="Disconnected; its tokens were deleted."))


# -- the Entra ID connect flow --------------------------------------------------------------------------

def _binding_hash(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()


def _start_flow(flows, *, purpose: str, started_by: str, tenant: str | None = None):
    binding = secrets.token_urlsafe(32)
    try:
        auth_uri = flows.start(_binding_hash(binding), started_by=started_by, purpose=purpose, tenant=tenant)
    except FlowRejected as exc:
        return page("connect", message=exc.reason, error=True, status=400)
    response = redirect(auth_uri)
    https = services().settings.public_url.startswith("https://")
    response.set_cookie(BINDING_COOKIE, binding, max_age=600, httponly=True, secure=https,
                        samesite="None" if https else "Lax", path=REDIRECT_PATH)
    return response


@bp.get("/login/azure-active-directory")
@signed_in
def connect_start():
    flows = services().flows
    if flows is None:
        return page("connect", message="Entra ID is not configured.", error=True, status=503)
    return _start_flow(flows, purpose="connect", started_by=session["user"],
                       tenant=request.args.get("tenant", "").strip() or None)


@bp.route(REDIRECT_PATH, methods=["GET", "POST"])
def connect_complete():
    flows = services().flows
    if flows is None:
        abort(503)
    answer = request.form.to_dict() if request.method == "POST" else request.args.to_dict()
    binding = request.cookies.get(BINDING_COOKIE, "")
    try:
        if flows.purpose_of(answer) == "sign-in":
            response = _finish_sign_in(flows, _binding_hash(binding), answer)
            response.delete_cookie(BINDING_COOKIE, path=REDIRECT_PATH)
            return response
        # No session check here: Entra answers with a cross-site POST that carries no SameSite=Lax cookie;
        # the binding cookie, set only for a signed-in person, is the proof.
        connection = flows.complete(_binding_hash(binding), answer)
    except FlowRejected as exc:
        return page("connect", message=f"Connection refused: {exc.reason}", error=True, status=400)
    except IdentityError as exc:
        return page("connect", message=f"Microsoft Entra ID refused: {exc.reason}", error=True, status=400)
    services().dispatcher.refresh_connection(connection.id)
    response = redirect(url_for("console.home", message=f"Connected {connection.upn}."))
    response.delete_cookie(BINDING_COOKIE, path=REDIRECT_PATH)
    return response
