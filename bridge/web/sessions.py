"""Console sessions kept server-side (Flask's session interface over the ``console_sessions`` table).

A signed-in person's cookie holds a random id; the table holds its hash and the session's data, so a copied
cookie dies with the row: at sign-out, ``lifetime`` seconds after sign-in, or after ``idle`` seconds without a
request. Before sign-in nothing is stored: the little an anonymous visitor has (a CSRF token for the sign-in
form) rides in a signed cookie. A session is written only when it changed, its last-seen time at most once
a minute.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import Flask, Request, Response, request
from flask.sessions import SecureCookieSessionInterface, SessionInterface, SessionMixin
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, or_
from werkzeug.datastructures import CallbackDict

from ..db import Database
from ..models import ConsoleSession, as_utc, utcnow

TOUCH_EVERY = timedelta(minutes=1)
ANONYMOUS = "a."  # the prefix of an anonymous visitor's signed cookie


class ServerSession(CallbackDict, SessionMixin):
    def __init__(self, data: dict | None = None, *, sid: str | None = None):
        def changed(_self):
            self.modified = True
        super().__init__(data or {}, changed)
        self.sid = sid            # the stored session's id; None before sign-in
        self.modified = False
        self.touch = False        # its last-seen time is due to be written
        self.renew = False        # a sign-in: the stored session gets a new id (no fixation)


def renew(session) -> None:
    """Start a new session for whoever signs in now (the old one, if any, ends)."""
    session.clear()
    session.renew = True


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class ServerSessions(SessionInterface):
    def __init__(self, db: Database, *, lifetime: float, idle: float):
        self.db = db
        self.lifetime, self.idle = timedelta(seconds=lifetime), timedelta(seconds=idle)
        self._cookies = SecureCookieSessionInterface()

    def _signer(self, app: Flask) -> URLSafeTimedSerializer:
        return self._cookies.get_signing_serializer(app)  # Flask's own signed-cookie format, for visitors

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        value = request.cookies.get(self.get_cookie_name(app), "")
        if value.startswith(ANONYMOUS):
            try:
                data = self._signer(app).loads(value[len(ANONYMOUS):], max_age=self.idle.total_seconds())
            except BadSignature:
                return ServerSession()
            return ServerSession({k: v for k, v in data.items() if k != "subject"})  # never signed in this way
        if not value or len(value) > 100:
            return ServerSession()
        now = utcnow()
        with self.db.session() as s:
            row = s.get(ConsoleSession, _hash(value))
            if row is None:
                return ServerSession()
            if as_utc(row.created_at) + self.lifetime < now or as_utc(row.last_seen_at) + self.idle < now:
                s.delete(row)
                return ServerSession()
            session = ServerSession(dict(row.data), sid=value)
            session.touch = as_utc(row.last_seen_at) + TOUCH_EVERY < now
        return session

    def save_session(self, app: Flask, session: ServerSession, response: Response) -> None:
        name, domain, path = self.get_cookie_name(app), self.get_cookie_domain(app), self.get_cookie_path(app)
        ended = session.sid is not None and (session.renew or not session.get("subject"))
        if ended:  # signed out, or signing in afresh: the stored session ends here
            with self.db.session() as s:
                s.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == _hash(session.sid)))
            session.sid = None
        if not session.get("subject"):
            if not session:
                if ended or name in request.cookies:
                    response.delete_cookie(name, domain=domain, path=path)
                return
            if session.modified or ended:
                self._set_cookie(app, response, ANONYMOUS + self._signer(app).dumps(dict(session)))
            return
        if not (session.modified or session.touch or session.sid is None):
            return
        now = utcnow()
        with self.db.session() as s:
            if session.sid is None:
                session.sid = secrets.token_urlsafe(32)
                s.add(ConsoleSession(id_hash=_hash(session.sid), subject=session["subject"], data=dict(session),
                                     created_at=now, last_seen_at=now))
                # each sign-in also clears away everyone's finished sessions: the table keeps only live ones
                s.execute(delete(ConsoleSession).where(or_(ConsoleSession.created_at < now - self.lifetime,
                                                           ConsoleSession.last_seen_at < now - self.idle)))
            else:
                row = s.get(ConsoleSession, _hash(session.sid))
                if row is None:
                    return
                row.data, row.subject, row.last_seen_at = dict(session), session["subject"], now
        self._set_cookie(app, response, session.sid)

    def _set_cookie(self, app: Flask, response: Response, value: str) -> None:
        response.set_cookie(self.get_cookie_name(app), value, httponly=True, secure=self.get_cookie_secure(app),
                            samesite=self.get_cookie_samesite(app), domain=self.get_cookie_domain(app),
                            path=self.get_cookie_path(app))

