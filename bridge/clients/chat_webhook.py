"""Slack and Microsoft Teams incoming webhooks: one message, posted as text.

The webhook URL is a credential (it carries its own token): it is never logged and never part of an error
message. Slack's mrkdwn and Teams' Adaptive Card markdown are escaped, so names from Azure DevOps and dbt Cloud
show as written and can add no link or mention.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .. import errors
from .http import USER_AGENT, NoAnswer, RequestsTransport, Transport, error_kind

FORMATS = ("slack", "teams")


def format_of(url: str) -> str:
    """Slack's webhooks live on hooks.slack.com; every other URL is taken as a Teams (Workflows) webhook."""
    return "slack" if (urlsplit(url).hostname or "").lower() == "hooks.slack.com" else "teams"


def _slack_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Adaptive Cards' markdown is a CommonMark subset: bold, italic, links and lists. Their characters are
# backslash-escaped (a list only where a line starts), so names keep their hyphens and dots readable.
_TEAMS_INLINE = re.compile(r"([\\*_\[\]()`])")
_TEAMS_LIST = re.compile(r"^(\s*)([-+]|\d+\.)(\s)", re.MULTILINE)


def _list_marker(m: re.Match) -> str:
    marker = m.group(2)
    escaped = f"{marker[:-1]}\\." if marker.endswith(".") else f"\\{marker}"
    return f"{m.group(1)}{escaped}{m.group(3)}"


def _teams_text(text: str) -> str:
    return _TEAMS_LIST.sub(_list_marker, _TEAMS_INLINE.sub(r"\\\1", text))


def body_for(fmt: str, title: str, text: str) -> dict:
    if fmt == "slack":
        return {"text": f"*{_slack_text(title)}*\n{_slack_text(text)}"}
    card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.4", "body": [{"type": "TextBlock", "text": _teams_text(title), "weight": "Bolder",
                                        "wrap": True},
                                       {"type": "TextBlock", "text": _teams_text(text), "wrap": True}]}
    return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                "content": card}]}


class ChatWebhook:
    service = "chat-webhook"

    def __init__(self, url: str, fmt: str | None = None, *, transport: Transport | None = None,
                 timeout: float = 10.0):
        self._url = url
        self.format = fmt or format_of(url)
        self.transport = transport or RequestsTransport()
        self.timeout = timeout

    def post(self, title: str, text: str) -> None:
        """Raises an ApiError kind (without the URL) when the message was not taken."""
        try:
            answer = self.transport.send("POST", self._url, params=None, json=body_for(self.format, title, text),
                                         headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
                                         timeout=self.timeout)
        except NoAnswer as exc:
            raise errors.TransportError(f"the {self.format} webhook did not answer: {exc}",
                                        service=self.service) from None
        kind = error_kind(answer.status) or (errors.HttpError if 300 <= answer.status < 400 else None)
        if kind is not None:
            raise kind(f"the {self.format} webhook answered {answer.status}: {answer.text[:200]}",
                       service=self.service, status=answer.status)
