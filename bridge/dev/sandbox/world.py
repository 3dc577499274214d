"""The sandbox's world: a small Azure DevOps and a small dbt Cloud (each its own state) under one lock, the
clock that moves runs on, the deliveries both make to the bridge, faults, and the log of every exchange so a
contract test can check both directions.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass

import requests

from .ado_state import TRANSIENT, AzureDevOps
from .dbt_state import DbtCloud


@dataclass
class Fault:
    service: str          # ado | dbt
    method: str
    path: re.Pattern
    status: int
    times: int
    retry_after: float | None = None
    body: dict | None = None
    delay: float = 0.0
    after: bool = False   # let the request take effect, then lose its answer (an ambiguous failure)


class World:
    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.lock = threading.RLock()
        self.ado = AzureDevOps(self.base_url, self.lock)
        self.dbt = DbtCloud(self.base_url, self.lock)
        self.exchanges: list[dict] = []
        self.deliveries: list[dict] = []
        self.faults: list[Fault] = []
        self.chat: dict[str, list[dict]] = {}  # messages posted to an incoming webhook (Slack, Teams), by name
        self.chat_failures: dict[str, int] = {}  # how many next posts to a webhook are answered 500
        self.latency = 0.0
        # Azure DevOps resends 408/502/503/504 up to 8 times, waiting ~1, 2, 4 … 60 s; scaled down here.
        self.delivery_attempts = 8
        self.delivery_backoff = 0.25
        self._stop = threading.Event()

    # -- deliveries to the bridge ---------------------------------------------------------------------

    def deliver_event(self, event_id: str) -> list[dict]:
        """POST one Azure DevOps event to every hook it matches; each hook's status follows its answer."""
        results = []
        for hook, body, headers in self.ado.notifications(event_id):
            result = self._send("ado", hook["url"], body, headers, retry_on=TRANSIENT)
            self.ado.delivered(hook, result["status"])
            results.append(result)
        return results

    def _deliver_dbt(self, hook: dict, raw: bytes, signature: str) -> None:
        """dbt Cloud retries each event, and deactivates a webhook after consecutive failed events."""
        result = self._send("dbt", hook["url"], raw, {"Authorization": signature}, retry_on="any")
        self.dbt.delivered(hook, result["status"])

    def _send(self, service: str, url: str, body, headers: dict, *, retry_on) -> dict:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", **headers}
        result = {"service": service, "url": url, "status": None, "attempts": 0, "sent_at": time.time()}
        for attempt in range(self.delivery_attempts):
            result["attempts"] = attempt + 1
            try:
                response = requests.post(url, data=raw, headers=headers, timeout=10)
                result["status"] = response.status_code
                result["answer"] = response.text[:500]
            except requests.RequestException as exc:
                result["status"], result["answer"] = None, type(exc).__name__
            retry = result["status"] is None or (
                result["status"] >= 300 and (retry_on == "any" or result["status"] in retry_on))
            if not retry or self._stop.is_set():
                break
            time.sleep(self.delivery_backoff * (2 ** attempt))
        with self.lock:
            self.deliveries.append({**result, "body": json.loads(raw)})
        return result

    # -- the clock: runs move on and announce themselves -----------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._tick, name="sandbox-clock", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _tick(self) -> None:
        while not self._stop.wait(0.05):
            for run, event_type, status in self.dbt.announcements_due(time.time()):
                for hook, raw, signature in self.dbt.notifications(run, event_type, status):
                    threading.Thread(target=self._deliver_dbt, args=(hook, raw, signature), daemon=True).start()

    # -- faults and the exchange log -----------------------------------------------------------------

    def take_fault(self, service: str, method: str, path: str, *, after: bool = False) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.service == service and fault.method in (method, "*") and fault.path.search(path) \
                        and fault.times != 0 and fault.after is after:
                    fault.times -= 1
                    return fault
        return None

    def log_exchange(self, entry: dict) -> None:
        with self.lock:
            entry["seq"] = len(self.exchanges)
            self.exchanges.append(entry)
