"""What the web tier's views use, built once by ``create_app``: a typed object, reached with ``services()``."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask, current_app

from ..connect import ConnectFlows
from ..crypto import SecretBox
from ..db import Database
from ..dispatch import Dispatcher
from ..heartbeats import Heartbeats
from ..metrics import Metrics
from ..settings import Settings
from .intake import Intake
from .throttle import Throttle

KEY = "bridge"


@dataclass(frozen=True)
class WebServices:
    settings: Settings
    db: Database
    metrics: Metrics
    intake: Intake
    dispatcher: Dispatcher
    flows: ConnectFlows | None  # None: Entra ID is not configured (or there is no key to keep flows with)
    box: SecretBox | None       # None: no BRIDGE_SECRET_KEY, so nothing secret can be stored or read
    heartbeats: Heartbeats      # the workers' and beat's, read by /readyz
    token_sign_ins: Throttle = field(default_factory=Throttle)  # failed admin-token sign-ins per address

    def install(self, app: Flask) -> None:
        app.extensions[KEY] = self


def services() -> WebServices:
    """The running app's services (inside a request or an app context)."""
    return current_app.extensions[KEY]
