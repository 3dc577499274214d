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
import logging
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
from ..connect import FLOW_TTL, SIGN_IN_TTL
from ..identity import REDIRECT_PATH, FlowRejected, IdentityError
from ..models import Connection
from ..people import LOCAL_ADMIN, PersonId
from .pages import check_csrf, is_admin, page, person, role, same_origin, signed_in, subject
from .services import services
from .sessions import renew

log = logging.getLogger(__name__)
bp = Blueprint("console", __name__)

BINDING_COOKIE = "bridge_connect"   # the secret that binds a connect flow to the browser that started it
SIGN_IN_COOKIE = "bridge_sign_in"   # a sign-in's sealed MSAL flow, kept by the browser until Entra answers


@bp.get("/")
def root():
    return redirect(url_for("console.home"))


def _sign_in_form(*, message: str = "", status: int | None = None):
    entra, token = services().flows is not None, bool(services().settings.admin_token)
    return page("sign in", "sign_in.html", entra=entra, token=token, message=message, error=bool(message),
                status=status or (200 if entra or token else 503))


@bp.get("/console/sign-in")
def sign_in():
    if (wanted := same_origin(request.args.get("next"))) is not None:
        session["next"] = wanted  # kept by the visitor's cookie until sign-in completes
    return _sign_in_form()


def _after_sign_in(wanted: str | None) -> Response:
    """Back to the page asked for before sign-in (same origin only), else the console's home."""
    return redirect(wanted or url_for("console.home"))


@bp.get("/console/sign-in/entra")
def sign_in_entra():
    flows = services().flows
    if flows is None:
        abort(404)
    auth_uri, sealed = flows.start_sign_in()  # nothing is stored until the person comes back
    response = redirect(auth_uri)
    _set_flow_cookie(response, SIGN_IN_COOKIE, sealed, max_age=int(SIGN_IN_TTL.total_seconds()))
    return response


def _finish_sign_in(flows, sealed: str, answer: dict) -> Response:
    claims = flows.complete_sign_in(sealed, answer)
    decision = decide(claims, services().settings.access)
    if decision.role is None:
        return make_response(page("sign in", message=decision.reason + ".", error=True, status=403))
    who = PersonId(str(claims.get("tid") or ""), str(claims.get("oid") or ""))
    wanted = same_origin(session.get("next"))
    _begin_session(who.subject, claims.get("preferred_username") or who.object_id, via="entra", claims={
        "tid": who.tenant_id, "oid": who.object_id, "preferred_username": claims.get("preferred_username") or "",
        "groups": list(claims.get("groups") or ()), "_claim_names": dict(claims.get("_claim_names") or {})})
    return _after_sign_in(wanted)


def _begin_session(subject: str, name: str, *, via: str, claims: dict | None = None) -> None:
    renew(session)  # a new session, with a new id and a new CSRF token
    session.update(subject=subject, name=name, via=via, claims=claims or {}, csrf=secrets.token_urlsafe(32))


def _visible(connection: Connection) -> bool:
    """Admins see every connection; other people only their own (the account, or one they connected)."""
    return is_admin() or person() == PersonId(connection.tenant_id, connection.oid) \
        or connection.connected_by == subject()


@bp.post("/console/sign-in")
def sign_in_submit():
    check_csrf()
    expected, throttle = services().settings.admin_token, services().token_sign_ins
    address = request.remote_addr or "unknown"
    wait = throttle.retry_after(address)
    if wait:
        log.warning("admin-token sign-in refused from %s: too many failures", address)
        response = make_response(page("sign in", message=f"Too many wrong tokens from your address; try again in "
                                      f"{int(wait) + 1} s.", error=True, status=429))
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    given = request.form.get("token", "")
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        throttle.failed(address)
        log.warning("admin-token sign-in failed from %s", address)
        return _sign_in_form(message="Wrong admin token.", status=401)  # the form again, to try once more
    throttle.succeeded(address)
    wanted = same_origin(session.get("next"))
    _begin_session(LOCAL_ADMIN, "admin", via="token")
    return _after_sign_in(wanted)


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
    return page("console", "home.html", message=request.args.get("message", ""), user=session.get("name", ""),
                role=role(), connections=connections, connect=services().flows is not None)


@bp.route("/console/connections/<id:connection_id>/disconnect", methods=["GET", "POST"])
@signed_in
def disconnect(connection_id: int):
    flows = services().flows
    with services().db.session() as s:
        connection = s.get(Connection, connection_id)
        mine = connection is not None and _visible(connection)
        upn = connection.upn if mine else ""
    if flows is None or not mine:
        abort(404)  # someone else's connection is as good as absent
    if request.method == "POST":
        check_csrf()
    if request.method == "GET" or request.form.get("confirmed") != "1":
        return page("disconnect", "confirm.html", question=f"Disconnect {upn}?", verb="Disconnect",
                    consequence="Its tokens are deleted; work for organizations acting as this connection waits "
                                "until someone connects again.", action=request.path, back=url_for("console.home"))
    if not flows.disconnect(connection_id):
        abort(404)
    return redirect(url_for("console.home", message="Disconnected; its tokens were deleted."))


# -- the Entra ID connect flow --------------------------------------------------------------------------

def _binding_hash(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()


def _start_flow(flows, *, started_by: str, by_name: str, tenant: str | None = None):
    binding = secrets.token_urlsafe(32)
    try:
        auth_uri = flows.start(_binding_hash(binding), started_by=started_by, by_name=by_name, tenant=tenant)
    except FlowRejected as exc:
        return page("connect", message=exc.reason, error=True, status=400)
    response = redirect(auth_uri)
    _set_flow_cookie(response, BINDING_COOKIE, binding, max_age=int(FLOW_TTL.total_seconds()))
    return response


def _set_flow_cookie(response: Response, name: str, value: str, *, max_age: int) -> None:
    """Entra answers with a cross-site form POST: on https only a SameSite=None cookie comes back with it."""
    https = services().settings.public_url.startswith("https://")
    response.set_cookie(name, value, max_age=max_age, httponly=True, secure=https,
                        samesite="None" if https else "Lax", path=REDIRECT_PATH)


@bp.get("/login/azure-active-directory")
@signed_in
def connect_start():
    flows = services().flows
    if flows is None:
        return page("connect", message="Entra ID is not configured.", error=True, status=503)
    return _start_flow(flows, started_by=subject(), by_name=session.get("name", ""),
                       tenant=request.args.get("tenant", "").strip() or None)


@bp.route(REDIRECT_PATH, methods=["GET", "POST"])
def connect_complete():
    flows = services().flows
    if flows is None:
        abort(503)
    answer = request.form.to_dict() if request.method == "POST" else request.args.to_dict()
    binding, sealed = request.cookies.get(BINDING_COOKIE, ""), request.cookies.get(SIGN_IN_COOKIE, "")
    try:
        if flows.is_sign_in(sealed, answer):
            response = _finish_sign_in(flows, sealed, answer)
            response.delete_cookie(SIGN_IN_COOKIE, path=REDIRECT_PATH)
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
