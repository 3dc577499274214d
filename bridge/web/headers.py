"""The security headers of every answer the Flask app gives, set in this one place.

Pages run no script and load only our stylesheet; forms post only to us and to the identity platform (the
tenant form redirects there); nothing may frame them; console and sign-in pages are never cached; HSTS when
the bridge is served over https.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, request

from ..identity import REDIRECT_PATH

PRIVATE_PREFIXES = ("/console", "/login/", REDIRECT_PATH)


def policy(identity_url: str | None) -> str:
    """The Content-Security-Policy; ``identity_url`` is where a person's browser signs in, if anywhere."""
    targets = ["'self'"]
    if identity_url:
        parts = urlsplit(identity_url)
        targets.append(f"{parts.scheme}://{parts.netloc}")
    return ("default-src 'none'; style-src 'self'; img-src 'self'; form-action " + " ".join(targets)
            + "; frame-ancestors 'none'; base-uri 'none'")


def install(app: Flask, *, https: bool, identity_url: str | None) -> None:
    csp = policy(identity_url)

    @app.after_request
    def _secure(response: Response) -> Response:
        headers = response.headers
        headers["Content-Security-Policy"] = csp
        headers["X-Frame-Options"] = "DENY"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "same-origin"
        if request.path.startswith(PRIVATE_PREFIXES):
            headers["Cache-Control"] = "no-store"
        if https:
            headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        return response
