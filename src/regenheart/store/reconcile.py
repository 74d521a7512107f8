"""Data bound to its audit trail: every current value must equal the last audited value for it.

The hash chain proves that the trail was not altered; it says nothing of the data tables. A direct
SQL change of a stored value (say a baseline LVEF 14.4 -> 55.0 in ``item_values``) leaves the
chain intact. :func:`reconcile` replays the trail (the newest audited value per record and field)
and compares it with what the tables hold now: item values, derived scores, visit dates, subject
status and dates, adverse events (data and review flags) and form states. Every difference is named (table, record,
field, stored value, audited value). A value that exists without any audit record, and an audited
value whose row is gone, are differences too.

Values are compared in the trail's own canonical JSON text (:func:`regenheart.store.audit.canonical`),
so a date, a number and a flag compare exactly as they were written.

Audit records are never rewritten: a subject code corrected after screening (audited as entity
``subject``, field ``subject_code``, old -> new) leaves the earlier records under the old code.
:class:`CodeHistory` replays those corrections, so that every record is matched to the subject it was
written for (a code freed by a correction and given to another subject later stays apart).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from regenheart.protocol.models import Protocol
from regenheart.store.audit import ChainReport, canonical, verify_chain
from regenheart.store.db import DatabaseError
from regenheart.store.models import (
    AdverseEvent,
    AuditRecord,
    DerivedValue,
    FormRecord,
    ItemValue,
    Site,
    Subject,
    Visit,
)

# Subject columns that the capture service audits (entity "subject"); the others are keys or derived.
SUBJECT_FIELDS = ("site_code", "status", "screening_date", "consent_date", "eligible", "eligibility_failed",
                  "enrolled_date", "arm_code", "infusion_date", "disposition", "disposition_date",
                  "disposition_reason", "synthetic")
# Form-state flags and the value a form has before anyone set them (never audited until changed).
FORM_FLAGS = {"status": None, "verified": False, "locked": False, "signed": False}
# Adverse-event columns copied from the audited values (``data`` holds every captured field).
AE_COLUMNS = ("term", "category", "onset_date", "stop_date", "ctcae_grade", "related_product",
              "related_procedure", "outcome")
# Adverse-event review flags (migration 0004), audited as entity "ae_state" like form flags; False until set.
AE_FLAGS = ("verified", "locked", "signed")
_ABSENT = object()
# The audited field of a subject-code correction (entity "subject"; record key and subject_code: the new code).
SUBJECT_CODE_FIELD = "subject_code"


@dataclass(frozen=True)
class Mismatch:
    """One stored value that differs from its audit trail."""

    table: str
    record: str
    field: str
    stored: str | None
    audited: str | None

    def __str__(self) -> str:
        audited = "no audit record" if self.audited == _ABSENT_TEXT else f"audited {self.audited}"
        return f"{self.table} {self.record} {self.field}: stored {self.stored}, {audited}"


_ABSENT_TEXT = "(no audit record)"


@dataclass
class ReconcileReport:
    """Result of :func:`reconcile`: values compared and every mismatch."""

    values_checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


@dataclass(frozen=True)
class CodeChange:
    """One audited subject-code correction: at audit sequence number ``seq``, ``old`` became ``new``."""

    seq: int
    old: str
    new: str


class CodeHistory:
    """Every subject-code correction of the trail, in order: which subject an audit record belongs to today."""

    def __init__(self, changes: list[CodeChange]):
        self.changes = changes

    @classmethod
    def load(cls, session: Session) -> CodeHistory:
        rows = session.execute(select(AuditRecord.seq, AuditRecord.old_value, AuditRecord.new_value)
                               .where(AuditRecord.entity == "subject", AuditRecord.field == SUBJECT_CODE_FIELD)
                               .order_by(AuditRecord.seq)).all()
        return cls([CodeChange(seq, json.loads(old), json.loads(new)) for seq, old, new in rows])

    def __bool__(self) -> bool:
        return bool(self.changes)

    def current(self, code: str, seq: int) -> str:
        """The code today of the subject a record written under ``code`` at sequence ``seq`` belongs to."""
        for change in self.changes:
            if change.seq > seq and change.old == code:
                code = change.new
        return code

    def rekey(self, key: str, seq: int) -> str:
        """A record key ('CODE', 'CODE/VISIT/FORM', 'CODE/AE1'...) under the subject's code of today."""
        code, sep, rest = key.partition("/")
        return self.current(code, seq) + sep + rest

    def segments(self, code: str) -> list[tuple[str, int, int | None]]:
        """(code, first seq, end seq exclusive or None) of every stretch of the trail in which records under
        ``code`` or an earlier code belong to the subject whose code is ``code`` today."""
        out: list[tuple[str, int, int | None]] = []
        end: int | None = None
        while True:
            before = [c for c in self.changes if end is None or c.seq < end]
            came = next((c for c in reversed(before) if c.new == code), None)
            # a code freed by an earlier correction: records before that belong to its previous holder
            freed = max((c.seq + 1 for c in before if c.old == code), default=0)
            start = max(came.seq if came else 0, freed)
            out.append((code, start, end))
            if came is None or came.seq < freed:
                return out
            code, end = came.old, came.seq


