"""What every console page shares: the layout, CSRF tokens, who is signed in and what they may do."""

from __future__ import annotations

import hmac
import secrets
from functools import wraps

from flask import abort, redirect, render_template, request, session, url_for


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


def is_admin() -> bool:
    return session.get("role") == "admin"


def signed_in(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not session.get("user"):
            return redirect(url_for("console.sign_in", next=request.path))
        return view(*args, **kwargs)

    return wrapper


def admins_only(view):
    """Setting up repositories spends the bridge's dbt Cloud credentials: admins only."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not session.get("user"):
            return redirect(url_for("console.sign_in", next=request.path))
        if not is_admin():
            return page("not allowed", message="Only bridge admins may import or unlink repositories.",
                        error=True, status=403)
        return view(*args, **kwargs)

    return wrapper
