"""The import engine: write a :class:`~regenheart.exchange.records.SourceData` through the capture service.

Every value travels the path of typed data: :class:`~regenheart.capture.service.CaptureService`
calls (screen, save forms, evaluate eligibility, enrol, adverse events, disposition) as the
importing user, with the same edit checks, visit order and windows, consent-first rule and
eligibility evaluation, and the same audit records. The audit reason names the import, the source
file and its SHA-256; derived scores are computed by capture from the imported items.

Atomicity: the whole import runs in one transaction (:meth:`CaptureService.unit_of_work`) and each
subject in a savepoint, so a subject with any refused value is not written at all while the others
are; ``all_or_nothing`` discards everything when anything was refused; ``dry_run`` runs every check
and discards everything. A source file that could not be read completely (a problem not tied to a
subject) writes nothing.

Re-import: values are compared with what is stored first; equal values are not written (no audit
records), changed values are written as audited changes with the import's reason, and values in
locked or signed forms are refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from regenheart.capture.errors import CaptureError, Conflict, NotFound, PermissionDenied, StateError, ValidationFailed
from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService, UnitOfWork
from regenheart.capture.validation import coerce_value
from regenheart.exchange.records import (
    AdverseEventEntry,
    FormEntry,
    Origin,
    Refusal,
    SourceData,
    SourceValue,
    SubjectEntry,
    Unmapped,
)
from regenheart.protocol.models import FieldDef, Protocol
from regenheart.store.audit import canonical
from regenheart.store.models import AdverseEvent, AuditRecord, FormRecord, ItemValue, Subject, Visit

# progress(subjects done, subjects in total, subject code)
Progress = Callable[[int, int, str], None]

_ERROR_RULES: dict[type[CaptureError], str] = {
    StateError: "state", NotFound: "not_found", PermissionDenied: "permission", Conflict: "conflict",
}
_SCREENING_STATES = ("screening", "eligible", "screen_failed")


@dataclass
class Counts:
    """How many were written (or would be, in a dry run), found unchanged, and refused."""

    written: int = 0
    unchanged: int = 0
    refused: int = 0

    def add(self, other: Counts) -> None:
        self.written += other.written
        self.unchanged += other.unchanged
        self.refused += other.refused


@dataclass
class ImportReport:
    """Outcome of one import: what was written, unchanged and refused, and every refusal."""

    source: str
    sha256: str
    format: str
    reason: str
    dry_run: bool = False
    all_or_nothing: bool = False
    committed: bool = False
    subjects: Counts = field(default_factory=Counts)
    forms: Counts = field(default_factory=Counts)     # visit forms, adverse-event records, dispositions
    values: Counts = field(default_factory=Counts)    # single values (items, subject-level facts)
    audit_records: int = 0                            # written (or that would have been, in a dry run)
    warnings: int = 0                                 # soft checks (out-of-window visits, ...) on written data
    refusals: list[Refusal] = field(default_factory=list)
    unmapped: list[Unmapped] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing was refused and every source name mapped to the protocol."""
        return not self.refusals and not self.unmapped

    def rows(self) -> list[dict[str, Any]]:
        """The report rows (columns :attr:`Refusal.REPORT_COLUMNS`): refusals, then unmapped names."""
        rows = [r.as_row() for r in self.refusals]
        for u in self.unmapped:
            rows.append(Refusal(u.origin, "unmapped", f"{u.what}: {u.note}").as_row())
        return rows


def import_reason(source: SourceData) -> str:
    """The audit reason of every record an import writes: format, source file name and SHA-256."""
    return f"import {source.format} {Path(source.source).name} sha256={source.sha256}"


# ---------------------------------------------------------------------------------------------
# What is stored for a subject (read in the import's transaction, so earlier writes are visible).


