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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from regenheart.capture.accounts import AccountService
from regenheart.capture.common import UNRESOLVED, audit_entry, find_form_record, find_subject, require
from regenheart.capture.errors import Conflict, NotFound, StateError, ValidationFailed
from regenheart.capture.permissions import Actor
from regenheart.capture.validation import Violation
from regenheart.protocol.models import Protocol
from regenheart.store import audit
from regenheart.store.audit import AuditEntry, canonical, utc_now
from regenheart.store.models import (
    AdverseEvent,
    AdverseEventSignature,
    DataQuery,
    FormRecord,
    QueryMessage,
    Signature,
    Subject,
)

QUERY_TEXT_MAX = 2000
# A query on an adverse event is stored with visit_code AE_VISIT and form_code "AE<seq>" (plus ae_id): no
# protocol visit code is lower case, so the pair never names a form, and every query list shows it as it is.
AE_VISIT = "ae"
# Audit entity of an adverse event's review flags (verified, locked, signed), apart from its data fields.
AE_STATE = "ae_state"
BULK_ACTIONS = ("verify", "lock", "sign")

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
    ae_seq: int | None = None  # set for a query on an adverse event (visit_code is then AE_VISIT)

    def as_dict(self) -> dict[str, Any]:
        return {"subject_id": self.subject_code, "seq": self.seq, "visit": self.visit_code, "form": self.form_code,
                "field": self.field, "status": self.status, "opened_by": self.opened_by,
                "opened_utc": self.opened_utc, "closed_by": self.closed_by, "closed_utc": self.closed_utc,
                "version": self.version, "messages": [m.__dict__ for m in self.messages],
                "adverse_event": self.ae_seq}


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


def ae_content_hash(subject_code: str, ae_seq: int, version: int, data: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of an adverse event's data at one version (what its signature covers)."""
    payload = json.dumps({"subject": subject_code, "adverse_event": ae_seq, "version": version, "data": data},
                         sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def ae_form_code(ae_seq: int) -> str:
    """The form_code of a query on adverse event ``ae_seq`` (also the tail of its audit record key)."""
    return f"AE{ae_seq}"


def _query_view(subject_code: str, q: DataQuery) -> QueryView:
    ae_seq = int(q.form_code[2:]) if q.ae_id is not None else None
    return QueryView(subject_code, q.query_seq, q.visit_code, q.form_code, q.field, q.status, q.opened_by,
                     q.opened_utc, q.closed_by, q.closed_utc, q.version,
                     [QueryMessageView(m.kind, m.username, m.role, m.ts_utc, m.text) for m in q.messages], ae_seq)


@dataclass(frozen=True)
class ReviewItem:
    """One form (or adverse event) in the scope of a bulk review, and what the action does with it."""

    kind: str  # form | ae
    visit: str | None
    form: str | None
    ae_seq: int | None
    label: str
    version: int  # 0: never entered
    status: str  # not_started, incomplete, complete
    verified: bool
    locked: bool
    signed: bool
    open_queries: int
    acts: bool  # the action applies to it
    note: str  # why not, or what the user must know (incomplete, not verified)
    warning: bool = False  # locking it (or leaving it out) needs the user's confirmation

    @property
    def key(self) -> str:
        """'SCR/echo' for a form, 'AE2' for an adverse event."""
        return f"{self.visit}/{self.form}" if self.kind == "form" else ae_form_code(self.ae_seq or 0)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "visit": self.visit, "form": self.form,
                "adverse_event": self.ae_seq, "label": self.label, "version": self.version, "status": self.status,
                "verified": self.verified, "locked": self.locked, "signed": self.signed,
                "open_queries": self.open_queries, "acts": self.acts, "note": self.note, "warning": self.warning}


@dataclass(frozen=True)
class ReviewPlan:
    """What a bulk verify/lock/sign of a visit (``visit``) or a whole casebook (``visit`` None) would do."""

    action: str
    subject_code: str
    visit: str | None
    items: list[ReviewItem]

    @property
    def todo(self) -> list[ReviewItem]:
        return [i for i in self.items if i.acts]

    @property
    def warnings(self) -> list[ReviewItem]:
        return [i for i in self.items if i.warning]

    @property
    def blockers(self) -> list[ReviewItem]:
        """Lock only: items with unresolved queries (they must be closed first, as for a single form)."""
        return [i for i in self.items if self.action == "lock" and not i.locked and i.open_queries
                and i.status != "not_started"]

    @property
    def scope_label(self) -> str:
        return f"visit {self.visit}" if self.visit else "the whole casebook"

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "subject_id": self.subject_code, "visit": self.visit,
                "items": [i.as_dict() for i in self.items], "todo": [i.key for i in self.todo],
                "warnings": [i.key for i in self.warnings], "blockers": [i.key for i in self.blockers]}


