"""The connect flow kept server-side: start it for a signed-in person, finish it from any web worker.

Used by the web tier; it talks to Entra ID only (never to Azure DevOps: who the user is and which
organizations they reach is read by a worker afterwards, ``services.entra.ConnectionStore.refresh_profile``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import delete, select

from .crypto import SecretBox
from .db import Database
from .identity import FlowRejected, Identity
from .models import AuthFlow, Connection, as_utc, utcnow

FLOW_TTL = timedelta(minutes=10)
TENANT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                    r"|(?=.{3,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+")


class ConnectFlows:
    def __init__(self, db: Database, box: SecretBox, identity: Identity):
        self.db = db
        self.box = box
        self.identity = identity

    def start(self, owner: str, *, started_by: str | None = None, purpose: str = "connect",
              tenant: str | None = None) -> str:
        """Begin connecting (or, with purpose "sign-in", signing in to the console); ``owner`` is what must
        be presented to finish (a secret bound to the browser); ``tenant`` signs in to that Entra tenant
        (a guest of the tenant an organization is connected to); returns where to send the browser."""
        if tenant is not None and not TENANT.fullmatch(tenant):
            raise FlowRejected("a tenant is a directory id (GUID) or a domain such as contoso.onmicrosoft.com")
        flow = self.identity.begin_connect(sign_in_only=purpose == "sign-in", tenant=tenant)
        kept = {"msal": flow, "tenant": tenant}
        with self.db.session() as s:
            s.execute(delete(AuthFlow).where(AuthFlow.expires_at < utcnow()))
            s.add(AuthFlow(state=flow["state"], owner=owner, started_by=started_by or owner, purpose=purpose,
                           flow_enc=self.box.encrypt(json.dumps(kept)), expires_at=utcnow() + FLOW_TTL))
        return self.identity.browser_uri(flow["auth_uri"])

    def disconnect(self, connection_id: int) -> bool:
        """Delete a connection and its tokens (Entra has no refresh-token revocation; the user can also
        remove consent in My Apps)."""
        with self.db.session() as s:
            connection = s.get(Connection, connection_id)
            if connection is None:
                return False
            s.delete(connection)
        return True

    def purpose_of(self, auth_response: Mapping[str, str]) -> str | None:
        with self.db.session() as s:
            row = s.get(AuthFlow, auth_response.get("state") or "")
            return row.purpose if row is not None else None

    def _take(self, owner: str, auth_response: Mapping[str, str], purpose: str) -> tuple[dict, str]:
        """The flow named by the answer's state: only once, only in time, only for its owner."""
        state = auth_response.get("state") or ""
        with self.db.session() as s:
            row = s.get(AuthFlow, state)
            if row is None or row.purpose != purpose:
                raise FlowRejected("this sign-in answer belongs to no connect flow in progress "
                                   "(already used, expired, or forged)")
            s.delete(row)  # single use, whatever happens next
            expires = as_utc(row.expires_at)
            bound_to, started_by = row.owner, row.started_by
            flow = json.loads(self.box.decrypt(row.flow_enc))
        if bound_to != owner:
            raise FlowRejected("this connect flow was started by someone else")
        if expires < utcnow():
            raise FlowRejected("the connect flow expired; start again")
        return flow, started_by

    def complete_sign_in(self, owner: str, auth_response: Mapping[str, str]) -> dict:
        """Finish an OpenID Connect sign-in; returns the person's ID token claims (tokens are not kept)."""
        kept, _ = self._take(owner, auth_response, "sign-in")
        _, claims = self.identity.finish_connect(kept["msal"], auth_response, tenant=kept["tenant"])
        return claims

    def complete(self, owner: str, auth_response: Mapping[str, str]) -> Connection:
        """Finish a connect flow and store the connection's encrypted token cache."""
        kept, started_by = self._take(owner, auth_response, "connect")
        blob, claims = self.identity.finish_connect(kept["msal"], auth_response, tenant=kept["tenant"])
        home = f"{claims.get('oid')}.{claims.get('tid')}"
        with self.db.session() as s:
            connection = s.scalar(select(Connection).where(Connection.home_account_id == home))
            if connection is None:
                connection = Connection(home_account_id=home, organizations=[])
                s.add(connection)
            connection.oid, connection.tenant_id = claims.get("oid", ""), claims.get("tid", "")
            connection.upn = claims.get("preferred_username") or ""
            connection.display_name = claims.get("name") or ""
            connection.token_cache_enc = self.box.encrypt(blob)
            connection.status, connection.status_reason = "ok", None
            connection.connected_by = started_by
            connection.sign_in_tenant = kept["tenant"]
            s.flush()
            s.expunge(connection)
        return connection
