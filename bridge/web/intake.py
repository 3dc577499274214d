"""Durable acceptance of deliveries: who may deliver (cached credentials), and the outbox they go to.

A delivery is stored (unique on its source event id) before the receiver answers 2xx; the broker is
only the transport. Rows are written as "dispatched" and set back to "received" if the broker cannot be
reached; beat re-enqueues those (``outbox.py`` does the writing).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass, fields

from sqlalchemy import func, select

from ..crypto import SecretBox
from ..db import Database
from ..dispatch import Dispatcher
from ..metrics import Metrics
from ..models import CiRun, Connection, DbtAccount, Delivery, Organization, Repository
from .outbox import OutboxWriter

log = logging.getLogger(__name__)

CACHE_SECONDS = 15.0

_DUMMY = "x" * 32


@dataclass(frozen=True)
class OrgCredentials:
    organization_id: int
    password: str | None


def event_record(event) -> dict:
    """A domain event as JSON-ready primitives for the delivery row (flat: no nested dataclasses)."""
    record = {}
    for f in fields(event):
        value = getattr(event, f.name)
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        elif hasattr(value, "value"):
            value = value.value
        record[f.name] = value
    return record


class Intake:
    def __init__(self, *, db: Database, box: SecretBox | None, dispatcher: Dispatcher, metrics: Metrics):
        self.db = db
        self.box = box
        self.dispatcher = dispatcher
        self.metrics = metrics
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self._orgs: dict[str, OrgCredentials] = {}
        self._accounts: dict[int, str | None] = {}
        self._repos: dict[tuple[int, str], int] = {}
        self.outbox = OutboxWriter(db, dispatcher, metrics)

    # -- credentials (cached briefly; config changes show within CACHE_SECONDS) -----------------------

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._loaded_at < CACHE_SECONDS:
            return
        with self._lock:
            if now - self._loaded_at < CACHE_SECONDS:
                return
            with self.db.session() as s:
                orgs = {}
                for org in s.scalars(select(Organization)):
                    if org.webhook_username:
                        password = self._decrypt(org.webhook_password_enc)
                        orgs[org.webhook_username] = OrgCredentials(org.id, password)
                accounts = {a.id: self._decrypt(a.webhook_secret_enc) for a in s.scalars(select(DbtAccount))}
                repos = {(r.organization_id, r.ado_repository_id.lower()): r.id
                         for r in s.scalars(select(Repository))}
            self._orgs, self._accounts, self._repos = orgs, accounts, repos
            self._loaded_at = time.monotonic()

    def _decrypt(self, token: str | None) -> str | None:
        if not token or self.box is None:
            return None  # fail closed: without a key nothing authenticates
        return self.box.decrypt(token)

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    def authenticate_organization(self, username: str | None, password: str | None) -> int | None:
        """The organization whose webhook credentials these are, compared in constant time; else None."""
        self._refresh()
        creds = self._orgs.get(username or "")
        expected = creds.password if creds and creds.password else _DUMMY
        ok = hmac.compare_digest(expected.encode(), (password or "").encode())
        return creds.organization_id if ok and creds and creds.password else None

    def dbt_webhook_secret(self, account_id: int) -> str | None:
        self._refresh()
        return self._accounts.get(account_id)

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

    def store(self, **delivery) -> tuple[int | None, bool]:
        """Commit a delivery (group commit); (id, queued), id None for a duplicate. Raises OutboxUnavailable."""
        return self.outbox.write(**delivery)

    # -- read-outs -----------------------------------------------------------------------------------

    def counts(self) -> dict:
        with self.db.session() as s:
            rows = s.execute(select(Delivery.source, Delivery.state, func.count()).group_by(
                Delivery.source, Delivery.state)).all()
            live = s.scalar(select(func.count()).select_from(CiRun).where(
                CiRun.dbt_run_id.is_not(None), (CiRun.status.is_(None)) | (CiRun.status < 10))) or 0
            connections = dict(s.execute(select(Connection.status, func.count()).group_by(Connection.status)).all())
        return {"deliveries": {(src, st): n for src, st, n in rows}, "live_runs": live, "connections": connections}