def _audited(session: Session) -> dict[tuple[str, str, str], str | None]:
    """The newest audited value per (entity, record key, field), replaying the trail in order (record keys under
    the subject codes of today, see :class:`CodeHistory`)."""
    rows = session.execute(
        select(AuditRecord.entity, AuditRecord.record_key, AuditRecord.field, AuditRecord.new_value, AuditRecord.seq)
        .where(AuditRecord.entity.in_(("subject", "visit", "item", "score", "form", "adverse_event", "ae_state",
                                       "site")))
        .order_by(AuditRecord.seq)).all()
    history = CodeHistory.load(session)
    if not history:
        return {(entity, key or "", name or ""): value for entity, key, name, value, _seq in rows}
    return {(entity, history.rekey(key or "", seq), name or ""): value for entity, key, name, value, seq in rows}


class _Comparer:
    def __init__(self, audited: dict[tuple[str, str, str], str | None], report: ReconcileReport):
        self.audited = audited
        self.report = report
        self.seen: set[tuple[str, str, str]] = set()

    def check(self, table: str, entity: str, key: str, name: str, stored: str | None,
              default: str | None = None) -> None:
        """Compare one stored value (canonical text) with the trail; ``default`` = the unaudited start value."""
        self.report.values_checked += 1
        ident = (entity, key, name)
        self.seen.add(ident)
        audited = self.audited.get(ident, _ABSENT)
        if audited is _ABSENT:
            if stored != default:
                self.report.mismatches.append(Mismatch(table, key, name, stored, _ABSENT_TEXT))
        elif audited != stored:
            self.report.mismatches.append(Mismatch(table, key, name, stored, audited))  # type: ignore[arg-type]

    def missing_rows(self, table: str, entity: str) -> None:
        """Audited values (not blank) whose row no longer exists."""
        for (ent, key, name), value in self.audited.items():
            if ent == entity and (ent, key, name) not in self.seen and value is not None:
                self.report.mismatches.append(Mismatch(table, key, name, "(row missing)", value))


def _status_from_items(protocol: Protocol | None, form_code: str, items: dict[str, str | None]) -> str | None:
    """The status capture gives a form on first save: complete when every required field has a value."""
    form = protocol.forms.get(form_code) if protocol is not None else None
    if form is None:
        return None
    done = all(items.get(f.name) not in (None, "null") for f in form.fields if f.required)
    return canonical("complete" if done else "incomplete")


