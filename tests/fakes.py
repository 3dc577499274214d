"""Fakes at the edge of the world, for fast tests of the orchestration with no process started.

``RecordedTransport`` answers the API clients from exchanges recorded against the sandbox
(``tests/data/http/*.json``, made by ``python -m tests.data.http.record``): a request gets the first unused
recorded answer with its method and path. A request nobody recorded fails the test, naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from bridge.clients.http import HttpAnswer

RECORDINGS = Path(__file__).parent / "data" / "http"


class Unrecorded(AssertionError):
    pass


class RecordedTransport:
    def __init__(self, exchanges: list[dict]):
        self.recorded = list(exchanges)  # as loaded, for tests that read what the recording holds
        self._unused = list(exchanges)
        self.requests: list[dict] = []  # every request sent, in order: method, path, query, body

    @classmethod
    def load(cls, scenario: str) -> RecordedTransport:
        return cls(json.loads((RECORDINGS / f"{scenario}.json").read_text())["exchanges"])

    def send(self, method: str, url: str, *, params: Mapping | None, json: object, headers: Mapping[str, str],
             timeout: float) -> HttpAnswer:
        path = urlsplit(url).path
        self.requests.append({"method": method, "path": path, "query": dict(params or {}), "body": json})
        for n, exchange in enumerate(self._unused):
            if exchange["method"] == method and exchange["path"] == path:
                del self._unused[n]
                body = b"" if exchange["response"] is None else _dumps(exchange["response"])
                return HttpAnswer(exchange["status"], {"Content-Type": "application/json"}, body)
        raise Unrecorded(f"no recorded answer for {method} {path}")

    def sent(self, method: str, fragment: str) -> list[dict]:
        """The requests sent with ``method`` whose path contains ``fragment``."""
        return [r for r in self.requests if r["method"] == method and fragment in r["path"]]

    @property
    def unused(self) -> list[dict]:
        return list(self._unused)


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()
