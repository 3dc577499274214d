"""A delivery's event as its row stores it: a domain event to JSON primitives and back, symmetric.

``encode`` flattens a frozen event dataclass (enums to their values, datetimes to ISO 8601); ``decode`` gives
the same event back from the row, by the source that delivered it. The worker never reads the raw dict.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import fields
from datetime import date, datetime
from enum import Enum

from ..domain import DbtRunEvent, PullRequestEvent
from ..errors import PayloadError

EVENTS: dict[str, type] = {"azure-devops": PullRequestEvent, "dbt-cloud": DbtRunEvent}


def encode(event) -> dict:
    """JSON-ready primitives for the delivery row (flat: events hold no nested dataclasses)."""
    record = {}
    for name, _ in _fields(type(event)):
        value = getattr(event, name)
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, date):
            value = value.isoformat()
        record[name] = value
    return record


def decode(source: str, record: dict) -> PullRequestEvent | DbtRunEvent:
    """The event a delivery of ``source`` stored; PayloadError when the row does not hold one."""
    cls = EVENTS.get(source)
    if cls is None:
        raise PayloadError(f"no event type for source {source!r}")
    values = {}
    try:
        for name, kind in _fields(cls):
            if name in record:
                values[name] = _value(kind, record[name])
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"stored {source} event does not decode: {exc}") from None


@functools.cache
def _fields(cls) -> tuple[tuple[str, type], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in fields(cls))


def _value(kind, raw):
    if raw is None:
        return None
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(raw)
    if kind is datetime:
        return datetime.fromisoformat(raw)
    return raw
