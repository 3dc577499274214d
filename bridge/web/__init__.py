"""The web tier: receives webhooks, stores them, hands them to the workers; never calls out."""

from __future__ import annotations

import logging

from flask import Flask

from ..crypto import SecretBox
from ..db import Database
from ..dispatch import Dispatcher
from ..metrics import DatabaseCollector, Metrics
from ..settings import Settings
from .intake import Intake


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    db = Database(settings.database_url)
    metrics = Metrics()
    box = SecretBox(settings.secret_keys) if settings.secret_keys else None
    intake = Intake(db=db, box=box, dispatcher=Dispatcher(settings), metrics=metrics)
    metrics.registry.register(DatabaseCollector(intake.counts))
    app.extensions["bridge"] = {"settings": settings, "db": db, "metrics": metrics, "intake": intake}

    from . import health, receivers

    app.register_blueprint(receivers.bp)
    app.register_blueprint(health.bp)
    return app
