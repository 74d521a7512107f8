"""User accounts: creation, argon2 authentication, lock-out, role/site changes and the access log.

Two records are kept, as ICH E6(R3) 4.2.2 asks (account creation, role/permission changes, access):

* **State changes** of accounts (created; role, site, printed name, active flag or password
  changed; locked out; unlocked) go to the hash-chained audit trail in the same transaction as
  the change (entity ``user``; a password is never written, only ``"(changed)"``).
* **Access events** (log-in success, failure, refused while locked, lock-out, log-out, invalid
  token, permission refusal, failed signature password) go to the append-only ``access_log``.

Lock-out: ``MAX_FAILURES`` failed log-ins for a username within ``FAILURE_WINDOW`` (counted since
the last success, unlock or lock-out) lock it for ``LOCKOUT``; log-ins are then refused even with the
right password until the time passes or an administrator unlocks the account. Unknown usernames
are counted and locked the same way, so responses do not reveal which accounts exist.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, Engine, bindparam, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from regenheart.capture.common import require
from regenheart.capture.errors import CaptureError, NotFound, ValidationFailed
from regenheart.capture.permissions import ROLES, Actor
from regenheart.capture.sites import active_site_codes
from regenheart.capture.validation import Violation
from regenheart.protocol.models import Protocol
from regenheart.store import audit
from regenheart.store.audit import AuditEntry, canonical
from regenheart.store.db import reader
from regenheart.store.models import AccessLog, User

MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)
LOCKOUT = dt.timedelta(minutes=15)
PASSWORD_MIN_LENGTH = 10
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_UNSET: Any = object()

# The token check of every request (built once: a prepared statement, the account's columns by name).
_TOKEN_USER = select(*User.__table__.c).where(User.__table__.c.username == bindparam("username"))

# Access-log events that restart the count of failed log-ins.
_RESETS = ("login_success", "unlock", "lockout")


class AuthenticationFailed(CaptureError):
    """Wrong username or password (the message never says which)."""


class AccountLocked(AuthenticationFailed):
    """Too many failed log-ins: the account is locked for a while."""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ts(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(TS_FORMAT)


def _parse_ts(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, TS_FORMAT).replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class UserView:
    username: str
    full_name: str
    role: str
    site: str | None
    active: bool
    locked_until: str | None
    token_version: int
    created_utc: str
    password_changed_utc: str
    version: int

    @property
    def actor(self) -> Actor:
        return Actor(self.username, self.role, self.site)

    def as_dict(self) -> dict[str, Any]:
        return {"username": self.username, "full_name": self.full_name, "role": self.role, "site": self.site,
                "active": self.active, "locked_until": self.locked_until, "created_utc": self.created_utc,
                "password_changed_utc": self.password_changed_utc, "version": self.version}


@dataclass(frozen=True)
class AccessEvent:
    ts_utc: str
    username: str
    role: str | None
    event: str
    channel: str
    client: str | None
    detail: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _view(user: User, now: dt.datetime | None = None) -> UserView:
    locked = user.locked_until
    if locked is not None and now is not None and _parse_ts(locked) <= now:
        locked = None  # the lock-out has expired
    return UserView(user.username, user.full_name, user.role, user.site_code, user.active, locked,
                    user.token_version, user.created_utc, user.password_changed_utc, user.version)


def normalize_username(username: str | None) -> str:
    return (username or "").strip().lower()


class AccountService:
    """Accounts of one study database. ``hasher`` defaults to argon2id with the library's defaults."""

    def __init__(self, engine: Engine, protocol: Protocol | None = None, *, hasher: PasswordHasher | None = None,
                 clock: Callable[[], dt.datetime] = _utc_now):
        self.engine = engine
        self.protocol = protocol
        self.hasher = hasher or PasswordHasher()
        self.clock = clock
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._reader = reader(engine)
        self._kept: tuple[int, Connection] | None = None  # (owner thread, connection): see token_user
        self._dummy_hash = self.hasher.hash("not a real password: equalizes timing for unknown users")

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _require(actor: Actor, action: str = "manage_users") -> None:
        require(actor, action)

    @staticmethod
    def _entry(actor: Actor, action: str, username: str, field: str, old: Any, new: Any,
               reason: str | None) -> AuditEntry:
        return AuditEntry(username=actor.username, role=actor.role, action=action, entity="user",
                          record_key=username, field=field, old_value=canonical(old), new_value=canonical(new),
                          reason=reason)

    def _user(self, session: Session, username: str) -> User:
        user = session.scalars(select(User).where(User.username == normalize_username(username))).one_or_none()
        if user is None:
            raise NotFound(f"user {username} not found")
        return user

    def _check_site(self, session: Session, site: str | None, violations: list[Violation],
                    current: str | None = None) -> None:
        """An account is assigned to an active site of the study (``capture.sites``: the database's sites, the
        protocol's by default); an account may keep the site it has although that site was deactivated."""
        if site is None or self.protocol is None or site == current:
            return
        sites = active_site_codes(session, self.protocol)
        if site not in sites:
            violations.append(Violation("site", site, "codelist", f"must be one of the active sites: {', '.join(sites)}"))

    @staticmethod
    def _check_role(role: str, violations: list[Violation]) -> None:
        if role not in ROLES:
            violations.append(Violation("role", role, "codelist", f"must be one of: {', '.join(ROLES)}"))

    @staticmethod
    def check_password(password: str | None, username: str, field: str = "password") -> list[Violation]:
        """Password rules: at least PASSWORD_MIN_LENGTH characters, not containing the username."""
        problems = []
        if not password or len(password) < PASSWORD_MIN_LENGTH:
            problems.append(Violation(field, None, "min_length",
                                      f"must be at least {PASSWORD_MIN_LENGTH} characters"))
        elif username and username.lower() in password.lower():
            problems.append(Violation(field, None, "contains_username", "must not contain the username"))
        return problems

    @staticmethod
    def _reason(reason: str | None, violations: list[Violation]) -> str:
        if not (reason and reason.strip()):
            violations.append(Violation("reason", reason, "reason_required", "a reason is required"))
            return ""
        return reason.strip()

    def _log(self, session: Session, username: str, role: str | None, event: str, channel: str,
             client: str | None, detail: str | None = None, ts: str | None = None) -> None:
        session.add(AccessLog(ts_utc=ts or _ts(self.clock()), username=(username or "")[:64] or "(blank)",
                              role=role, event=event, channel=channel[:8], client=(client or None) and client[:64],
                              detail=detail))

    # ------------------------------------------------------------------ access log
    def log_access(self, username: str, role: str | None, event: str, channel: str, client: str | None = None,
                   detail: str | None = None) -> None:
        """Record one access event (its own transaction)."""
        with self._sessions.begin() as session:
            self._log(session, username, role, event, channel, client, detail)

    def access_log(self, actor: Actor, *, username: str | None = None, limit: int = 500) -> list[AccessEvent]:
        self._require(actor)
        with self._sessions() as session:
            stmt = select(AccessLog).order_by(AccessLog.id.desc()).limit(max(1, min(limit, 5000)))
            if username:
                stmt = stmt.where(AccessLog.username == normalize_username(username))
            return [AccessEvent(r.ts_utc, r.username, r.role, r.event, r.channel, r.client, r.detail)
                    for r in session.scalars(stmt)]

    # ------------------------------------------------------------------ lock-out
    def _last(self, session: Session, username: str, events: tuple[str, ...]) -> str | None:
        return session.scalar(select(func.max(AccessLog.ts_utc)).where(
            AccessLog.username == username, AccessLog.event.in_(events)))

    def locked_until(self, session: Session, username: str, now: dt.datetime) -> dt.datetime | None:
        """End of the current lock-out of ``username`` (None when not locked)."""
        lockout = self._last(session, username, ("lockout",))
        if lockout is None:
            return None
        unlock = self._last(session, username, ("unlock",))
        if unlock is not None and unlock >= lockout:
            return None
        until = _parse_ts(lockout) + LOCKOUT
        return until if until > now else None

    def _recent_failures(self, session: Session, username: str, now: dt.datetime) -> int:
        since = _ts(now - FAILURE_WINDOW)
        reset = self._last(session, username, _RESETS)
        if reset is not None and reset > since:
            since = reset
        return session.scalar(select(func.count()).select_from(AccessLog).where(
            AccessLog.username == username, AccessLog.event == "login_failure", AccessLog.ts_utc > since)) or 0

    def _verify(self, user: User | None, password: str) -> bool:
        try:
            return self.hasher.verify(user.password_hash if user else self._dummy_hash, password or "") and \
                user is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _failure(self, session: Session, user: User | None, username: str, now: dt.datetime, channel: str,
                 client: str | None, event: str, detail: str | None) -> bool:
        """Log a failed password; lock the username out at the threshold. True when now locked."""
        self._log(session, username, user.role if user else None, event, channel, client, detail, _ts(now))
        session.flush()
        if self._recent_failures(session, username, now) < MAX_FAILURES:
            return False
        until = now + LOCKOUT
        self._log(session, username, user.role if user else None, "lockout", channel, client,
                  f"{MAX_FAILURES} failed log-ins within {int(FAILURE_WINDOW.total_seconds() // 60)} minutes; "
                  f"locked until {_ts(until)}", _ts(now))
        if user is not None:
            old = user.locked_until
            user.locked_until = _ts(until)
            user.version += 1
            system = Actor("system", "admin")
            audit.append(session, [self._entry(system, "lockout", user.username, "locked_until", old,
                                               user.locked_until, "repeated failed log-ins")])
        return True

    # ------------------------------------------------------------------ authentication
    def authenticate(self, username: str, password: str, *, channel: str = "api",
                     client: str | None = None) -> UserView:
        """Check a log-in; log the outcome. Raises AuthenticationFailed / AccountLocked."""
        name = normalize_username(username)
        now = self.clock()
        error: AuthenticationFailed | None = None
        with self._sessions.begin() as session:
            user = session.scalars(select(User).where(User.username == name)).one_or_none() if name else None
            locked = self.locked_until(session, name, now)
            if locked is not None:
                self._verify(user, password)  # same cost as a normal attempt
                self._log(session, name, user.role if user else None, "login_refused_locked", channel, client,
                          f"account locked until {_ts(locked)}", _ts(now))
                error = AccountLocked(_locked_message(locked))
            elif not (ok := self._verify(user, password)) or user is None or not user.active:
                detail = "unknown username" if user is None else (
                    "account deactivated" if ok else "wrong password")
                if self._failure(session, user, name, now, channel, client, "login_failure", detail):
                    error = AccountLocked(_locked_message(now + LOCKOUT))
                else:
                    error = AuthenticationFailed("invalid username or password")
            else:
                self._log(session, name, user.role, "login_success", channel, client, None, _ts(now))
                return _view(user)
        raise error

    def reauthenticate(self, actor: Actor, password: str, *, purpose: str, channel: str = "web",
                       client: str | None = None) -> UserView:
        """Password re-entry of the acting user (e-signature). Failures count towards lock-out."""
        now = self.clock()
        error: AuthenticationFailed | None = None
        with self._sessions.begin() as session:
            user = session.scalars(select(User).where(User.username == actor.username)).one_or_none()
            locked = self.locked_until(session, actor.username, now)
            if user is None or not user.active:
                error = AuthenticationFailed("this account cannot sign")
            elif locked is not None:
                error = AccountLocked(_locked_message(locked))
            elif not self._verify(user, password):
                if self._failure(session, user, user.username, now, channel, client, "login_failure",
                                 f"wrong password for {purpose}"):
                    error = AccountLocked(_locked_message(now + LOCKOUT))
                else:
                    error = AuthenticationFailed("the password is not correct; the record was not signed")
            else:
                self._log(session, user.username, user.role, "reauthenticated", channel, client, purpose, _ts(now))
                return _view(user)
        raise error

    def get_user(self, username: str) -> UserView | None:
        """The account called ``username`` (no permission check: used to resolve sessions)."""
        with self._sessions() as session:
            user = session.scalars(select(User).where(User.username == normalize_username(username))).one_or_none()
            return _view(user, self.clock()) if user else None

    def token_user(self, username: str, token_version: int, *, kept: bool = False) -> UserView | None:
        """The account a bearer token or session cookie names, if the token still holds: the account is
        active and at ``token_version`` (log-out, a new password, a role or site change and deactivation
        raise it). Runs on every API request: one indexed Core query on a read-only connection, which on
        SQLite never queues behind the writer.

        ``kept``: on a connection this service keeps for the calling thread (the web server's event loop,
        the one thread that checks every API request) instead of one from the pool: no checkout and, on
        PostgreSQL, no liveness ping per request. Each check still reads what is committed when it runs
        (its read transaction ends with it), and a kept connection that fails is replaced and the check
        run once more. Calls from any other thread use the pool.
        """
        key = {"username": normalize_username(username)}
        if kept and (self._kept is None or self._kept[0] == threading.get_ident()):
            try:
                row = self._kept_read(key)
            except DBAPIError:  # the kept connection broke (e.g. the server restarted): a new one, once
                self._drop_kept()
                row = self._kept_read(key)
        else:
            with self._reader.connect() as connection:
                row = connection.execute(_TOKEN_USER, key).first()
        if row is None or not row.active or row.token_version != token_version:
            return None
        return _view(row, self.clock())  # type: ignore[arg-type]  # the row has the account's columns

    def _kept_read(self, key: dict[str, str]) -> Any:
        if self._kept is None:
            self._kept = (threading.get_ident(), self._reader.connect())
        connection = self._kept[1]
        try:
            return connection.execute(_TOKEN_USER, key).first()
        finally:
            if not connection.invalidated:
                connection.rollback()  # ends the read (SQLite: its snapshot; PostgreSQL autocommit: nothing)

    def _drop_kept(self) -> None:
        kept, self._kept = self._kept, None
        if kept is not None:
            try:
                kept[1].close()
            except DBAPIError:  # already broken: the pool discards it
                pass

    def is_locked(self, username: str) -> bool:
        with self._sessions() as session:
            return self.locked_until(session, normalize_username(username), self.clock()) is not None

    def count(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.count()).select_from(User)) or 0

    # ------------------------------------------------------------------ administration
    def list_users(self, actor: Actor) -> list[UserView]:
        self._require(actor)
        with self._sessions() as session:
            now = self.clock()
            return [_view(u, now) for u in session.scalars(select(User).order_by(User.username))]

    def create_user(self, actor: Actor, username: str, role: str, password: str, *, site: str | None = None,
                    full_name: str | None = None) -> UserView:
        """Create an account (administrators; the CLI acts as a system administrator)."""
        self._require(actor)
        name = normalize_username(username)
        violations: list[Violation] = []
        if not USERNAME.match(name):
            violations.append(Violation("username", username, "format",
                                        "must be 2-64 characters: letters, digits, '.', '_', '@' or '-'"))
        self._check_role(role, violations)
        site = (site or "").strip() or None
        full = (full_name or "").strip() or name
        if len(full) > 200:
            violations.append(Violation("full_name", full_name, "max_length", "must be at most 200 characters"))
        violations.extend(self.check_password(password, name))
        now = _ts(self.clock())
        with self._sessions.begin() as session:
            self._check_site(session, site, violations)
            if session.scalars(select(User.id).where(User.username == name)).first():
                violations.append(Violation("username", username, "unique", "is already taken"))
            if violations:
                raise ValidationFailed(violations)
            user = User(username=name, full_name=full, role=role, site_code=site,
                        password_hash=self.hasher.hash(password), active=True, locked_until=None, token_version=1,
                        created_utc=now, password_changed_utc=now, version=1)
            session.add(user)
            values = {"username": name, "full_name": full, "role": role, "site": site, "active": True,
                      "password": "(set)"}
            audit.append(session, [self._entry(actor, "create", name, k, None, v, None) for k, v in values.items()])
            return _view(user)

    def update_user(self, actor: Actor, username: str, *, role: str = _UNSET, site: str | None = _UNSET,
                    full_name: str = _UNSET, active: bool = _UNSET, reason: str | None = None) -> UserView:
        """Change role, site, printed name or active flag (reason required). Sessions are revoked
        when role, site or active flag change."""
        self._require(actor)
        violations: list[Violation] = []
        changes: dict[str, Any] = {}
        if role is not _UNSET:
            self._check_role(role, violations)
            changes["role"] = role
        if site is not _UNSET:
            changes["site_code"] = (site or "").strip() or None
        if full_name is not _UNSET:
            full = (full_name or "").strip()
            if not full or len(full) > 200:
                violations.append(Violation("full_name", full_name, "length", "must be 1-200 characters"))
            changes["full_name"] = full
        if active is not _UNSET:
            changes["active"] = bool(active)
        text = self._reason(reason, violations)
        with self._sessions.begin() as session:
            user = self._user(session, username)
            if "site_code" in changes:
                self._check_site(session, changes["site_code"], violations, current=user.site_code)
            if user.username == actor.username and (changes.get("active") is False or
                                                    changes.get("role", user.role) != user.role):
                violations.append(Violation("username", username, "self",
                                            "administrators cannot deactivate or demote their own account"))
            if violations:
                raise ValidationFailed(violations)
            entries = []
            for name, new in changes.items():
                old = getattr(user, name)
                if old != new:
                    setattr(user, name, new)
                    entries.append(self._entry(actor, "update", user.username,
                                               "site" if name == "site_code" else name, old, new, text))
            if entries:
                user.version += 1
                if any(e.field in ("role", "site", "active") for e in entries):
                    user.token_version += 1
                audit.append(session, entries)
            return _view(user)

    def reset_password(self, actor: Actor, username: str, password: str, *, reason: str | None) -> UserView:
        """Set a new password for another account (administrators); revokes its sessions."""
        self._require(actor)
        violations = self.check_password(password, normalize_username(username))
        text = self._reason(reason, violations)
        if violations:
            raise ValidationFailed(violations)
        return self._set_password(actor, username, password, text)

    def change_own_password(self, actor: Actor, old_password: str, new_password: str, *,
                            channel: str = "web", client: str | None = None) -> UserView:
        """Self-service password change (the old password is required)."""
        self.reauthenticate(actor, old_password, purpose="password change", channel=channel, client=client)
        violations = self.check_password(new_password, actor.username, "new_password")
        if old_password == new_password:
            violations.append(Violation("new_password", None, "unchanged", "must differ from the old password"))
        if violations:
            raise ValidationFailed(violations)
        return self._set_password(actor, actor.username, new_password, "changed by the user")

    def _set_password(self, actor: Actor, username: str, password: str, reason: str) -> UserView:
        with self._sessions.begin() as session:
            user = self._user(session, username)
            user.password_hash = self.hasher.hash(password)
            user.password_changed_utc = _ts(self.clock())
            user.token_version += 1
            user.version += 1
            audit.append(session, [self._entry(actor, "update", user.username, "password", "(set)", "(changed)",
                                               reason)])
            return _view(user)

    def unlock(self, actor: Actor, username: str, *, reason: str | None, channel: str = "api",
               client: str | None = None) -> UserView:
        """Lift a lock-out before it expires (administrators; reason required)."""
        self._require(actor)
        violations: list[Violation] = []
        text = self._reason(reason, violations)
        if violations:
            raise ValidationFailed(violations)
        with self._sessions.begin() as session:
            user = self._user(session, username)
            self._log(session, user.username, user.role, "unlock", channel, client, f"by {actor.username}: {text}")
            if user.locked_until is not None:
                audit.append(session, [self._entry(actor, "unlock", user.username, "locked_until",
                                                   user.locked_until, None, text)])
                user.locked_until = None
                user.version += 1
            return _view(user)

    def revoke_sessions(self, username: str, *, channel: str, client: str | None = None) -> None:
        """Log-out: every session cookie and API token of the user stops working."""
        with self._sessions.begin() as session:
            user = session.scalars(select(User).where(User.username == normalize_username(username))).one_or_none()
            if user is None:
                return
            user.token_version += 1
            self._log(session, user.username, user.role, "logout", channel, client, "sessions revoked")


def _locked_message(until: dt.datetime) -> str:
    return (f"too many failed log-ins: the account is locked until {until.strftime('%H:%M')} UTC; "
            "try again later or ask an administrator to unlock it")
