"""The pure onboarding rules: what a subscription's state calls for, the policy and job the bridge creates."""

from __future__ import annotations

import pytest

from bridge.domain import (
    DBT_WEBHOOK_EVENTS,
    HOOK_EVENTS,
    CiJobSpec,
    DbtWebhook,
    HookStatus,
    Repair,
    StatusContext,
    StatusPolicy,
    dbt_webhook_verdict,
    hook_verdict,
)


@pytest.mark.parametrize(("status", "url_ok", "by_admin", "repair"), [
    (HookStatus.ENABLED, True, False, Repair.NONE),
    (HookStatus.ENABLED, False, False, Repair.UPDATE),            # the bridge moved: point it at the new URL
    (HookStatus.ON_PROBATION, True, False, Repair.UPDATE),
    (HookStatus.DISABLED_BY_SYSTEM, True, False, Repair.RECREATE),  # a PUT cannot revive it
    (HookStatus.MISSING, False, False, Repair.RECREATE),
    (HookStatus.DISABLED_BY_USER, True, False, Repair.SURFACE),     # a person's choice is respected by beat …
    (HookStatus.DISABLED_BY_USER, True, True, Repair.UPDATE),       # … and repaired when an admin re-runs set-up
    (HookStatus.DISABLED_BY_INACTIVE_IDENTITY, True, False, Repair.SURFACE),
    (HookStatus.DISABLED_BY_INACTIVE_IDENTITY, True, True, Repair.RECREATE),
])
def test_hook_verdicts(status, url_ok, by_admin, repair):
    verdict = hook_verdict(status, url_ok=url_ok, by_admin=by_admin)
    assert verdict.repair is repair and verdict.reason


def test_an_unknown_status_is_treated_as_the_worst():
    assert HookStatus.parse("somethingNew") is HookStatus.DISABLED_BY_SYSTEM
    assert HookStatus.parse(None) is HookStatus.ENABLED


def test_dbt_webhook_verdicts():
    url = "https://bridge.example/webhooks/dbt-cloud"
    good = DbtWebhook("wsu_1", "bridge", url, DBT_WEBHOOK_EVENTS, (42, 43), True)
    assert dbt_webhook_verdict(good, url=url, job_ids=(42,)).repair is Repair.NONE
    assert dbt_webhook_verdict(None, url=url, job_ids=(42,)).repair is Repair.RECREATE
    off = DbtWebhook("wsu_1", "bridge", url, DBT_WEBHOOK_EVENTS, (42,), False, "5 failures")
    verdict = dbt_webhook_verdict(off, url=url, job_ids=(42,))
    assert verdict.repair is Repair.UPDATE and "5 failures" in verdict.reason
    assert dbt_webhook_verdict(good, url=url, job_ids=(44,)).repair is Repair.UPDATE
    started_only = DbtWebhook("wsu_1", "bridge", url, ("job.run.started",), (42,), True)
    assert dbt_webhook_verdict(started_only, url=url, job_ids=(42,)).repair is Repair.UPDATE


def test_every_handled_event_is_subscribed_with_a_pinned_resource_version():
    assert {e for e, _ in HOOK_EVENTS} == {"git.pullrequest.created", "git.pullrequest.updated",
                                           "git.pullrequest.merged", "ms.vss-code.git-pullrequest-comment-event"}
    assert all(version in ("1.0", "2.0") for _, version in HOOK_EVENTS)


def test_status_policy_requires_the_context_on_the_target_branch():
    from bridge.clients.azure_devops import status_policy_settings

    settings = status_policy_settings(StatusPolicy("REPO", "main", StatusContext("dbt-cloud", "ci")))
    assert settings["statusGenre"] == "dbt-cloud" and settings["statusName"] == "ci"
    assert settings["invalidateOnSourceUpdate"] is True
    assert settings["scope"] == [{"repositoryId": "REPO", "refName": "refs/heads/main", "matchKind": "exact"}]
    assert status_policy_settings(StatusPolicy("R", "refs/heads/release", StatusContext("g", "n"),
                                               reset_on_new_changes=False))["invalidateOnSourceUpdate"] is False


