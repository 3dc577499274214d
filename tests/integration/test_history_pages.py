"""The console and the CLI answer "what happened to this pull request, and why" on the real stack (gunicorn,
PostgreSQL, Celery, the sandbox): the PR page's one sentence, the timeline the workers recorded, a failed
delivery replayed by an admin, and who may see or do what, asked for by id."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bridge.dev.person import csrf_of
from bridge.dev.sandbox.control import wait_until
from bridge.models import Activity, Connection, Delivery, PullRequestRecord

from .test_console_connect import admin, person, signed_in_as

NAME = "fabrikam/Fabrikam-Fiber-Git/dbt-analytics"


def record_of(bridge, pr: int) -> PullRequestRecord | None:
    with bridge.db.session() as s:
        found = s.scalar(select(PullRequestRecord).where(PullRequestRecord.pull_request_id == pr))
        if found is not None:
            s.expunge(found)
        return found


def delivery_of(bridge, pr: int) -> Delivery:
    with bridge.db.session() as s:
        found = s.scalars(select(Delivery).where(Delivery.pull_request_id == pr).order_by(Delivery.id)).first()
        s.expunge(found)
        return found


def test_an_admin_finds_a_pr_and_reads_why_it_got_no_run(bridge):
    sb = bridge.sandbox
    opened = sb.open_pr(title="Draft: rework marts", draft=True, source="feature/marts-rework")
    pr = opened["pr"]
    wait_until(lambda: record_of(bridge, pr) is not None and record_of(bridge, pr).last_reason, timeout=30,
               what="the draft reconciled")
    someone = admin(bridge)
    found = someone.get("/console/prs", params={"q": "marts-rework"})
    assert found.status_code == 200 and "Draft: rework marts" in found.text
    repository_id = record_of(bridge, pr).repository_id
    page = someone.get(f"/console/repositories/{repository_id}/prs/{pr}")
    assert page.status_code == 200
    assert f"No run: PR {pr} is a draft, and this repository skips drafts until they are published." in page.text
    delivery = delivery_of(bridge, pr)
    assert f'href="/console/deliveries/{delivery.id}"' in page.text  # each line links to its delivery
    assert "draft pull request (skipped until published): nothing to do" in page.text
    # the CLI says the same, for scripts
    shown = bridge.stack.run_cli(bridge.env, "prs", "show", NAME, str(pr), "--json")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["why"].startswith(f"No run: PR {pr} is a draft")
    assert {"delivery", "decision"} <= {e["kind"] for e in document["timeline"]}
    # published: the run starts, and the page says what it is doing
    sb.act(pr, "publish")
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=30, what="the published PR's run passed")
    wait_until(lambda: "passed" in someone.get(f"/console/repositories/{repository_id}/prs/{pr}").text, timeout=15,
               what="the page to say the run passed")
    repo_page = someone.get(f"/console/repositories/{repository_id}")
    assert repo_page.status_code == 200 and f"/prs/{pr}" in repo_page.text and "pass rate" in repo_page.text


def test_a_pr_nobody_delivered_gets_a_page_that_says_so(bridge):
    someone = admin(bridge)
    with bridge.db.session() as s:
        repository_id = s.scalar(select(PullRequestRecord.repository_id).limit(1)) or 1
    page = someone.get(f"/console/repositories/{repository_id}/prs/424242")
    assert page.status_code == 200 and "The bridge has heard nothing of PR 424242: no delivery named it." in page.text
    cli = bridge.stack.run_cli(bridge.env, "prs", "show", NAME, "424242")
    assert cli.returncode == 1 and "heard nothing of PR 424242" in cli.stdout


def test_an_admin_replays_a_failed_delivery_with_confirmation(bridge):
    sb = bridge.sandbox
    opened = sb.open_pr(title="Replay me")
    pr = opened["pr"]
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=30, what="the first run")
    delivery = delivery_of(bridge, pr)
    with bridge.db.session() as s:  # as a worker that gave up would leave it
        row = s.get(Delivery, delivery.id)
        row.state, row.error = "failed", "gave up after retries: HTTP 503 from Azure DevOps"
    someone = admin(bridge)
    listing = someone.get("/console/deliveries", params={"state": "failed"})
    assert f'name="id" value="{delivery.id}"' in listing.text and "gave up after retries" in listing.text
    asked = someone.press(listing.text, "Replay the chosen deliveries", {"id": str(delivery.id)})
    assert asked.status_code == 200 and "Replay 1 delivery?" in asked.text  # asks first
    with bridge.db.session() as s:
        assert s.get(Delivery, delivery.id).state == "failed"  # a single click changes nothing
    done = someone.press(asked.text, "Replay")
    assert done.status_code == 200 and "1 of 1 deliveries sent to the workers again." in done.text
    wait_until(lambda: delivery_of(bridge, pr).state == "processed", timeout=30, what="the replayed delivery")
    with bridge.db.session() as s:
        replays = s.scalars(select(Activity).where(Activity.delivery_id == delivery.id,
                                                   Activity.kind == "replay")).all()
        assert [(a.actor, a.pull_request_id) for a in replays] == [("token:admin", pr)]
    page = someone.get(f"/console/deliveries/{delivery.id}")
    assert "sent to the workers again" in page.text and "token:admin" in page.text
    # replaying one that is no longer failed is said, and changes nothing
    again = someone.post_form("/console/deliveries/replay", {"id": str(delivery.id), "confirmed": "1"})
    assert "0 of 1 deliveries sent to the workers again" in again.text and "left as they are" in again.text


def test_replay_needs_an_admin_a_csrf_token_and_a_working_broker(bridge):
    someone = admin(bridge)
    page = someone.get("/console/deliveries")
    forged = someone.browser.post(f"{bridge.web}/console/deliveries/replay", data={"id": "1", "confirmed": "1"},
                                  timeout=10)
    assert forged.status_code == 400
    nothing = someone.post_form("/console/deliveries/replay", {"confirmed": "1"}, page=page.text)
    assert nothing.status_code == 400 and "Choose the deliveries" in nothing.text
    too_many = someone.post_form("/console/deliveries/replay", {"id": [str(n) for n in range(1, 600)]},
                                 page=page.text)
    assert too_many.status_code == 400


def test_people_see_only_their_own_history_even_by_id(bridge):
    sb = bridge.sandbox
    opened = sb.open_pr(title="Someone else's work")
    pr = opened["pr"]
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=30, what="the run")
    repository_id, delivery = record_of(bridge, pr).repository_id, delivery_of(bridge, pr)
    pages = [f"/console/repositories/{repository_id}", f"/console/repositories/{repository_id}/prs/{pr}",
             f"/console/deliveries/{delivery.id}"]
    try:
        ivy = person("ivy-history", 31)
        someone, _ = signed_in_as(bridge, ivy)  # a user of an allowed tenant, no connection yet
        for path in pages:
            assert someone.get(path).status_code == 404, path  # as if it did not exist
        for path in ("/console/prs", "/console/deliveries", "/console/overview"):
            shown = someone.get(path)
            assert shown.status_code == 200 and "Someone else" not in shown.text and "dbt-analytics" not in shown.text
        listing = someone.get("/console/deliveries")
        assert someone.post_form("/console/deliveries/replay", {"id": str(delivery.id), "confirmed": "1"},
                                 page=listing.text).status_code == 403
        # once her own connection reaches the organization, she sees its history, still without replaying
        assert someone.connect_azure_devops().status_code == 200
        wait_until(lambda: someone.get(pages[1]).status_code == 200, timeout=30,
                   what="the PR page once her connection reaches fabrikam")
        assert "Someone" in someone.get(pages[1]).text
        listing = someone.get("/console/deliveries")
        assert f"/console/deliveries/{delivery.id}" in listing.text and 'name="id"' not in listing.text
        assert "Replay" not in someone.get(pages[2]).text
    finally:
        with bridge.db.session() as s:
            for c in s.scalars(select(Connection).where(Connection.upn == ivy["upn"])):
                s.delete(c)


@pytest.mark.parametrize("path", ["/console/overview", "/console/prs", "/console/deliveries",
                                  "/console/deliveries/1", "/console/repositories/1", "/console/repositories/1/prs/1"])
def test_the_history_pages_need_a_sign_in_and_carry_the_security_policy(bridge, path):
    anonymous = bridge.http.get(f"{bridge.web}{path}", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302 and "/console/sign-in?next=" in anonymous.headers["Location"]
    someone = admin(bridge)
    shown = someone.get(path)
    assert shown.status_code in (200, 404)
    assert "default-src 'none'" in shown.headers["Content-Security-Policy"]
    assert shown.headers["Cache-Control"] == "no-store" and "<script" not in shown.text


def test_bad_filters_and_ids_are_refused_or_dropped(bridge):
    someone = admin(bridge)
    assert someone.get("/console/deliveries/99999999999999999999999").status_code == 404
    assert someone.get("/console/repositories/1/prs/%EF%BC%91").status_code == 404
    shown = someone.get("/console/deliveries", params={"state": "nonsense", "source": "evil", "since": "1y",
                                                       "repo": "1; drop", "before": "x"})
    assert shown.status_code == 200 and csrf_of(shown.text)