class ConfirmationRequired(StateError):
    """A bulk lock would lock incomplete or unverified forms (or leave unentered ones open): ``items`` lists
    them; the caller repeats the request with ``confirm=True`` once the user has seen the list."""

    def __init__(self, message: str, items: list[ReviewItem]):
        super().__init__(message)
        self.items = items


@dataclass(frozen=True)
class BulkResult:
    """Outcome of a bulk action: the items acted on (with their signatures when signing) and the others."""

    plan: ReviewPlan
    done: list[ReviewItem]
    signatures: list[SignatureView] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        done = {i.key for i in self.done}
        return {"action": self.plan.action, "subject_id": self.plan.subject_code, "visit": self.plan.visit,
                "done": [i.as_dict() for i in self.done],
                "not_done": [i.as_dict() for i in self.plan.items if i.key not in done],
                "signatures": [dict(s.as_dict(), key=k) for k, s in zip([i.key for i in self.done],
                                                                         self.signatures, strict=False)]}


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
            return self._new_query(session, actor, subject, visit_code, form_code, field, body, None)

    def _new_query(self, session: Session, actor: Actor, subject: Subject, visit_code: str, form_code: str,
                   field: str, body: str | None, ae_id: int | None) -> QueryView:
        seq = (session.scalar(select(func.max(DataQuery.query_seq)).where(
            DataQuery.subject_id == subject.id)) or 0) + 1
        ts = utc_now()
        query = DataQuery(subject_id=subject.id, query_seq=seq, visit_code=visit_code, form_code=form_code,
                          field=field, status="open", opened_by=actor.username, opened_utc=ts, version=1,
                          ae_id=ae_id)
        session.add(query)
        session.flush()
        self._message(session, actor, query, "open", body, ts)
        audit.append(session, self._query_entries(actor, subject, query, "query_open", None, body), ts)
        session.flush()
        session.refresh(query)
        return _query_view(subject.subject_code, query)

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
            subject = self._subject(session, actor, subject_code, lock=False)
            return _query_view(subject_code, self._query(session, subject, seq))

    def list_queries(self, actor: Actor, subject_code: str | None = None, *, status: str | None = None,
                     visit_code: str | None = None, form_code: str | None = None) -> list[QueryView]:
        """Queries visible to ``actor`` (its site only), newest last; ``status='unresolved'`` = open+answered."""
        self._require(actor, "view")
        with self._sessions() as session:
            stmt = select(DataQuery, Subject.subject_code).join(Subject, Subject.id == DataQuery.subject_id)
            if subject_code is not None:
                subject = self._subject(session, actor, subject_code, lock=False)
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
             reason: str | None = None, expected_version: int | None = None, confirm: bool = False) -> None:
        """Lock a form against changes (data managers). Unresolved queries must be closed first.

        An incomplete or not source-data verified form is locked only with ``confirm``: without it
        :class:`ConfirmationRequired` says why (the same rule as :meth:`lock_many`)."""
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
            item = _review_item("lock", "form", visit_code, form_code, None,
                                f"{visit_code} · {self.protocol.forms[form_code].label}", record.status,
                                record.version, record.verified, record.locked, record.signed, 0)
            if item.warning and not confirm:
                raise ConfirmationRequired(f"{form_code} at {visit_code} is {item.note}. Confirm to lock it anyway.",
                                           [item])
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
            subject = self._subject(session, actor, subject_code, lock=False)
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
            return self._sign_form(session, actor, subject, record, signer.full_name, meaning, utc_now())

    def _sign_form(self, session: Session, actor: Actor, subject: Subject, record: FormRecord, full_name: str,
                   meaning: str, ts: str) -> SignatureView:
        """Write one form's signature row (with its content hash), set ``signed`` and audit it."""
        code, visit_code, form_code = subject.subject_code, record.visit_code, record.form_code
        data = {i.field: (json.loads(i.value) if i.value is not None else None) for i in record.items}
        statement = SIGNATURE_MEANINGS[meaning]
        digest = content_hash(code, visit_code, form_code, record.version, data)
        session.add(Signature(record_id=record.id, username=actor.username, full_name=full_name,
                              role=actor.role, meaning=statement, ts_utc=ts, record_version=record.version,
                              content_hash=digest))
        record.signed = True
        audit.append(session, [self._entry(
            actor, "sign", "form", code, visit_code=visit_code, form_code=form_code,
            record_key=f"{code}/{visit_code}/{form_code}", field="signed", old_value=canonical(False),
            new_value=canonical(True),
            reason=f"signed by {full_name} ({actor.username}); {statement} "
                   f"[version {record.version}, sha256 {digest[:16]}]")], ts)
        return SignatureView(actor.username, full_name, actor.role, statement, ts, record.version, digest, True)

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
            subject = self._subject(session, actor, subject_code, lock=False)
            record = find_form_record(session, subject.id, visit_code, form_code)
            if record is None:
                return []
            rows = session.scalars(select(Signature).where(Signature.record_id == record.id)
                                   .order_by(Signature.id)).all()
            return [SignatureView(s.username, s.full_name, s.role, s.meaning, s.ts_utc, s.record_version,
                                  s.content_hash, record.signed and s.record_version == record.version
                                  and s is rows[-1]) for s in rows]

    # ------------------------------------------------------------------ adverse events as full records
    def _ae_fields(self) -> list[str]:
        if self.protocol.adverse_events is None:
            raise StateError("this study's protocol has no adverse-event log")
        return self.protocol.adverse_events.field_names

    @staticmethod
    def _ae(session: Session, subject: Subject, ae_seq: int) -> AdverseEvent:
        ae = session.scalars(select(AdverseEvent).where(AdverseEvent.subject_id == subject.id,
                                                        AdverseEvent.ae_seq == ae_seq)).one_or_none()
        if ae is None:
            raise NotFound(f"adverse event {ae_seq} of subject {subject.subject_code} not found")
        return ae

    @staticmethod
    def _check_ae_version(ae: AdverseEvent, expected_version: int | None) -> None:
        if expected_version is not None and expected_version != ae.version:
            raise Conflict(f"adverse event {ae.ae_seq} is at version {ae.version}, not {expected_version}: the data "
                           "changed since you read them; reload and review them again")

    def _ae_flag(self, session: Session, actor: Actor, subject: Subject, ae: AdverseEvent, name: str, new: bool,
                 action: str, reason: str | None, ts: str | None = None) -> None:
        old = getattr(ae, name)
        setattr(ae, name, new)
        audit.append(session, [self._entry(
            actor, action, AE_STATE, subject.subject_code, record_key=f"{subject.subject_code}/AE{ae.ae_seq}",
            field=name, old_value=canonical(old), new_value=canonical(new), reason=reason)], ts)

    @staticmethod
    def _ae_unresolved(session: Session, ae: AdverseEvent) -> int:
        return session.scalar(select(func.count()).select_from(DataQuery).where(
            DataQuery.ae_id == ae.id, DataQuery.status.in_(UNRESOLVED))) or 0

    def open_ae_query(self, actor: Actor, subject_code: str, ae_seq: int, field: str, text: str | None) -> QueryView:
        """Raise a query on ``field`` of adverse event ``ae_seq`` (monitors, data managers)."""
        self._require(actor, "open_query")
        violations: list[Violation] = []
        if field not in self._ae_fields():
            violations.append(Violation("field", field, "codelist", "is not a field of the adverse-event log"))
        body = self._text("text", text, violations)
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            ae = self._ae(session, subject, ae_seq)
            if ae.locked:
                raise StateError(f"adverse event {ae_seq} of {subject_code} is locked; unlock it first")
            if violations:
                raise ValidationFailed(violations)
            return self._new_query(session, actor, subject, AE_VISIT, ae_form_code(ae_seq), field, body, ae.id)

    def verify_ae(self, actor: Actor, subject_code: str, ae_seq: int, *, expected_version: int | None = None,
                  comment: str | None = None) -> int:
        """Source-data verification of an adverse event (monitors). Returns the verified version."""
        self._require(actor, "verify")
        violations: list[Violation] = []
        note = self._text("comment", comment, violations, required=False)
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            ae = self._ae(session, subject, ae_seq)
            self._check_ae_version(ae, expected_version)
            if ae.verified:
                raise StateError(f"adverse event {ae_seq} is already verified")
            if violations:
                raise ValidationFailed(violations)
            self._ae_flag(session, actor, subject, ae, "verified", True, "verify",
                          note or f"source data verified (adverse event version {ae.version})")
            return ae.version

    def lock_ae(self, actor: Actor, subject_code: str, ae_seq: int, *, reason: str | None = None,
                expected_version: int | None = None, confirm: bool = False) -> None:
        """Lock an adverse event against changes (data managers). Unresolved queries must be closed first.

        An adverse event not source-data verified is locked only with ``confirm``: without it
        :class:`ConfirmationRequired` says why (as for a form and for :meth:`lock_many`)."""
        self._require(actor, "lock")
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            ae = self._ae(session, subject, ae_seq)
            self._check_ae_version(ae, expected_version)
            if ae.locked:
                raise StateError(f"adverse event {ae_seq} is already locked")
            unresolved = self._ae_unresolved(session, ae)
            if unresolved:
                raise StateError(f"adverse event {ae_seq} has {unresolved} unresolved "
                                 f"quer{'y' if unresolved == 1 else 'ies'}; close them before locking")
            item = _review_item("lock", "ae", AE_VISIT, None, ae_seq, f"adverse event {ae_seq}: {ae.term}",
                                "complete", ae.version, ae.verified, ae.locked, ae.signed, 0)
            if item.warning and not confirm:
                raise ConfirmationRequired(f"adverse event {ae_seq} is {item.note}. Confirm to lock it anyway.",
                                           [item])
            self._ae_flag(session, actor, subject, ae, "locked", True, "lock",
                          (reason or "").strip() or f"locked (adverse event version {ae.version})")

    def unlock_ae(self, actor: Actor, subject_code: str, ae_seq: int, *, reason: str | None) -> None:
        """Unlock an adverse event (data managers; a reason is required)."""
        self._require(actor, "lock")
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            ae = self._ae(session, subject, ae_seq)
            if not ae.locked:
                raise StateError(f"adverse event {ae_seq} is not locked")
            if not (reason and reason.strip()):
                raise ValidationFailed([Violation("reason", reason, "reason_required",
                                                  "a reason is required to unlock")])
            self._ae_flag(session, actor, subject, ae, "locked", False, "unlock", reason.strip())

    def sign_ae(self, actor: Actor, subject_code: str, ae_seq: int, *, password: str, meaning: str = "approval",
                expected_version: int | None = None, channel: str = "web", client: str | None = None) -> SignatureView:
        """Electronically sign an adverse event (investigators), re-entering the password (21 CFR 11.50)."""
        self._require(actor, "sign")
        self._check_meaning(meaning)
        with self._sessions() as session:  # refuse before asking for the password: no attempt is spent
            subject = self._subject(session, actor, subject_code, lock=False)
            self._check_ae_signable(self._ae(session, subject, ae_seq), expected_version)
        signer = self.accounts.reauthenticate(actor, password, purpose=f"signature of {subject_code}/AE{ae_seq}",
                                              channel=channel, client=client)
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            ae = self._ae(session, subject, ae_seq)
            self._check_ae_signable(ae, expected_version)
            return self._sign_ae(session, actor, subject, ae, signer.full_name, meaning, utc_now())

    @staticmethod
    def _check_meaning(meaning: str) -> None:
        if meaning not in SIGNATURE_MEANINGS:
            raise ValidationFailed([Violation("meaning", meaning, "codelist",
                                              f"must be one of: {', '.join(SIGNATURE_MEANINGS)}")])

    def _check_ae_signable(self, ae: AdverseEvent, expected_version: int | None) -> None:
        self._check_ae_version(ae, expected_version)
        if ae.signed:
            raise StateError(f"adverse event {ae.ae_seq} is already signed at version {ae.version}")

    def _sign_ae(self, session: Session, actor: Actor, subject: Subject, ae: AdverseEvent, full_name: str,
                 meaning: str, ts: str) -> SignatureView:
        statement = SIGNATURE_MEANINGS[meaning]
        digest = ae_content_hash(subject.subject_code, ae.ae_seq, ae.version, json.loads(ae.data))
        session.add(AdverseEventSignature(ae_id=ae.id, username=actor.username, full_name=full_name, role=actor.role,
                                          meaning=statement, ts_utc=ts, record_version=ae.version,
                                          content_hash=digest))
        self._ae_flag(session, actor, subject, ae, "signed", True, "sign",
                      f"signed by {full_name} ({actor.username}); {statement} "
                      f"[version {ae.version}, sha256 {digest[:16]}]", ts)
        return SignatureView(actor.username, full_name, actor.role, statement, ts, ae.version, digest, True)

    def ae_signatures(self, actor: Actor, subject_code: str, ae_seq: int) -> list[SignatureView]:
        """Every signature of an adverse event, oldest first; ``current`` marks the one that still applies."""
        self._require(actor, "view")
        with self._sessions() as session:
            subject = self._subject(session, actor, subject_code, lock=False)
            ae = self._ae(session, subject, ae_seq)
            rows = session.scalars(select(AdverseEventSignature).where(AdverseEventSignature.ae_id == ae.id)
                                   .order_by(AdverseEventSignature.id)).all()
            return [SignatureView(s.username, s.full_name, s.role, s.meaning, s.ts_utc, s.record_version,
                                  s.content_hash, ae.signed and s.record_version == ae.version and s is rows[-1])
                    for s in rows]

    # ------------------------------------------------------------------ review in bulk
    def _plan(self, session: Session, subject: Subject, action: str, visit_code: str | None) -> ReviewPlan:
        """Every form of the visit (or of the casebook, with the adverse events) and what ``action`` does to it."""
        if action not in BULK_ACTIONS:
            raise ValidationFailed([Violation("action", action, "codelist",
                                              f"must be one of: {', '.join(BULK_ACTIONS)}")])
        if visit_code is not None and visit_code not in self.protocol.visit_codes:
            raise NotFound(f"visit {visit_code} is not in the protocol")
        visits = [self.protocol.visit(visit_code)] if visit_code else list(self.protocol.visits)
        records = {(r.visit_code, r.form_code): r for r in session.scalars(
            select(FormRecord).where(FormRecord.subject_id == subject.id))}
        counts: dict[tuple[str, str], int] = {}
        for v, f, n in session.execute(
                select(DataQuery.visit_code, DataQuery.form_code, func.count())
                .where(DataQuery.subject_id == subject.id, DataQuery.status.in_(UNRESOLVED))
                .group_by(DataQuery.visit_code, DataQuery.form_code)):
            counts[(v, f)] = n
        items: list[ReviewItem] = []
        for vdef in visits:
            for form_code in vdef.forms:
                record = records.get((vdef.code, form_code))
                label = f"{vdef.code} · {self.protocol.forms[form_code].label}"
                state = ("not_started", 0, False, False, False) if record is None else (
                    record.status, record.version, record.verified, record.locked, record.signed)
                items.append(_review_item(action, "form", vdef.code, form_code, None, label, *state,
                                          counts.get((vdef.code, form_code), 0)))
        if visit_code is None and self.protocol.adverse_events is not None:
            for ae in session.scalars(select(AdverseEvent).where(AdverseEvent.subject_id == subject.id)
                                      .order_by(AdverseEvent.ae_seq)):
                items.append(_review_item(action, "ae", None, None, ae.ae_seq, f"AE{ae.ae_seq} · {ae.term}",
                                          "complete", ae.version, ae.verified, ae.locked, ae.signed,
                                          counts.get((AE_VISIT, ae_form_code(ae.ae_seq)), 0)))
        return ReviewPlan(action, subject.subject_code, visit_code, items)

    def review_plan(self, actor: Actor, subject_code: str, action: str, visit_code: str | None = None) -> ReviewPlan:
        """What verifying, locking or signing visit ``visit_code`` (None: the whole casebook) would do, for the
        user to review before confirming: every form with its state, and which ones the action applies to."""
        self._require(actor, "view")
        with self._sessions() as session:
            return self._plan(session, self._subject(session, actor, subject_code, lock=False), action, visit_code)

    @staticmethod
    def _check_expected(plan: ReviewPlan, expected: Mapping[str, int] | None) -> None:
        """The items the user reviewed (key -> version) must be exactly those the action now applies to."""
        if expected is None:
            return
        now = {i.key: i.version for i in plan.todo}
        if dict(expected) != now:
            changed = sorted(k for k in set(now) | set(expected) if now.get(k) != expected.get(k))
            raise Conflict(f"{', '.join(changed)} changed since you reviewed {plan.scope_label}; reload the list "
                           "and review it again (nothing was changed)")

    @staticmethod
    def _nothing_to_do(plan: ReviewPlan) -> StateError:
        verb = {"verify": "verified", "lock": "locked", "sign": "signed"}[plan.action]
        return StateError(f"nothing in {plan.scope_label} of {plan.subject_code} can be {verb} now")

    def _records_by_key(self, session: Session, subject: Subject) -> tuple[dict, dict]:
        forms = {f"{r.visit_code}/{r.form_code}": r for r in session.scalars(
            select(FormRecord).where(FormRecord.subject_id == subject.id))}
        aes = {ae_form_code(a.ae_seq): a for a in session.scalars(
            select(AdverseEvent).where(AdverseEvent.subject_id == subject.id))}
        return forms, aes

    def verify_many(self, actor: Actor, subject_code: str, visit_code: str | None = None, *,
                    expected: Mapping[str, int] | None = None, comment: str | None = None) -> BulkResult:
        """Source-data verify every complete, unverified form of a visit (None: the casebook, with its adverse
        events) in one transaction (monitors). ``expected`` (key -> version, as listed to the user) must match."""
        self._require(actor, "verify")
        violations: list[Violation] = []
        note = self._text("comment", comment, violations, required=False)
        if violations:
            raise ValidationFailed(violations)
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            plan = self._plan(session, subject, "verify", visit_code)
            self._check_expected(plan, expected)
            if not plan.todo:
                raise self._nothing_to_do(plan)
            forms, aes = self._records_by_key(session, subject)
            ts = utc_now()
            for item in plan.todo:
                why = note or f"source data verified with {plan.scope_label} (version {item.version})"
                if item.kind == "form":
                    self._flag(session, actor, subject, forms[item.key], "verified", True, "verify", why)
                else:
                    self._ae_flag(session, actor, subject, aes[item.key], "verified", True, "verify", why, ts)
            return BulkResult(plan, plan.todo)

    def lock_many(self, actor: Actor, subject_code: str, visit_code: str | None = None, *, confirm: bool = False,
                  reason: str | None = None, expected: Mapping[str, int] | None = None) -> BulkResult:
        """Lock every entered, unlocked form of a visit (None: the casebook, with its adverse events) in one
        transaction (data managers). Refused while any of them has unresolved queries; raises
        :class:`ConfirmationRequired` listing incomplete, unverified or unentered forms unless ``confirm``."""
        self._require(actor, "lock")
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            plan = self._plan(session, subject, "lock", visit_code)
            if plan.blockers:
                raise StateError(f"{len(plan.blockers)} item(s) of {plan.scope_label} have unresolved queries; close "
                                 f"them before locking: " + ", ".join(f"{i.key} ({i.open_queries})"
                                                                      for i in plan.blockers))
            self._check_expected(plan, expected)
            if not plan.todo:
                raise self._nothing_to_do(plan)
            if plan.warnings and not confirm:
                raise ConfirmationRequired(
                    f"{len(plan.warnings)} item(s) of {plan.scope_label} are incomplete, not source-data verified or "
                    "not entered: " + "; ".join(f"{i.key}: {i.note}" for i in plan.warnings)
                    + ". Confirm to lock anyway.", plan.warnings)
            forms, aes = self._records_by_key(session, subject)
            why = (reason or "").strip() or f"locked with {plan.scope_label}"
            ts = utc_now()
            for item in plan.todo:
                if item.kind == "form":
                    self._flag(session, actor, subject, forms[item.key], "locked", True, "lock",
                               f"{why} (form version {item.version})")
                else:
                    self._ae_flag(session, actor, subject, aes[item.key], "locked", True, "lock",
                                  f"{why} (adverse event version {item.version})", ts)
            return BulkResult(plan, plan.todo)

    def sign_many(self, actor: Actor, subject_code: str, visit_code: str | None = None, *, password: str,
                  meaning: str = "approval", expected: Mapping[str, int] | None = None, channel: str = "web",
                  client: str | None = None) -> BulkResult:
        """Sign every complete, unsigned form of a visit (None: the casebook, with its adverse events) with one
        password entry (investigators): one signature row with its own content hash per form, all in one
        transaction. ``expected`` (key -> version, as listed to the user before confirming) must match."""
        self._require(actor, "sign")
        self._check_meaning(meaning)
        with self._sessions() as session:  # refuse before asking for the password: no attempt is spent
            plan = self._plan(session, self._subject(session, actor, subject_code, lock=False), "sign", visit_code)
            self._check_expected(plan, expected)
            if not plan.todo:
                raise self._nothing_to_do(plan)
        signer = self.accounts.reauthenticate(actor, password, purpose=f"signature of {len(plan.todo)} item(s) of "
                                              f"{subject_code} ({plan.scope_label})", channel=channel, client=client)
        with self._sessions.begin() as session:
            subject = self._subject(session, actor, subject_code)
            plan = self._plan(session, subject, "sign", visit_code)
            self._check_expected(plan, expected if expected is not None else {i.key: i.version for i in plan.todo})
            if not plan.todo:
                raise self._nothing_to_do(plan)
            forms, aes = self._records_by_key(session, subject)
            ts = utc_now()
            signatures = [self._sign_form(session, actor, subject, forms[i.key], signer.full_name, meaning, ts)
                          if i.kind == "form" else
                          self._sign_ae(session, actor, subject, aes[i.key], signer.full_name, meaning, ts)
                          for i in plan.todo]
            return BulkResult(plan, plan.todo, signatures)


