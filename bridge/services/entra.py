"""Entra ID connections: the connect flow kept server-side, encrypted token caches, and the credentials
workers use to act as a connected person."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta

from sqlalchemy import delete, select

from ..clients.azure_devops import ProfileClient
from ..crypto import SecretBox
from ..db import Database
from ..identity import FlowRejected, Identity, ReauthRequired, http_session
from ..models import AuthFlow, Connection, utcnow

log = logging.getLogger(__name__)

FLOW_TTL = timedelta(minutes=10)


class _Bearer:
    def __init__(self, token: str):
        self._token = token

    def authorization(self) -> str:
        return f"Bearer {self._token}"

    def __repr__(self) -> str:
        return "Bearer(***)"


class ConnectionStore:
    def __init__(self, db: Database, box: SecretBox, identity: Identity,
                 lock: Callable[[str], AbstractContextManager] | None = None):
        self.db = db
        self.box = box
        self.identity = identity
        self.lock = lock or (lambda _key: nullcontext())
        self._http = http_session(identity.settings)

    # -- the connect flow -------------------------------------------------------------------------------

    def start(self, owner: str) -> str:
        """Begin connecting for ``owner`` (the signed-in person); returns where to send their browser."""
        flow = self.identity.begin_connect()
        with self.db.session() as s:
            s.execute(delete(AuthFlow).where(AuthFlow.expires_at < utcnow()))
            s.add(AuthFlow(state=flow["state"], owner=owner, flow_enc=self.box.encrypt(json.dumps(flow)),
                           expires_at=utcnow() + FLOW_TTL))
        return flow["auth_uri"]

    def complete(self, owner: str, auth_response: Mapping[str, str]) -> Connection:
        """Finish the flow named by the answer's state: only once, only in time, only for its owner."""
        state = auth_response.get("state") or ""
        with self.db.session() as s:
            row = s.get(AuthFlow, state)
            if row is None:
                raise FlowRejected("this sign-in answer belongs to no connect flow in progress "
                                   "(already used, expired, or forged)")
            s.delete(row)  # single use, whatever happens next
            expired = row.expires_at.replace(tzinfo=row.expires_at.tzinfo or utcnow().tzinfo) < utcnow()
            started_by, flow = row.owner, json.loads(self.box.decrypt(row.flow_enc))
        if started_by != owner:
            raise FlowRejected("this connect flow was started by someone else")
        if expired:
            raise FlowRejected("the connect flow expired; start again")
        blob, claims = self.identity.finish_connect(flow, auth_response)
        token, refreshed = self.identity.user_token(blob)
        blob = refreshed or blob  # a refresh rotates the refresh token: keep the cache that holds the new one
        profile = ProfileClient(_Bearer(token), session=self._http)
        me = profile.me()
        organizations = profile.organizations(me["id"]) if me.get("id") else []
        home = f"{claims.get('oid')}.{claims.get('tid')}"
        with self.db.session() as s:
            connection = s.scalar(select(Connection).where(Connection.home_account_id == home))
            if connection is None:
                connection = Connection(home_account_id=home)
                s.add(connection)
            connection.oid, connection.tenant_id = claims.get("oid", ""), claims.get("tid", "")
            connection.upn = claims.get("preferred_username") or me.get("email") or ""
            connection.display_name = claims.get("name") or me.get("display_name") or ""
            connection.profile_id, connection.organizations = me.get("id"), organizations
            connection.token_cache_enc = self.box.encrypt(blob)
            connection.status, connection.status_reason = "ok", None
            connection.connected_by = owner
            s.flush()
            s.expunge(connection)
        log.info("connected %s (%d organizations)", connection.upn, len(organizations))
        return connection

    # -- using and ending a connection --------------------------------------------------------------------

    def token(self, connection_id: int) -> str:
        """An access token for the connection, refreshed silently; the cache is saved only when it changed.
        Serialized per connection across processes, so two refreshes never race on a rotating token."""
        with self.lock(f"connection:{connection_id}"):
            with self.db.session() as s:
                connection = s.get(Connection, connection_id)
                if connection is None or connection.token_cache_enc is None:
                    raise ReauthRequired(f"connection {connection_id} has no tokens (disconnected)")
                if connection.status == "needs_reauth":
                    raise ReauthRequired(connection.status_reason or "the connection needs re-authorization")
                blob = self.box.decrypt(connection.token_cache_enc)
            try:
                token, changed = self.identity.user_token(blob)
            except ReauthRequired as exc:
                self.mark_needs_reauth(connection_id, exc.reason)
                raise
            if changed is not None:
                with self.db.session() as s:
                    s.get(Connection, connection_id).token_cache_enc = self.box.encrypt(changed)
            return token

    def mark_needs_reauth(self, connection_id: int, reason: str) -> None:
        with self.db.session() as s:
            connection = s.get(Connection, connection_id)
            if connection is not None:
                connection.status, connection.status_reason = "needs_reauth", reason
        log.warning("connection %s needs re-authorization: %s", connection_id, reason)

    def disconnect(self, connection_id: int) -> bool:
        """Delete the tokens (Entra has no refresh-token revocation; the user can also remove consent)."""
        with self.db.session() as s:
            connection = s.get(Connection, connection_id)
            if connection is None:
                return False
            s.delete(connection)
        return True

    def credentials(self, connection_id: int) -> UserCredentials:
        return UserCredentials(self, connection_id)


class UserCredentials:
    """``clients.azure_devops.Credentials`` for a connected person: a fresh Bearer token per request."""

    def __init__(self, store: ConnectionStore, connection_id: int):
        self._store = store
        self.connection_id = connection_id

    def authorization(self) -> str:
        return f"Bearer {self._store.token(self.connection_id)}"

    def __repr__(self) -> str:
        return f"UserCredentials(connection={self.connection_id})"
