"""Who may use the console: admins by name, object id or group; other people only from allowed tenants."""

from __future__ import annotations

from bridge.access import ConsoleAccess, decide

ACCESS = ConsoleAccess.from_env({"BRIDGE_ADMINS": "Ada@Fabrikam.example, 0a0a-oid",
                                 "BRIDGE_ADMIN_GROUPS": "G-ADMINS", "BRIDGE_CONSOLE_TENANTS": "t-fabrikam"})


def claims(**kw):
    return {"preferred_username": "someone@contoso.example", "oid": "o-1", "tid": "t-contoso", **kw}


def test_admins_by_upn_object_id_or_group():
    assert decide(claims(preferred_username="ada@fabrikam.example"), ACCESS).role == "admin"
    assert decide(claims(oid="0A0A-OID"), ACCESS).role == "admin"
    assert decide(claims(groups=["other", "g-admins"]), ACCESS).role == "admin"


def test_people_of_an_allowed_tenant_are_users_and_everyone_else_is_refused():
    assert decide(claims(tid="t-fabrikam"), ACCESS).role == "user"
    refused = decide(claims(groups=["other"]), ACCESS)
    assert refused.role is None and "BRIDGE_ADMINS" in refused.reason and "BRIDGE_CONSOLE_TENANTS" in refused.reason


def test_a_group_overage_is_explained_not_silently_refused():
    overage = decide(claims(_claim_names={"groups": "src1"}), ACCESS)
    assert overage.role is None and "groupMembershipClaims" in overage.reason
    # from an allowed tenant they still get in, as a user
    assert decide(claims(_claim_names={"groups": "src1"}, tid="t-fabrikam"), ACCESS).role == "user"


def test_nothing_configured_lets_nobody_in():
    assert decide(claims(tid="", groups=[]), ConsoleAccess()).role is None
    assert decide({}, ConsoleAccess()).role is None