@dataclass(frozen=True)
class _StoredSubject:
    """The subject row as it was before this import touched it (plain values, not a live ORM object)."""

    site_code: str
    status: str
    screening_date: dt.date
    consent_date: dt.date | None
    eligible: bool | None
    enrolled_date: dt.date | None
    arm_code: str | None
    disposition: str | None
    disposition_date: dt.date | None
    disposition_reason: str | None


@dataclass(frozen=True)
class _StoredForm:
    locked: bool
    signed: bool


@dataclass
class _Stored:
    subject: _StoredSubject | None = None
    visits: dict[str, dt.date] = field(default_factory=dict)
    forms: dict[tuple[str, str], _StoredForm] = field(default_factory=dict)
    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    adverse_events: dict[int, dict[str, Any]] = field(default_factory=dict)


def _load_stored(session: Session, code: str) -> _Stored:
    subject = session.scalars(select(Subject).where(Subject.subject_code == code)).one_or_none()
    if subject is None:
        return _Stored()
    stored = _Stored(_StoredSubject(**{f.name: getattr(subject, f.name)
                                       for f in dataclasses.fields(_StoredSubject)}))
    stored.visits = {v.visit_code: v.visit_date for v in session.scalars(
        select(Visit).where(Visit.subject_id == subject.id))}
    records = session.scalars(select(FormRecord).where(FormRecord.subject_id == subject.id)).all()
    by_id = {r.id: r for r in records}
    for record in records:
        stored.forms[(record.visit_code, record.form_code)] = _StoredForm(record.locked, record.signed)
        stored.items[(record.visit_code, record.form_code)] = {}
    if by_id:
        for item in session.scalars(select(ItemValue).where(ItemValue.record_id.in_(list(by_id)))):
            record = by_id[item.record_id]
            stored.items[(record.visit_code, record.form_code)][item.field] = \
                None if item.value is None else json.loads(item.value)
    for ae in session.scalars(select(AdverseEvent).where(AdverseEvent.subject_id == subject.id)):
        stored.adverse_events[ae.ae_seq] = CaptureService.adverse_event_values(ae)
    return stored


def _blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and raw.strip() == "")


def _as_date(raw: Any) -> dt.date | None:
    """The date a source value denotes, or None when it is blank or not an ISO 8601 date."""
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    if _blank(raw):
        return None
    try:
        return dt.date.fromisoformat(str(raw).strip())
    except ValueError:
        return None


def _same(protocol: Protocol, definition: FieldDef, raw: Any, stored: Any) -> bool:
    """Whether a source value equals the stored one once typed as capture would type it."""
    value, problem = coerce_value(protocol, definition, raw)
    if problem is not None:
        return False
    return canonical(value) == canonical(stored)


# ---------------------------------------------------------------------------------------------
# One subject.


