"""Entra ID connections on the worker side: tokens from the encrypted caches (refreshed silently, under a
per-connection lock), who the person is and where, disconnecting, and the credentials workers act with."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from sqlalchemy import func, select

from ..clients.azure_devops import ProfileClient
from ..clients.http import RequestsTransport
from ..crypto import SecretBox
from ..db import Database
from ..identity import Identity, ReauthRequired
from ..models import Connection, Organization

log = logging.getLogger(__name__)


def unreachable_organizations(relying: list[str], reachable: list[str]) -> list[str]:
    """Organizations configured to act as a person that the person's sign-in does not reach (typically a
    guest whose organization is connected to another tenant)."""
    known = {name.lower() for name in reachable}
    return sorted(name for name in relying if name.lower() not in known)


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
        self._http = identity.http_session()

    def refresh_profile(self, connection_id: int) -> list[str]:
        """Read who the connected person is and which organizations they belong to, with their own token."""
        token = self.token(connection_id)
        profile = ProfileClient(_Bearer(token), transport=RequestsTransport(self._http))
        me = profile.me()
        organizations = profile.organizations(me["id"]) if me.get("id") else []
        with self.db.session() as s:
            connection = s.get(Connection, connection_id)
            if connection is None:
                return organizations
            connection.profile_id, connection.organizations = me.get("id"), organizations
            connection.display_name = connection.display_name or me.get("display_name", "")
            relying = s.scalars(select(Organization.name).where(
                Organization.identity_kind == "user",
                func.lower(Organization.identity_tid) == connection.tenant_id.lower(),
                func.lower(Organization.identity_oid) == connection.oid.lower())).all()
            unreachable = unreachable_organizations(relying, organizations)
            tenant = connection.sign_in_tenant or connection.tenant_id
        log.info("connection %s reaches %d organizations", connection_id, len(organizations))
        if unreachable:
            reason = (f"signed in through tenant {tenant}, this account reaches no organization named "
                      f"{', '.join(unreachable)}; if that organization is connected to another Entra tenant "
                      "where the person is a guest, connect again choosing that tenant, then have the organization "
                      "act as that account (bridge orgs identity <organization> --kind user --user "
                      "<object id>@<that tenant>)")
            self.mark_needs_reauth(connection_id, reason)
            raise ReauthRequired(reason)
        return organizations

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
                tenant = connection.sign_in_tenant
            try:
                token, changed = self.identity.user_token(blob, tenant=tenant)
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
