"""Durable acceptance of deliveries: who may deliver (cached credentials), and the outbox they go to.

A delivery is stored (unique on its source event id) before the receiver answers 2xx; the broker is
only the transport. Rows to be processed are written as "received"; the workers' relay hands them to
Celery and marks them "dispatched" (``bridge/deliveries``: the outbox writes, the store sends).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ..crypto import SecretBox
from ..db import Database
from ..deliveries.outbox import Outbox
from ..deliveries.states import WATCHED
from ..errors import ConfigError
from ..history import record as activity
from ..history.record import Cause, Kind
from ..models import (
    CiRun,
    Connection,
    DbtAccount,
    DbtWebhookRecord,
    Delivery,
    HookSubscriptionRecord,
    Organization,
    Repository,
    as_utc,
    utcnow,
)
from ..webhooks import dbt_cloud

log = logging.getLogger(__name__)

CACHE_SECONDS = 15.0

_DUMMY = "x" * 32


@dataclass(frozen=True)
class OrgCredentials:
    organization_id: int
    passwords: tuple[str, ...]   # the organization's, or a subscription's current (and, while rotating, previous)
    organization: str = ""       # its name, for the refusal counter and log line


class Intake:
    def __init__(self, *, db: Database, box: SecretBox | None):
        self.db = db
        self.box = box
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self._orgs: dict[str, OrgCredentials] = {}
        self._accounts: dict[int, str | None] = {}
        self._dbt_hooks: dict[str, tuple[int, str | None]] = {}
        self._forced_at = 0.0
        self._repos: dict[tuple[int, str], int] = {}
        self._problem: str | None = None  # why some stored secret cannot be read, as of the last load
        self.outbox = Outbox(db)

    # -- credentials (cached briefly; config changes show within CACHE_SECONDS) -----------------------

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._loaded_at < CACHE_SECONDS:
            return
        with self._lock:
            if now - self._loaded_at < CACHE_SECONDS:
                return
            self._load()

    def _load(self) -> None:
        problems: list[str] = []

        def decrypt(token: str | None) -> str | None:
            try:
                return self._decrypt(token)
            except ConfigError as exc:  # fail closed for this credential; the receivers answer 503 for it
                problems.append(str(exc))
                return None

        with self.db.session() as s:
            orgs = {}
            names = {}
            for org in s.scalars(select(Organization)):
                names[org.id] = org.name
                password = decrypt(org.webhook_password_enc)
                if org.webhook_username and password:
                    orgs[org.webhook_username] = OrgCredentials(org.id, (password,), org.name)
            now = utcnow()
            for hook in s.scalars(select(HookSubscriptionRecord)):
                passwords = [decrypt(hook.password_enc)]
                until = hook.previous_valid_until
                if hook.previous_password_enc and until and as_utc(until) > now:
                    passwords.append(decrypt(hook.previous_password_enc))
                passwords = tuple(p for p in passwords if p)
                if passwords:
                    orgs[hook.username] = OrgCredentials(hook.organization_id, passwords,
                                                         names.get(hook.organization_id, ""))
            accounts = {a.id: decrypt(a.webhook_secret_enc) for a in s.scalars(select(DbtAccount))}
            dbt_hooks = {h.dbt_webhook_id: (h.dbt_account_id, decrypt(h.secret_enc))
                         for h in s.scalars(select(DbtWebhookRecord)) if h.dbt_webhook_id}
            repos = {(r.organization_id, r.ado_repository_id.lower()): r.id for r in s.scalars(select(Repository))}
        self._orgs, self._accounts, self._dbt_hooks, self._repos = orgs, accounts, dbt_hooks, repos
        self._problem = problems[0] if problems else None
        self._loaded_at = time.monotonic()

    def _reload_now(self) -> bool:
        """Read the credentials again at once (a subscription set up or rotated seconds ago must not be
        refused), at most once a second per process so failed attempts cannot load the database."""
        with self._lock:
            now = time.monotonic()
            if now - self._forced_at < 1.0:
                return False
            self._forced_at = now
            self._load()
            return True

    def _decrypt(self, token: str | None) -> str | None:
        """Raises ConfigError when a stored secret cannot be read (no key, or not the key it was sealed with)."""
        if not token:
            return None
        if self.box is None:
            raise ConfigError("BRIDGE_SECRET_KEY is not set, so the stored webhook credentials cannot be read; "
                              "set the key they were stored with")
        return self.box.decrypt(token)

    def secrets_problem(self) -> str | None:
        """Why some stored webhook credential cannot be read with the configured keys (None: all can).
        Deliveries that may be meant for such a credential are answered 503, never refused as unauthorized."""
        self._refresh()
        return self._problem

    def authenticate_organization(self, username: str | None, password: str | None) -> int | None:
        """The organization whose webhook credentials (its own, or one of the bridge's subscriptions') these
        are, compared in constant time; else None."""
        self._refresh()
        found = self._check(username, password)
        if found is None and username and self._reload_now():
            found = self._check(username, password)
        return found

    def _check(self, username: str | None, password: str | None) -> int | None:
        creds = self._orgs.get(username or "")
        expected = creds.passwords if creds else (_DUMMY,)
        given = (password or "").encode()
        matches = [hmac.compare_digest(e.encode(), given) for e in expected]
        return creds.organization_id if creds and any(matches) else None

    def claimed_organization(self, username: str | None) -> str | None:
        """The organization whose webhook user name this is (its password was wrong), or None: unknown."""
        creds = self._orgs.get(username or "")
        return creds.organization if creds else None

    def knows_dbt_account(self, account_id: int) -> bool:
        return account_id in self._accounts

    def _dbt_secrets(self, account_id: int, webhook_id: str | None) -> list[str | None]:
        owner, secret = self._dbt_hooks.get(webhook_id or "", (None, None))
        return [secret if owner == account_id else None, self._accounts.get(account_id)]

    def verify_dbt(self, account_id: int, webhook_id: str | None, body: bytes, authorization: str | None) -> bool:
        """A dbt Cloud delivery's signature, checked with its subscription's secret (set up by the bridge) and
        the account's. Only when that fails for a subscription not known yet (set up seconds ago) are the
        secrets read again, so deliveries of other subscriptions cost no extra query."""
        self._refresh()
        if dbt_cloud.verify(self._dbt_secrets(account_id, webhook_id), body, authorization):
            return True
        if webhook_id and webhook_id not in self._dbt_hooks and self._reload_now():
            return dbt_cloud.verify(self._dbt_secrets(account_id, webhook_id), body, authorization)
        return False

    def repository_for(self, organization_id: int, ado_repository_id: str) -> int | None:
        self._refresh()
        repo = self._repos.get((organization_id, ado_repository_id.lower()))
        if repo is None:  # a repository configured seconds ago: look once more, bypassing the cache
            with self.db.session() as s:
                repo = s.scalar(select(Repository.id).where(
                    Repository.organization_id == organization_id,
                    Repository.ado_repository_id == ado_repository_id.lower()))
        return repo

    # -- persistence ---------------------------------------------------------------------------------

    def store(self, **delivery) -> int | None:
        """Commit a delivery; its id, None for a duplicate. Raises OutboxUnavailable (answered 503)."""
        return self.outbox.write(**delivery)

    def record_duplicate(self, source: str, dedupe_key: str, event_type: str, *, repository_id: int | None,
                         pull_request_id: int | None) -> None:
        """A delivery stored already came again (a retry of Azure DevOps' or dbt Cloud's): nothing is done but
        saying so in the activity record, naming the stored delivery."""
        try:
            with self.db.session() as s:
                stored = s.scalar(select(Delivery.id).where(Delivery.source == source,
                                                            Delivery.dedupe_key == dedupe_key[:300]))
                activity.add(s, Kind.DUPLICATE, f"{event_type} received again: already stored as delivery "
                             f"{stored}, nothing done", cause=Cause(delivery_id=stored, actor=source),
                             repository_id=repository_id, pull_request_id=pull_request_id)
        except SQLAlchemyError as exc:  # the delivery is stored: its sender is still answered 200
            log.warning("could not record a duplicate delivery: %s", type(exc).__name__)

    # -- read-outs -----------------------------------------------------------------------------------

    def organization_names(self) -> list[str]:
        """The organizations whose webhooks are accepted (the cached credentials' names)."""
        self._refresh()
        return sorted({creds.organization for creds in self._orgs.values() if creds.organization})

    def counts(self) -> dict:
        with self.db.session() as s:
            # Only what may need watching: finished rows grow with history (bridge_deliveries_total counts them).
            rows = s.execute(select(Delivery.source, Delivery.state, func.count()).where(
                Delivery.state.in_(sorted(WATCHED))).group_by(Delivery.source, Delivery.state)).all()
            live = s.scalar(select(func.count()).select_from(CiRun).where(
                CiRun.dbt_run_id.is_not(None), (CiRun.status.is_(None)) | (CiRun.status < 10))) or 0
            connections = dict(s.execute(select(Connection.status, func.count()).group_by(Connection.status)).all())
            problems = {
                "azure-devops": s.scalar(select(func.count()).select_from(HookSubscriptionRecord).where(
                    HookSubscriptionRecord.problem.is_not(None))) or 0,
                "dbt-cloud": s.scalar(select(func.count()).select_from(DbtWebhookRecord).where(
                    DbtWebhookRecord.problem.is_not(None))) or 0}
        deliveries = {(source, state.value): 0 for source in ("azure-devops", "dbt-cloud") for state in sorted(WATCHED)}
        deliveries.update({(src, st): n for src, st, n in rows})
        return {"deliveries": deliveries, "live_runs": live, "connections": connections,
                "subscription_problems": problems}
