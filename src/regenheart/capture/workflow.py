"""Data-management workflow on top of the capture service: queries, source-data verification,
lock/unlock and electronic signatures.

Same contract as :class:`regenheart.capture.service.CaptureService`: every method checks the role
(``Actor.may``) and the site, validates, writes in one transaction and appends audit records for
every change to the hash-chained trail in that transaction. A refused request raises a
:mod:`capture.errors` exception and writes nothing.

* Queries (discrepancy notes) sit on one field of one form: ``open`` -> ``answered`` -> ``closed``
  (a closed or answered query can be re-opened). Monitors and data managers open and close;
  site staff and data managers answer. Every message is kept (append-only ``query_messages``).
* Source-data verification (monitors) marks a complete form as verified; the capture service
  clears the mark when verified data change.
* Lock (data managers) freezes a form: :meth:`CaptureService.save_form` refuses locked records.
  A form with unresolved queries cannot be locked. Unlocking needs a reason.
* E-signature (investigators, password re-entered): records printed name, UTC time and meaning
  (21 CFR 11.50), linked to the record version and a SHA-256 of the signed data (11.70). The
  capture service clears ``signed`` when signed data change; the signature rows stay.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from regenheart.capture.accounts import AccountService
from regenheart.capture.common import audit_entry, find_form_record, find_subject, require
from regenheart.capture.errors import Conflict, NotFound, StateError, ValidationFailed
from regenheart.capture.permissions import Actor
from regenheart.capture.validation import Violation
from regenheart.protocol.models import Protocol
from regenheart.store import audit
from regenheart.store.audit import AuditEntry, canonical, utc_now
from regenheart.store.models import DataQuery, FormRecord, QueryMessage, Signature, Subject, User

QUERY_TEXT_MAX = 2000
UNRESOLVED = ("open", "answered")

# Meaning of a signature (21 CFR 11.50(a)(3)): code -> statement shown and stored with it.
SIGNATURE_MEANINGS: dict[str, str] = {
    "approval": "Approval: I have reviewed the data on this form and confirm they are accurate and complete.",
    "review": "Review: I have reviewed the data on this form.",
    "responsibility": "Responsibility: I take responsibility for the data on this form as investigator.",
    "authorship": "Authorship: I am the author of the data on this form.",
}


@dataclass(frozen=True)
class QueryMessageView:
    kind: str
    username: str
    role: str
    ts_utc: str
    text: str | None


@dataclass(frozen=True)
class QueryView:
    subject_code: str
    seq: int
    visit_code: str
    form_code: str
    field: str
    status: str
    opened_by: str
    opened_utc: str
    closed_by: str | None
    closed_utc: str | None
    version: int
    messages: list[QueryMessageView]

    def as_dict(self) -> dict[str, Any]:
        return {"subject_id": self.subject_code, "seq": self.seq, "visit": self.visit_code, "form": self.form_code,
                "field": self.field, "status": self.status, "opened_by": self.opened_by,
                "opened_utc": self.opened_utc, "closed_by": self.closed_by, "closed_utc": self.closed_utc,
                "version": self.version, "messages": [m.__dict__ for m in self.messages]}


@dataclass(frozen=True)
class SignatureView:
    username: str
    full_name: str
    role: str
    meaning: str
    ts_utc: str
    record_version: int
    content_hash: str
    current: bool  # still applies: the record is signed and unchanged since

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def content_hash(subject_code: str, visit_code: str, form_code: str, version: int, data: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a form's data at one version (what a signature covers)."""
    payload = json.dumps({"subject": subject_code, "visit": visit_code, "form": form_code, "version": version,
                          "data": data}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _query_view(subject_code: str, q: DataQuery) -> QueryView:
    return QueryView(subject_code, q.query_seq, q.visit_code, q.form_code, q.field, q.status, q.opened_by,
                     q.opened_utc, q.closed_by, q.closed_utc, q.version,
                     [QueryMessageView(m.kind, m.username, m.role, m.ts_utc, m.text) for m in q.messages])


class WorkflowService:
    """Queries, SDV, lock/unlock and e-signatures on one study database."""

    def __init__(self, engine: Engine, protocol: Protocol, accounts: AccountService | None = None):
        self.engine = engine
        self.protocol = protocol
        self.accounts = accounts or AccountService(engine, protocol)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # ------------------------------------------------------------------ helpers
    _require = staticmethod(require)
    _subject = staticmethod(find_subject)
    _entry = staticmethod(audit_entry)

    def _check_form(self, visit_code: str, form_code: str) -> None:
        if visit_code not in self.protocol.visit_codes or form_code not in self.protocol.visit(visit_code).forms:
            raise NotFound(f"form {form_code} is not collected at visit {visit_code}")

    def _record(self, session: Session, subject: Subject, visit_code: str, form_code: str) -> FormRecord:
        self._check_form(visit_code, form_code)
        record = find_form_record(session, subject.id, visit_code, form_code)
        if record is None:
            raise StateError(f"{form_code} at {visit_code} for {subject.subject_code} has not been entered yet")
        return record

    @staticmethod
    def _check_version(record: FormRecord, expected_version: int | None, what: str) -> None:
        if expected_version is not None and expected_version != record.version:
            raise Conflict(f"{what} is at version {record.version}, not {expected_version}: the data changed "
                           "since you read them; reload and review them again")

    @staticmethod
    def _text(name: str, text: str | None, violations: list[Violation], *, required: bool = True) -> str | None:
        value = (text or "").strip()
        if not value:
            if required:
                violations.append(Violation(name, text, "required", "is required"))
            return None
        if len(value) > QUERY_TEXT_MAX:
            violations.append(Violation(name, None, "max_length", f"must be at most {QUERY_TEXT_MAX} characters"))
        return value

    # ------------------------------------------------------------------ queries
    def _query(self, session: Session, subject: Subject, seq: int) -> DataQuery:
        query = session.scalars(select(DataQuery).where(DataQuery.subject_id == subject.id,
                                                        DataQuery.query_seq == seq)).one_or_none()
        if query is None:
            raise NotFound(f"query {seq} of subject {subject.subject_code} not found")
        return query

    def _message(self, session: Session, actor: Actor, query: DataQuery, kind: str, text: str | None,
                 ts: str) -> None:
        session.add(QueryMessage(query_id=query.id, kind=kind, username=actor.username, role=actor.role,
                                 ts_utc=ts, text=text))

    def _query_entries(self, actor: Actor, subject: Subject, query: DataQuery, action: str, old_status: str | None,
                       text: str | None) -> list[AuditEntry]:
        return [self._entry(actor, action, "query", subject.subject_code, visit_code=query.visit_code,
                            form_code=query.form_code, record_key=f"{subject.subject_code}/Q{query.query_seq}",
                            field=query.field, old_value=canonical(old_status), new_value=canonical(query.status),
                            reason=text)]

    def open_query(self, actor: Actor, subject_code: str, visit_code: str, form_code: str, field: str,
                   text: str | None) -> QueryView:
        """Raise a query on ``field`` of a form (monitors, data managers)."""
        self._require(actor, "open_query")
        self._check_form(visit_code, form_code)
        violations: list[Violation] = []
        names = self.protocol.forms[form_code].field_names + ["visit_date"]
        if field not in names:
            violations.append(Violation("field", field, "codelist", f"is not a field of {form_code}"))
        body = self._text("text", text, violations)
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            record = session.scalars(select(FormRecord).where(
                FormRecord.subject_id == subject.id, FormRecord.visit_code == visit_code,
                FormRecord.form_code == form_code)).one_or_none()
            if record is not None and record.locked:
                raise StateError(f"{form_code} at {visit_code} for {subject_code} is locked; unlock it first")
            if violations:
                raise ValidationFailed(violations)
            seq = (session.scalar(select(func.max(DataQuery.query_seq)).where(
                DataQuery.subject_id == subject.id)) or 0) + 1
            ts = utc_now()
            query = DataQuery(subject_id=subject.id, query_seq=seq, visit_code=visit_code, form_code=form_code,
                              field=field, status="open", opened_by=actor.username, opened_utc=ts, version=1)
            session.add(query)
            session.flush()
            self._message(session, actor, query, "open", body, ts)
            audit.append(session, self._query_entries(actor, subject, query, "query_open", None, body), ts)
            session.flush()
            session.refresh(query)
            return _query_view(subject_code, query)

    def _transition(self, actor: Actor, subject_code: str, seq: int, *, permission: str, kind: str,
                    allowed_from: tuple[str, ...], to: str, text: str | None, text_required: bool,
                    expected_version: int | None) -> QueryView:
        self._require(actor, permission)
        violations: list[Violation] = []
        body = self._text("text", text, violations, required=text_required)
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            query = self._query(session, subject, seq)
            if expected_version is not None and expected_version != query.version:
                raise Conflict(f"query {seq} is at version {query.version}, not {expected_version}: reload it")
            if query.status not in allowed_from:
                raise StateError(f"query {seq} is {query.status}; it cannot be {_PAST[kind]}")
            if violations:
                raise ValidationFailed(violations)
            ts = utc_now()
            old = query.status
            query.status = to
            query.version += 1
            if to == "closed":
                query.closed_by, query.closed_utc = actor.username, ts
            elif kind == "reopen":
                query.closed_by, query.closed_utc = None, None
            self._message(session, actor, query, kind, body, ts)
            audit.append(session, self._query_entries(actor, subject, query, f"query_{kind}", old, body), ts)
            session.flush()
            session.refresh(query)
            return _query_view(subject_code, query)

    def answer_query(self, actor: Actor, subject_code: str, seq: int, text: str | None, *,
                     expected_version: int | None = None) -> QueryView:
        """Answer an open query (site staff, data managers); it becomes 'answered'."""
        return self._transition(actor, subject_code, seq, permission="answer_query", kind="answer",
                                allowed_from=UNRESOLVED, to="answered", text=text, text_required=True,
                                expected_version=expected_version)

    def close_query(self, actor: Actor, subject_code: str, seq: int, text: str | None = None, *,
                    expected_version: int | None = None) -> QueryView:
        """Close (resolve) a query (monitors, data managers)."""
        return self._transition(actor, subject_code, seq, permission="close_query", kind="close",
                                allowed_from=UNRESOLVED, to="closed", text=text, text_required=False,
                                expected_version=expected_version)

    def reopen_query(self, actor: Actor, subject_code: str, seq: int, text: str | None, *,
                     expected_version: int | None = None) -> QueryView:
        """Send an answered or closed query back to the site (monitors, data managers)."""
        return self._transition(actor, subject_code, seq, permission="close_query", kind="reopen",
                                allowed_from=("answered", "closed"), to="open", text=text, text_required=True,
                                expected_version=expected_version)

    def get_query(self, actor: Actor, subject_code: str, seq: int) -> QueryView:
        self._require(actor, "view")
        with self._sessions() as session:
            subject = self._subject(session, actor, subject_code)
            return _query_view(subject_code, self._query(session, subject, seq))

    def list_queries(self, actor: Actor, subject_code: str | None = None, *, status: str | None = None,
                     visit_code: str | None = None, form_code: str | None = None) -> list[QueryView]:
        """Queries visible to ``actor`` (its site only), newest last; ``status='unresolved'`` = open+answered."""
        self._require(actor, "view")
        with self._sessions() as session:
            stmt = select(DataQuery, Subject.subject_code).join(Subject, Subject.id == DataQuery.subject_id)
            if subject_code is not None:
                subject = self._subject(session, actor, subject_code)
                stmt = stmt.where(DataQuery.subject_id == subject.id)
            if actor.site is not None:
                stmt = stmt.where(Subject.site_code == actor.site)
            if status == "unresolved":
                stmt = stmt.where(DataQuery.status.in_(UNRESOLVED))
            elif status:
                stmt = stmt.where(DataQuery.status == status)
            if visit_code:
                stmt = stmt.where(DataQuery.visit_code == visit_code)
            if form_code:
                stmt = stmt.where(DataQuery.form_code == form_code)
            rows = session.execute(stmt.order_by(Subject.subject_code, DataQuery.query_seq)).all()
            return [_query_view(code, q) for q, code in rows]

    # ------------------------------------------------------------------ SDV, lock
    def _flag(self, session: Session, actor: Actor, subject: Subject, record: FormRecord, name: str, new: bool,
              action: str, reason: str | None) -> None:
        old = getattr(record, name)
        setattr(record, name, new)
        audit.append(session, [self._entry(
            actor, action, "form", subject.subject_code, visit_code=record.visit_code, form_code=record.form_code,
            record_key=f"{subject.subject_code}/{record.visit_code}/{record.form_code}", field=name,
            old_value=canonical(old), new_value=canonical(new), reason=reason)])

    def verify(self, actor: Actor, subject_code: str, visit_code: str, form_code: str, *,
               expected_version: int | None = None, comment: str | None = None) -> int:
        """Source-data verification of a complete form (monitors). Returns the verified version."""
        self._require(actor, "verify")
        violations: list[Violation] = []
        note = self._text("comment", comment, violations, required=False)
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            record = self._record(session, subject, visit_code, form_code)
            self._check_version(record, expected_version, f"{form_code} at {visit_code}")
            if record.status != "complete":
                raise StateError(f"{form_code} at {visit_code} is {record.status}; only complete forms can be "
                                 "source-data verified")
            if record.verified:
                raise StateError(f"{form_code} at {visit_code} is already verified")
            if violations:
                raise ValidationFailed(violations)
            self._flag(session, actor, subject, record, "verified", True, "verify",
                       note or f"source data verified (form version {record.version})")
            return record.version

    def lock(self, actor: Actor, subject_code: str, visit_code: str, form_code: str, *,
             reason: str | None = None, expected_version: int | None = None) -> None:
        """Lock a form against changes (data managers). Unresolved queries must be closed first."""
        self._require(actor, "lock")
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            record = self._record(session, subject, visit_code, form_code)
            self._check_version(record, expected_version, f"{form_code} at {visit_code}")
            if record.locked:
                raise StateError(f"{form_code} at {visit_code} is already locked")
            unresolved = session.scalar(select(func.count()).select_from(DataQuery).where(
                DataQuery.subject_id == subject.id, DataQuery.visit_code == visit_code,
                DataQuery.form_code == form_code, DataQuery.status.in_(UNRESOLVED))) or 0
            if unresolved:
                raise StateError(f"{form_code} at {visit_code} has {unresolved} unresolved "
                                 f"quer{'y' if unresolved == 1 else 'ies'}; close them before locking")
            self._flag(session, actor, subject, record, "locked", True, "lock",
                       (reason or "").strip() or f"locked (form version {record.version})")

    def unlock(self, actor: Actor, subject_code: str, visit_code: str, form_code: str, *,
               reason: str | None) -> None:
        """Unlock a form (data managers; a reason is required)."""
        self._require(actor, "lock")
        violations: list[Violation] = []
        if not (reason and reason.strip()):
            violations.append(Violation("reason", reason, "reason_required", "a reason is required to unlock"))
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            record = self._record(session, subject, visit_code, form_code)
            if not record.locked:
                raise StateError(f"{form_code} at {visit_code} is not locked")
            if violations:
                raise ValidationFailed(violations)
            self._flag(session, actor, subject, record, "locked", False, "unlock", reason.strip())  # type: ignore[union-attr]

    # ------------------------------------------------------------------ signatures
    def sign(self, actor: Actor, subject_code: str, visit_code: str, form_code: str, *, password: str,
             meaning: str = "approval", expected_version: int | None = None, channel: str = "web",
             client: str | None = None) -> SignatureView:
        """Electronically sign a complete form (investigators), re-entering the password."""
        self._require(actor, "sign")
        violations: list[Violation] = []
        if meaning not in SIGNATURE_MEANINGS:
            violations.append(Violation("meaning", meaning, "codelist",
                                        f"must be one of: {', '.join(SIGNATURE_MEANINGS)}"))
        # Check the record before asking for the password, so a refused request costs no attempt.
        with self._sessions() as session:
            subject = self._subject(session, actor, subject_code)
            record = self._record(session, subject, visit_code, form_code)
            self._check_signable(record, expected_version, form_code, visit_code)
        if violations:
            raise ValidationFailed(violations)
        signer = self.accounts.reauthenticate(actor, password, purpose=f"signature of {subject_code}/{visit_code}/"
                                              f"{form_code}", channel=channel, client=client)
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            record = self._record(session, subject, visit_code, form_code)
            self._check_signable(record, expected_version, form_code, visit_code)
            user = session.scalars(select(User).where(User.username == actor.username)).one()
            data = {i.field: (json.loads(i.value) if i.value is not None else None) for i in record.items}
            ts = utc_now()
            statement = SIGNATURE_MEANINGS[meaning]
            digest = content_hash(subject_code, visit_code, form_code, record.version, data)
            session.add(Signature(record_id=record.id, username=user.username, full_name=signer.full_name,
                                  role=actor.role, meaning=statement, ts_utc=ts, record_version=record.version,
                                  content_hash=digest))
            record.signed = True
            audit.append(session, [self._entry(
                actor, "sign", "form", subject_code, visit_code=visit_code, form_code=form_code,
                record_key=f"{subject_code}/{visit_code}/{form_code}", field="signed", old_value=canonical(False),
                new_value=canonical(True),
                reason=f"signed by {signer.full_name} ({actor.username}); {statement} "
                       f"[version {record.version}, sha256 {digest[:16]}]")], ts)
            return SignatureView(user.username, signer.full_name, actor.role, statement, ts, record.version, digest,
                                 True)

    def _check_signable(self, record: FormRecord, expected_version: int | None, form_code: str,
                        visit_code: str) -> None:
        self._check_version(record, expected_version, f"{form_code} at {visit_code}")
        if record.status != "complete":
            raise StateError(f"{form_code} at {visit_code} is {record.status}; only complete forms can be signed")
        if record.signed:
            raise StateError(f"{form_code} at {visit_code} is already signed at version {record.version}")

    def signatures(self, actor: Actor, subject_code: str, visit_code: str, form_code: str) -> list[SignatureView]:
        """Every signature of a form, oldest first; ``current`` marks the one that still applies."""
        self._require(actor, "view")
        self._check_form(visit_code, form_code)
        with self._sessions() as session:
            subject = self._subject(session, actor, subject_code)
            record = find_form_record(session, subject.id, visit_code, form_code)
            if record is None:
                return []
            rows = session.scalars(select(Signature).where(Signature.record_id == record.id)
                                   .order_by(Signature.id)).all()
            return [SignatureView(s.username, s.full_name, s.role, s.meaning, s.ts_utc, s.record_version,
                                  s.content_hash, record.signed and s.record_version == record.version
                                  and s is rows[-1]) for s in rows]


_PAST = {"answer": "answered", "close": "closed", "reopen": "re-opened"}
