"""What every console page shares: the layout, CSRF tokens, who is signed in and what they may do."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime
from functools import wraps
from urllib.parse import urlsplit

from flask import abort, g, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from ..access import decide
from ..domain import branch_name, format_duration
from ..people import PersonId
from .services import services

ID_DIGITS = 18  # every id fits a signed 64-bit column; longer or non-ASCII digits are no id of ours


class Id(BaseConverter):
    """``<id:name>`` in a route: ASCII digits only, short enough for a BIGINT (else the route answers 404)."""

    regex = f"[0-9]{{1,{ID_DIGITS}}}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(int(value))


def form_id(name: str) -> int | None:
    """A form field holding an id: None when empty, 400 when it is not one."""
    value = request.form.get(name, "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= ID_DIGITS):
        abort(400, f"{name} must be a number")
    return int(value)


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    sent = request.form.get("csrf", "")
    if not sent or not hmac.compare_digest(sent.encode(), session.get("csrf", "").encode()):
        abort(400, "missing or wrong CSRF token")


def page(title: str, template: str = "message.html", *, message: str = "", error: bool = False, status: int = 200,
         refresh: int | None = None, **context):
    """A console page: ``template`` (in templates/, extending layout.html) with the layout's title and message."""
    return render_template(template, title=title, message=message, error=error, refresh=refresh, **context), status


def same_origin(target: str | None) -> str | None:
    """``target`` when it is a path on this site (``/console/…``), else None: a ``next`` that names another
    host (``//evil``, ``https://evil``, ``/\\evil``) is never followed."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return None
    return target[:2000]


_WHAT_TO_DO = {
    400: "The request was not complete or not valid; go back and try again.",
    403: "You are signed in, but this page is not for your role.",
    404: "There is no such page, or the thing it showed is gone.",
    405: "That is not how this page is used; go back and use its form.",
    413: "What was sent is larger than the bridge accepts.",
    429: "Too many requests from you just now; wait a moment and try again.",
}


def error_page(error: HTTPException):
    """Every HTTP error the console raises, as one of its own pages (with its navigation), never Flask's."""
    status = error.code or 500
    if status >= 500:
        what = "Something failed on the bridge's side; the web log has a line about it. Try again shortly."
    else:
        what = _WHAT_TO_DO.get(status, "")
    detail = error.description if status < 500 and error.description else ""  # our own abort() texts, or werkzeug's
    body, _ = page(f"{status} {error.name}", "error.html", status=status, code=status, name=error.name, what=what,
                   detail=detail)
    return body, status, dict(error.get_headers()) if status in (405, 429) else {}


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value else ""


# Template filters: times in UTC, durations as "4m 12s", branches without refs/heads/.
FILTERS = {"when": _when, "duration": format_duration, "branch": branch_name}


def role() -> str | None:
    """The signed-in person's role, decided on every request from the access settings in force now (so
    removing someone from the admins takes effect at once); None when nobody (or nobody allowed) is signed in."""
    if "role" not in g:
        via = session.get("via")
        if via == "token":
            g.role = "admin" if services().settings.admin_token else None
        elif via == "entra":
            g.role = decide(session.get("claims") or {}, services().settings.access).role
        else:
            g.role = None
    return g.role


def subject() -> str:
    """Who is signed in, as records name them: ``entra:<oid>@<tid>`` or ``token:admin`` ("" for nobody)."""
    return session.get("subject", "") if role() else ""


def person() -> PersonId | None:
    """The signed-in person; None for the local admin token or nobody."""
    claims = session.get("claims") or {}
    return PersonId(claims["tid"], claims["oid"]) if role() and session.get("via") == "entra" else None


def is_admin() -> bool:
    return role() == "admin"


def signed_in(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if role() is None:
            session.clear()  # signed out, expired, or no longer allowed: the stored session ends
            return redirect(url_for("console.sign_in", next=request.path))
        return view(*args, **kwargs)

    return wrapper


def admins_only(view):
    """Setting up repositories spends the bridge's dbt Cloud credentials: admins only."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if role() is None:
            session.clear()
            return redirect(url_for("console.sign_in", next=request.path))
        if not is_admin():
            return page("not allowed", message="Only bridge admins may import or unlink repositories.",
                        error=True, status=403)
        return view(*args, **kwargs)

    return wrapper
