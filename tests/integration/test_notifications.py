"""Notifications end to end: what needs a person is posted once to the chat's incoming webhook (the sandbox
plays Slack and Teams), not again while it lasts, again after it cleared and came back; a post the webhook
refuses is tried again next round."""

from __future__ import annotations

from sqlalchemy import select

from bridge.crypto import SecretBox
from bridge.models import HookSubscriptionRecord, Notification, Repository

PROBLEM = "disabled because its creator lost access: re-run set-up [see](https://evil.example)"


def notify(bridge, channel: str, *extra: str, fmt: str = "teams"):
    env = {**bridge.env, "BRIDGE_NOTIFY_URL": f"{bridge.sandbox.url}/_sandbox/chat/{channel}",
           "BRIDGE_NOTIFY_FORMAT": fmt}
    return bridge.stack.run_cli(env, "notify", *extra or ("check",))


def test_a_problem_is_posted_once_while_it_lasts_and_again_when_it_comes_back(bridge):
    sb = bridge.sandbox
    box = SecretBox((bridge.env["BRIDGE_SECRET_KEY"],))
    assert notify(bridge, "teams").returncode == 0  # what other tests left needing a person is posted first
    with bridge.db.session() as s:
        repo = s.scalar(select(Repository).where(Repository.name == "dbt-analytics"))
        record = HookSubscriptionRecord(repository_id=repo.id, organization_id=repo.organization_id,
                                        event_type="git.pullrequest.created.notify", username="notify-check",
                                        password_enc=box.encrypt("p" * 32), status="disabledBySystem",
                                        problem=PROBLEM)
        s.add(record)
    try:
        first = notify(bridge, "teams")
        assert first.returncode == 0 and "1 posted" in first.stdout, first.stdout + first.stderr
        assert "posted: A service hook of fabrikam/Fabrikam-Fiber-Git/dbt-analytics needs a person" in first.stdout
        (message,) = [m for m in sb.chat("teams") if "notify" in str(m)]
        card = message["attachments"][0]["content"]["body"]
        assert "dbt-analytics needs a person" in card[0]["text"]
        assert r"\[see\]\(https://evil.example\)" in card[1]["text"]  # no link from what Azure DevOps said

        again = notify(bridge, "teams")
        assert again.returncode == 0 and "0 posted" in again.stdout  # persisting: not posted again
        assert len([m for m in sb.chat("teams") if "notify" in str(m)]) == 1

        with bridge.db.session() as s:
            s.get(HookSubscriptionRecord, record.id).problem = None  # a person fixed it
        assert "1 cleared" in notify(bridge, "teams").stdout
        with bridge.db.session() as s:
            s.get(HookSubscriptionRecord, record.id).problem = PROBLEM  # and it came back
        sb.fail_chat("teams", times=1)
        refused = notify(bridge, "teams")
        assert refused.returncode == 1 and "tried again next round" in refused.stdout
        assert "_sandbox/chat" not in refused.stdout + refused.stderr  # the webhook's URL is never shown
        retried = notify(bridge, "teams")
        assert retried.returncode == 0 and "1 posted" in retried.stdout
        assert len([m for m in sb.chat("teams") if "notify" in str(m)]) == 2
    finally:
        with bridge.db.session() as s:
            s.delete(s.get(HookSubscriptionRecord, record.id))
            for row in s.scalars(select(Notification).where(Notification.key.like(f"hook:{record.id}:%"))):
                s.delete(row)


def test_a_test_message_reaches_slack(bridge):
    out = notify(bridge, "slack", "test", fmt="slack")
    assert out.returncode == 0 and "test message posted" in out.stdout, out.stderr
    assert bridge.sandbox.chat("slack")[-1]["text"].startswith("*ado-dbt bridge: a test message*")
