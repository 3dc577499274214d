"""``POST /webhooks/azure-devops`` and ``POST /webhooks/dbt-cloud``: the web tier's hot path.

Answer discipline (Azure DevOps disables subscriptions that answer 410 and puts on probation those that
fail, so "not interested" is always 200): 202 accepted (committed; the workers' relay queues it); 200
duplicate, ignored or test delivery; 400 malformed; 401 bad credentials; 405 not a POST; 413 too large;
415 not JSON; 503 with ``Retry-After`` when the bridge cannot accept it now (database unavailable, or a
configuration fault such as stored credentials the configured keys cannot read): never 500, so Azure DevOps
retries instead of disabling the subscription.

Not Flask routes but a WSGI layer in front of the app (``Receivers``, installed by ``create_app``): the hot
path skips request contexts (docs/benchmarks.md). Every other path goes to Flask unchanged.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from sqlalchemy.exc import SQLAlchemyError
from werkzeug.datastructures import Authorization
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_content_length

from ..contracts import AZURE_DEVOPS_WEBHOOK_PATH, DBT_CLOUD_WEBHOOK_PATH
from ..deliveries.codec import encode
from ..deliveries.outbox import OutboxUnavailable, compact_json
from ..deliveries.states import DeliveryState
from ..domain import IgnoredEvent, PullRequestEvent
from ..errors import ConfigError, PayloadError
from ..metrics import Metrics
from ..webhooks import azure_devops, dbt_cloud
from .intake import Intake

log = logging.getLogger(__name__)

ADO = "azure-devops"
DBT = "dbt-cloud"
PATHS = {AZURE_DEVOPS_WEBHOOK_PATH: ADO, DBT_CLOUD_WEBHOOK_PATH: DBT}
_SENDERS = {ADO: "an Azure DevOps", DBT: "a dbt Cloud"}


@dataclass(slots=True)
class Answer:
    """A JSON answer: written straight to WSGI (a werkzeug Response object per delivery cost measurable CPU)."""

    status: int
    payload: dict
    headers: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, environ, start_response):
        body = compact_json(self.payload).encode()
        start_response(_status_line(self.status), [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(body))), *self.headers])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def _shown(value: str) -> str:
    """A user name a sender tried, safe for one log line: quoted, control characters escaped, at most 64."""
    return repr(value[:64])


class RefusalLog:
    """At most one log line per (source, sender address) a minute, saying how many it stood for; bounded in
    the senders it remembers so a flood of addresses cannot grow it."""

    def __init__(self, *, every: float = 60.0, max_senders: int = 10_000, clock=time.monotonic):
        self.every, self.max_senders, self.clock = every, max_senders, clock
        self._senders: OrderedDict[tuple[str, str], list] = OrderedDict()  # -> [last logged at, refused since]
        self._lock = threading.Lock()

    def due(self, source: str, address: str) -> int | None:
        """None: stay quiet; else log now, standing for this many earlier refusals that were not logged."""
        now = self.clock()
        with self._lock:
            entry = self._senders.get((source, address))
            if entry is not None and now - entry[0] < self.every:
                entry[1] += 1
                return None
            suppressed = entry[1] if entry is not None else 0
            self._senders[source, address] = [now, 0]
            self._senders.move_to_end((source, address))
            while len(self._senders) > self.max_senders:
                self._senders.popitem(last=False)
            return suppressed


@functools.cache
def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


class Receivers:
    """WSGI middleware: answers the two webhook paths, hands everything else to ``app``."""

    def __init__(self, app: Callable, *, intake: Intake, metrics: Metrics, max_body: int):
        self.app = app
        self.intake = intake
        self.metrics = metrics
        self.max_body = max_body
        self._handlers = {ADO: self.azure_devops, DBT: self.dbt_cloud}
        self._counted: dict[tuple[str, str], object] = {}  # metric children by (source, outcome), looked up once
        self._timed = {source: metrics.ingest_seconds.labels(source=source) for source in PATHS.values()}
        self._logged_faults: set[str] = set()  # configuration faults already logged by this process
        self.refusal_log = RefusalLog()

    def __call__(self, environ, start_response):
        source = PATHS.get(environ.get("PATH_INFO", ""))
        if source is None:
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            response = self._answer(source, "method-not-allowed", 405, error="only POST is accepted here")
            response.headers.append(("Allow", "POST"))
        else:
            try:
                response = self._handlers[source](environ)
            except (SQLAlchemyError, OutboxUnavailable) as exc:
                response = self._unavailable(exc)
            except ConfigError as exc:
                response = self._misconfigured(source, str(exc))
        return response(environ, start_response)

    # -- answers -------------------------------------------------------------------------------------

    def _answer(self, source: str, outcome: str, status: int, **extra) -> Answer:
        counter = self._counted.get((source, outcome))
        if counter is None:
            counter = self._counted[source, outcome] = self.metrics.deliveries.labels(source=source, outcome=outcome)
        counter.inc()
        return Answer(status, {"outcome": outcome, **extra})

    @staticmethod
    def _unavailable(exc: BaseException) -> Answer:
        log.error("database unavailable while receiving a delivery: %s", type(exc).__name__)
        return Answer(503, {"outcome": "unavailable", "error": "database unavailable; retry later"},
                      [("Retry-After", "5")])

    def _refused(self, environ, source: str, organization: str, reason: str, *, user: str | None = None) -> None:
        """Counted per source, claimed organization and reason; logged at most once a minute per sender."""
        self.metrics.refusals.labels(source=source, organization=organization, reason=reason).inc()
        address = environ.get("REMOTE_ADDR", "?")
        suppressed = self.refusal_log.due(source, address)
        if suppressed is None:
            return
        tried = f" for user {_shown(user)}" if user is not None else ""
        claimed = "" if organization == "unknown" else f" ({organization})"
        more = f"; {suppressed} more refused from there in the last minute" if suppressed else ""
        log.warning("refused %s delivery from %s: %s%s%s%s", _SENDERS[source], address, reason, tried, claimed, more)

    def _misconfigured(self, source: str, cause: str) -> Answer:
        """A configuration fault: 503 so the sender retries once it is fixed; its cause logged once per process."""
        if cause not in self._logged_faults:
            self._logged_faults.add(cause)
            log.error("deliveries are answered 503 until the configuration is fixed: %s", cause)
        response = self._answer(source, "misconfigured", 503, error="the bridge is misconfigured; retry later")
        response.headers.append(("Retry-After", "30"))
        return response

    def _body(self, environ, source: str) -> tuple[bytes | None, Answer | None]:
        """The raw body, or the answer for a body that is too large (413, without reading it) or not JSON."""
        length = get_content_length(environ)  # None when chunked
        if length is not None and length > self.max_body:
            return None, self._answer(source, "too-large", 413, error="body too large")
        mimetype = parse_options_header(environ.get("CONTENT_TYPE"))[0].lower()
        if mimetype not in ("application/json", "text/json") and not mimetype.endswith("+json"):
            return None, self._answer(source, "not-json", 415, error="Content-Type must be application/json")
        if length is not None:  # the usual case: exactly that many bytes
            return environ["wsgi.input"].read(length), None
        if not environ.get("wsgi.input_terminated"):  # chunked, and the server does not end the stream for us
            return b"", None
        body = environ["wsgi.input"].read(self.max_body + 1)  # chunked: up to one byte past the limit tells
        if len(body) > self.max_body:
            return None, self._answer(source, "too-large", 413, error="body too large")
        return body, None

    def _ignored(self, source: str, event, reason: str, **owner) -> Answer:
        """Recorded, with why (so a redelivery is recognised and the console can say), but not worked on: 200,
        never a 4xx."""
        stored = self.intake.store(source=source, dedupe_key=event.dedupe_key, event_type=event.event_type,
                                   event=encode(event), state=DeliveryState.IGNORED, reason=reason, **owner)
        if stored is None:
            return self._duplicate(source, event, **owner)
        return self._answer(source, "ignored", 200, reason=reason)

    def _duplicate(self, source: str, event, **owner) -> Answer:
        self.intake.record_duplicate(source, event.dedupe_key, event.event_type, repository_id=owner.get(
            "repository_id"), pull_request_id=owner.get("pull_request_id"))
        return self._answer(source, "duplicate", 200)

    def _accepted(self, source: str, started: float, delivery_id: int | None, event, **owner) -> Answer:
        if delivery_id is None:
            return self._duplicate(source, event, **owner)
        self._timed[source].observe(time.perf_counter() - started)
        return self._answer(source, "accepted", 202, delivery=delivery_id)

    # -- the two receivers ---------------------------------------------------------------------------

    def azure_devops(self, environ) -> Answer:
        started = time.perf_counter()
        intake = self.intake
        auth = Authorization.from_header(environ.get("HTTP_AUTHORIZATION"))
        basic = auth is not None and auth.type == "basic"
        organization_id = intake.authenticate_organization(auth.username if basic else None,
                                                           auth.password if basic else None)
        if organization_id is None and (problem := intake.secrets_problem()):
            return self._misconfigured(ADO, problem)  # the credentials may be right: we cannot read ours
        if organization_id is None:
            user = auth.username if basic else None
            claimed = intake.claimed_organization(user)
            reason = "missing credentials" if not basic else ("wrong password" if claimed else "unknown user")
            self._refused(environ, ADO, claimed or "unknown", reason, user=user)
            response = self._answer(ADO, "unauthorized", 401, error="bad or missing Basic credentials")
            response.headers.append(("WWW-Authenticate", 'Basic realm="ado-dbt-bridge"'))
            return response
        body, error = self._body(environ, ADO)
        if error:
            return error
        try:
            event = azure_devops.parse(body)
        except PayloadError as exc:
            return self._answer(ADO, "malformed", 400, error=str(exc), details=exc.errors)

        if isinstance(event, IgnoredEvent):
            return self._ignored(ADO, event, f"event type {event.event_type} is not handled")
        assert isinstance(event, PullRequestEvent)
        if event.is_sample:
            return self._answer(ADO, "test", 200, reason="test delivery received; the subscription works")
        repository_id = intake.repository_for(organization_id, event.repository_id)
        if repository_id is None:
            return self._ignored(ADO, event, f"repository {event.repository_id} is not configured",
                                 pull_request_id=event.pull_request_id)
        owner = {"repository_id": repository_id, "pull_request_id": event.pull_request_id}
        return self._accepted(ADO, started, intake.store(
            source=ADO, dedupe_key=event.dedupe_key, event_type=event.event_type, event=encode(event),
            state=DeliveryState.RECEIVED, **owner), event, **owner)

    def dbt_cloud(self, environ) -> Answer:
        started = time.perf_counter()
        intake = self.intake
        body, error = self._body(environ, DBT)
        if error:
            return error
        try:
            account_id, webhook_id = dbt_cloud.sender_of(body)
        except PayloadError as exc:
            return self._answer(DBT, "malformed", 400, error=str(exc))
        if not intake.verify_dbt(account_id, webhook_id, body, environ.get("HTTP_AUTHORIZATION")):
            if problem := intake.secrets_problem():
                return self._misconfigured(DBT, problem)
            signed = bool(environ.get("HTTP_AUTHORIZATION"))
            self._refused(environ, DBT, f"account {account_id}" if intake.knows_dbt_account(account_id) else "unknown",
                          "wrong signature" if signed else "missing signature")
            return self._answer(DBT, "unauthorized", 401, error="signature missing or wrong for this account")
        try:
            event = dbt_cloud.parse(body)
        except PayloadError as exc:
            return self._answer(DBT, "malformed", 400, error=str(exc), details=exc.errors)
        if event.event_type not in dbt_cloud.SETTLING_EVENT_TYPES:
            return self._ignored(DBT, event, f"event type {event.event_type} needs no action",
                                 dbt_account_id=account_id)
        return self._accepted(DBT, started, intake.store(
            source=DBT, dedupe_key=event.dedupe_key, event_type=event.event_type, event=encode(event),
            state=DeliveryState.RECEIVED, dbt_account_id=account_id), event)
