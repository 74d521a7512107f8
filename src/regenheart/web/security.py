"""Tokens, session cookies and CSRF for the web application.

* The signing secret is per database: 32 random bytes kept in ``study_meta`` (key ``web_secret``),
  generated on first start (the generation is audited; the secret itself never is).
* API tokens and session cookies are itsdangerous timestamp-signed payloads naming the user and the
  account's ``token_version``; every request re-reads the account, so a deactivated account, a
  changed role or site, a new password or a log-out invalidates everything issued before.
* API tokens expire after ``TOKEN_TTL``; browser sessions after ``IDLE_TIMEOUT`` without activity
  (the cookie is re-signed on each page) and at the latest ``SESSION_MAX`` after log-in.
* Each session carries a random CSRF token that every form POST must echo (compared in constant time).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from regenheart.store import audit
from regenheart.store.audit import AuditEntry, canonical
from regenheart.store.models import StudyMeta

SECRET_KEY = "web_secret"
TOKEN_TTL = 8 * 3600
IDLE_TIMEOUT = 30 * 60
SESSION_MAX = 12 * 3600
SESSION_COOKIE = "rh_session"
LOGIN_CSRF_COOKIE = "rh_login_csrf"


def database_secret(engine: Engine) -> str:
    """The database's signing secret, created (and the creation audited) on first use."""
    with Session(engine) as session:
        row = session.get(StudyMeta, SECRET_KEY)
        if row is not None:
            return row.value
    value = secrets.token_hex(32)
    try:
        with Session(engine) as session, session.begin():
            session.add(StudyMeta(key=SECRET_KEY, value=value))
            audit.append(session, [AuditEntry(username="system", role="admin", action="create", entity="system",
                                              record_key="study_meta", field=SECRET_KEY,
                                              new_value=canonical("(generated)"),
                                              reason="signing secret for web sessions and API tokens")])
    except IntegrityError:  # another process created it first
        pass
    with Session(engine) as session:
        return session.get(StudyMeta, SECRET_KEY).value  # type: ignore[union-attr]


@dataclass(frozen=True)
class SessionData:
    username: str
    token_version: int
    csrf: str
    login_ts: float


class Signer:
    def __init__(self, secret: str, *, token_ttl: int = TOKEN_TTL, idle_timeout: int = IDLE_TIMEOUT,
                 session_max: int = SESSION_MAX):
        self._tokens = URLSafeTimedSerializer(secret, salt="regenheart-api-token")
        self._sessions = URLSafeTimedSerializer(secret, salt="regenheart-web-session")
        self._login = URLSafeTimedSerializer(secret, salt="regenheart-login-csrf")
        self._flash = URLSafeTimedSerializer(secret, salt="regenheart-flash")
        self.token_ttl = token_ttl
        self.idle_timeout = idle_timeout
        self.session_max = session_max

    # API bearer tokens
    def issue_token(self, username: str, token_version: int) -> str:
        return self._tokens.dumps({"u": username, "v": token_version})

    def read_token(self, token: str) -> tuple[str, int] | None:
        try:
            data: Any = self._tokens.loads(token, max_age=self.token_ttl)
        except (BadSignature, SignatureExpired, ValueError, TypeError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), str) or not isinstance(data.get("v"), int):
            return None
        return data["u"], data["v"]

    # Browser sessions
    def new_session(self, username: str, token_version: int) -> SessionData:
        return SessionData(username, token_version, secrets.token_urlsafe(32), time.time())

    def dump_session(self, session: SessionData) -> str:
        return self._sessions.dumps({"u": session.username, "v": session.token_version, "c": session.csrf,
                                     "t": session.login_ts})

    def read_session(self, cookie: str | None) -> SessionData | None:
        if not cookie:
            return None
        try:
            data: Any = self._sessions.loads(cookie, max_age=self.idle_timeout)
            session = SessionData(str(data["u"]), int(data["v"]), str(data["c"]), float(data["t"]))
        except (BadSignature, SignatureExpired, ValueError, TypeError, KeyError):
            return None
        if time.time() - session.login_ts > self.session_max:
            return None
        return session

    # One-shot messages shown after a redirect (signed so they cannot be forged into a page)
    def dump_flash(self, messages: list[tuple[str, str]]) -> str:
        return self._flash.dumps([list(m) for m in messages][:10])

    def read_flash(self, cookie: str) -> Any:
        try:
            return self._flash.loads(cookie, max_age=120)
        except (BadSignature, SignatureExpired):
            return None

    # CSRF on the log-in form (before a session exists): signed double-submit value
    def login_csrf(self) -> tuple[str, str]:
        value = secrets.token_urlsafe(32)
        return value, self._login.dumps(value)

    def check_login_csrf(self, cookie: str | None, submitted: str | None) -> bool:
        if not cookie or not submitted:
            return False
        try:
            value = self._login.loads(cookie, max_age=3600)
        except (BadSignature, SignatureExpired):
            return False
        return isinstance(value, str) and hmac.compare_digest(value, submitted)


def same_token(expected: str, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(expected.encode(), str(submitted).encode())
