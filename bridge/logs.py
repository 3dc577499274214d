"""Log configuration: one line per record, as text or (``BRIDGE_LOG_FORMAT=json``) one JSON object.

Lines about a delivery, a pull request or a dbt run carry their ids (``delivery_id``, ``repository_id``,
``pr``, ``dbt_run_id``): work sets them once with ``log_context`` and every record logged inside gets them,
whichever module logs it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

FORMATS = ("text", "json")
IDS = ("delivery_id", "repository_id", "pr", "dbt_run_id", "ci_run_id")

_context: ContextVar[dict[str, object]] = ContextVar("bridge_log_context", default={})  # noqa: B039 - never mutated


@contextlib.contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Every record logged inside carries these ids (those given as None are left out)."""
    token = _context.set({**_context.get(), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextIds(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{key}={getattr(record, key)}" for key in IDS if hasattr(record, key))
        return f"{line} [{ids}]" if ids else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        entry.update({key: getattr(record, key) for key in IDS if hasattr(record, key)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _Handler(logging.StreamHandler):
    """Ours, so that configuring again replaces it and leaves other handlers (a test runner's) alone."""


def configure(fmt: str, *, level: int | str = logging.INFO) -> None:
    """Send every record to stderr in ``fmt``."""
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextIds())
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _Handler)] + [handler]
    root.setLevel(level)
