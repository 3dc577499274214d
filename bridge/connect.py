"""The OAuth flows with Entra ID: console sign-in and connecting an Azure DevOps identity.

A sign-in is anonymous, so starting one stores nothing here: the MSAL flow goes back to the browser sealed
(encrypted) and comes back with the answer. A connect flow is started by a signed-in person and kept
server-side (any web worker finishes it), at most ``OPEN_FLOWS_PER_PERSON`` at a time, each single-use and
consumed only by the browser that started it. Used by the web tier; it talks to Entra ID only (never to
Azure DevOps: who the user is and which organizations they reach is read by a worker afterwards).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import delete, select

from .crypto import SecretBox
from .db import Database
from .errors import ConfigError
from .identity import FlowRejected, Identity
from .models import AuthFlow, Connection, as_utc, utcnow

FLOW_TTL = timedelta(minutes=10)
SIGN_IN_TTL = timedelta(minutes=5)
OPEN_FLOWS_PER_PERSON = 5
TENANT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                    r"|(?=.{3,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+")


class ConnectFlows:
    def __init__(self, db: Database, box: SecretBox, identity: Identity):
        self.db = db
        self.box = box
        self.identity = identity

    def start(self, owner: str, *, started_by: str | None = None, by_name: str = "", tenant: str | None = None) -> str:
        """Begin connecting; ``owner`` is what must be presented to finish (a secret bound to the browser);
        ``tenant`` signs in to that Entra tenant (a guest of the tenant an organization is connected to);
        returns where to send the browser."""
        if tenant is not None and not TENANT.fullmatch(tenant):
            raise FlowRejected("a tenant is a directory id (GUID) or a domain such as contoso.onmicrosoft.com")
        flow = self.identity.begin_connect(tenant=tenant)
        started_by = started_by or owner
        kept = {"msal": flow, "tenant": tenant, "by_name": by_name or started_by}
        with self.db.session() as s:
            s.execute(delete(AuthFlow).where(AuthFlow.expires_at < utcnow()))
            open_flows = s.scalars(select(AuthFlow.state).where(AuthFlow.started_by == started_by)
                                   .order_by(AuthFlow.expires_at.desc())).all()
            if len(open_flows) >= OPEN_FLOWS_PER_PERSON:  # a person's abandoned attempts make way for new ones
                s.execute(delete(AuthFlow).where(AuthFlow.state.in_(open_flows[OPEN_FLOWS_PER_PERSON - 1:])))
            s.add(AuthFlow(state=flow["state"], owner=owner, started_by=started_by, purpose="connect",
                           flow_enc=self.box.encrypt(json.dumps(kept)), expires_at=utcnow() + FLOW_TTL))
        return self.identity.browser_uri(flow["auth_uri"])

    def start_sign_in(self) -> tuple[str, str]:
        """Begin a console sign-in: (where to send the browser, the sealed flow the browser keeps until it
        returns). Nothing is stored server-side."""
        flow = self.identity.begin_connect(sign_in_only=True)
        kept = {"msal": {k: v for k, v in flow.items() if k != "auth_uri"},
                "expires": (utcnow() + SIGN_IN_TTL).timestamp()}
        return self.identity.browser_uri(flow["auth_uri"]), self.box.encrypt(json.dumps(kept))

    def is_sign_in(self, sealed: str, auth_response: Mapping[str, str]) -> bool:
        """Whether this answer finishes the sign-in the browser's sealed flow started."""
        kept = self._unseal(sealed)
        return kept is not None and kept["msal"].get("state") == (auth_response.get("state") or None)

    def _unseal(self, sealed: str) -> dict | None:
        if not sealed:
            return None
        try:
            return json.loads(self.box.decrypt(sealed))
        except (ConfigError, ValueError):
            return None

    def disconnect(self, connection_id: int) -> bool:
        """Delete a connection and its tokens (Entra has no refresh-token revocation; the user can also
        remove consent in My Apps)."""
        with self.db.session() as s:
            connection = s.get(Connection, connection_id)
            if connection is None:
                return False
            s.delete(connection)
        return True

    def _take(self, owner: str, auth_response: Mapping[str, str]) -> tuple[dict, str]:
        """The flow named by the answer's state: only once, only in time, only for its owner (checked before
        the flow is consumed, so nobody else's answer can use it up)."""
        state = auth_response.get("state") or ""
        with self.db.session() as s:
            row = s.get(AuthFlow, state)
            if row is None or row.purpose != "connect":
                raise FlowRejected("this sign-in answer belongs to no connect flow in progress "
                                   "(already used, expired, or forged)")
            if not hmac.compare_digest(row.owner.encode(), owner.encode()):
                raise FlowRejected("this connect flow was started by someone else")
            s.delete(row)  # single use, whatever happens next
            expires, started_by = as_utc(row.expires_at), row.started_by
            flow = json.loads(self.box.decrypt(row.flow_enc))
        if expires < utcnow():
            raise FlowRejected("the connect flow expired; start again")
        return flow, started_by

    def complete_sign_in(self, sealed: str, auth_response: Mapping[str, str]) -> dict:
        """Finish an OpenID Connect sign-in with the browser's sealed flow; returns the person's ID token
        claims (tokens are not kept). Entra redeems each code once, so an answer cannot be replayed."""
        kept = self._unseal(sealed)
        if kept is None or kept["msal"].get("state") != (auth_response.get("state") or None):
            raise FlowRejected("this sign-in answer belongs to no sign-in started in this browser")
        if kept["expires"] < utcnow().timestamp():
            raise FlowRejected("the sign-in took too long; start again")
        _, claims = self.identity.finish_connect(kept["msal"], auth_response, tenant=None)
        return claims

    def complete(self, owner: str, auth_response: Mapping[str, str]) -> Connection:
        """Finish a connect flow and store the connection's encrypted token cache."""
        kept, started_by = self._take(owner, auth_response)
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
            connection.connected_by, connection.connected_by_name = started_by, kept.get("by_name") or started_by
            connection.sign_in_tenant = kept["tenant"]
            s.flush()
            s.expunge(connection)
        return connection