def _review_item(action: str, kind: str, visit: str | None, form: str | None, ae_seq: int | None, label: str,
                 status: str, version: int, verified: bool, locked: bool, signed: bool,
                 open_queries: int) -> ReviewItem:
    """Whether ``action`` applies to one form or adverse event in its current state, and why not."""
    acts, note, warning = False, "", False
    if status == "not_started":
        note = "not entered"
        warning = action == "lock"  # a visit locked with forms missing: the user must know they stay open
    elif action == "verify":
        acts = status == "complete" and not verified
        note = "already verified" if verified else ("incomplete: only complete forms are verified"
                                                    if status != "complete" else "")
    elif action == "lock":
        acts = not locked and not open_queries
        if locked:
            note = "already locked"
        elif open_queries:
            note = f"{open_queries} unresolved quer{'y' if open_queries == 1 else 'ies'}"
        elif status != "complete":
            note, warning = "incomplete", True
        elif not verified:
            note, warning = "not source-data verified", True
    else:  # sign
        acts = status == "complete" and not signed
        note = "already signed" if signed else ("incomplete: only complete forms are signed"
                                                if status != "complete" else "")
    return ReviewItem(kind, visit, form, ae_seq, label, version, status, verified, locked, signed, open_queries,
                      acts, note, warning)


_PAST = {"answer": "answered", "close": "closed", "reopen": "re-opened"}
