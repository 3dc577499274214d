"""The web tier: receives webhooks, stores them, hands them to the workers; never calls out."""

from __future__ import annotations

import hashlib
import secrets

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from .. import broker
from ..api_calls import ApiCalls
from ..connect import ConnectFlows
from ..crypto import SecretBox
from ..db import Database
from ..dispatch import Dispatcher
from ..domain import RATE_LIMIT_TSTU
from ..heartbeats import Heartbeats
from ..identity import REDIRECT_PATH, Identity, IdentityHosts
from ..logs import configure as configure_logs
from ..metrics import ApiCallsCollector, DatabaseCollector, Metrics
from ..settings import Settings
from .intake import Intake
from .services import WebServices
from .sessions import ServerSessions


def create_app(settings: Settings | None = None, *, identity_hosts: IdentityHosts | None = None) -> Flask:
    settings = settings or Settings.at_start_up()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    configure_logs(settings.log_format, level=settings.log_level.upper())

    db = Database(settings.database_url)
    metrics = Metrics()
    box = SecretBox(settings.secret_keys) if settings.secret_keys else None
    dispatcher = Dispatcher(settings)
    intake = Intake(db=db, box=box)
    metrics.add_scraped(DatabaseCollector(intake.counts))
    bookkeeping = broker.client(settings, connect_timeout=1, timeout=2)  # heartbeats, call counts: quick or not at all
    calls = ApiCalls(bookkeeping)
    metrics.add_scraped(ApiCallsCollector(lambda: calls.last_window(intake.organization_names()),
                                          int(RATE_LIMIT_TSTU * settings.pr_sweep_share)))
    flows, identity_url = None, None
    if settings.entra is not None and box is not None:
        identity = Identity(settings.entra, redirect_uri=f"{settings.public_url}{REDIRECT_PATH}", hosts=identity_hosts)
        flows = ConnectFlows(db, box, identity)
        identity_url = identity.browser_uri(settings.entra.authority)
    WebServices(settings=settings, db=db, metrics=metrics, intake=intake, dispatcher=dispatcher, flows=flows,
                box=box, heartbeats=Heartbeats(bookkeeping, settings.heartbeat_timeout)
                ).install(app)
    # Console sessions live in the database (sessions.py); the key signs only what a visitor has before sign-in.
    app.secret_key = hashlib.sha256(b"bridge-session:" + (settings.secret_keys or ("",))[0].encode()).digest() \
        if settings.secret_keys else secrets.token_bytes(32)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
                      SESSION_COOKIE_NAME="bridge_session")
    app.session_interface = ServerSessions(db, lifetime=settings.session_lifetime, idle=settings.session_idle)

    from . import console, headers, health, history, onboarding, pages, receivers

    headers.install(app, https=settings.public_url.startswith("https://"), identity_url=identity_url)

    app.url_map.converters["id"] = pages.Id
    app.register_error_handler(HTTPException, pages.error_page)
    app.add_template_global(pages.csrf_token)
    app.add_template_global(pages.subject, "signed_in_as")
    for name, shown in pages.FILTERS.items():
        app.add_template_filter(shown, name)
    app.register_blueprint(health.bp)
    app.register_blueprint(console.bp)
    app.register_blueprint(onboarding.bp)
    app.register_blueprint(history.bp)
    # The webhook receivers sit in front of Flask (the hot path; see receivers.py).
    app.wsgi_app = receivers.Receivers(app.wsgi_app, intake=intake, metrics=metrics,
                                       max_body=settings.max_body_bytes)
    if settings.proxy_hops:  # the client's address and scheme as the proxies in front saw them
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops)
    return app
