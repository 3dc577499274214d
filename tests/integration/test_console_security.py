"""What the security review (../shared/reference/security-review.md) found, each tried again on the real stack:
gunicorn, PostgreSQL, Celery and the sandbox's fake identity platform. One test (or more) per finding."""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import func, select

from bridge.dev.person import Person, csrf_of
from bridge.dev.sandbox.control import wait_until
from bridge.dev.stack import ADMIN_TOKEN, ENTRA_USER
from bridge.models import AuthFlow, Connection, ConsoleSession, OnboardingJob

from .test_console_connect import admin, person, signed_in_as
from .test_onboarding import finished

FOREIGN_TENANT = "99999999-9999-4999-8999-999999999999"


@pytest.fixture(scope="module")
def strict_web(bridge, infra):
    """A second web tier on the same database, configured more strictly: nobody is an admin by name or group,
    sessions last 3 s and idle out after 1 s, and /metrics has no token (so it is not served)."""
    env = {**bridge.env, "BRIDGE_ADMINS": "", "BRIDGE_ADMIN_GROUPS": "", "BRIDGE_SESSION_LIFETIME": "3",
           "BRIDGE_SESSION_IDLE": "1", "BRIDGE_METRICS_TOKEN": ""}
    url = infra.start_web(env, workers=1, name="web-strict")
    yield url
    infra.stop_process("web-strict")


def cookie_of(someone: Person) -> str:
    return someone.browser.cookies.get("bridge_session")


def with_cookie(url: str, cookie: str, path: str) -> requests.Response:
    return requests.get(f"{url}{path}", cookies={"bridge_session": cookie}, allow_redirects=False, timeout=10)


# -- F2: people are (tenant id, object id), never a name ----------------------------------------------------

def test_a_foreign_tenants_user_named_like_an_admin_gets_nothing(bridge):
    try:
        copycat = {"oid": "0d0d0d0d-0000-4000-8000-00000000dead", "tid": FOREIGN_TENANT,
                   "upn": ENTRA_USER["upn"].upper(), "name": "Mallory"}
        _, page = signed_in_as(bridge, copycat)
        assert page.status_code == 403 and "may not use this console" in page.text
        # in an allowed tenant, a copied sign-in name is still somebody else: a user, not the admin
        namesake = {**copycat, "tid": ENTRA_USER["tid"]}
        someone, page = signed_in_as(bridge, namesake)
        assert page.status_code == 200 and "(user)" in page.text and "(admin)" not in page.text
        assert someone.get("/console/dbt-accounts").status_code == 403
    finally:
        bridge.sandbox._post("/idp/setup", {"sign_in": ENTRA_USER["oid"]})


def test_a_user_named_like_the_local_admin_sees_none_of_its_work(bridge):
    token_admin = admin(bridge)
    started = token_admin.post_form("/console/import/projects", {"org": "fabrikam"}, page=token_admin.get(
        "/console/import").text)
    job_url = started.url
    assert "/console/jobs/" in job_url
    try:
        named_admin = {"oid": "0e0e0e0e-0000-4000-8000-0000000000ad", "tid": ENTRA_USER["tid"], "upn": "admin",
                       "name": "admin"}
        someone, page = signed_in_as(bridge, named_admin)
        assert page.status_code == 200 and "(user)" in page.text
        assert someone.browser.get(job_url, timeout=10).status_code == 404
    finally:
        bridge.sandbox._post("/idp/setup", {"sign_in": ENTRA_USER["oid"]})


# -- F4: sessions that end ----------------------------------------------------------------------------------

def test_a_copied_cookie_is_worthless_after_sign_out(bridge):
    def admin_sessions() -> int:
        with bridge.db.session() as s:
            return s.scalar(select(func.count()).select_from(ConsoleSession)
                            .where(ConsoleSession.subject == "token:admin"))

    someone = admin(bridge)
    copied, live = cookie_of(someone), admin_sessions()
    assert with_cookie(bridge.web, copied, "/console").status_code == 200
    assert someone.post_form("/console/sign-out").status_code == 200
    assert with_cookie(bridge.web, copied, "/console").status_code == 302  # to sign-in
    assert admin_sessions() == live - 1  # the stored session went with the sign-out


def test_removing_an_admin_takes_effect_on_her_next_request(bridge, strict_web):
    ada, page = signed_in_as(bridge, ENTRA_USER)
    assert "(admin)" in page.text and ada.get("/console/dbt-accounts").status_code == 200
    # the strict web tier shares the database (so the session) but no longer lists Ada as an admin
    assert with_cookie(strict_web, cookie_of(ada), "/console/dbt-accounts").status_code == 403
    assert "(user)" in with_cookie(strict_web, cookie_of(ada), "/console").text


