"""Sending work to the workers: the Celery settings both sides agree on, and the producer.

The web process and the CLI only *send* tasks by name (``bridge.contracts``) through a producer-only Celery
app; they never import the worker code, and the workers register their tasks under the same names.
"""

from __future__ import annotations

import logging

from celery import Celery

from . import broker
from .contracts import (
    CHECK_SUBSCRIPTIONS,
    CONSOLE_QUEUE,
    DISPATCH_DELIVERIES,
    PROCESS_DELIVERY,
    QUEUE,
    REFRESH_CONNECTION,
    RERUN_PULL_REQUEST,
    RETRY_REFUSED_STARTS,
    RUN_ONBOARDING_JOB,
    SWEEP_PULL_REQUESTS,
)
from .settings import Settings

log = logging.getLogger(__name__)

def celery_config(settings: Settings) -> dict:
    """Settings both sides agree on. JSON only; late acks so a killed worker's task is redelivered."""
    return {
        "broker_url": settings.broker_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": settings.worker_prefetch,
        "task_default_queue": QUEUE,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout,
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
            **broker.transport_options(settings),  # Sentinel's master name (and password), when it is used
        },
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0.05, "interval_step": 0.2,
                                      "interval_max": 0.5},
        "timezone": "UTC",
        "enable_utc": True,
    }


class Dispatcher:
    """Hands deliveries to the workers. Failing to reach the broker is not fatal: the delivery is already
    stored, and beat re-enqueues what was never dispatched."""

    def __init__(self, settings: Settings, app: Celery | None = None):
        if app is None:  # the web tier: a producer-only app
            app = Celery("bridge-producer", set_as_current=False)
            app.conf.update(celery_config(settings))
        self.app = app

    def _send(self, task: str, args: list, *, what: str, queue: str = QUEUE) -> bool:
        try:
            self.app.send_task(task, args=args, queue=queue)
        except Exception as exc:  # kombu OperationalError, redis ConnectionError, timeouts
            log.warning("broker unavailable; %s: %s", what, type(exc).__name__)
            return False
        return True

    def process_deliveries(self, delivery_ids: list[int]) -> bool:
        """One message for a batch of accepted deliveries (a worker fans it out); False: the broker did not
        take it (the relay leaves them stored and tries again)."""
        ids = [int(i) for i in delivery_ids]
        what = f"{len(ids)} deliveries stay stored for the sweeper"
        if len(ids) == 1:
            return self._send(PROCESS_DELIVERY, ids, what=what)
        return self._send(DISPATCH_DELIVERIES, [ids], what=what)

    def refresh_connection(self, connection_id: int) -> bool:
        """Have a worker read a new connection's profile; the console shows it once read."""
        return self._send(REFRESH_CONNECTION, [int(connection_id)],
                          what=f"connection {connection_id} profile not refreshed")

    def run_onboarding_job(self, job_id: int) -> bool:
        """Have a worker carry out a console request; the job's page shows its progress."""
        return self._send(RUN_ONBOARDING_JOB, [int(job_id)], what=f"onboarding job {job_id} not queued",
                          queue=CONSOLE_QUEUE)

    def check_subscriptions(self) -> bool:
        """Ask a worker to check and heal the service hooks and dbt webhooks now (beat does it periodically)."""
        return self._send(CHECK_SUBSCRIPTIONS, [], what="subscription check not queued")

    def rerun_pull_request(self, repository_id: int, pull_request_id: int) -> bool:
        """Ask for a fresh run of a pull request's head (a worker checks none is live first)."""
        return self._send(RERUN_PULL_REQUEST, [int(repository_id), int(pull_request_id)],
                          what=f"rerun of PR {pull_request_id} not queued")

    def retry_refused_starts(self) -> bool:
        """After something a person fixed: rerun the heads whose run dbt Cloud refused to start."""
        return self._send(RETRY_REFUSED_STARTS, [], what="retry of refused starts not queued")

    def sweep_pull_requests(self) -> bool:
        """Ask the workers to compare the linked projects' active PRs with what the bridge knows, now (as many
        projects as the rate-limit budget allows, at once rather than spread)."""
        return self._send(SWEEP_PULL_REQUESTS, [True], what="PR sweep not queued")
