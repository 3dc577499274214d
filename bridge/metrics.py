"""Prometheus metrics. Each process owns one registry (no module-level globals); the web process adds
gauges read from the database at scrape time, so backlog and run states are right whatever process
changed them.

Counters add up across processes (docs/operations.md): the web tier runs prometheus-client's multiprocess mode
(``deploy/gunicorn.conf.py`` gives each gunicorn master a fresh ``PROMETHEUS_MULTIPROC_DIR``), so ``/metrics``
sums every gunicorn worker; each Celery worker process serves its own counters (``BRIDGE_WORKER_METRICS_BIND``),
a scrape target of its own, as a Prometheus client library's process is meant to be.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.deliveries = Counter("bridge_deliveries_total", "Webhook deliveries answered, by source and outcome",
                                  ["source", "outcome"], registry=r)
        self.ingest_seconds = Histogram("bridge_ingest_seconds", "Time to verify, parse, persist and enqueue",
                                        ["source"], registry=r,
                                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        self.runs_started = Counter("bridge_dbt_runs_started_total", "dbt Cloud runs the bridge tried to start",
                                    ["kind", "result"], registry=r)
        self.runs_cancelled = Counter("bridge_dbt_runs_cancelled_total", "dbt Cloud runs the bridge cancelled",
                                      ["reason"], registry=r)
        self.runs_finished = Counter("bridge_dbt_runs_finished_total", "dbt Cloud runs seen finishing",
                                     ["kind", "status"], registry=r)
        self.statuses_posted = Counter("bridge_pr_statuses_posted_total", "Pull-request statuses posted",
                                       ["state"], registry=r)
        self.task_failures = Counter("bridge_task_failures_total", "Worker tasks that gave up", ["task", "error"],
                                     registry=r)
        self.task_retries = Counter("bridge_task_retries_total", "Worker task retries", ["task", "error"],
                                    registry=r)
        self.refusals = Counter("bridge_webhook_refusals_total",
                                "Webhook deliveries refused for their credentials or signature, by source, the "
                                "organization (or dbt Cloud account) they claimed, and why",
                                ["source", "organization", "reason"], registry=r)
        self._scraped: list = []  # collectors read at scrape time (the database's gauges)

    def add_scraped(self, collector) -> None:
        self._scraped.append(collector)
        self.registry.register(collector)

    def render(self) -> bytes:
        """The exposition: in multiprocess mode (prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` when it is
        imported) every process' counters summed, with the scrape-time gauges once."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        for collector in self._scraped:
            registry.register(collector)
        return generate_latest(registry)


class DatabaseCollector:
    """Gauges computed from the database when /metrics is scraped."""

    def __init__(self, read_counts):
        self._read_counts = read_counts  # () -> {"deliveries": {(source, state): n}, "live_runs": n}

    def collect(self):
        try:
            counts = self._read_counts()
        except Exception:  # a scrape must not fail because the database blinked
            up = GaugeMetricFamily("bridge_database_up", "1 when the database answered the scrape")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("bridge_database_up", "1 when the database answered the scrape")
        up.add_metric([], 1)
        yield up
        deliveries = GaugeMetricFamily("bridge_deliveries", "Stored deliveries waiting, in progress, blocked or "
                                       "failed, by source and state (finished ones: bridge_deliveries_total)",
                                       labels=["source", "state"])
        for (source, state), n in sorted(counts["deliveries"].items()):
            deliveries.add_metric([source, state], n)
        yield deliveries
        live = GaugeMetricFamily("bridge_live_dbt_runs", "dbt runs started by the bridge and not finished")
        live.add_metric([], counts["live_runs"])
        yield live
        connections = GaugeMetricFamily("bridge_entra_connections",
                                        "Entra ID connections by health (needs_reauth: their work is stopped)",
                                        labels=["status"])
        for status in ("ok", "needs_reauth"):
            connections.add_metric([status], counts.get("connections", {}).get(status, 0))
        yield connections
        problems = GaugeMetricFamily("bridge_subscription_problems",
                                     "Service hooks / dbt webhooks the health check could not heal (a person must act)",
                                     labels=["kind"])
        for kind in ("azure-devops", "dbt-cloud"):
            problems.add_metric([kind], counts.get("subscription_problems", {}).get(kind, 0))
        yield problems


class ApiCallsCollector:
    """Azure DevOps calls per organization in the rate limit's five-minute window (all workers, from Redis),
    by kind (``sweep``: the PR sweep's listings; ``work``: the rest), beside the sweep's share of the budget."""

    def __init__(self, read_window, sweep_budget: int):
        self._read_window = read_window  # () -> {organization: {kind: calls}}
        self._sweep_budget = sweep_budget

    def collect(self):
        calls = GaugeMetricFamily("bridge_azure_devops_calls_5m",
                                  "Azure DevOps calls in the last five minutes, by organization and kind (the "
                                  "rate limit allows 200 TSTU per identity in that window)",
                                  labels=["organization", "kind"])
        try:
            window = self._read_window()
        except Exception:  # a scrape must not fail because Redis or the database blinked
            window = {}
        for organization, kinds in sorted(window.items()):
            for kind, n in sorted(kinds.items()):
                calls.add_metric([organization, kind], n)
        yield calls
        budget = GaugeMetricFamily("bridge_pr_sweep_budget_5m",
                                   "Listings the PR sweep may make per organization in five minutes "
                                   "(BRIDGE_PR_SWEEP_SHARE of 200)")
        budget.add_metric([], self._sweep_budget)
        yield budget
