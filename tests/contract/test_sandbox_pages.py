"""The sandbox's own pages escape what callers put in them (a run's cause and steps come from whoever triggers it)."""

from __future__ import annotations

from bridge.dev.sandbox import create_sandbox_app


def test_the_run_page_escapes_the_trigger():
    app = create_sandbox_app("http://sandbox.test")
    try:
        client = app.test_client()
        started = client.post("/api/v2/accounts/1/jobs/42/run/", headers={"Authorization": "Token sandbox-dbt-token"},
                              json={"cause": "<script>alert(1)</script>", "git_sha": "abc"})
        run_id = started.get_json()["data"]["id"]
        page = client.get(f"/deploy/1/projects/7/runs/{run_id}/").get_data(as_text=True)
        assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    finally:
        app.extensions["world"].stop()


def test_the_identity_platform_escapes_what_the_client_sent():
    app = create_sandbox_app("http://sandbox.test")
    try:
        client = app.test_client()
        client.post("/_sandbox/idp/setup", json={"users": [{"oid": "o1", "tid": "t1", "upn": "ada@example.test"}],
                                                 "sign_in": "o1"})
        hostile = {"response_mode": "form_post", "redirect_uri": '"><script>alert(1)</script>',
                   "state": '"><img src=x onerror=alert(2)>', "client_id": "c"}
        page = client.get("/idp/organizations/oauth2/v2.0/authorize", query_string=hostile).get_data(as_text=True)
        refused = client.get("/idp/99999999-9999-4999-8999-999999999999/oauth2/v2.0/authorize",
                             query_string=hostile).get_data(as_text=True)
        for answer in (page, refused):
            assert "<script>" not in answer and "<img" not in answer and "&lt;script&gt;" in answer
    finally:
        app.extensions["world"].stop()
