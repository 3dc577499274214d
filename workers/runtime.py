"""The services a worker's tasks use, built once per app by ``create_celery_app`` and found with
``runtime_of(app)`` (a task reaches its own with ``self.runtime``)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from celery import Celery

from bridge.api_calls import ApiCalls
from bridge.ci.reconcile import Reconciler
from bridge.db import Database
from bridge.deliveries.store import DeliveryStore
from bridge.errors import ConfigError
from bridge.heartbeats import Heartbeats
from bridge.metrics import Metrics
from bridge.notifications import Notifier
from bridge.onboarding import Onboarding
from bridge.services.connections import Connections
from bridge.services.entra import ConnectionStore
from bridge.settings import Settings

from .relay import OutboxRelay

_RUNTIMES: weakref.WeakKeyDictionary[Celery, Runtime] = weakref.WeakKeyDictionary()


@dataclass
class Runtime:
    settings: Settings
    db: Database
    reconciler: Reconciler
    metrics: Metrics
    connections: Connections
    onboarding: Onboarding
    relay: OutboxRelay  # started by RelayStep in workers (not in beat); the sweeper drains through it too
    heartbeats: Heartbeats  # beaten by HeartbeatStep in workers and from beat_init in beat
    calls: ApiCalls  # Azure DevOps calls per organization in the rate limit's window (Redis); the sweep's budget
    notifier: Notifier | None = None  # None: BRIDGE_NOTIFY_URL is not set

    @property
    def deliveries(self) -> DeliveryStore:
        """The deliveries table's writes (the relay's own store)."""
        return self.relay.store

    @property
    def entra(self) -> ConnectionStore | None:
        """Entra ID connections, when Entra ID is configured."""
        return self.connections.entra


def attach(app: Celery, runtime: Runtime) -> None:
    _RUNTIMES[app] = runtime


def runtime_of(app: Celery) -> Runtime:
    try:
        return _RUNTIMES[app]
    except KeyError:
        raise ConfigError(f"Celery app {app.main!r} was not made by create_celery_app: it has no runtime") from None