def reconcile(engine: Engine, protocol: Protocol | None = None) -> ReconcileReport:
    """Compare every current value with the last audited value for it (see the module docstring).

    ``protocol`` lets a form status that was never changed after first save (and so never audited
    on its own) be checked against the status its stored items imply.
    """
    report = ReconcileReport()
    with Session(engine) as session, session.begin():
        cmp = _Comparer(_audited(session), report)
        codes: dict[int, str] = {}
        for row in session.execute(select(Subject.id, Subject.subject_code,
                                          *[getattr(Subject, n) for n in SUBJECT_FIELDS])).all():
            codes[row[0]] = row[1]
            for name, value in zip(SUBJECT_FIELDS, row[2:], strict=True):
                default = canonical(False) if name == "synthetic" else None
                cmp.check("subjects", "subject", row[1], name, canonical(value), default)
            # the code itself: audited only when corrected (until then it is the key of every record)
            cmp.check("subjects", "subject", row[1], SUBJECT_CODE_FIELD, canonical(row[1]), canonical(row[1]))
        cmp.missing_rows("subjects", "subject")

        for subject_id, visit_code, visit_date in session.execute(
                select(Visit.subject_id, Visit.visit_code, Visit.visit_date)).all():
            cmp.check("visits", "visit", f"{codes[subject_id]}/{visit_code}", "visit_date", canonical(visit_date))
        cmp.missing_rows("visits", "visit")

        records = session.execute(select(FormRecord.id, FormRecord.subject_id, FormRecord.visit_code,
                                         FormRecord.form_code, *[getattr(FormRecord, n) for n in FORM_FLAGS])).all()
        keys = {r[0]: f"{codes[r[1]]}/{r[2]}/{r[3]}" for r in records}
        items_of: dict[int, dict[str, str | None]] = {}
        for record_id, name, value in session.execute(
                select(ItemValue.record_id, ItemValue.field, ItemValue.value)).all():
            items_of.setdefault(record_id, {})[name] = value
            cmp.check("item_values", "item", keys[record_id], name, value)
        cmp.missing_rows("item_values", "item")
        for r in records:
            for name, stored in zip(FORM_FLAGS, r[4:], strict=True):
                default = canonical(FORM_FLAGS[name])
                if name == "status":
                    default = _status_from_items(protocol, r[3], items_of.get(r[0], {})) or canonical(stored)
                cmp.check("form_records", "form", keys[r[0]], name, canonical(stored), default)
        for record_id, name, value in session.execute(
                select(DerivedValue.record_id, DerivedValue.name, DerivedValue.value)).all():
            cmp.check("derived_values", "score", keys[record_id], name,
                      canonical(None if value is None else float(value)))
        cmp.missing_rows("derived_values", "score")

        columns = [getattr(AdverseEvent, c) for c in AE_COLUMNS]
        flags = [getattr(AdverseEvent, f) for f in AE_FLAGS]
        for row in session.execute(select(AdverseEvent.subject_id, AdverseEvent.ae_seq, *flags)).all():
            for name, stored in zip(AE_FLAGS, row[2:], strict=True):
                cmp.check("adverse_events", "ae_state", f"{codes[row[0]]}/AE{row[1]}", name, canonical(stored),
                          canonical(False))
        cmp.missing_rows("adverse_events", "ae_state")
        for row in session.execute(select(AdverseEvent.subject_id, AdverseEvent.ae_seq, AdverseEvent.data,
                                          AdverseEvent.serious, *columns)).all():
            key = f"{codes[row[0]]}/AE{row[1]}"
            try:
                data: dict[str, Any] = json.loads(row[2])
            except ValueError:
                report.mismatches.append(Mismatch("adverse_events", key, "data", row[2], "(valid JSON of the values)"))
                continue
            for name, value in data.items():
                cmp.check("adverse_events", "adverse_event", key, name, canonical(value))
            # the typed columns must say what the audited data say
            for column, value in zip(AE_COLUMNS + ("serious",), row[4:] + (row[3],), strict=True):
                expected = canonical(data.get("serious") == "Y") if column == "serious" else canonical(data.get(column))
                if canonical(value) != expected:
                    report.mismatches.append(Mismatch("adverse_events", key, column, canonical(value), expected))
        cmp.missing_rows("adverse_events", "adverse_event")

        # Sites administered in the database (name, active): seeded, added and changed only through audit.
        for code, name, active in session.execute(select(Site.code, Site.name, Site.active)).all():
            cmp.check("sites", "site", code, "name", canonical(name))
            cmp.check("sites", "site", code, "active", canonical(bool(active)))
        cmp.missing_rows("sites", "site")
    return report


@dataclass(frozen=True)
class IntegrityReport:
    """The audit chain and the reconciliation of the data with it."""

    chain: ChainReport
    reconciliation: ReconcileReport

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.reconciliation.ok

    def summary(self, limit: int = 10) -> str:
        """One paragraph saying what is wrong (empty when all is well)."""
        parts = []
        if not self.chain.ok:
            parts.append(f"audit trail does not verify at record {self.chain.first_bad_seq}: {self.chain.problem}")
        bad = self.reconciliation.mismatches
        if bad:
            shown = "; ".join(str(m) for m in bad[:limit])
            more = f" (and {len(bad) - limit} more)" if len(bad) > limit else ""
            parts.append(f"{len(bad)} stored value(s) differ from the audit trail: {shown}{more}")
        return "; ".join(parts)


class IntegrityError(DatabaseError):
    """The data cannot be trusted: the audit chain is broken or the tables disagree with it."""


def check_integrity(engine: Engine, protocol: Protocol | None = None) -> IntegrityReport:
    """Verify the hash chain and reconcile every current value with the trail."""
    return IntegrityReport(verify_chain(engine), reconcile(engine, protocol))


def require_integrity(engine: Engine, protocol: Protocol | None = None, purpose: str = "analysed") -> IntegrityReport:
    """Raise :class:`IntegrityError` (saying why) unless the chain verifies and the data reconcile."""
    report = check_integrity(engine, protocol)
    if not report.ok:
        raise IntegrityError(f"the database cannot be {purpose}: {report.summary()}. "
                             "Run 'regenheart audit verify' for the full list.")
    return report