class _SubjectImport:
    """Writes one subject's data through capture; collects refusals and counts (tentative until commit)."""

    def __init__(self, service: CaptureService, work: UnitOfWork, actor: Actor, entry: SubjectEntry, reason: str,
                 stored: _Stored, refusals: list[Refusal]):
        self.service = service
        self.work = work
        self.protocol = service.protocol
        self.actor = actor
        self.entry = entry
        self.reason = reason
        self.stored = stored
        self.refusals = refusals
        self.forms = Counts()
        self.values = Counts()
        self.warnings = 0
        self.skipped = 0  # records not checked because data they depend on were refused
        self.changed_screening = False

    # ---------------------------------------------------------------- refusals
    def refuse(self, origin: Origin, rule: str, message: str, *, visit: str | None = None, form: str | None = None,
               field_name: str | None = None, value: Any = None) -> None:
        self.refusals.append(Refusal(origin, rule, message, self.entry.code, visit, form, field_name, value))

    def _from_error(self, exc: CaptureError, origin: Origin, values: dict[str, SourceValue], *,
                    visit: str | None = None, form: str | None = None,
                    visit_date: SourceValue | None = None) -> None:
        if isinstance(exc, ValidationFailed):
            for v in exc.violations:
                source = values.get(v.field) or (visit_date if v.field == "visit_date" else None)
                self.refuse(source.origin if source else origin, v.rule, v.message, visit=visit, form=form,
                            field_name=v.field, value=source.raw if source else v.value)
            return
        if self.refusals and isinstance(exc, (StateError, NotFound)):
            self.skipped += 1  # a consequence of an earlier refusal (not enrolled, no infusion, ...)
            return
        self.refuse(origin, _ERROR_RULES.get(type(exc), "refused"), str(exc), visit=visit, form=form)

    def _attempt(self, call: Callable[[], Any], origin: Origin, values: dict[str, SourceValue], **where: Any) -> Any:
        # While the subject is clean, a refused call rolls the whole subject back, so calls need no
        # savepoint of their own; after a refusal, each call gets one so later checks see clean data.
        self.work.call_savepoints = bool(self.refusals)
        try:
            return call()
        except CaptureError as exc:
            self._from_error(exc, origin, values, **where)
            return None

    # ---------------------------------------------------------------- steps
    def run(self) -> None:
        entry, stored = self.entry, self.stored
        if stored.subject is not None and not self.actor.sees_site(stored.subject.site_code):
            self.refuse(entry.origin, "not_found", f"subject {entry.code} not found")
            return
        if not self._screen():
            return
        visit_order = {code: i for i, code in enumerate(self.protocol.visit_codes)}
        placed = [f for f in entry.forms if self._placed(f)]  # every unknown visit or form is listed first
        forms = sorted(placed, key=lambda f: visit_order[f.visit])
        baseline = self.protocol.baseline_visit.code
        for form in forms:
            if form.visit == baseline:
                self._form(form)
        later = [f for f in forms if f.visit != baseline]
        if self.refusals:
            self._skip(len(later) + len(entry.adverse_events) + (entry.disposition is not None))
            return
        if not self._eligibility_and_enrolment():
            self._skip(len(later) + len(entry.adverse_events) + (entry.disposition is not None))
            return
        for form in later:
            self._form(form)
        for number, ae in enumerate(entry.adverse_events, start=1):
            self._adverse_event(ae, number)
        if entry.disposition is not None:
            self._disposition()

    def _skip(self, count: int) -> None:
        self.skipped += count

    def _screen(self) -> bool:
        entry, subject = self.entry, self.stored.subject
        site = entry.site.raw if entry.site and not _blank(entry.site.raw) else None
        if site is None and len(self.protocol.study.sites) == 1:
            site = self.protocol.study.sites[0].code
        site = None if site is None else str(site).strip()
        facts = {"site_code": (entry.site, site),
                 "screening_date": (entry.screening_date, entry.screening_date.raw if entry.screening_date else None),
                 "consent_date": (entry.consent_date, entry.consent_date.raw if entry.consent_date else None)}
        if subject is None:
            if entry.screening_date is None and entry.consent_date is None:
                self.refuse(entry.origin, "unknown_subject",
                            f"subject {entry.code} is not registered in the database and the source has no "
                            "screening row for it (site, screening date, consent date)")
                return False
            values = {name: source for name, (source, _) in facts.items() if source is not None}
            synthetic = entry.synthetic is not None and str(entry.synthetic.raw).strip().upper() in ("Y", "TRUE", "1")
            ok = self._attempt(lambda: self.service.screen_subject(
                self.actor, entry.code, site, facts["screening_date"][1], facts["consent_date"][1],
                synthetic=synthetic) or True,
                entry.origin, values)
            if ok:
                self.values.written += 3
            return bool(ok)
        for name, (source, raw) in facts.items():
            if source is None or _blank(source.raw):
                continue
            stored = getattr(subject, name)
            same = (str(raw) == stored) if name == "site_code" else (_as_date(raw) == stored)
            if same:
                self.values.unchanged += 1
            else:
                self.refuse(source.origin, "immutable",
                            f"differs from the stored value {canonical(stored)}; {name.replace('_', ' ')} of a "
                            "registered subject cannot be changed by an import", field_name=name, value=source.raw)
        return not self.refusals

    def _placed(self, form: FormEntry) -> bool:
        """Whether the form's visit is a protocol visit that collects the form; else a refusal."""
        if form.visit not in self.protocol.visit_codes:
            self.refuse(form.origin, "unknown_visit", f"visit {form.visit} is not in the protocol",
                        visit=form.visit, form=form.form)
        elif form.form not in self.protocol.forms or form.form not in self.protocol.visit(form.visit).forms:
            self.refuse(form.origin, "unknown_form", f"form {form.form} is not collected at visit {form.visit}",
                        visit=form.visit, form=form.form)
        else:
            return True
        self.forms.refused += 1
        return False

    def _form(self, form: FormEntry) -> None:
        protocol = self.protocol
        definition = protocol.forms[form.form]
        key = (form.visit, form.form)
        record = self.stored.forms.get(key)
        stored_items = self.stored.items.get(key, {})
        known = {f.name: f for f in definition.fields}
        data: dict[str, Any] = {}
        unchanged = 0
        for name, source in form.values.items():
            fdef = known.get(name)
            if record is None:
                if not _blank(source.raw):
                    data[name] = source.raw
            elif fdef is not None and _same(protocol, fdef, source.raw, stored_items.get(name)):
                unchanged += 1  # (a blank source value equals a stored null)
            else:
                data[name] = source.raw
        visit_date = self._visit_date(form)
        if record is not None and not data and visit_date is None:
            self.forms.unchanged += 1
            self.values.unchanged += unchanged
            return
        if record is not None and data and (record.locked or record.signed):
            state = "locked" if record.locked else "signed"
            for name in data:
                self.refuse(form.values[name].origin, state,
                            f"the {form.form} form at {form.visit} is {state}; its stored value "
                            f"{canonical(stored_items.get(name))} is not overwritten", visit=form.visit,
                            form=form.form, field_name=name, value=form.values[name].raw)
            self.forms.refused += 1
            self.values.refused += len(data)
            return
        if not data:  # only the visit date differs: a correction of the visit, audited with the reason
            ok = self._attempt(lambda: self.service.record_visit(
                self.actor, self.entry.code, form.visit, form.visit_date.raw, reason=self.reason) or True,  # type: ignore[union-attr]
                form.origin, {}, visit=form.visit, form=form.form, visit_date=form.visit_date)
            if ok:
                self.stored.visits[form.visit] = _as_date(form.visit_date.raw)  # type: ignore[union-attr,assignment]
                self.values.written += 1
            self.forms.unchanged += 1
            self.values.unchanged += unchanged
            return
        result = self._attempt(lambda: self.service.save_form(
            self.actor, self.entry.code, form.visit, form.form, data, visit_date=visit_date,
            reason=self.reason if record is not None or form.visit in self.stored.visits else None),
            form.origin, form.values, visit=form.visit, form=form.form, visit_date=form.visit_date)
        if result is None:
            self.forms.refused += 1
            self.values.refused += len(data)
            return
        if visit_date is not None:
            self.stored.visits[form.visit] = _as_date(visit_date)  # type: ignore[assignment]
        if form.visit == self.protocol.baseline_visit.code and result.changed:
            self.changed_screening = True
        self.forms.written += 1
        self.values.written += len(result.changed)
        self.values.unchanged += unchanged + (len(data) - len(result.changed))
        self.warnings += len(result.warnings)

    def _visit_date(self, form: FormEntry) -> Any:
        """The visit date to pass with a form: only when the visit is new or its date changes."""
        if form.visit_date is None or _blank(form.visit_date.raw):
            return None
        date = _as_date(form.visit_date.raw)
        if date is not None and self.stored.visits.get(form.visit) == date:
            return None
        return form.visit_date.raw

    def _eligibility_and_enrolment(self) -> bool:
        entry = self.entry
        subject = self.stored.subject
        status = subject.status if subject is not None else "screening"
        stated = entry.stated_eligible
        stated_value = None if stated is None or _blank(stated.raw) else str(stated.raw).strip().upper()
        if stated_value is not None and stated_value not in ("Y", "N"):
            self.refuse(stated.origin, "codelist", "the stated eligibility outcome must be Y or N",  # type: ignore[union-attr]
                        field_name="eligible", value=stated.raw)  # type: ignore[union-attr]
            return False
        wants_enrol = entry.enrolled_date is not None and not _blank(entry.enrolled_date.raw)
        evaluate = (stated_value is not None or wants_enrol) and (
            status == "screening" or (status in _SCREENING_STATES and self.changed_screening))
        outcome_eligible = None if subject is None else subject.eligible
        if evaluate:
            outcome = self._attempt(lambda: self.service.evaluate_eligibility(self.actor, entry.code),
                                    entry.origin, {})
            if outcome is None:
                return False
            outcome_eligible = outcome.eligible
            failed = outcome.failed + [f"{c} (not assessed)" for c in outcome.not_assessed]
            if stated_value is not None and (stated_value == "Y") != outcome.eligible:
                verdict = "eligible" if outcome.eligible else f"not eligible (failed: {', '.join(failed)})"
                self.refuse(stated.origin, "eligibility",  # type: ignore[union-attr]
                            f"the source states eligible={stated_value} but the protocol's criteria on the "
                            f"screening data find the subject {verdict}", field_name="eligible",
                            value=stated.raw)  # type: ignore[union-attr]
                return False
            self.values.written += 1
        elif stated_value is not None:
            if outcome_eligible is not None and (stated_value == "Y") != outcome_eligible:
                self.refuse(stated.origin, "eligibility",  # type: ignore[union-attr]
                            f"the source states eligible={stated_value} but the database holds "
                            f"eligible={'Y' if outcome_eligible else 'N'}", field_name="eligible", value=stated.raw)  # type: ignore[union-attr]
                return False
            self.values.unchanged += 1
        if not wants_enrol:
            return True
        arm = entry.arm.raw if entry.arm is not None and not _blank(entry.arm.raw) else None
        arm = None if arm is None else str(arm).strip()
        if evaluate:
            current = "eligible" if outcome_eligible else "screen_failed"
        else:
            current = self.stored.subject.status if self.stored.subject is not None else "screening"
        if current == "eligible":
            values = {"enrolled_date": entry.enrolled_date}
            if entry.arm is not None:
                values["arm_code"] = entry.arm
            done = self._attempt(lambda: self.service.enrol(self.actor, entry.code, entry.enrolled_date.raw, arm),  # type: ignore[union-attr]
                                 entry.origin, values)  # type: ignore[arg-type]
            if done is None:
                return False
            self.values.written += 1 + (arm is not None)
            return True
        if current in ("screening", "screen_failed"):
            self.refuse(entry.enrolled_date.origin, "eligibility",  # type: ignore[union-attr]
                        f"the source enrols subject {entry.code} but the protocol's criteria on the screening "
                        "data find the subject not eligible", field_name="enrolled_date",
                        value=entry.enrolled_date.raw)  # type: ignore[union-attr]
            return False
        subject = self.stored.subject
        assert subject is not None
        if _as_date(entry.enrolled_date.raw) != subject.enrolled_date:  # type: ignore[union-attr]
            self.refuse(entry.enrolled_date.origin, "immutable",  # type: ignore[union-attr]
                        f"differs from the stored enrolment date {subject.enrolled_date}; an import cannot "
                        "change the enrolment", field_name="enrolled_date", value=entry.enrolled_date.raw)  # type: ignore[union-attr]
            return False
        if arm is not None and arm != subject.arm_code:
            self.refuse(entry.arm.origin, "immutable",  # type: ignore[union-attr]
                        f"differs from the stored arm {subject.arm_code}; an import cannot change the arm",
                        field_name="arm_code", value=arm)
            return False
        self.values.unchanged += 1 + (arm is not None)
        return True

    def _adverse_event(self, ae: AdverseEventEntry, number: int) -> None:
        seq = ae.seq if ae.seq is not None else number
        known = {f.name: f for f in self.protocol.adverse_events.fields}
        stored = self.stored.adverse_events.get(seq)
        if stored is None:
            data = {k: v.raw for k, v in ae.values.items() if not _blank(v.raw)}
            expected = max(self.stored.adverse_events, default=0) + 1
            if seq != expected:
                self.refuse(ae.origin, "ae_seq", f"adverse event number {seq} does not follow the stored and "
                            f"earlier events (next number is {expected}); numbers must be consecutive",
                            form="adverse_events", field_name="ae_seq", value=seq)
                self.forms.refused += 1
                return
            got = self._attempt(lambda: self.service.record_adverse_event(self.actor, self.entry.code, data),
                                ae.origin, ae.values, form="adverse_events")
            if got is None:
                self.forms.refused += 1
                self.values.refused += len(data)
                return
            self.stored.adverse_events[got] = {}
            self.forms.written += 1
            self.values.written += len(data)
            return
        changes: dict[str, Any] = {}
        unchanged = 0
        for name, source in ae.values.items():
            fdef = known.get(name)
            if fdef is not None and _same(self.protocol, fdef, source.raw, stored.get(name)):
                unchanged += 1
            else:
                changes[name] = source.raw
        self.values.unchanged += unchanged
        if not changes:
            self.forms.unchanged += 1
            return
        got = self._attempt(lambda: self.service.update_adverse_event(
            self.actor, self.entry.code, seq, changes, reason=self.reason), ae.origin, ae.values, form="adverse_events")
        if got is None:
            self.forms.refused += 1
            self.values.refused += len(changes)
            return
        self.forms.written += 1
        self.values.written += len(changes)

    def _disposition(self) -> None:
        entry = self.entry
        values = entry.disposition or {}
        origin = entry.disposition_origin or entry.origin
        subject = self.stored.subject
        stored: dict[str, Any] = {}
        if subject is not None and subject.disposition:
            stored = {"status": subject.disposition, "date": subject.disposition_date,
                      "reason": subject.disposition_reason}
        known = {f.name: f for f in self.protocol.disposition.fields}
        if stored:
            changes = {k: v.raw for k, v in values.items()
                       if not (k in known and _same(self.protocol, known[k], v.raw, stored.get(k)))}
            if not changes:
                self.forms.unchanged += 1
                self.values.unchanged += len(values)
                return
        else:
            changes = {k: v.raw for k, v in values.items() if not _blank(v.raw)}
        done = self._attempt(lambda: self.service.record_disposition(
            self.actor, entry.code, changes, reason=self.reason if stored else None) or True,
            origin, values, form="disposition")
        if done is None:
            self.forms.refused += 1
            self.values.refused += len(changes)
            return
        self.forms.written += 1
        self.values.written += len(changes)
        self.values.unchanged += len(values) - len(changes)


