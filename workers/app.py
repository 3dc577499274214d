"""The Celery app factory. Settings are read once here; the services the tasks use are built here and
attached to the app (``workers.runtime``)."""

from __future__ import annotations

import logging
import os
import sys

from celery import Celery, bootsteps, signals

from bridge import broker
from bridge.api_calls import ApiCalls
from bridge.ci.reconcile import Reconciler
from bridge.contracts import (
    CHECK_SUBSCRIPTIONS,
    NOTIFY_PEOPLE,
    POLL_QUIET_RUNS,
    PRUNE_HISTORY,
    SWEEP_DELIVERIES,
    SWEEP_PULL_REQUESTS,
)
from bridge.crypto import SecretBox
from bridge.db import Database
from bridge.dispatch import Dispatcher, celery_config
from bridge.heartbeats import Beating, Heartbeats
from bridge.identity import IdentityHosts
from bridge.locks import redis_lock_factory
from bridge.logs import configure as configure_logs
from bridge.metrics import Metrics
from bridge.notifications import notifier_for
from bridge.onboarding import Onboarding
from bridge.services.connections import Connections
from bridge.settings import Settings

from .relay import OutboxRelay
from .runtime import Runtime, attach, runtime_of

log = logging.getLogger(__name__)


def tune_worker_process() -> None:
    """The consumer thread hands tasks to the pool's threads; with many threads waiting on HTTP, a shorter GIL
    switch interval keeps it from queueing behind their Python slices (it fetches one message per turn)."""
    sys.setswitchinterval(float(os.environ.get("BRIDGE_GIL_SWITCH_INTERVAL", "0.001")))


def create_celery_app(settings: Settings | None = None, *, identity_hosts: IdentityHosts | None = None) -> Celery:
    settings = settings or Settings.at_start_up()
    app = Celery("bridge-worker", set_as_current=True)
    # Our format (text or JSON lines, with delivery and run ids) instead of Celery's own set-up.
    signals.setup_logging.connect(lambda **_: configure_logs(settings.log_format, level=settings.log_level.upper()),
                                  weak=False,
                                  dispatch_uid="bridge-logs")
    app.conf.update(celery_config(settings))
    app.conf.beat_schedule = {
        "sweep-deliveries": {"task": SWEEP_DELIVERIES, "schedule": settings.sweep_interval},
        "poll-quiet-runs": {"task": POLL_QUIET_RUNS, "schedule": settings.poll_interval},
    }
    if settings.hook_check_interval > 0:
        app.conf.beat_schedule["check-subscriptions"] = {"task": CHECK_SUBSCRIPTIONS,
                                                         "schedule": settings.hook_check_interval}
    if settings.retention_days > 0:
        app.conf.beat_schedule["prune-history"] = {"task": PRUNE_HISTORY, "schedule": 3600.0}
    if settings.notify_url:
        app.conf.beat_schedule["notify-people"] = {"task": NOTIFY_PEOPLE, "schedule": settings.notify_interval}
    if settings.pr_sweep_interval > 0:
        app.conf.beat_schedule["sweep-pull-requests"] = {"task": SWEEP_PULL_REQUESTS,
                                                         "schedule": settings.pr_sweep_interval}
    # No ping per checkout (a round trip each, several per reconcile): a connection the database dropped
    # fails its task with OperationalError, which is retried like any transient error.
    db = Database(settings.database_url, pool_size=settings.worker_db_pool // 2, pre_ping=False)
    metrics = Metrics()
    lock_client = broker.client(settings, connect_timeout=2, timeout=5)
    box = SecretBox(settings.require_secret_keys())
    lock = redis_lock_factory(lock_client, settings.lock_timeout)
    bookkeeping = broker.client(settings, connect_timeout=1, timeout=2)  # heartbeats, call counts: quick or not at all
    calls = ApiCalls(bookkeeping)
    connections = Connections.from_settings(settings, db, box, lock, identity_hosts=identity_hosts, calls=calls)
    reconciler = Reconciler(db, connections, lock, metrics)
    heartbeats = Heartbeats(bookkeeping, settings.heartbeat_timeout)
    attach(app, Runtime(settings=settings, db=db, reconciler=reconciler, metrics=metrics, connections=connections,
                         onboarding=Onboarding(settings, db, box, connections, lock),
                        relay=OutboxRelay(db, Dispatcher(settings, app=app), interval=settings.relay_interval),
                        heartbeats=heartbeats, calls=calls, notifier=notifier_for(settings, db)))

    from . import tasks  # noqa: F401 - its shared tasks join every app
    app.steps["worker"].add(RelayStep)
    app.steps["worker"].add(HeartbeatStep)
    if settings.worker_metrics_bind:
        app.steps["worker"].add(MetricsStep)
    signals.beat_init.connect(lambda **_: Beating(heartbeats, "beat").start(), weak=False,
                              dispatch_uid="bridge-beat-heartbeat")
    return app


class HeartbeatStep(bootsteps.StartStopStep):
    """Beats for the worker process (``bridge/heartbeats.py``), so /readyz can tell when none is running."""

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.beating = Beating(runtime_of(worker.app).heartbeats, "worker")

    def start(self, worker):
        self.beating.start()

    def stop(self, worker):
        self.beating.stop()


class MetricsStep(bootsteps.StartStopStep):
    """Serves this worker process' counters at BRIDGE_WORKER_METRICS_BIND (bridge/metrics.py says why)."""

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.server = None

    def start(self, worker):
        from prometheus_client import start_http_server

        runtime = runtime_of(worker.app)
        host, _, port = runtime.settings.worker_metrics_bind.rpartition(":")
        try:
            self.server, _ = start_http_server(int(port), addr=host.strip("[]"), registry=runtime.metrics.registry)
        except OSError as exc:  # a port taken must not stop the worker: its work matters more than its numbers
            self.server = None
            log.error("worker metrics not served at %s: %s", runtime.settings.worker_metrics_bind, exc)

    def stop(self, worker):
        if self.server is not None:
            self.server.shutdown()


class RelayStep(bootsteps.StartStopStep):
    """Runs the outbox relay (``workers/relay.py``) alongside every worker; beat does not."""

    def start(self, worker):
        runtime_of(worker.app).relay.start()

    def stop(self, worker):
        runtime_of(worker.app).relay.stop()
