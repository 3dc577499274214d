"""Telling a person when something needs them: a service hook disabled, a connection that needs
re-authorization, a dbt Cloud webhook deactivated. Each problem is posted once to the configured Slack or Teams
webhook (``BRIDGE_NOTIFY_URL``); one that persists is not posted again, and one that clears is forgotten, so
that it is posted anew if it comes back.

Problems are read from what the health check and the connections recorded; ``news`` is the pure rule of what
to post and what to forget. (No stored secret has an expiry the bridge knows, so none is warned about.)
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .clients.chat_webhook import ChatWebhook
from .db import Database
from .errors import ApiError
from .models import Connection, DbtWebhookRecord, HookSubscriptionRecord, Notification, Repository, utcnow
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    key: str    # the same for as long as the problem lasts: its kind, its object and a digest of its text
    title: str
    text: str


@dataclass(frozen=True)
class Round:
    posted: list[Problem]
    failed: list[Problem]
    cleared: int


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def current_problems(session: Session, console_url: str) -> list[Problem]:
    names = {r.id: f"{r.organization.name}/{r.ado_project_name}/{r.name}" for r in session.scalars(select(Repository))}
    problems = [Problem(f"hook:{h.id}:{_digest(h.problem)}", f"A service hook of {names.get(h.repository_id, '?')} "
                        "needs a person", f"{h.event_type}: {h.problem} (bridge hooks status; {console_url})")
                for h in session.scalars(select(HookSubscriptionRecord).where(
                    HookSubscriptionRecord.problem.is_not(None)).order_by(HookSubscriptionRecord.id))]
    problems += [Problem(f"dbt-webhook:{w.id}:{_digest(w.problem)}", "The dbt Cloud webhook of "
                         f"{names.get(w.repository_id, '?')} needs a person",
                         f"{w.problem} (bridge hooks status; {console_url})")
                 for w in session.scalars(select(DbtWebhookRecord).where(
                     DbtWebhookRecord.problem.is_not(None)).order_by(DbtWebhookRecord.id))]
    problems += [Problem(f"connection:{c.id}", f"The Azure DevOps connection of {c.upn} needs re-authorization",
                         f"{c.status_reason or 'its tokens no longer work'}; work for it waits until its owner "
                         f"reconnects at {console_url}")
                 for c in session.scalars(select(Connection).where(Connection.status == "needs_reauth")
                                          .order_by(Connection.id))]
    return problems


def news(current: list[Problem], notified: set[str]) -> tuple[list[Problem], set[str]]:
    """(the problems to post: new since the last round, the keys to forget: problems that cleared)."""
    return [p for p in current if p.key not in notified], notified - {p.key for p in current}


class Notifier:
    def __init__(self, db: Database, chat: ChatWebhook, console_url: str):
        self.db = db
        self.chat = chat
        self.console_url = console_url

    def run(self) -> Round:
        """One round: post what is new, forget what cleared. A post that fails is tried again next round."""
        with self.db.session() as s:
            current = current_problems(s, self.console_url)
            notified = set(s.scalars(select(Notification.key)))
            new, cleared = news(current, notified)
            if cleared:
                s.execute(delete(Notification).where(Notification.key.in_(cleared)))
        posted, failed = [], []
        for problem in new:
            try:
                self.chat.post(problem.title, problem.text)
            except ApiError as exc:
                failed.append(problem)
                log.warning("could not notify (%s): %s", self.chat.format, exc)
                continue
            with self.db.session() as s:
                s.merge(Notification(key=problem.key, title=problem.title[:500], notified_at=utcnow()))
            posted.append(problem)
        return Round(posted, failed, len(cleared))

    def test(self) -> None:
        self.chat.post("ado-dbt bridge: a test message", f"Notifications from {self.console_url} reach this channel.")


def notifier_for(settings: Settings, db: Database) -> Notifier | None:
    """The notifier the settings ask for; None when BRIDGE_NOTIFY_URL is not set."""
    if not settings.notify_url:
        return None
    chat = ChatWebhook(settings.notify_url, settings.notify_format or None, timeout=settings.http_timeout)
    return Notifier(db, chat, f"{settings.public_url}/console")
