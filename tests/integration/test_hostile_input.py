"""Bad input on both receivers and the config loader: property-based and a table of hostile cases.

These drive the real Flask app in-process (real SQLite database, real private Redis as the broker), so
hypothesis can try thousands of bodies quickly. Every answer is a 4xx or a 200/202, never a 5xx, and
nothing is stored or queued that should not be.
"""

from __future__ import annotations

import base64
import hmac
import json
import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bridge import config_file
from bridge.catalog import AdoRepository
from bridge.crypto import SecretBox, generate_key
from bridge.db import Database, upgrade
from bridge.errors import ConfigError
from bridge.models import Delivery, Organization
from bridge.settings import Settings
from bridge.web import create_app
from bridge.webhooks.dbt_cloud import signature
from tests.conftest import ADO_FIXTURES, DBT_FIXTURES

REPO_A = "98f0ce59-a912-43d5-96d2-bc0942a03f7b"   # the repository of the real (zulip) deliveries
REPO_B = "11111111-2222-3333-4444-555555555555"
PASSWORD_A, PASSWORD_B = "password-of-org-a-123", "password-of-org-b-456"
SECRET = "dbt-secret-for-account-1"

CONFIG = {
    "azure_devops": {"organizations": [
        {"name": "org-a", "url": "https://dev.azure.com/org-a", "pat": "pat-a",
         "webhook": {"username": "hook-a", "password": PASSWORD_A}},
        {"name": "org-b", "url": "https://dev.azure.com/org-b", "pat": "pat-b",
         "webhook": {"username": "hook-b", "password": PASSWORD_B}},
        {"name": "org-c", "url": "https://dev.azure.com/org-c", "pat": "pat-c"},  # no webhook credentials
    ]},
    "dbt_cloud": {"accounts": [{"id": 1, "url": "https://cloud.getdbt.com", "api_token": "t",
                                "webhook_secret": SECRET},
                               {"id": 2, "url": "https://emea.dbt.com", "api_token": "t2"}]},
    "repositories": [
        {"organization": "org-a", "project": "p", "repository": REPO_A, "dbt_account": 1, "ci_job": 42},
        {"organization": "org-b", "project": "p", "repository": REPO_B, "dbt_account": 1, "ci_job": 42},
    ],
}


@pytest.fixture(scope="module")
def broker(redis_url) -> str:
    """A database of the private Redis of its own: no worker consumes what this in-process app queues."""
    return redis_url.rsplit("/", 1)[0] + "/5"


@pytest.fixture(scope="module")
def app(tmp_path_factory, broker):
    url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'bridge.db'}"
    upgrade(url)
    key = generate_key()
    desired = config_file.load(yaml.safe_dump(CONFIG), env={})
    with Database(url).session() as s:
        config_file.apply(s, desired, SecretBox((key,)), lambda org, repo: AdoRepository(
            id=repo["repository"], name="r", project_id="pid", project_name="p"))
    application = create_app(Settings(database_url=url, broker_url=broker, secret_keys=(key,)))
    application.testing = True
    return application


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


A = basic("hook-a", PASSWORD_A)


def stored(app) -> int:
    db = app.extensions["bridge"].db
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Delivery))


def real(name: str = "zulip__git.pullrequest.created.json") -> dict:
    return json.loads(next(p for p in ADO_FIXTURES if p.name == name).read_bytes())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25)

PR_KEYS = ["id", "eventType", "resource", "pullRequestId", "repository", "status", "isDraft",
           "lastMergeSourceCommit", "commitId", "targetRefName", "subscriptionId", "notificationId"]


def mutate(data, rnd_path: list[str], value):
    """Replace the first key on the path found in ``data`` (depth-first) with ``value``."""
    if isinstance(data, dict):
        for key in list(data):
            if key in rnd_path:
                if value is _DROP:
                    data.pop(key)
                else:
                    data[key] = value
                return True
            if mutate(data[key], rnd_path, value):
                return True
    elif isinstance(data, list):
        return any(mutate(item, rnd_path, value) for item in data)
    return False


_DROP = object()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values)
def test_any_json_gets_a_4xx_or_200_never_a_5xx(client, body):
    answer = client.post("/webhooks/azure-devops", data=json.dumps(body), content_type="application/json", headers=A)
    assert answer.status_code in (200, 400), answer.get_data(as_text=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(PR_KEYS), value=st.one_of(st.just(_DROP), json_values),
       event_type=st.sampled_from(["git.pullrequest.created", "git.pullrequest.updated", "git.pullrequest.merged",
                                   "ms.vss-code.git-pullrequest-comment-event"]))