def test_sessions_end_when_idle_and_after_their_lifetime(strict_web, bridge):
    someone = Person(strict_web, bridge.sandbox.url)
    assert someone.sign_in_with_token(ADMIN_TOKEN).status_code == 200
    time.sleep(1.5)  # idle longer than BRIDGE_SESSION_IDLE
    assert someone.get("/console", allow_redirects=False).status_code == 302
    assert someone.sign_in_with_token(ADMIN_TOKEN).status_code == 200
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:  # busy all along: only the absolute lifetime can end it
        answer = someone.get("/console", allow_redirects=False)
        if answer.status_code == 302:
            break
        time.sleep(0.4)
    assert answer.status_code == 302, "a session outlived BRIDGE_SESSION_LIFETIME"


# -- F3, F6: nothing anonymous writes or reveals ---------------------------------------------------------

def test_anonymous_sign_in_starts_store_nothing(bridge):
    def rows() -> tuple[int, int]:
        with bridge.db.session() as s:
            return (s.scalar(select(func.count()).select_from(AuthFlow)),
                    s.scalar(select(func.count()).select_from(ConsoleSession)))

    before = rows()
    anonymous = requests.Session()
    for _ in range(30):
        assert anonymous.get(f"{bridge.web}/console/sign-in/entra", allow_redirects=False,
                             timeout=10).status_code == 302
        assert anonymous.get(f"{bridge.web}/console/sign-in", timeout=10).status_code == 200
    assert rows() == before


