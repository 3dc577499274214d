"""`bridge config apply`: validation names the key and line; applying is an idempotent upsert."""

from __future__ import annotations

import textwrap

import pytest
from sqlalchemy import select

from bridge import config_file
from bridge.catalog import AdoRepository
from bridge.crypto import SecretBox, generate_key
from bridge.db import Database, upgrade
from bridge.errors import ConfigError
from bridge.models import DbtAccount, Organization, Repository

GOOD = textwrap.dedent("""\
    azure_devops:
      organizations:
        - name: fabrikam
          url: https://dev.azure.com/fabrikam        # any base URL
          pat: ${ADO_PAT}
          webhook: {username: ado-fabrikam, password: ${ADO_HOOK_PASSWORD}}
    dbt_cloud:
      accounts:
        - id: 1
          url: https://cloud.getdbt.com
          api_token: ${DBT_CLOUD_TOKEN}
          webhook_secret: ${DBT_CLOUD_WEBHOOK_SECRET}
    repositories:
      - organization: fabrikam
        project: Fabrikam-Fiber-Git
        repository: Fabrikam-Fiber-Git
        dbt_account: 1
        ci_job: 42
        target_branches: [refs/heads/main]
        drafts: skip
        status: {genre: dbt-cloud, name: ci}
        teardown_job: 43
    """)
ENV = {"ADO_PAT": "pat-value", "ADO_HOOK_PASSWORD": "a-long-hook-password", "DBT_CLOUD_TOKEN": "tok",
       "DBT_CLOUD_WEBHOOK_SECRET": "whsec"}


def test_the_documented_example_loads_with_secrets_from_the_environment():
    desired = config_file.load(GOOD, env=ENV)
    org = desired.organizations[0]
    assert org["pat"] == "pat-value"
    assert org["webhook"] == {"username": "ado-fabrikam", "password": "a-long-hook-password"}
    assert desired.accounts[0]["api_token"] == "tok"
    assert desired.repositories[0]["target_branches"] == ["refs/heads/main"]


def test_a_numeric_looking_secret_stays_a_string():
    desired = config_file.load(GOOD, env={**ENV, "ADO_PAT": "12345"})
    assert desired.organizations[0]["pat"] == "12345"