def test_mutated_real_deliveries_never_cause_a_5xx(client, key, value, event_type):
    data = real()
    data["eventType"] = event_type
    data["id"] = f"mutated-{key}-{hash(repr(value)) & 0xFFFFFFF}"
    mutate(data, [key], value)
    answer = client.post("/webhooks/azure-devops", json=data, headers=A)
    assert answer.status_code in (200, 202, 400), answer.get_data(as_text=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300), content_type=st.sampled_from(["application/json", "text/plain", "",
                                                                    "application/json; charset=utf-16"]))
def test_arbitrary_bytes_get_400_or_415(client, raw, content_type):
    answer = client.post("/webhooks/azure-devops", data=raw, headers={**A, "Content-Type": content_type})
    assert answer.status_code in (200, 400, 415)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values)
def test_dbt_receiver_signed_garbage_is_refused_cleanly(client, body):
    if isinstance(body, dict):
        body["accountId"] = 1
    raw = json.dumps(body).encode()
    answer = client.post("/webhooks/dbt-cloud", data=raw, headers={"Content-Type": "application/json",
                                                                   "Authorization": signature(SECRET, raw)})
    assert answer.status_code in (200, 202, 400), answer.get_data(as_text=True)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=string.printable, max_size=200))
def test_config_loader_refuses_garbage_with_a_config_error(text):
    try:
        config_file.load(text, env={})
    except ConfigError as exc:
        assert str(exc)


@settings(max_examples=100, deadline=None)
@given(data=json_values)
def test_config_loader_refuses_wrong_shapes(data):
    try:
        config_file.load(yaml.safe_dump(data), env={})
    except ConfigError as exc:  # anything else (a TypeError, a KeyError) fails the test
        assert str(exc)


HOSTILE = [
    ("deeply nested JSON", b"[" * 100_000 + b"]" * 100_000, "application/json", A, 400),
    ("deeply nested object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json", A, 400),
    ("huge body", b'{"x": "' + b"a" * 2_000_000 + b'"}', "application/json", A, 413),
    ("form body", b"payload=%7B%7D", "application/x-www-form-urlencoded", A, 415),
    ("no content type", b"{}", "", A, 415),
    ("XML", b"<event/>", "application/xml", A, 415),
    ("UTF-16 JSON of a real delivery", json.dumps(real()).encode("utf-16"), "application/json", A, None),
    ("UTF-8 BOM", b"\xef\xbb\xbf" + json.dumps(real()).encode(), "application/json", A, None),
    ("latin-1 bytes", '{"id": "é", "eventType": "x"}'.encode("latin-1"), "application/json", A, 400),
    ("NaN and Infinity", b'{"id": NaN, "eventType": Infinity}', "application/json", A, 400),
    ("null body", b"null", "application/json", A, 400),
    ("wrong password", json.dumps(real()).encode(), "application/json", basic("hook-a", "nope"), 401),
    ("organization without webhook credentials", json.dumps(real()).encode(), "application/json",
     basic("org-c", ""), 401),
    ("bearer instead of basic", json.dumps(real()).encode(), "application/json",
     {"Authorization": "Bearer abc"}, 401),
    ("garbled basic", json.dumps(real()).encode(), "application/json", {"Authorization": "Basic ###"}, 401),
]


