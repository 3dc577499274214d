"""Who may use the console, decided from the ID token's claims alone (a pure rule: no I/O).

Admins are named by object id with its tenant (``<oid>@<tid>``) or by Entra group; other people may sign in
only when their tenant is listed, and then see and manage only what their own Azure DevOps connection
reaches. A sign-in name (UPN) never decides anything unless ``BRIDGE_ADMINS_BY_UPN=1`` says so, and even
then only for a token of a listed tenant. Fails closed: with nothing configured, nobody gets in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError
from .people import PersonId

_TRUE = ("1", "true", "yes", "on")


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip().lower() for v in (value or "").split(",") if v.strip())


@dataclass(frozen=True)
class ConsoleAccess:
    admins: tuple[PersonId, ...] = ()    # BRIDGE_ADMINS: <object id>@<tenant id>
    admin_upns: tuple[str, ...] = ()     # … sign-in names, honoured only with BRIDGE_ADMINS_BY_UPN=1
    admin_groups: tuple[str, ...] = ()   # BRIDGE_ADMIN_GROUPS: <group id>@<tenant id>, or a group id of a listed tenant
    tenants: tuple[str, ...] = ()        # BRIDGE_CONSOLE_TENANTS: whose people may sign in as non-admins

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConsoleAccess:
        by_upn = (env.get("BRIDGE_ADMINS_BY_UPN") or "").strip().lower() in _TRUE
        admins, upns = [], []
        for entry in _csv(env.get("BRIDGE_ADMINS")):
            person = PersonId.parse(entry)
            if person is not None:
                admins.append(person)
            elif "@" in entry and by_upn:
                upns.append(entry)
            else:
                raise ConfigError(f"BRIDGE_ADMINS entry {entry!r} is not <object id>@<tenant id> (both GUIDs, as "
                                  "the console's sign-in page and `bridge connections list` show them); to name "
                                  "admins by sign-in name instead, set BRIDGE_ADMINS_BY_UPN=1 and list their "
                                  "tenants in BRIDGE_CONSOLE_TENANTS")
        tenants = _csv(env.get("BRIDGE_CONSOLE_TENANTS"))
        if upns and not tenants:
            raise ConfigError("BRIDGE_ADMINS_BY_UPN=1 needs BRIDGE_CONSOLE_TENANTS: a sign-in name counts only "
                              "for a token of a listed tenant")
        return cls(admins=tuple(admins), admin_upns=tuple(upns), admin_groups=_csv(env.get("BRIDGE_ADMIN_GROUPS")),
                   tenants=tenants)


@dataclass(frozen=True)
class Decision:
    role: str | None     # "admin", "user", or None (refused)
    reason: str          # why; shown to the person when refused


def decide(claims: Mapping, access: ConsoleAccess) -> Decision:
    upn = str(claims.get("preferred_username") or "").lower()
    oid = str(claims.get("oid") or "").lower()
    tid = str(claims.get("tid") or "").lower()
    who = upn or oid or "this account"
    if not (oid and tid):
        return Decision(None, "the sign-in token names no object id and tenant")
    listed_tenant = tid in access.tenants
    if PersonId(tid, oid) in access.admins:
        return Decision("admin", f"{who} is listed in BRIDGE_ADMINS")
    if upn and listed_tenant and upn in access.admin_upns:
        return Decision("admin", f"{who} is listed in BRIDGE_ADMINS by sign-in name (BRIDGE_ADMINS_BY_UPN)")
    groups = {str(g).lower() for g in claims.get("groups") or ()}
    if any(f"{g}@{tid}" in access.admin_groups or (listed_tenant and g in access.admin_groups) for g in groups):
        return Decision("admin", f"{who} is in an admin group")
    overage = "groups" in (claims.get("_claim_names") or {})
    if listed_tenant:
        return Decision("user", f"{who} belongs to an allowed tenant")
    if access.admin_groups and overage:
        return Decision(None, f"{who} is in too many groups for them to fit in the sign-in token, so admin group "
                              "membership cannot be read: in the app registration set groupMembershipClaims to "
                              "ApplicationGroup and assign the admin group to the application, or list this "
                              "account in BRIDGE_ADMINS")
    return Decision(None, f"{who} may not use this console: ask an admin to add {oid}@{tid} to BRIDGE_ADMINS (or "
                          "to an admin group), or to allow its tenant in BRIDGE_CONSOLE_TENANTS")
