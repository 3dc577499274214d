"""Notifications: each problem posted once while it lasts, its text escaped for the chat, the webhook's URL
(a credential) never repeated."""

from __future__ import annotations

import pytest

from bridge.clients.chat_webhook import ChatWebhook, body_for, format_of
from bridge.clients.http import HttpAnswer
from bridge.errors import ConfigError, ServerError
from bridge.notifications import Problem, news
from bridge.settings import Settings

SECRET_URL = "https://hooks.slack.com/services/T000/B000/very-secret-token"


def test_only_new_problems_are_posted_and_cleared_ones_forgotten():
    a, b = Problem("hook:1:x", "A", "a"), Problem("connection:2", "B", "b")
    assert news([a, b], set()) == ([a, b], set())
    assert news([a, b], {a.key, b.key}) == ([], set())          # persisting: not posted again
    assert news([b], {a.key, b.key}) == ([], {a.key})           # a cleared: forgotten, so it may come back
    assert news([a, b], {b.key}) == ([a], set())                # a came back: posted anew


def test_slack_text_is_escaped_so_names_add_no_link_or_mention():
    body = body_for("slack", "repo <!channel>", "see <https://evil.example|here> & more")
    assert body == {"text": "*repo &lt;!channel&gt;*\nsee &lt;https://evil.example|here&gt; &amp; more"}


def test_teams_gets_an_adaptive_card_with_markdown_escaped():
    body = body_for("teams", "dbt-analytics", "[click](https://evil.example) **now**\n- a list\n12. another")
    card = body["attachments"][0]["content"]
    assert body["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["type"] == "AdaptiveCard" and card["body"][0]["text"] == "dbt-analytics"  # names stay readable
    assert card["body"][1]["text"] == "\\[click\\]\\(https://evil.example\\) \\*\\*now\\*\\*\n\\- a list\n12\\. another"


def test_the_format_follows_the_host_unless_set():
    assert format_of(SECRET_URL) == "slack"
    assert format_of("https://prod-00.westeurope.logic.azure.com/workflows/abc") == "teams"


class Answering:
    def __init__(self, status: int):
        self.status, self.sent = status, []

    def send(self, method, url, *, params, json, headers, timeout):
        self.sent.append((method, url, json))
        return HttpAnswer(self.status, {}, b"no_service")


def test_a_refused_post_raises_without_the_url():
    chat = ChatWebhook(SECRET_URL, transport=Answering(500))
    with pytest.raises(ServerError) as caught:
        chat.post("t", "x")
    assert "very-secret-token" not in str(caught.value) and "500" in str(caught.value)


def test_the_notify_url_is_checked_without_being_repeated():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"BRIDGE_NOTIFY_URL": "http://hooks.example/very-secret-token"})
    assert "plain http" in str(caught.value) and "very-secret-token" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"BRIDGE_NOTIFY_URL": "hooks.slack.com/services/very-secret-token",
                           "BRIDGE_NOTIFY_FORMAT": "email"})
    lines = str(caught.value).splitlines()
    assert len(lines) == 2 and "very-secret-token" not in str(caught.value)
    assert any("BRIDGE_NOTIFY_FORMAT must be slack or teams" in line for line in lines)


def test_beat_notifies_only_when_a_webhook_is_configured():
    from workers.app import create_celery_app

    base = {"BRIDGE_SECRET_KEY": "Zm9vYmFyYmF6cXV1eGZvb2JhcmJhenF1dXhmb29iYXI=", "BRIDGE_DATABASE_URL": "sqlite://"}
    on = create_celery_app(Settings.from_env({**base, "BRIDGE_NOTIFY_URL": SECRET_URL,
                                              "BRIDGE_NOTIFY_INTERVAL": "120"})).conf.beat_schedule
    assert on["notify-people"] == {"task": "bridge.notify_people", "schedule": 120.0}
    assert "notify-people" not in create_celery_app(Settings.from_env(base)).conf.beat_schedule