@pytest.mark.parametrize("case, body, content_type, headers, expected", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_bodies(client, case, body, content_type, headers, expected):
    answer = client.post("/webhooks/azure-devops", data=body,
                         headers={**headers, "Content-Type": content_type} if content_type else headers)
    if expected is None:
        assert answer.status_code in (200, 202)
    else:
        assert answer.status_code == expected, answer.get_data(as_text=True)[:300]


def test_replay_is_recognised(client, app):
    data = real()
    data["id"] = "replayed-event"
    first = client.post("/webhooks/azure-devops", json=data, headers=A)
    before = stored(app)
    again = [client.post("/webhooks/azure-devops", json=data, headers=A).status_code for _ in range(5)]
    assert first.status_code == 202 and again == [200] * 5 and stored(app) == before


def test_a_repository_of_another_organization_is_not_reachable_with_these_credentials(client, app):
    data = real()
    data["id"] = "forged-org"
    data["resource"]["repository"]["id"] = REPO_B     # org-b's repository…
    data["resourceContainers"]["account"]["baseUrl"] = "https://dev.azure.com/org-b/"
    answer = client.post("/webhooks/azure-devops", json=data, headers=A)  # …with org-a's credentials
    assert answer.status_code == 200 and answer.json["outcome"] == "ignored"
    with app.extensions["bridge"].db.session() as s:
        row = s.scalar(select(Delivery).where(Delivery.dedupe_key == "git.pullrequest.created:forged-org"))
        assert row.state == "ignored" and row.repository_id is None


def test_dbt_account_without_a_secret_fails_closed(client):
    body = json.loads(DBT_FIXTURES[0].read_bytes())
    body["accountId"] = 2
    raw = json.dumps(body).encode()
    for auth in (signature("", raw), signature("anything", raw), ""):
        answer = client.post("/webhooks/dbt-cloud", data=raw,
                             headers={"Content-Type": "application/json", "Authorization": auth})
        assert answer.status_code == 401


def test_forged_dbt_account_id_cannot_borrow_another_accounts_secret(client):
    body = json.loads(DBT_FIXTURES[0].read_bytes())
    body["accountId"] = 2
    raw = json.dumps(body).encode()
    answer = client.post("/webhooks/dbt-cloud", data=raw, headers={"Content-Type": "application/json",
                                                                   "Authorization": signature(SECRET, raw)})
    assert answer.status_code == 401


def test_credentials_are_compared_in_constant_time(client, monkeypatch):
    calls = []
    real_compare = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real_compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    client.post("/webhooks/azure-devops", json=real(), headers=basic("hook-a", "wrong"))
    client.post("/webhooks/azure-devops", json=real(), headers=basic("no-such-user", "wrong"))
    raw = DBT_FIXTURES[0].read_bytes()
    client.post("/webhooks/dbt-cloud", data=raw, headers={"Content-Type": "application/json",
                                                          "Authorization": "0" * 64})
    assert len(calls) == 3  # unknown users are compared too, so timing does not reveal who exists


def test_without_an_encryption_key_every_delivery_is_refused_for_now(app, broker):
    """Fail closed, but as a configuration fault: 503 and Retry-After, so Azure DevOps and dbt Cloud send again
    once the key is back, instead of a 401 that reads as "wrong credentials"."""
    url = app.extensions["bridge"].db.url
    keyless = create_app(Settings(database_url=url, broker_url=broker, secret_keys=()))
    client = keyless.test_client()
    with keyless.extensions["bridge"].db.session() as s:
        stored = s.scalar(select(func.count()).select_from(Delivery))
    answer = client.post("/webhooks/azure-devops", json=real(), headers=A)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
    raw = DBT_FIXTURES[0].read_bytes()
    assert client.post("/webhooks/dbt-cloud", data=raw, headers={
        "Content-Type": "application/json", "Authorization": signature(SECRET, raw)}).status_code == 503
    assert client.get("/readyz").status_code == 503
    with keyless.extensions["bridge"].db.session() as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == stored  # nothing accepted


def test_secrets_are_stored_encrypted(app):
    db = app.extensions["bridge"].db
    with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.exec_driver_sql("SELECT * FROM organizations")]
        accounts = [dict(r._mapping) for r in conn.exec_driver_sql("SELECT * FROM dbt_accounts")]
    dump = json.dumps(rows + accounts, default=str)
    for secret in ("pat-a", "pat-b", PASSWORD_A, PASSWORD_B, SECRET):
        assert secret not in dump
        assert base64.b64encode(secret.encode()).decode().rstrip("=") not in dump
    with db.session() as s:
        assert all(o.pat_enc.startswith("gAAAA") for o in s.scalars(select(Organization)))  # Fernet tokens


def test_the_receivers_answer_only_post(client, app):
    before = stored(app)
    for path in ("/webhooks/azure-devops", "/webhooks/dbt-cloud"):
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            answer = client.open(path, method=method, headers=A, data=json.dumps(real()),
                                 content_type="application/json")
            assert answer.status_code == 405 and answer.headers["Allow"] == "POST", (method, path)
            assert answer.get_json()["outcome"] == "method-not-allowed"
    assert stored(app) == before
    assert client.get("/healthz").status_code == 200  # every other path is Flask's, as before