# ---------------------------------------------------------------------------------------------
# The import.


def _audit_seq(session: Session) -> int:
    """The newest audit record's number (the chain head row is written only when the unit commits)."""
    return session.scalar(select(func.max(AuditRecord.seq))) or 0


def _duplicate_codes(subjects: Iterable[SubjectEntry]) -> set[str]:
    seen: set[str] = set()
    duplicates: set[str] = set()
    for entry in subjects:
        (duplicates if entry.code in seen else seen).add(entry.code)
    return duplicates


def import_source(service: CaptureService, actor: Actor, source: SourceData, *, dry_run: bool = False,
                  all_or_nothing: bool = False, progress: Progress | None = None) -> ImportReport:
    """Write ``source`` through ``service`` as ``actor``; return what was written, unchanged and refused.

    A subject with any refused value is not written (its savepoint is rolled back); the others are.
    ``all_or_nothing``: nothing is written when anything is refused. ``dry_run``: every check runs
    on the real path and everything is rolled back. Read problems of the source that concern no
    particular subject (an unreadable file) write nothing. Unmapped source names are reported.
    """
    started = time.perf_counter()
    reason = import_reason(source)
    report = ImportReport(source=source.source, sha256=source.sha256, format=source.format, reason=reason,
                          dry_run=dry_run, all_or_nothing=all_or_nothing, unmapped=list(source.unmapped))
    problems: dict[str | None, list[Refusal]] = defaultdict(list)
    for problem in source.problems:
        problems[problem.subject].append(problem)
    blocking = problems.pop(None, [])
    report.refusals.extend(blocking)
    duplicates = _duplicate_codes(source.subjects)
    total = len(source.subjects)
    with _outside_full_collections(), service.unit_of_work(reason=reason) as work:
        audit_before = _audit_seq(work.session)
        for done, entry in enumerate(source.subjects, start=1):
            refusals: list[Refusal] = list(problems.pop(entry.code, []))
            if entry.code in duplicates:
                refusals.append(Refusal(entry.origin, "duplicate", f"subject {entry.code} appears more than once "
                                        "in the source", subject=entry.code))
            job = _SubjectImport(service, work, actor, entry, reason, _load_stored(work.session, entry.code), refusals)
            rolled_back = bool(refusals)
            if not rolled_back:
                try:
                    with work.savepoint():
                        job.run()
                        if refusals:
                            raise _SubjectRefused
                except _SubjectRefused:
                    rolled_back = True
            if job.skipped:
                refusals.append(Refusal(entry.origin, "not_checked",
                                        f"{job.skipped} later record(s) of this subject depend on refused data "
                                        "and were not checked", subject=entry.code))
            _tally(report, job, rolled_back)
            report.refusals.extend(refusals)
            if done % 25 == 0:
                work.release_memory()
            if progress is not None:
                progress(done, total, entry.code)
        for leftover in problems.values():  # problems of subjects the reader could not build
            report.refusals.extend(leftover)
            report.subjects.refused += 1
        report.audit_records = _audit_seq(work.session) - audit_before
        if dry_run or blocking or (all_or_nothing and report.refusals):
            work.discard()
            report.committed = False
        else:
            report.committed = True
    if not report.committed and not dry_run:
        # nothing was written: what was valid counts as refused with the rest
        for counts in (report.subjects, report.forms, report.values):
            counts.refused += counts.written
            counts.written = 0
        report.audit_records = 0
    report.seconds = time.perf_counter() - started
    return report


@contextmanager
def _outside_full_collections() -> Iterator[None]:
    """Keep what exists before the import (the whole source: hundreds of thousands of small objects that
    live to its end) out of the garbage collector's passes while it runs; each full pass would walk all
    of them again (about a tenth of a large import's time). They are handed back to it afterwards."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _SubjectRefused(Exception):
    """Raised inside a subject's savepoint to roll it back."""


def _tally(report: ImportReport, job: _SubjectImport, rolled_back: bool) -> None:
    if rolled_back:
        report.subjects.refused += 1
        report.forms.refused += job.forms.written + job.forms.refused
        report.forms.unchanged += job.forms.unchanged
        report.values.refused += job.values.written + job.values.refused
        report.values.unchanged += job.values.unchanged
        return
    report.forms.add(job.forms)
    report.values.add(job.values)
    report.warnings += job.warnings
    if job.forms.written or job.values.written:
        report.subjects.written += 1
    else:
        report.subjects.unchanged += 1
