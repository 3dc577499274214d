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
