"""What a failing command tells its operator: one line with the cause and the fix, and an exit code scripts
can tell apart. Tracebacks are for ``bridge --debug``.

Exit codes: 0 done; 1 the work failed or found something that needs a person; 2 wrong usage; 3 configuration
(settings or the configuration file); 4 the database; 5 the broker (Redis).
"""

from __future__ import annotations

import click
import kombu.exceptions
import redis.exceptions
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

from ..db import describe_database_error
from ..errors import ApiError, BridgeError, ConfigError, IdentityError, LockStoreUnavailable

FAILED, USAGE, CONFIGURATION, DATABASE, BROKER = 1, 2, 3, 4, 5

class BrokerRefused(click.ClickException):
    """A command's own "the broker did not take it" line, with the broker's exit code."""

    exit_code = BROKER


_NO_SCHEMA = ("no such table", "undefinedtable", "does not exist")


def explain(exc: BaseException) -> tuple[str, int]:
    """The one line for ``exc`` and the exit code."""
    if isinstance(exc, ConfigError):
        return str(exc), CONFIGURATION
    if isinstance(exc, SQLAlchemyError):
        cause = describe_database_error(exc)
        if isinstance(exc, NoSuchTableError) or any(s in cause.lower() for s in _NO_SCHEMA):
            return (f"the database (BRIDGE_DATABASE_URL) has no bridge tables, or older ones ({cause}); "
                    "run `bridge db upgrade`"), DATABASE
        return f"the database (BRIDGE_DATABASE_URL) cannot be used: {cause}", DATABASE
    if isinstance(exc, redis.exceptions.RedisError | kombu.exceptions.OperationalError | LockStoreUnavailable):
        return (f"could not reach Redis, the broker (BRIDGE_BROKER_URL): {_first_line(exc)}; is it running and "
                "reachable from here?"), BROKER
    if isinstance(exc, ApiError):
        return f"{exc.service} refused: {_first_line(exc)}", FAILED
    if isinstance(exc, IdentityError | BridgeError):
        return _first_line(exc), FAILED
    return (f"unexpected {type(exc).__name__}: {_first_line(exc)} (a bug: run again with `bridge --debug …` and "
            "report the traceback)"), FAILED


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