def test_the_ci_job_has_no_trigger_of_its_own_and_defers():
    from bridge.clients.dbt_cloud import ci_job_body

    job = ci_job_body(CiJobSpec(account_id=1, project_id=7, environment_id=9, name="PR CI",
                                deferring_environment_id=8))
    assert job["job_type"] == "ci" and job["deferring_environment_id"] == 8
    assert not any(job["triggers"].values())  # or dbt Cloud would run each PR a second time
    assert job["execute_steps"] == ["dbt build --select state:modified+"]


def test_browsers_go_to_microsoft_unless_a_local_fake_stands_in():
    from bridge.dev.entra_redirect import sandbox_hosts
    from bridge.identity import EntraSettings, Identity

    uri = "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize?client_id=x"
    real = Identity(EntraSettings("c", "s"), redirect_uri="https://bridge.example/complete/azure-active-directory")
    assert real.browser_uri(uri) == uri
    fake = Identity(EntraSettings("c", "s"), redirect_uri="http://x/complete", hosts=sandbox_hosts("http://127.0.0.1:9"))
    assert fake.browser_uri(uri) == "http://127.0.0.1:9/idp/organizations/oauth2/v2.0/authorize?client_id=x"
    assert fake.browser_uri("https://elsewhere.example/a") == "https://elsewhere.example/a"


def test_beat_checks_subscriptions_unless_switched_off():
    from bridge.settings import Settings
    from workers.app import create_celery_app

    base = {"BRIDGE_SECRET_KEY": "Zm9vYmFyYmF6cXV1eGZvb2JhcmJhenF1dXhmb29iYXI=", "BRIDGE_DATABASE_URL": "sqlite://"}
    schedule = create_celery_app(Settings.from_env({**base, "BRIDGE_HOOK_CHECK_INTERVAL": "60"})).conf.beat_schedule
    assert schedule["check-subscriptions"]["schedule"] == 60.0
    off = create_celery_app(Settings.from_env({**base, "BRIDGE_HOOK_CHECK_INTERVAL": "0"})).conf.beat_schedule
    assert "check-subscriptions" not in off


def test_discovered_organizations_stay_on_the_configured_host(tmp_path):
    from bridge.crypto import SecretBox, generate_key
    from bridge.db import Database, upgrade
    from bridge.onboarding import Onboarding, OnboardingError
    from bridge.services.connections import Connections
    from bridge.settings import Settings

    url = f"sqlite:///{tmp_path / 'b.db'}"
    upgrade(url)
    settings = Settings.from_env({"BRIDGE_SECRET_KEY": generate_key(), "BRIDGE_DATABASE_URL": url})
    box = SecretBox(settings.secret_keys)
    onboarding = Onboarding(settings, Database(url), box, Connections(settings, box))
    assert onboarding.org_url("fabrikam-data") == "https://dev.azure.com/fabrikam-data"
    for hostile in ("evil.example/x", "a?b", "-x", "x/../y", "a@b", ""):
        with pytest.raises(OnboardingError, match="not an Azure DevOps organization name"):
            onboarding.org_url(hostile)


def test_on_azure_devops_server_every_event_is_asked_for_at_1_0_and_the_comment_event_is_skipped():
    from bridge.domain import HOOK_EVENTS, hook_events

    assert hook_events("7.1") == (HOOK_EVENTS, ())
    for version in ("7.0", "6.0"):
        made, skipped = hook_events(version)
        assert {v for _, v in made} == {"1.0"} and len(made) == 3
        assert [e for e, _ in skipped] == ["ms.vss-code.git-pullrequest-comment-event"]
        assert "/dbt commands are unavailable" in skipped[0][1]


def test_beat_prunes_history_hourly_unless_kept_forever():
    from bridge.settings import Settings
    from workers.app import create_celery_app

    base = {"BRIDGE_SECRET_KEY": "Zm9vYmFyYmF6cXV1eGZvb2JhcmJhenF1dXhmb29iYXI=", "BRIDGE_DATABASE_URL": "sqlite://"}
    schedule = create_celery_app(Settings.from_env(base)).conf.beat_schedule
    assert schedule["prune-history"] == {"task": "bridge.prune_history", "schedule": 3600.0}
    kept = create_celery_app(Settings.from_env({**base, "BRIDGE_RETENTION_DAYS": "0"})).conf.beat_schedule
    assert "prune-history" not in kept
