"""Who may use the console: admins by object id with tenant, or by group; sign-in names only by explicit opt-in
and only for listed tenants; other people only from allowed tenants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.access import ConsoleAccess, decide
from bridge.errors import ConfigError

FABRIKAM = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CONTOSO = "99999999-9999-4999-8999-999999999999"
ADA = "0a0a0a0a-0000-4000-8000-0000000000ad"
ACCESS = ConsoleAccess.from_env({"BRIDGE_ADMINS": f"{ADA.upper()}@{FABRIKAM}",
                                 "BRIDGE_ADMIN_GROUPS": "g-admins", "BRIDGE_CONSOLE_TENANTS": FABRIKAM})


def claims(**kw):
    return {"preferred_username": "someone@contoso.example", "oid": "11111111-1111-4111-8111-111111111111",
            "tid": CONTOSO, **kw}


def test_admins_by_object_id_in_their_tenant_or_by_group_of_a_listed_tenant():
    assert decide(claims(oid=ADA, tid=FABRIKAM), ACCESS).role == "admin"
    assert decide(claims(tid=FABRIKAM, groups=["other", "G-ADMINS"]), ACCESS).role == "admin"


def test_the_same_object_id_or_group_from_another_tenant_is_nobody():
    assert decide(claims(oid=ADA, tid=CONTOSO), ACCESS).role is None
    assert decide(claims(groups=["g-admins"]), ACCESS).role is None  # a group id of an unlisted tenant
    tenant_bound = ConsoleAccess.from_env({"BRIDGE_ADMIN_GROUPS": f"g-admins@{CONTOSO}"})
    assert decide(claims(groups=["g-admins"]), tenant_bound).role == "admin"


def test_a_sign_in_name_decides_nothing_by_default():
    copied = claims(preferred_username="ada@fabrikam.example")  # a foreign tenant's user named like an admin
    assert decide(copied, ACCESS).role is None
    with pytest.raises(ConfigError, match="BRIDGE_ADMINS_BY_UPN"):
        ConsoleAccess.from_env({"BRIDGE_ADMINS": "ada@fabrikam.example"})


def test_sign_in_names_opted_in_count_only_for_listed_tenants():
    with pytest.raises(ConfigError, match="BRIDGE_CONSOLE_TENANTS"):
        ConsoleAccess.from_env({"BRIDGE_ADMINS": "ada@fabrikam.example", "BRIDGE_ADMINS_BY_UPN": "1"})
    by_upn = ConsoleAccess.from_env({"BRIDGE_ADMINS": "Ada@Fabrikam.example", "BRIDGE_ADMINS_BY_UPN": "1",
                                     "BRIDGE_CONSOLE_TENANTS": FABRIKAM})
    assert decide(claims(preferred_username="ada@fabrikam.example", tid=FABRIKAM), by_upn).role == "admin"
    assert decide(claims(preferred_username="ada@fabrikam.example"), by_upn).role is None


def test_people_of_an_allowed_tenant_are_users_and_everyone_else_is_refused():
    assert decide(claims(tid=FABRIKAM), ACCESS).role == "user"
    refused = decide(claims(groups=["other"]), ACCESS)
    assert refused.role is None and "BRIDGE_ADMINS" in refused.reason and "BRIDGE_CONSOLE_TENANTS" in refused.reason


def test_a_group_overage_is_explained_not_silently_refused():
    overage = decide(claims(_claim_names={"groups": "src1"}), ACCESS)
    assert overage.role is None and "groupMembershipClaims" in overage.reason
    assert decide(claims(_claim_names={"groups": "src1"}, tid=FABRIKAM), ACCESS).role == "user"


def test_nothing_configured_lets_nobody_in():
    assert decide(claims(tid="", groups=[]), ConsoleAccess()).role is None
    assert decide({}, ConsoleAccess()).role is None


@given(st.text(max_size=60))
def test_no_sign_in_name_alone_makes_an_admin(name):
    """Whatever a foreign tenant's user calls themselves, they get nothing."""
    assert decide(claims(preferred_username=name), ACCESS).role is None
