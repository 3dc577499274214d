"""The `bridge` command's contract: names outside tools rely on, and helpful errors."""

from __future__ import annotations

from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import select

from bridge.cli import main
from tests.unit.test_config_file import ENV, GOOD


def run(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_help_lists_the_commands_outside_tools_use():
    out = run("--help").output
    for command in ("db", "config", "sandbox", "keys", "demo", "status", "repos", "hooks", "orgs", "connections",
                    "deliveries", "dbt"):
        assert command in out
    for sub in ("list", "setup", "unlink", "jobs"):
        assert sub in run("repos", "--help").output
    for sub in ("status", "check", "rotate"):
        assert sub in run("hooks", "--help").output
    assert "upgrade" in run("db", "--help").output
    assert "apply" in run("config", "--help").output


def test_config_check_reads_bridge_config_and_reports_lines(tmp_path):
    good = tmp_path / "bridge.yaml"
    good.write_text(GOOD)
    result = run("config", "check", env={**ENV, "BRIDGE_CONFIG": str(good)})
    assert result.exit_code == 0 and "valid (1 organizations, 1 dbt accounts, 1 repositories)" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("ci_job: 42", "ci_job: x"))
    result = run("config", "check", str(bad), env=ENV)
    assert result.exit_code == 3 and "line 18: repositories[0].ci_job: must be a whole number" in result.output
    assert run("config", "check").exit_code == 2  # neither FILE nor BRIDGE_CONFIG


