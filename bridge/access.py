"""Who may use the console, decided from the ID token's claims alone (a pure rule: no I/O).

Admins are named by sign-in name (UPN), object id or Entra group; other people may sign in only when their
tenant is listed, and then see and manage only their own Azure DevOps connections. Everyone else is refused
with what to ask for. Fails closed: with nothing configured, nobody but the listed admins gets in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip().lower() for v in (value or "").split(",") if v.strip())


@dataclass(frozen=True)
class ConsoleAccess:
    admins: tuple[str, ...] = ()         # BRIDGE_ADMINS: UPNs or object ids
    admin_groups: tuple[str, ...] = ()   # BRIDGE_ADMIN_GROUPS: Entra group object ids (the token's groups claim)
    tenants: tuple[str, ...] = ()        # BRIDGE_CONSOLE_TENANTS: whose people may sign in as non-admins

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConsoleAccess:
        return cls(admins=_csv(env.get("BRIDGE_ADMINS")), admin_groups=_csv(env.get("BRIDGE_ADMIN_GROUPS")),
                   tenants=_csv(env.get("BRIDGE_CONSOLE_TENANTS")))


@dataclass(frozen=True)
class Decision:
    role: str | None     # "admin", "user", or None (refused)
    reason: str          # why; shown to the person when refused


def decide(claims: Mapping, access: ConsoleAccess) -> Decision:
    upn = str(claims.get("preferred_username") or "").lower()
    oid = str(claims.get("oid") or "").lower()
    tid = str(claims.get("tid") or "").lower()
    who = upn or oid or "this account"
    if (upn and upn in access.admins) or (oid and oid in access.admins):
        return Decision("admin", f"{who} is listed in BRIDGE_ADMINS")
    groups = {str(g).lower() for g in claims.get("groups") or ()}
    if groups & set(access.admin_groups):
        return Decision("admin", f"{who} is in an admin group")
    overage = "groups" in (claims.get("_claim_names") or {})
    if tid and tid in access.tenants:
        return Decision("user", f"{who} belongs to an allowed tenant")
    if access.admin_groups and overage:
        return Decision(None, f"{who} is in too many groups for them to fit in the sign-in token, so admin group "
                              "membership cannot be read: in the app registration set groupMembershipClaims to "
                              "ApplicationGroup and assign the admin group to the application, or list this "
                              "account in BRIDGE_ADMINS")
    return Decision(None, f"{who} may not use this console: ask an admin to add it to BRIDGE_ADMINS (or to an "
                          "admin group), or to allow its tenant in BRIDGE_CONSOLE_TENANTS")