def test_readiness_tells_anonymous_callers_the_verdict_only(bridge, strict_web):
    body = requests.get(f"{bridge.web}/readyz", timeout=10).json()
    assert set(body) == {"status", "checks"} and set(body["checks"].values()) <= {"ok", "failing"}
    assert requests.get(f"{bridge.web}/metrics", timeout=10).status_code == 401
    wrong = requests.get(f"{bridge.web}/metrics", headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert wrong.status_code == 401 and "bridge_" not in wrong.text
    assert "bridge_deliveries_total" in bridge.metrics()
    assert requests.get(f"{strict_web}/metrics", timeout=10).status_code == 404  # no token: not served


# -- F7, F8: least privilege in the console ------------------------------------------------------------

def test_people_see_only_repositories_their_own_connection_reaches(bridge):
    try:
        erin = person("erin-repos", 21)
        someone, _ = signed_in_as(bridge, erin)
        assert "dbt-analytics" not in someone.get("/console/repositories").text  # no connection: nothing
        assert someone.connect_azure_devops().status_code == 200
        wait_until(lambda: "dbt-analytics" in someone.get("/console/repositories").text, timeout=30,
                   what="fabrikam's repositories once her connection reaches fabrikam")
        assert "Unlink" not in someone.get("/console/repositories").text
    finally:
        with bridge.db.session() as s:
            for c in s.scalars(select(Connection).where(Connection.upn == "erin-repos@fabrikam.example")):
                s.delete(c)
        bridge.sandbox._post("/idp/setup", {"sign_in": ENTRA_USER["oid"]})


def test_work_starts_only_from_a_csrf_checked_post_and_is_limited_per_person(bridge):
    someone = admin(bridge)
    assert someone.get("/console/import/projects?org=fabrikam").status_code == 405
    no_token = someone.browser.post(f"{bridge.web}/console/import/projects", data={"org": "fabrikam"}, timeout=10)
    assert no_token.status_code == 400
    with bridge.db.session() as s:
        held = [OnboardingJob(kind="projects", requested_by="token:admin", params={}, state="queued")
                for _ in range(5)]
        s.add_all(held)
        s.flush()
        held = [job.id for job in held]
    try:
        busy = someone.post_form("/console/import/projects", {"org": "fabrikam"})
        assert busy.status_code == 429 and "requests in progress" in busy.text
    finally:
        with bridge.db.session() as s:
            for job_id in held:
                s.delete(s.get(OnboardingJob, job_id))


def test_console_jobs_go_to_their_own_queue(redis_url):
    import redis

    from bridge.dispatch import Dispatcher
    from bridge.settings import Settings

    broker = redis_url.rsplit("/", 1)[0] + "/7"
    client = redis.Redis.from_url(broker)
    client.flushdb()
    dispatcher = Dispatcher(Settings(broker_url=broker))
    assert dispatcher.run_onboarding_job(1) and dispatcher.process_deliveries([1])
    assert client.llen("bridge-console") == 1 and client.llen("bridge") == 1


# -- F5, F13, F14, F15: headers and hygiene ----------------------------------------------------------------

def test_pages_carry_one_security_policy(bridge):
    page = requests.get(f"{bridge.web}/console/sign-in", timeout=10)
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "script-src" not in csp
    assert f"form-action 'self' {bridge.sandbox.url}" in csp  # the identity platform (here, the sandbox's)
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin" and page.headers["Cache-Control"] == "no-store"
    assert "<script" not in page.text and "<style" not in page.text
    assert requests.get(f"{bridge.web}/static/console.css", timeout=10).status_code == 200
    health = requests.get(f"{bridge.web}/healthz", timeout=10)
    assert health.headers["X-Content-Type-Options"] == "nosniff" and "no-store" not in health.headers.get(
        "Cache-Control", "")


def test_disconnect_and_unlink_ask_first(bridge):
    someone = admin(bridge)
    assert someone.connect_azure_devops().status_code == 200
    with bridge.db.session() as s:
        connection_id = s.scalar(select(Connection.id).where(Connection.upn == ENTRA_USER["upn"]))
    asked = someone.get(f"/console/connections/{connection_id}/disconnect")
    assert asked.status_code == 200 and "Disconnect" in asked.text and 'name="confirmed"' in asked.text
    unconfirmed = someone.post_form(f"/console/connections/{connection_id}/disconnect", page=asked.text)
    assert unconfirmed.status_code == 200 and 'name="confirmed"' in unconfirmed.text
    with bridge.db.session() as s:
        assert s.get(Connection, connection_id) is not None  # a single click changes nothing
    unlink = someone.get("/console/repositories/1/unlink")
    assert unlink.status_code == 200 and "Unlink" in unlink.text and "branch policy" in unlink.text


@pytest.mark.parametrize("path", ["/console/jobs/99999999999999999999999", "/console/jobs/%EF%BC%91%EF%BC%92",
                                  "/console/repositories/99999999999999999999999/unlink"])
def test_ids_are_bounded_and_ascii(bridge, path):
    someone = admin(bridge)
    assert someone.get(path).status_code == 404


@pytest.mark.parametrize("account_id", ["\uff11\uff12", "99999999999999999999999", "12; drop"])  # full-width 12
def test_form_ids_are_bounded_and_ascii(bridge, account_id):
    someone = admin(bridge)
    page = someone.get("/console/dbt-accounts")
    answer = someone.post_form("/console/dbt-accounts", {"account_id": account_id, "api_token": "t",
                                                         "url": "https://cloud.getdbt.com"}, page=page.text)
    assert answer.status_code == 400


def test_wrong_admin_tokens_are_logged_and_limited_per_address(bridge, infra, strict_web):
    someone = Person(strict_web, bridge.sandbox.url)
    page = someone.get("/console/sign-in").text
    for _ in range(10):
        assert someone.post_form("/console/sign-in", {"token": "not-the-token-at-all-000"}, page=page
                                 ).status_code == 401
    blocked = someone.post_form("/console/sign-in", {"token": ADMIN_TOKEN}, page=page)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    log = infra.procs["web-strict"].log_path.read_text(errors="replace")
    assert log.count("admin-token sign-in failed from 127.0.0.1") == 10
    assert ADMIN_TOKEN not in log and csrf_of(page) not in log


def test_ids_from_azure_devops_cannot_add_fields_to_console_requests(bridge):
    hostile = 'id"&org=evil&x=<b>'
    bridge.sandbox._post("/repos", {"project": "Fabrikam-Fiber-Git", "name": "hostile-id-repo", "id": hostile})
    someone = admin(bridge)
    projects = finished(someone, someone.press(someone.get("/console/import").text, "Show projects",
                                               {"org": "fabrikam"}))
    repos = finished(someone, someone.press(projects.text, "Fabrikam-Fiber-Git"))
    assert "<b>" not in repos.text
    row = repos.text[repos.text.index("<td>hostile-id-repo</td>"):]
    job = someone.press(row, "Set up CI")
    with bridge.db.session() as s:
        params = s.get(OnboardingJob, int(job.url.rsplit("/", 1)[1])).params
    assert params["repository"] == hostile and params["organization"] == "fabrikam"
