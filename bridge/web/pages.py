"""What every console page shares: the layout, CSRF tokens, who is signed in and what they may do."""

from __future__ import annotations

import hmac
import secrets
from functools import wraps

from flask import abort, redirect, render_template_string, request, session, url_for

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ado-dbt bridge — {{ title }}</title>
{% if refresh %}<meta http-equiv="refresh" content="{{ refresh }}">{% endif %}
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:64rem}table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:.4rem .8rem;text-align:left;vertical-align:top}.bad{color:#b00}
.ok{color:#070}.warn{color:#a60}form.inline{display:inline}nav a{margin-right:1rem}fieldset{margin:1rem 0}
label{display:block;margin:.3rem 0}</style></head>
<body><h1>ado-dbt bridge</h1>
{% if session.get("user") %}<nav><a href="/console">Connections</a><a href="/console/repositories">Repositories</a>
<a href="/console/import">Import a repository</a><a href="/console/dbt-accounts">dbt Cloud accounts</a></nav>
{% endif %}
{% if message %}<p role="status" class="{{ 'bad' if error else 'ok' }}">{{ message }}</p>{% endif %}
{{ body | safe }}</body></html>"""


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    sent = request.form.get("csrf", "")
    if not sent or not hmac.compare_digest(sent.encode(), session.get("csrf", "").encode()):
        abort(400, "missing or wrong CSRF token")


def page(title: str, body: str, *, message: str = "", error: bool = False, status: int = 200,
         refresh: int | None = None):
    return render_template_string(PAGE, title=title, body=body, message=message, error=error,
                                  refresh=refresh), status


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
            return page("not allowed", "", message="Only bridge admins may import or unlink repositories.",
                        error=True, status=403)
        return view(*args, **kwargs)

    return wrapper
