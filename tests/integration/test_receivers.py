"""Answer discipline of both receivers, against the real gunicorn process."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bridge.dev.sandbox.control import wait_until
from bridge.dev.stack import free_port
from bridge.models import Delivery
from bridge.webhooks.dbt_cloud import signature
from tests.conftest import ADO_FIXTURES, DBT_FIXTURES

from .conftest import DBT_SECRET, HOOK_PASSWORD, HOOK_USER

AUTH = (HOOK_USER, HOOK_PASSWORD)


def ado_post(bridge, body, *, auth=AUTH, content_type="application/json", url=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return bridge.http.post(f"{url or bridge.web}/webhooks/azure-devops", data=data, auth=auth,
                            headers={"Content-Type": content_type}, timeout=10)


def dbt_post(bridge, body, *, secret=DBT_SECRET, content_type="application/json", header=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type}
    if secret is not None or header is not None:
        headers["Authorization"] = header if header is not None else signature(secret, data)
    return bridge.http.post(f"{bridge.web}/webhooks/dbt-cloud", data=data, headers=headers, timeout=10)


def real_event(bridge):
    """A real delivery body for an open PR, without sending it."""
    opened = bridge.sandbox.open_pr(deliver=False)
    return bridge.sandbox._get(f"/events/{opened['event_id']}"), opened


@pytest.mark.parametrize("auth", [None, (HOOK_USER, "wrong-password-123"), ("someone", HOOK_PASSWORD),
                                  ("", "")])
def test_bad_or_missing_basic_credentials_get_401(bridge, auth):
    body, _ = real_event(bridge)
    answer = ado_post(bridge, body, auth=auth)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")


def test_non_json_gets_415_and_malformed_json_gets_400(bridge):
    assert ado_post(bridge, b"a=b", content_type="application/x-www-form-urlencoded").status_code == 415
    assert ado_post(bridge, b"<xml/>", content_type="text/xml").status_code == 415
    answer = ado_post(bridge, b'{"id": "x", "eventType": "git.pullrequest.created", "resource": {}}')
    assert answer.status_code == 400 and answer.json()["outcome"] == "malformed"
    assert ado_post(bridge, b"{not json").status_code == 400
    assert ado_post(bridge, b'{"id": 1}', content_type="application/json; charset=utf-8").status_code == 400


def test_too_large_gets_413(bridge):
    answer = ado_post(bridge, b"{" + b" " * (1_048_576 + 10) + b"}")
    assert answer.status_code == 413
    body, _ = real_event(bridge)
    assert ado_post(bridge, body).status_code == 202  # the same client session goes on working


def test_a_chunked_body_is_read_whole_and_limited_as_it_arrives(bridge):
    """Without a Content-Length (Transfer-Encoding: chunked) the body is read to its end, and refused with 413
    once it passes the limit."""
    body, opened = real_event(bridge)
    data = json.dumps(body).encode()

    def pieces(raw: bytes, size: int = 700):
        yield from (raw[i:i + size] for i in range(0, len(raw), size))

    url = f"{bridge.web}/webhooks/azure-devops"
    answer = bridge.http.post(url, data=pieces(data), auth=AUTH, headers={"Content-Type": "application/json"},
                              timeout=10)
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert answer.status_code == 202, answer.text
    with bridge.db.session() as s:
        assert s.get(Delivery, answer.json()["delivery"]).event["pull_request_id"] == opened["pr"]
    huge = b"{" + b" " * (1_048_576 + 10) + b"}"
    refused = bridge.http.post(url, data=pieces(huge, 65_536), auth=AUTH,
                               headers={"Content-Type": "application/json"}, timeout=10)
    assert refused.status_code == 413


@pytest.mark.parametrize("path", [p for p in ADO_FIXTURES if not p.name.startswith("zulip__")],
                         ids=lambda p: p.name)
def test_docs_samples_and_pushes_answer_200(bridge, path):
    answer = ado_post(bridge, path.read_bytes())
    assert answer.status_code == 200
    assert answer.json()["outcome"] in ("test", "ignored", "duplicate")


def test_real_delivery_for_an_unconfigured_repository_is_ignored_with_200(bridge):
    path = next(p for p in ADO_FIXTURES if p.name == "zulip__git.pullrequest.created.json")
    answer = ado_post(bridge, path.read_bytes())
    assert answer.status_code == 200 and "not configured" in answer.json()["reason"]


def test_accepted_delivery_is_stored_before_the_answer(bridge):
    body, opened = real_event(bridge)
    answer = ado_post(bridge, body)
    assert answer.status_code == 202
    delivery_id = answer.json()["delivery"]
    with bridge.db.session() as s:
        row = s.get(Delivery, delivery_id)
        assert row.source == "azure-devops" and row.event["pull_request_id"] == opened["pr"]
        assert "resource" not in row.event  # the parsed event is stored, not the raw body
    again = ado_post(bridge, body)
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"


def test_dbt_receiver_checks_the_signature_and_the_account(bridge):
    raw = DBT_FIXTURES[0].read_bytes()
    assert dbt_post(bridge, raw, secret="wrong").status_code == 401
    assert dbt_post(bridge, raw, secret=None).status_code == 401
    assert dbt_post(bridge, raw, header="").status_code == 401
    other_account = json.loads(raw)
    other_account["accountId"] = 999
    assert dbt_post(bridge, other_account).status_code == 401  # no secret configured: fail closed
    assert dbt_post(bridge, b"nope").status_code == 400
    assert dbt_post(bridge, raw, content_type="text/plain").status_code == 415


@pytest.mark.parametrize("path", DBT_FIXTURES, ids=lambda p: p.name)
def test_dbt_fixtures_are_accepted_once(bridge, path):
    first = dbt_post(bridge, path.read_bytes())
    assert first.status_code in (200, 202)  # 200 when an earlier fixture shared its eventId
    second = dbt_post(bridge, path.read_bytes())
    assert second.status_code == 200 and second.json()["outcome"] == "duplicate"


def test_dbt_event_for_a_run_we_did_not_start_is_recorded_as_ignored(bridge):
    body = json.loads(DBT_FIXTURES[0].read_bytes())
    body["eventId"] = "wev_not_ours_1"
    body["data"]["runId"] = "777777"
    answer = dbt_post(bridge, body)
    assert answer.status_code == 202

    def state():
        with bridge.db.session() as s:
            return s.get(Delivery, answer.json()["delivery"]).state

    wait_until(lambda: state() == "ignored", what="ignored")


def test_database_down_answers_503(bridge, infra):
    env = {**bridge.env, "BRIDGE_DATABASE_URL": f"postgresql+psycopg://bridge@127.0.0.1:{free_port()}/bridge"}
    url = infra.start_web(env, workers=1, name="web-no-db")
    try:
        body, _ = real_event(bridge)
        answer = ado_post(bridge, body, url=url)
        assert answer.status_code == 503 and answer.headers["Retry-After"]
        assert bridge.http.get(f"{url}/readyz").status_code == 503
        assert bridge.http.get(f"{url}/healthz").status_code == 200
    finally:
        infra.stop_process("web-no-db")


def test_the_web_tier_accepts_without_a_broker(bridge, infra):
    # Receivers only commit; the workers' relay (which reaches the broker) sends the delivery on.
    env = {**bridge.env, "BRIDGE_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    url = infra.start_web(env, workers=1, name="web-no-broker")
    try:
        body, opened = real_event(bridge)
        answer = ado_post(bridge, body, url=url)
        assert answer.status_code == 202 and answer.json()["outcome"] == "accepted"
        with bridge.db.session() as s:
            assert s.get(Delivery, answer.json()["delivery"]) is not None
        wait_until(lambda: bridge.sandbox.latest_state(opened["pr"], 1) == "succeeded", timeout=40,
                   what="processed after the relay sent it")
    finally:
        infra.stop_process("web-no-broker")


def test_health_readiness_and_metrics(bridge):
    assert bridge.http.get(f"{bridge.web}/healthz").json() == {"status": "ok"}
    ready = bridge.http.get(f"{bridge.web}/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready",
                                                         "checks": {"database": "ok", "secret_key": "ok"}}
    assert bridge.http.get(f"{bridge.web}/metrics").status_code == 401  # a scraper needs the token
    metrics = bridge.metrics()
    assert "bridge_deliveries_total" in metrics and "bridge_database_up 1.0" in metrics
    assert 'bridge_deliveries{source="azure-devops"' in metrics


def test_ignored_and_unknown_events_are_recorded(bridge):
    answer = ado_post(bridge, {"id": "evt-build-1", "eventType": "build.complete", "resource": {}})
    assert answer.status_code == 200 and answer.json()["outcome"] == "ignored"
    with bridge.db.session() as s:
        row = s.scalar(select(Delivery).where(Delivery.dedupe_key == "build.complete:evt-build-1"))
        assert row.state == "ignored"


def test_urls_in_a_payload_never_receive_our_requests(bridge):
    """A forged payload pointing every URL at another host: the worker still only talks to configured hosts."""
    import threading

    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    seen: list[str] = []

    @Request.application
    def evil(request):
        seen.append(f"{request.method} {request.path} {request.headers.get('Authorization', '')}")
        return Response("{}", mimetype="application/json")

    port = free_port()
    server = make_server("127.0.0.1", port, evil, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        body, opened = real_event(bridge)
        evil_url = f"http://127.0.0.1:{port}"
        text = json.dumps(body).replace(bridge.sandbox.url, evil_url)
        forged = json.loads(text)
        assert evil_url in text and bridge.sandbox.url not in text
        answer = ado_post(bridge, forged)
        assert answer.status_code == 202
        wait_until(lambda: bridge.sandbox.latest_state(opened["pr"], 1) == "succeeded", timeout=30,
                   what="processed against the configured host")
        assert seen == []
    finally:
        server.shutdown()