def test_config_apply_refuses_without_an_encryption_key(tmp_path):
    good = tmp_path / "bridge.yaml"
    good.write_text(GOOD)
    result = run("config", "apply", str(good), env={**ENV, "BRIDGE_SECRET_KEY": "",
                                                     "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert result.exit_code == 3 and "BRIDGE_SECRET_KEY is not set" in result.output


def test_keys_generate_prints_a_fernet_key():
    key = run("keys", "generate").output.strip()
    Fernet(key.encode())  # raises if it is not a key


def _configured(tmp_path, **extra):
    """A migrated SQLite database holding the documented example (repository resolution stubbed: no network)."""
    from bridge import config_file
    from bridge.crypto import SecretBox
    from bridge.db import Database, upgrade
    from tests.unit.test_config_file import resolver

    key = Fernet.generate_key().decode()
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    upgrade(url)
    database = Database(url)
    with database.session() as s:
        config_file.apply(s, config_file.load(GOOD, env=ENV), SecretBox((key,)), resolver([]))
    env = {"BRIDGE_DATABASE_URL": url, "BRIDGE_SECRET_KEY": key, "BRIDGE_BROKER_URL": "redis://127.0.0.1:9/0",
           **extra}
    return database, env, SecretBox((key,))


ENTRA = {"BRIDGE_ENTRA_CLIENT_ID": "11111111-2222-3333-4444-555555555555", "BRIDGE_ENTRA_CLIENT_SECRET": "s3cret"}


CONTOSO = "c0c0c0c0-0000-4000-8000-00000000c0c0"
OTHER_TENANT = "d0d0d0d0-0000-4000-8000-00000000d0d0"
ALICE_OID = "a1a1a1a1-0000-4000-8000-0000000000a1"


def test_orgs_identity_switches_who_workers_act_as_and_keeps_secrets_off_the_command_line(tmp_path):
    from bridge.models import Connection, Organization

    database, env, box = _configured(tmp_path, **ENTRA, SP_SECRET="sp-secret-value")
    assert "personal access token" in run("orgs", "list", env=env).output

    alice = f"{ALICE_OID}@{CONTOSO}"
    result = run("orgs", "identity", "Fabrikam", "--kind", "user", "--user", alice.upper(), env=env)
    assert result.exit_code == 0, result.output
    assert f"connected user {alice}" in result.output and "has not connected yet" in result.output
    with database.session() as s:
        org = s.scalar(select(Organization))
        assert (org.identity_kind, org.identity_tid, org.identity_oid) == ("user", CONTOSO, ALICE_OID)

    # a sign-in name is looked up once among the connections, and only when it names exactly one
    result = run("orgs", "identity", "fabrikam", "--kind", "user", "--upn", "Alice@Contoso.com", env=env)
    assert result.exit_code == 1 and "no connected account is named" in result.output
    with database.session() as s:
        for n, tenant in enumerate((CONTOSO, OTHER_TENANT)):
            s.add(Connection(home_account_id=f"{ALICE_OID}.{tenant}.{n}", oid=ALICE_OID, tenant_id=tenant,
                             upn="alice@contoso.com"))
    result = run("orgs", "identity", "fabrikam", "--kind", "user", "--upn", "Alice@Contoso.com", env=env)
    assert result.exit_code == 1 and "2 connected accounts are named" in result.output
    assert f"{ALICE_OID}@{OTHER_TENANT}" in result.output
    with database.session() as s:
        s.delete(s.scalar(select(Connection).where(Connection.tenant_id == OTHER_TENANT)))
    result = run("orgs", "identity", "fabrikam", "--kind", "user", "--upn", "Alice@Contoso.com", env=env)
    assert result.exit_code == 0 and "has not connected yet" not in result.output, result.output

    result = run("orgs", "identity", "fabrikam", "--kind", "service-principal", "--tenant", "t-1",
                 "--client-id", "c-1", "--secret-env", "SP_SECRET", env=env)
    assert result.exit_code == 0, result.output
    with database.session() as s:
        org = s.scalar(select(Organization))
        assert org.identity_kind == "service_principal" and box.decrypt(org.sp_secret_enc) == "sp-secret-value"
        assert "sp-secret-value" not in org.sp_secret_enc

    result = CliRunner().invoke(main, ["orgs", "identity", "fabrikam", "--kind", "pat"], env=env,
                                input="new-pat\n")
    assert result.exit_code == 0 and "new-pat" not in result.output
    with database.session() as s:
        assert box.decrypt(s.scalar(select(Organization)).pat_enc) == "new-pat"


def test_orgs_identity_explains_what_is_missing(tmp_path):
    _, env, _ = _configured(tmp_path)
    result = run("orgs", "identity", "nope", "--kind", "pat", "--secret-env", "X", env={**env, "X": "v"})
    assert result.exit_code == 1 and "no organization 'nope' (known: fabrikam)" in result.output
    result = run("orgs", "identity", "fabrikam", "--kind", "user", "--upn", "a@b.c", env=env)
    assert result.exit_code == 1 and "needs Entra ID: set BRIDGE_ENTRA_CLIENT_ID" in result.output
    assert run("orgs", "identity", "fabrikam", "--kind", "user", env=env).exit_code == 2  # --user missing
    result = run("orgs", "identity", "fabrikam", "--kind", "pat", "--secret-env", "UNSET_VAR", env=env)
    assert result.exit_code == 2 and "UNSET_VAR is empty or not set" in result.output


def seed_deliveries(database, *states: str) -> None:
    from bridge.models import Delivery

    with database.session() as s:
        for i, state in enumerate(states):
            s.add(Delivery(source="azure-devops", dedupe_key=f"k{i}", event_type="git.pullrequest.updated",
                           event={}, state=state))


def test_deliveries_retry_changes_nothing_when_the_broker_refuses(tmp_path):
    from bridge.models import Delivery

    database, env, _ = _configured(tmp_path)  # its broker URL answers nothing
    seed_deliveries(database, "blocked", "failed", "processed", "blocked")
    result = run("deliveries", "retry", env=env)
    assert result.exit_code == 5 and "could not reach the broker" in result.output
    assert "nothing was changed" in result.output
    with database.session() as s:
        assert [d.state for d in s.scalars(select(Delivery).order_by(Delivery.id))] == [
            "blocked", "failed", "processed", "blocked"]


def test_deliveries_retry_sends_only_what_was_asked(tmp_path, redis_url):
    import redis

    from bridge.models import Delivery

    url = redis_url.rsplit("/", 1)[0] + "/6"  # a Redis database no worker consumes
    database, env, _ = _configured(tmp_path, BRIDGE_BROKER_URL=url)
    broker = redis.Redis.from_url(url)
    broker.delete("bridge")
    seed_deliveries(database, "blocked", "failed", "processed", "blocked")
    result = run("deliveries", "retry", env=env)
    assert result.exit_code == 0 and "2 deliveries queued again" in result.output
    with database.session() as s:
        states = [d.state for d in s.scalars(select(Delivery).order_by(Delivery.id))]
    assert states == ["dispatched", "failed", "processed", "dispatched"]
    assert broker.llen("bridge") == 1  # the two ids in one message, as the relay sends them
    assert "no blocked deliveries" in run("deliveries", "retry", env=env).output
    result = run("deliveries", "retry", "--state", "failed", "--id", "2", env=env)
    assert result.exit_code == 0 and "1 deliveries queued again" in result.output
    assert broker.llen("bridge") == 2
    import json

    assert json.loads(run("deliveries", "retry", "--json", env=env).output) == {"sent": 0}
    with database.session() as s:  # the activity record says the CLI sent each again
        from bridge.models import Activity

        assert sorted((a.delivery_id, a.actor, a.kind) for a in s.scalars(select(Activity))) == [
            (1, "cli", "replay"), (2, "cli", "replay"), (4, "cli", "replay")]
    broker.delete("bridge")


HOSTILE = "nightly [/] [link=https://evil.example/x]Production CI[/link] \x1b[2J\x1b]0;pwned\x07TITLE"


def test_names_from_dbt_cloud_print_as_text_not_markup_or_escapes(tmp_path, monkeypatch):
    from bridge.cli import repositories
    from tests.fakes import RecordedTransport
    from tests.orchestration import assemble

    def page(values):
        return {"data": values, "extra": {"pagination": {"count": len(values), "total_count": len(values)}}}
    transport = RecordedTransport([
        {"method": "GET", "path": "/api/v2/accounts/1/jobs/", "status": 200,
         "response": page([{"id": 42, "name": HOSTILE, "job_type": "ci", "environment_id": 9,
                            "execute_steps": ["dbt build"], "triggers": {}}])},
        {"method": "GET", "path": "/api/v3/accounts/1/projects/", "status": 200,
         "response": page([{"id": 7, "name": "[bold]Analytics\x1b[31m"}])},
        {"method": "GET", "path": "/api/v3/accounts/1/projects/7/environments/", "status": 200,
         "response": page([{"id": 9, "name": "CI", "type": "deployment", "deployment_type": "staging"}])},
    ])
    onboarding = assemble(tmp_path, transport).onboarding
    monkeypatch.setattr(repositories, "build_onboarding", lambda: onboarding)
    result = CliRunner().invoke(main, ["repos", "jobs", "--dbt-account", "1"], catch_exceptions=False,
                                env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "nightly [/] [link=https://evil.example/x]Production CI[/link]" in result.output
    assert "[bold]Analytics" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output


def test_deliveries_list_show_and_prune_for_scripts(tmp_path):
    import json
    from datetime import timedelta

    from bridge.models import Delivery, utcnow

    database, env, _ = _configured(tmp_path)
    seed_deliveries(database, "processed", "failed", "received")
    with database.session() as s:
        failed = s.scalar(select(Delivery).where(Delivery.state == "failed"))
        failed.error, failed.received_at = "HTTP 401: Invalid token.", utcnow() - timedelta(days=40)
        failed_id = failed.id
    listed = json.loads(run("deliveries", "list", "--json", env=env).output)["deliveries"]
    assert [d["state"] for d in listed] == ["received", "failed", "processed"]  # newest first
    only = json.loads(run("deliveries", "list", "--state", "failed", "--json", env=env).output)["deliveries"]
    assert [(d["id"], d["error"]) for d in only] == [(failed_id, "HTTP 401: Invalid token.")]
    recent = json.loads(run("deliveries", "list", "--since", "1d", "--json", env=env).output)["deliveries"]
    assert failed_id not in [d["id"] for d in recent]
    shown = json.loads(run("deliveries", "show", str(failed_id), "--json", env=env).output)
    assert shown["dedupe_key"] == "k1" and shown["event"] == {} and shown["state"] == "failed"
    assert run("deliveries", "show", "999", env=env).exit_code == 1
    pruned = run("deliveries", "prune", "--older-than", "30d", "--dry-run", env=env).output
    assert "1 deliveries and 0 activity entries from before" in pruned
    assert "were deleted" in run("deliveries", "prune", "--older-than", "30d", env=env).output
    assert len(json.loads(run("deliveries", "list", "--json", env=env).output)["deliveries"]) == 2
    assert run("deliveries", "prune", "--older-than", "thirty", env=env).exit_code == 2


def test_runs_list_for_scripts(tmp_path):
    import json

    from bridge.models import CiRun, PullRequestRecord, Repository

    database, env, _ = _configured(tmp_path)
    with database.session() as s:
        repo = s.query(Repository).first()
        pr = PullRequestRecord(repository_id=repo.id, pull_request_id=11, head_commit="e297ba41" * 5)
        other = PullRequestRecord(repository_id=repo.id, pull_request_id=12, head_commit="0bf81c57" * 5)
        s.add_all([pr, other])
        s.flush()
        s.add_all([CiRun(pull_request_ref=pr.id, kind="ci", dbt_account_id=1, dbt_job_id=42, commit=pr.head_commit,
                         start_error="HTTP 401: Invalid token."),
                   CiRun(pull_request_ref=pr.id, kind="ci", dbt_account_id=1, dbt_job_id=42, commit=pr.head_commit,
                         dbt_run_id=1011, status=10, duration_seconds=252.0),
                   CiRun(pull_request_ref=other.id, kind="ci", dbt_account_id=1, dbt_job_id=42, dbt_run_id=1012,
                         status=3)])
    listed = json.loads(run("runs", "list", "--json", env=env).output)["runs"]
    assert [(r["pull_request_id"], r["dbt_run_id"], r["outcome"]) for r in listed] == [
        (12, 1012, "running"), (11, 1011, "succeeded"), (11, None, "could not start: HTTP 401: Invalid token.")]
    only = json.loads(run("runs", "list", "--pr", "11", "--json", env=env).output)["runs"]
    assert [r["duration_seconds"] for r in only] == [252.0, None]
    table = run("runs", "list", "--pr", "11", env=env).output
    assert "1011" in table and "252 s" in table and "HTTP 401" in table
