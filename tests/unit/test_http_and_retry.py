"""Status → error mapping, Retry-After, URL rules, backoff, and secret encryption."""

from __future__ import annotations

import random
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from bridge import errors, retry
from bridge.clients.azure_devops import AzureDevOpsClient, PersonalAccessToken
from bridge.clients.dbt_cloud import DbtCloudClient
from bridge.clients.http import JsonApi, environment_settings, error_kind, retry_after, segment
from bridge.crypto import SecretBox, generate_key
from bridge.domain import StatusContext, StatusState, StatusUpdate
from bridge.errors import ConfigError
from bridge.urls import check_base_url
from tests.fakes import RecordedTransport


@pytest.mark.parametrize("status, kind", [
    (200, None), (204, None), (400, errors.BadRequest), (401, errors.Unauthorized), (403, errors.Forbidden),
    (404, errors.NotFound), (408, errors.ServerError), (409, errors.Conflict), (422, errors.BadRequest),
    (429, errors.RateLimited), (500, errors.ServerError), (503, errors.ServerError), (418, errors.HttpError),
])
def test_error_kind(status, kind):
    assert error_kind(status) is kind


def test_retry_after_seconds_and_dates():
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({}) is None
    assert retry_after({"Retry-After": "soon"}) is None
    now = time.time()
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 30))
    assert 28 <= retry_after({"Retry-After": date}, now=now) <= 31


@pytest.mark.parametrize("url, allowed, ok", [
    ("https://dev.azure.com/fabrikam", False, True),
    ("http://dev.azure.com/fabrikam", False, False),
    ("http://127.0.0.1:9000/fabrikam", True, True),
    ("ftp://x", True, False),
    ("https://user:pw@dev.azure.com/x", False, False),
    ("https://dev.azure.com/x?y=1", False, False),
    ("dev.azure.com/x", False, False),
])
def test_base_urls(url, allowed, ok):
    if ok:
        assert check_base_url(url, allow_insecure_http=allowed, what="x") == url.rstrip("/")
    else:
        with pytest.raises(ConfigError):
            check_base_url(url, allow_insecure_http=allowed, what="x")


def test_path_segments_cannot_escape():
    assert segment("../../_apis/x?y") == "..%2F..%2F_apis%2Fx%3Fy"
    assert segment("Fabrikam Fiber") == "Fabrikam%20Fiber"


def _answering(method: str, path: str, status: int, response: object) -> RecordedTransport:
    return RecordedTransport([{"method": method, "path": path, "status": status, "response": response}])


def test_client_errors_are_one_tree_naming_their_service():
    ado = AzureDevOpsClient("https://dev.azure.com/org", PersonalAccessToken("pat"),
                            transport=_answering("GET", "/org/p/_apis/git/repositories/r/pullrequests/1", 404,
                                                 {"message": "TF401180: not found"}))
    with pytest.raises(errors.NotFound) as info:
        ado.get_pull_request("p", "r", 1)
    assert info.value.service == "azure-devops" and not info.value.retryable and "TF401180" in str(info.value)
    dbt = DbtCloudClient("https://cloud.getdbt.com", 1, "token",
                         transport=_answering("GET", "/api/v2/accounts/1/runs/7/", 503, {"status": {}}))
    with pytest.raises(errors.ServerError) as info:
        dbt.get_run(7)
    assert info.value.service == "dbt-cloud" and info.value.retryable and info.value.status == 503


def test_a_status_refused_by_a_branch_policy_is_its_own_kind():
    path = "/org/p/_apis/git/repositories/r/pullRequests/1/statuses"
    refused = {"message": "needs an iteration", "typeKey": "GitPullRequestStatusRejectedByPolicyException"}
    ado = AzureDevOpsClient("https://dev.azure.com/org", PersonalAccessToken("pat"),
                            transport=_answering("POST", path, 403, refused))
    with pytest.raises(errors.StatusRejectedByPolicy) as info:
        ado.post_status("p", "r", 1, StatusContext("dbt-cloud", "ci"),
                        StatusUpdate(StatusState.PENDING, "queued", iteration_id=1))
    assert isinstance(info.value, errors.Forbidden) and info.value.service == "azure-devops"


def test_unreachable_hosts_raise_retryable_transport_errors():
    dbt = DbtCloudClient("http://127.0.0.1:9", 1, "token", timeout=0.5)
    with pytest.raises(errors.TransportError) as info:
        dbt.get_run(1)
    assert info.value.retryable and info.value.service == "dbt-cloud" and "token" not in str(info.value)
    ado = AzureDevOpsClient("http://127.0.0.1:9/org", PersonalAccessToken("secret-pat"), timeout=0.5)
    with pytest.raises(errors.TransportError) as info:
        ado.get_pull_request("p", "r", 1)
    assert info.value.service == "azure-devops" and "secret-pat" not in str(info.value)


def test_pat_is_sent_as_basic_with_empty_user_and_never_shown():
    pat = PersonalAccessToken("abc")
    assert pat.authorization() == "Basic OmFiYw=="
    assert "abc" not in repr(pat)