def errors_of(text: str, env=ENV, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        config_file.load(text, env=env, source="bridge.yaml", **kw)
    return str(info.value)


def test_missing_environment_variable_names_the_variable_and_line():
    message = errors_of(GOOD, env={k: v for k, v in ENV.items() if k != "DBT_CLOUD_TOKEN"})
    assert "line 11: environment variable DBT_CLOUD_TOKEN is not set" in message


def test_wrong_values_name_key_and_line():
    text = GOOD.replace("ci_job: 42", "ci_job: forty-two").replace("drafts: skip", "drafts: maybe")
    message = errors_of(text)
    assert "line 18: repositories[0].ci_job: must be a whole number" in message
    assert "line 20: repositories[0].drafts: must be skip or run" in message


def test_unknown_keys_are_refused_not_ignored():
    message = errors_of(GOOD.replace("    drafts: skip", "    drafts: skip\n    colour: blue"))
    assert "line 21: repositories[0].colour: is not a key here (keys here: ci_job, dbt_account, drafts" in message


# The review's bad file (console-review.md §4): every problem in one round, in the file's own terms.
REVIEWED = textwrap.dedent("""    azure_devops:
      organisations:
        - name: fabrikam
          url: dev.azure.com/fabrikam
          pat: ${ADO_PAT}
    dbt_cloud:
      accounts:
        - id: one
          url: http://cloud.getdbt.com
          api_token: ${DBT_CLOUD_TOKN}
    repositories:
      - organization: fabrikm
        project: Data
        repo: dbt-analytics
        dbt_account: 1
        ci_job: "42"
        target_branches: refs/heads/main
        drafts: yes
        status: ci
    """)


def test_every_problem_of_a_file_comes_in_one_round():
    lines = errors_of(REVIEWED).splitlines()[1:]
    expected = [
        "line 2: azure_devops.organisations: is not a key here (did you mean organizations?)",
        "line 8: dbt_cloud.accounts[0].id: must be a whole number",
        "line 9: dbt_cloud.accounts[0].url: 'http://cloud.getdbt.com' uses plain http",
        "line 10: environment variable DBT_CLOUD_TOKN is not set",
        "line 12: repositories[0].organization: no organization named 'fabrikm' under azure_devops",
        "line 14: repositories[0].repo: is not a key here (did you mean repository?)",
        "line 16: repositories[0].ci_job: must be a whole number",
        "line 17: repositories[0].target_branches: must be a list",
        "line 18: repositories[0].drafts: must be skip or run",
        "line 19: repositories[0].status: must be a mapping",
    ]
    for text in expected:
        assert sum(line.strip().startswith(text) for line in lines) == 1, (text, lines)
    assert "_schema" not in "\n".join(lines) and "dbt_account" not in "\n".join(lines)  # no echo of id: one
    assert any("repositories[0].repository: is required" in line for line in lines)


def test_an_organization_url_and_a_misspelt_reference_in_one_round():
    text = GOOD.replace("url: https://dev.azure.com/fabrikam", "url: dev.azure.com/fabrikam").replace(
        "- organization: fabrikam", "- organization: fabrikm")
    message = errors_of(text)
    assert "line 4: azure_devops.organizations[0].url: 'dev.azure.com/fabrikam' is not an absolute" in message
    assert "no organization named 'fabrikm' under azure_devops (did you mean fabrikam?)" in message


def test_a_repository_listed_twice_is_refused():
    entry = GOOD[GOOD.index("  - organization: fabrikam"):]
    twice = GOOD + entry.replace("ci_job: 42", "ci_job: 52").replace("Fabrikam-Fiber-Git\n", "fabrikam-fiber-git\n", 1)
    message = errors_of(twice)
    assert "repositories[1]: repository is listed twice (first at line 14); keep one entry" in message
    accounts = GOOD.replace("    - id: 1\n", "    - id: 1\n      url: https://cloud.getdbt.com\n    - id: 1\n", 1)
    assert "dbt_cloud account is listed twice" in errors_of(accounts)


def test_references_must_exist():
    message = errors_of(GOOD.replace("- organization: fabrikam", "- organization: contoso"))
    assert "repositories[0].organization: no organization named 'contoso'" in message
    message = errors_of(GOOD.replace("dbt_account: 1", "dbt_account: 2"))
    assert "repositories[0].dbt_account: no dbt_cloud account with id 2" in message


def test_plain_http_is_refused_unless_allowed():
    text = GOOD.replace("https://cloud.getdbt.com", "http://cloud.getdbt.com")
    assert "line 10: " in errors_of(text) and "plain http" in errors_of(text)
    assert config_file.load(text, env=ENV, allow_insecure_http=True)


def test_broken_yaml_says_where():
    assert "line 3, column" in errors_of("a:\n  b: [1,\n  c: }\n")


def test_short_webhook_password_is_refused():
    assert "webhook.password: must be 16 to 256" in errors_of(GOOD, env={**ENV, "ADO_HOOK_PASSWORD": "short"})


@pytest.fixture
def database(tmp_path):
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    upgrade(url)
    return Database(url)


def resolver(calls):
    def resolve(org, repo):
        calls.append((org.name, repo["project"], repo["repository"]))
        return AdoRepository(id="0F6B0A54-5B14-4C1E-9D2A-6A3BD3F1B2C1".lower(), name=repo["repository"],
                             project_id="6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c", project_name=repo["project"])
    return resolve


def test_apply_is_an_idempotent_upsert_with_encrypted_secrets(database):
    box = SecretBox((generate_key(),))
    desired = config_file.load(GOOD, env=ENV)
    calls: list = []
    with database.session() as s:
        first = config_file.apply(s, desired, box, resolver(calls))
    assert [c.action for c in first] == ["created", "created", "created"]
    with database.session() as s:
        second = config_file.apply(s, config_file.load(GOOD, env=ENV), box, resolver(calls))
    assert [c.action for c in second] == ["unchanged", "unchanged", "unchanged"]
    changed = GOOD.replace("ci_job: 42", "ci_job: 44")
    with database.session() as s:
        third = config_file.apply(s, config_file.load(changed, env={**ENV, "ADO_PAT": "rotated"}), box,
                                  resolver(calls))
    assert [c.action for c in third] == ["updated", "unchanged", "updated"]
    with database.session() as s:
        org = s.scalar(select(Organization))
        assert "rotated" not in org.pat_enc and box.decrypt(org.pat_enc) == "rotated"
        assert box.decrypt(org.webhook_password_enc) == "a-long-hook-password"
        assert s.scalar(select(Repository)).ci_job_id == 44
        assert len(s.scalars(select(Repository)).all()) == 1
        assert box.decrypt(s.get(DbtAccount, 1).webhook_secret_enc) == "whsec"


def test_a_failing_repository_changes_nothing(database):
    from bridge.errors import NotFound

    box = SecretBox((generate_key(),))

    def resolve(org, repo):
        raise NotFound("GET repositories/x → 404: TF401019", status=404)

    with pytest.raises(ConfigError, match="could not resolve"), database.session() as s:
        config_file.apply(s, config_file.load(GOOD, env=ENV), box, resolve)
    with database.session() as s:
        assert s.scalars(select(Organization)).all() == []


def test_server_collections_name_their_api_version_and_take_only_a_pat(tmp_path):
    server = GOOD.replace("url: https://dev.azure.com/fabrikam        # any base URL",
                          "url: https://tfs.example.com/tfs/DefaultCollection\n      api_version: '6.0'")
    desired = config_file.load(server, env=ENV)
    assert desired.organizations[0]["api_version"] == "6.0"
    assert config_file.load(GOOD, env=ENV).organizations[0]["api_version"] == "7.1"
    assert "must be 7.1 (Azure DevOps Services), 7.0 (Server 2022) or 6.0 (Server 2020)" in errors_of(
        server.replace("'6.0'", "'5.0'"))
    as_user = server.replace("      pat: ${ADO_PAT}\n", "      pat: ${ADO_PAT}\n      identity: {kind: user, "
                             "upn: ci@fabrikam.example}\n")
    assert "Azure DevOps Server (api_version 6.0) has no Microsoft Entra ID: use kind pat" in errors_of(as_user)
    bundle = tmp_path / "corporate-ca.pem"
    with_bundle = server.replace("      api_version: '6.0'", f"      api_version: '6.0'\n      ca_bundle: {bundle}")
    assert "is not a readable file" in errors_of(with_bundle)
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert config_file.load(with_bundle, env=ENV).organizations[0]["ca_bundle"] == str(bundle)