def test_retry_predicate():
    assert retry.is_retryable(errors.ServerError("x"))
    assert retry.is_retryable(errors.RateLimited("x"))
    assert retry.is_retryable(errors.TransportError("x"))
    assert retry.is_retryable(errors.LockBusy("pr"))
    assert not retry.is_retryable(errors.NotFound("x"))
    assert not retry.is_retryable(errors.Unauthorized("x"))
    assert not retry.is_retryable(ValueError("x"))


def test_backoff_grows_with_jitter_and_honours_retry_after():
    rng = random.Random(1)
    delays = [retry.delay(n, errors.ServerError("x"), rng=rng) for n in range(6)]
    for n, d in enumerate(delays):
        ceiling = min(retry.MAX_DELAY, retry.BASE_DELAY * 2 ** n)
        assert ceiling / 2 <= d <= ceiling
    assert retry.delay(0, errors.RateLimited("x", retry_after=45), rng=rng) >= 45


def test_secret_box_rotation():
    old, new = generate_key(), generate_key()
    token = SecretBox((old,)).encrypt("hunter2")
    both = SecretBox((new, old))
    assert both.decrypt(token) == "hunter2"
    rotated = both.rotate(token)
    assert SecretBox((new,)).decrypt(rotated) == "hunter2"
    with pytest.raises(ConfigError):
        SecretBox((new,)).decrypt(token)
    with pytest.raises(ConfigError):
        SecretBox(())
    with pytest.raises(ConfigError):
        SecretBox(("not-a-key",))


def test_clients_go_through_the_proxy_the_environment_names(monkeypatch):
    """HTTP(S)_PROXY and NO_PROXY are honoured as requests would, although they are read once per base URL."""
    seen = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self):  # a proxied request names the whole URL
            seen.append((self.path, self.headers.get("Authorization")))
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{server.server_port}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1")
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    environment_settings.cache_clear()
    try:
        assert JsonApi("http://upstream.invalid/api", "Token secret").call("GET", "/ping") == {"ok": True}
        assert seen == [("http://upstream.invalid/api/ping", "Token secret")]
        with pytest.raises(errors.ApiError):  # NO_PROXY: straight to the (closed) port, not through the proxy
            JsonApi("http://127.0.0.1:9", "Token secret", timeout=0.5).call("GET", "/ping")
        assert len(seen) == 1
    finally:
        server.shutdown()
        environment_settings.cache_clear()


def test_retries_are_decided_by_type_never_by_a_class_name():
    import kombu.exceptions
    import redis.exceptions
    import sqlalchemy.exc

    class OperationalError(Exception):  # a look-alike name from some other library
        pass

    assert not retry.is_retryable(OperationalError("x"))
    assert retry.is_retryable(sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("gone")))
    assert retry.is_retryable(redis.exceptions.ConnectionError("x"))
    assert retry.is_retryable(kombu.exceptions.OperationalError("x"))
    assert retry.is_retryable(errors.OutboxUnavailable("x")) and retry.is_retryable(errors.NotSent("x"))
    assert not retry.is_retryable(errors.ReauthRequired("the refresh token expired"))


def test_failures_that_need_a_person_say_so_by_type():
    for needs_person in (errors.ReauthRequired("x"), errors.Unauthorized("x"), errors.Forbidden("x")):
        assert isinstance(needs_person, errors.NeedsPerson) and not retry.is_retryable(needs_person)
    for transient in (errors.TransportError("x"), errors.RateLimited("x"), errors.ServerError("x"),
                      errors.LockBusy("pr")):
        assert isinstance(transient, errors.Transient) and not isinstance(transient, errors.NeedsPerson)
    assert all(issubclass(cls, errors.BridgeError) for cls in (
        errors.LockBusy, errors.OutboxUnavailable, errors.NotSent, errors.IdentityError, errors.FlowRejected))


def test_clients_take_any_transport_and_map_its_answers_to_the_error_tree():
    from bridge.clients.http import HttpAnswer, NoAnswer

    class Scripted:
        def __init__(self, *answers):
            self.answers, self.sent = list(answers), []

        def send(self, method, url, *, params, json, headers, timeout):
            self.sent.append((method, url, headers["Authorization"]))
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

    transport = Scripted(HttpAnswer(429, {"Retry-After": "7"}, b'{"status": {"user_message": "slow down"}}'),
                         NoAnswer("ConnectTimeout"), HttpAnswer(200, {}, b"<html>oops</html>"),
                         HttpAnswer(200, {}, b'{"data": {"id": 5, "status": 10}}'))
    dbt = DbtCloudClient("https://cloud.example", 1, "tok", transport=transport)
    with pytest.raises(errors.RateLimited) as limited:
        dbt.get_run(5)
    assert limited.value.retry_after == 7 and "slow down" in str(limited.value)
    with pytest.raises(errors.TransportError, match="ConnectTimeout"):
        dbt.get_run(5)
    with pytest.raises(errors.ServerError, match="not JSON"):
        dbt.get_run(5)
    assert dbt.get_run(5).run_id == 5
    assert transport.sent[0] == ("GET", "https://cloud.example/api/v2/accounts/1/runs/5/", "Token tok")
