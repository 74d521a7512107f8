"""Study-wide read model of the EDC's daily work: record status, what is due or overdue, data quality,
and the queries worklist.

Reads only. One query per table (subjects, visits, form records, item values, queries), then pure
Python: :func:`visit_timing`, :func:`cell_state` and :func:`subject_grid` know nothing of the
database and are tested on plain values. Every function takes the acting user and shows only the
subjects of its site. Dates are ``datetime.date``; ages and study days are in days.

Timing (day 0 = infusion, ``protocol/schedule.py``): a visit is *due* once its window has opened and
*overdue* once the window closed without the visit's forms. Before the infusion date is known only
the baseline visit (from screening) and the day-0 visit (from enrolment) can be due; a subject
enrolled while baseline forms are missing has an overdue baseline. Screen failures and visits whose
window opens after the subject's end of study are *not due*.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from regenheart.capture.common import UNRESOLVED, require
from regenheart.capture.permissions import Actor
from regenheart.capture.validation import validate_record
from regenheart.protocol.models import Protocol
from regenheart.protocol.models import Visit as VisitDef
from regenheart.store.audit import canonical
from regenheart.store.models import AuditRecord, DataQuery, FormRecord, ItemValue, QueryMessage, Subject, Visit
from regenheart.store.reconcile import CodeHistory

# Cell states, from "nothing expected yet" to "frozen"; the order is the legend's and the sort's.
CELL_STATES = ("not_due", "due", "overdue", "incomplete", "complete", "verified", "signed", "locked")
CELL_LABELS = {"not_due": "not due", "due": "due", "overdue": "overdue", "incomplete": "incomplete",
               "complete": "complete", "verified": "verified", "signed": "signed", "locked": "locked"}
MISSING_STATES = ("due", "overdue")
ENDED = ("completed", "discontinued", "screen_failed")
ENROLLED = ("enrolled", "infused", "completed", "discontinued")


# ---------------------------------------------------------------------------------------------- plain rows
@dataclass(frozen=True)
class SubjectFacts:
    """What the schedule needs of a subject (dates as ``datetime.date``)."""

    id: int
    code: str
    site: str
    status: str
    screening_date: dt.date | None = None
    enrolled_date: dt.date | None = None
    infusion_date: dt.date | None = None
    disposition_date: dt.date | None = None


@dataclass(frozen=True)
class RecordFacts:
    status: str  # incomplete, complete
    verified: bool = False
    locked: bool = False
    signed: bool = False
    version: int = 1


@dataclass(frozen=True)
class VisitFacts:
    visit_date: dt.date
    study_day: int | None
    in_window: bool | None


@dataclass(frozen=True)
class Timing:
    """Whether a visit is expected on ``today``: ``not_due``, ``due`` or ``overdue``, with its dates."""

    state: str
    window_start: dt.date | None
    window_end: dt.date | None
    target: dt.date | None
    reason: str


@dataclass
class StudyRows:
    """One read of the visible part of the study (see :func:`load_study`)."""

    subjects: list[SubjectFacts]
    visits: dict[tuple[int, str], VisitFacts] = field(default_factory=dict)
    records: dict[tuple[int, str, str], RecordFacts] = field(default_factory=dict)
    open_queries: dict[tuple[int, str, str], int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- pure schedule logic
def anchors(protocol: Protocol) -> tuple[str, str]:
    """(baseline visit code, day-0 visit code) of a protocol."""
    return protocol.baseline_visit.code, next(v.code for v in protocol.visits if v.day == 0)


def visit_timing(protocol: Protocol, visit: VisitDef, subject: SubjectFacts, today: dt.date,
                 visit_recorded: bool = False, visit_anchors: tuple[str, str] | None = None) -> Timing:
    """Is ``visit`` expected of ``subject`` on ``today``? (window in days relative to day 0 = infusion).

    ``visit_anchors``: :func:`anchors` of the protocol when the caller has it already.
    """
    baseline, day0 = visit_anchors or anchors(protocol)
    infusion = subject.infusion_date
    start = end = target = None
    if infusion is not None:
        start = infusion + dt.timedelta(days=visit.window[0])
        end = infusion + dt.timedelta(days=visit.window[1])
        target = infusion + dt.timedelta(days=visit.day)
    if subject.status == "screen_failed" and visit.code != baseline:
        return Timing("not_due", start, end, target, "screen failure: no visits after screening")
    if subject.disposition_date is not None and start is not None and start > subject.disposition_date:
        return Timing("not_due", start, end, target, f"window opens after the end of study ({subject.disposition_date})")
    if subject.disposition_date is not None and infusion is None and visit.code != baseline:
        return Timing("not_due", start, end, target, "ended before day 0")
    if visit.code == baseline and infusion is None:
        if subject.status == "screen_failed":
            return Timing("not_due", start, end, target, "screen failure")
        if subject.enrolled_date is not None or subject.status in ENROLLED:
            return Timing("overdue", start, end, target, "the subject was enrolled: baseline forms are overdue")
        return Timing("due", start, end, target, "screening in progress")
    if infusion is None:
        if visit.code == day0 and subject.status in ENROLLED:
            return Timing("due", start, end, target, "enrolled: infusion (day 0) to be recorded")
        return Timing("not_due", start, end, target, "dates known once day 0 (infusion) is recorded")
    assert start is not None and end is not None
    if today > end:
        return Timing("overdue", start, end, target, f"window closed on {end}")
    if today >= start or visit_recorded:
        return Timing("due", start, end, target, f"window {start} to {end}")
    return Timing("not_due", start, end, target, f"window opens on {start}")


def cell_state(record: RecordFacts | None, timing: Timing) -> str:
    """State of one form of one visit: the record's workflow state, else the visit's timing."""
    if record is None:
        return timing.state
    if record.locked:
        return "locked"
    if record.signed:
        return "signed"
    if record.verified:
        return "verified"
    return "complete" if record.status == "complete" else "incomplete"


def subject_grid(protocol: Protocol, subject: SubjectFacts, rows: StudyRows, today: dt.date) -> list[dict[str, Any]]:
    """Every protocol visit of a subject with its timing and one cell per form."""
    out = []
    fixed = anchors(protocol)
    for vdef in protocol.visits:
        visit = rows.visits.get((subject.id, vdef.code))
        timing = visit_timing(protocol, vdef, subject, today, visit is not None, fixed)
        cells = []
        for form in vdef.forms:
            record = rows.records.get((subject.id, vdef.code, form))
            cells.append({"form": form, "state": cell_state(record, timing),
                          "open_queries": rows.open_queries.get((subject.id, vdef.code, form), 0),
                          "entered": record is not None})
        missing = sum(1 for c in cells if not c["entered"])
        if missing == 0:
            summary = min((c["state"] for c in cells), key=CELL_STATES.index)  # least advanced form
        elif timing.state == "not_due" and missing == len(cells):
            summary = "not_due"
        else:
            summary = "overdue" if timing.state == "overdue" else ("due" if timing.state == "due" else "incomplete")
        out.append({"visit": vdef.code, "label": vdef.label, "timing": timing, "cells": cells, "missing": missing,
                    "entered": len(cells) - missing, "forms": len(cells), "state": summary,
                    "open_queries": sum(c["open_queries"] for c in cells),
                    "visit_date": visit.visit_date if visit else None,
                    "in_window": visit.in_window if visit else None})
    return out


def first_missing_visit(protocol: Protocol, subject: SubjectFacts, grid: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The subject list's "next visit": the first visit with required forms not entered.

    ``state``: ``overdue`` / ``due`` (window closed / open), ``upcoming`` (window known, not open),
    ``pending`` (dates known once day 0 is recorded) or ``action`` for a step that is not a visit.
    None once the subject has ended (completed, discontinued, screen failure) or nothing is missing.
    """
    if subject.status in ENDED:
        return None
    baseline = protocol.baseline_visit.code
    for visit in grid:
        if visit["missing"] == 0:
            if visit["visit"] == baseline and subject.status in ("screening", "eligible"):
                step = "enrolment" if subject.status == "eligible" else "eligibility evaluation"
                return {"visit": None, "label": step, "target_date": None, "window_start": None, "window_end": None,
                        "state": "action", "missing": 0, "forms": 0}
            continue
        timing: Timing = visit["timing"]
        if timing.state == "not_due" and timing.reason.startswith(("screen failure", "window opens after the end")):
            continue
        state = timing.state
        if state == "not_due":
            state = "upcoming" if timing.window_start is not None else "pending"
        return {"visit": visit["visit"], "label": visit["label"], "state": state,
                "target_date": _iso(timing.target), "window_start": _iso(timing.window_start),
                "window_end": _iso(timing.window_end), "missing": visit["missing"], "forms": visit["forms"]}
    return None


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


# ---------------------------------------------------------------------------------------------- the one read
def _visible_subjects(session: Session, actor: Actor, site: str | None) -> list[Subject]:
    stmt = select(Subject).order_by(Subject.subject_code)
    if actor.site is not None:
        stmt = stmt.where(Subject.site_code == actor.site)
    if site:
        stmt = stmt.where(Subject.site_code == site)
    return list(session.scalars(stmt))


def load_study(session: Session, actor: Actor, site: str | None = None) -> StudyRows:
    """Subjects, visits, form records and unresolved-query counts of the actor's sites (4 queries)."""
    require(actor, "view")
    sites = [c for c in (actor.site, site) if c]

    def visible(stmt, subject_id):
        # restrict by a join on the subject's site (no IN list of ids: one plan whatever the study size)
        if not sites:
            return stmt
        stmt = stmt.join(Subject, Subject.id == subject_id)
        for code in sites:
            stmt = stmt.where(Subject.site_code == code)
        return stmt
    subject_stmt = select(Subject.id, Subject.subject_code, Subject.site_code, Subject.status,
                          Subject.screening_date, Subject.enrolled_date, Subject.infusion_date,
                          Subject.disposition_date).order_by(Subject.subject_code)
    for code in sites:
        subject_stmt = subject_stmt.where(Subject.site_code == code)
    rows = StudyRows([SubjectFacts(*row) for row in session.execute(subject_stmt)])
    if not rows.subjects:
        return rows
    visit_stmt = select(Visit.subject_id, Visit.visit_code, Visit.visit_date, Visit.study_day, Visit.in_window)
    for sid, code, date, day, inside in session.execute(visible(visit_stmt, Visit.subject_id)):
        rows.visits[(sid, code)] = VisitFacts(date, day, inside)
    record_stmt = select(FormRecord.subject_id, FormRecord.visit_code, FormRecord.form_code, FormRecord.status,
                         FormRecord.verified, FormRecord.locked, FormRecord.signed, FormRecord.version)
    for sid, visit, form, status, verified, locked, signed, version in session.execute(
            visible(record_stmt, FormRecord.subject_id)):
        rows.records[(sid, visit, form)] = RecordFacts(status, bool(verified), bool(locked), bool(signed), version)
    query_stmt = (select(DataQuery.subject_id, DataQuery.visit_code, DataQuery.form_code, func.count())
                  .where(DataQuery.status.in_(UNRESOLVED))
                  .group_by(DataQuery.subject_id, DataQuery.visit_code, DataQuery.form_code))
    for sid, visit, form, n in session.execute(visible(query_stmt, DataQuery.subject_id)):
        rows.open_queries[(sid, visit, form)] = n
    return rows


def next_visits(engine: Engine, protocol: Protocol, actor: Actor, today: dt.date) -> dict[str, dict[str, Any] | None]:
    """Subject code -> :func:`first_missing_visit` for every subject the actor sees."""
    with Session(engine) as session:
        rows = load_study(session, actor)
    return {s.code: first_missing_visit(protocol, s, subject_grid(protocol, s, rows, today)) for s in rows.subjects}


# ---------------------------------------------------------------------------------------------- dashboard
SORTS = ("subject", "site", "overdue", "due", "queries", "progress")


def dashboard(engine: Engine, protocol: Protocol, actor: Actor, today: dt.date, *, site: str | None = None,
              visit: str | None = None, state: str | None = None, search: str | None = None,
              sort: str = "subject", descending: bool = False) -> dict[str, Any]:
    """Record status of subjects x visits x forms, filtered and sorted, with counts per site.

    ``visit`` narrows the columns to one visit's forms; ``state`` keeps the subjects with at least one
    cell in that state (within ``visit`` when given); ``search`` matches the subject code.
    """
    with Session(engine) as session:
        rows = load_study(session, actor, site)
    visits = [v for v in protocol.visits if not visit or v.code == visit]
    shown_codes = {v.code for v in visits}
    per_site: dict[str, Counter] = defaultdict(Counter)
    subjects = []
    needle = (search or "").strip().lower()
    for subject in rows.subjects:
        grid = subject_grid(protocol, subject, rows, today)
        counts: Counter = Counter()
        for v in grid:
            if v["visit"] in shown_codes:
                counts.update(c["state"] for c in v["cells"])
        queries = sum(v["open_queries"] for v in grid if v["visit"] in shown_codes)
        site_counts = per_site[subject.site]
        site_counts["subjects"] += 1
        site_counts.update(counts)
        site_counts["open_queries"] += queries
        if needle and needle not in subject.code.lower():
            continue
        if state and not counts.get(state):
            continue
        expected = sum(n for s, n in counts.items() if s != "not_due")
        done = sum(n for s, n in counts.items() if s not in ("not_due", "due", "overdue"))
        subjects.append({"subject_id": subject.code, "site": subject.site, "status": subject.status,
                         "infusion_date": _iso(subject.infusion_date), "counts": counts, "open_queries": queries,
                         "progress": round(100 * done / expected) if expected else 100,
                         "visits": [v for v in grid if v["visit"] in shown_codes]})
    keys = {"subject": lambda s: s["subject_id"], "site": lambda s: (s["site"], s["subject_id"]),
            "overdue": lambda s: (-s["counts"].get("overdue", 0), s["subject_id"]),
            "due": lambda s: (-s["counts"].get("due", 0), s["subject_id"]),
            "queries": lambda s: (-s["open_queries"], s["subject_id"]),
            "progress": lambda s: (s["progress"], s["subject_id"])}
    subjects.sort(key=keys.get(sort, keys["subject"]), reverse=descending)
    totals: Counter = Counter()
    for counts in per_site.values():
        totals.update(counts)
    return {"subjects": subjects, "visits": visits, "per_site": dict(sorted(per_site.items())), "totals": totals,
            "forms": {code: f.label for code, f in protocol.forms.items()}}


# ---------------------------------------------------------------------------------------------- data quality
FINDING_KINDS = {
    "missing_form": "required form not entered",
    "incomplete_form": "form saved incomplete",
    "soft_check": "soft-check warning still stands",
    "soft_check_acknowledged": "soft-check warning acknowledged",
    "edit_check": "stored value fails an edit check",
    "out_of_window": "visit out of window",
    "not_verified": "complete, not source-verified",
}


@dataclass(frozen=True)
class Finding:
    kind: str
    subject_id: str
    site: str
    visit: str
    form: str | None
    field: str | None
    value: Any
    rule: str
    message: str
    link: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__) | {"kind_label": FINDING_KINDS[self.kind]}


def _form_link(subject: str, visit: str, form: str | None, field_name: str | None = None) -> str:
    if form is None:
        return f"/subjects/{subject}"
    return f"/subjects/{subject}/forms/{visit}/{form}" + (f"#row-{field_name}" if field_name else "")


def _stored_values(session: Session, record_ids: set[int]) -> dict[int, dict[str, Any]]:
    """Decoded item values by form record (one scan of the table, filtered in Python)."""
    values: dict[int, dict[str, Any]] = defaultdict(dict)
    for rid, name, raw in session.execute(select(ItemValue.record_id, ItemValue.field, ItemValue.value)):
        if rid in record_ids:
            values[rid][name] = None if raw is None else json.loads(raw)
    return values


@dataclass(frozen=True)
class Acknowledgement:
    """The newest audited acknowledgement of one soft check on one form (``value``: canonical JSON text of the
    checked field's value it covers)."""

    value: str | None
    username: str
    ts_utc: str
    reason: str | None


def acknowledgements(session: Session) -> dict[tuple[str, str], Acknowledgement]:
    """(form record key 'SUBJECT/VISIT/FORM', check id) -> its newest acknowledgement (entity 'soft_check').

    Keys are written with the subject's code of the day; a subject whose code was corrected since is found
    under its current code (:class:`regenheart.store.reconcile.CodeHistory`)."""
    history = CodeHistory.load(session)
    acks: dict[tuple[str, str], Acknowledgement] = {}
    for seq, key, check, value, username, ts, reason in session.execute(
            select(AuditRecord.seq, AuditRecord.record_key, AuditRecord.field, AuditRecord.new_value,
                   AuditRecord.username, AuditRecord.ts_utc, AuditRecord.reason)
            .where(AuditRecord.entity == "soft_check").order_by(AuditRecord.seq)):
        acks[(history.rekey(key or "", seq), check or "")] = Acknowledgement(value, username, ts, reason)
    return acks


def data_quality(engine: Engine, protocol: Protocol, actor: Actor, today: dt.date, *, site: str | None = None,
                 kind: str | None = None) -> list[Finding]:
    """What is missing or inconsistent across the study, each finding linked to its form page.

    * required forms not entered for visits whose window has closed (overdue, baseline included);
    * forms saved incomplete for such visits;
    * warning-severity checks of the protocol re-run on the stored values (``validate_record``), and any
      stored value that now fails an error-severity check; a warning acknowledged with a reason for the value
      now stored is listed apart (``soft_check_acknowledged``, last), not as standing;
    * visits dated outside their window;
    * complete forms not source-data verified.
    """
    with Session(engine) as session:
        rows = load_study(session, actor, site)
        ids = {s.id for s in rows.subjects}
        record_ids = {}
        for rid, sid, visit, form in session.execute(
                select(FormRecord.id, FormRecord.subject_id, FormRecord.visit_code, FormRecord.form_code)):
            if sid in ids:
                record_ids[(sid, visit, form)] = rid
        values = _stored_values(session, set(record_ids.values()))
        acks = acknowledgements(session)
    findings: list[Finding] = []
    acknowledged: list[Finding] = []
    for subject in rows.subjects:
        code = subject.code
        for visit in subject_grid(protocol, subject, rows, today):
            vcode = visit["visit"]
            if visit["in_window"] is False:
                facts = rows.visits[(subject.id, vcode)]
                timing: Timing = visit["timing"]
                findings.append(Finding("out_of_window", code, subject.site, vcode, None, "visit_date",
                                        facts.visit_date.isoformat(), "window",
                                        f"study day {facts.study_day} is outside {vcode}'s window "
                                        f"({timing.window_start} to {timing.window_end})", _form_link(code, vcode, None)))
            for cell in visit["cells"]:
                form = cell["form"]
                record = rows.records.get((subject.id, vcode, form))
                label = protocol.forms[form].label
                if record is None:
                    if cell["state"] == "overdue":
                        findings.append(Finding("missing_form", code, subject.site, vcode, form, None, None, "required",
                                                f"{label} not entered; {visit['timing'].reason}",
                                                _form_link(code, vcode, form)))
                    continue
                if record.status != "complete" and visit["timing"].state == "overdue":
                    findings.append(Finding("incomplete_form", code, subject.site, vcode, form, None, None, "complete",
                                            f"{label} saved incomplete; {visit['timing'].reason}",
                                            _form_link(code, vcode, form)))
                if record.status == "complete" and not record.verified and not record.locked:
                    findings.append(Finding("not_verified", code, subject.site, vcode, form, None, None, "sdv",
                                            f"{label} is complete (version {record.version}) but not verified",
                                            _form_link(code, vcode, form)))
                stored = values.get(record_ids.get((subject.id, vcode, form), -1), {})
                result = validate_record(protocol, protocol.forms[form], stored,
                                         require_complete=record.status == "complete")
                for problem, what in [(w, "soft_check") for w in result.warnings] + \
                                     [(e, "edit_check") for e in result.violations if e.rule != "required"]:
                    ack = acks.get((f"{code}/{vcode}/{form}", problem.rule)) if what == "soft_check" else None
                    # an acknowledgement covers the value it was given for (a soft check's rule is its id)
                    if ack is not None and ack.value == canonical(stored.get(problem.field)):
                        acknowledged.append(Finding(
                            "soft_check_acknowledged", code, subject.site, vcode, form, problem.field,
                            _plain(problem.value), problem.rule,
                            f"{problem.message}; acknowledged by {ack.username} on {ack.ts_utc[:10]}: {ack.reason}",
                            _form_link(code, vcode, form, problem.field)))
                        continue
                    findings.append(Finding(what, code, subject.site, vcode, form, problem.field,
                                            _plain(problem.value), problem.rule, problem.message,
                                            _form_link(code, vcode, form, problem.field)))
    findings += acknowledged
    if kind:
        findings = [f for f in findings if f.kind == kind]
    return findings


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


# ---------------------------------------------------------------------------------------------- queries worklist
QUERY_SORTS = ("number", "subject", "site", "visit", "form", "status", "age")


def query_numbers(session: Session) -> dict[int, int]:
    """Study-wide query number by database id: the n-th query ever opened is Q-n (stable for every user)."""
    return {qid: n for n, qid in enumerate(session.scalars(select(DataQuery.id).order_by(DataQuery.id)), start=1)}


def _age_days(opened_utc: str, closed_utc: str | None, today: dt.date) -> int:
    """Days a query has been open (until its closure when closed)."""
    opened = dt.date.fromisoformat(opened_utc[:10])
    end = dt.date.fromisoformat(closed_utc[:10]) if closed_utc else today
    return max(0, (end - opened).days)


def query_worklist(engine: Engine, protocol: Protocol, actor: Actor, today: dt.date, *, site: str | None = None,
                   subject: str | None = None, visit: str | None = None, form: str | None = None,
                   status: str | None = "unresolved", min_age: int | None = None, sort: str = "number",
                   descending: bool = False) -> list[dict[str, Any]]:
    """Queries the actor may see, filtered and sorted, each with its study-wide number ``Q-n`` and age (days).

    ``status``: ``unresolved`` (open or answered), ``open``, ``answered``, ``closed`` or None (all);
    ``subject`` matches part of the subject code; ``min_age``: open at least that many days.
    """
    require(actor, "view")
    with Session(engine) as session:
        numbers = query_numbers(session)
        stmt = (select(DataQuery, Subject.subject_code, Subject.site_code)
                .join(Subject, Subject.id == DataQuery.subject_id))
        if actor.site is not None:
            stmt = stmt.where(Subject.site_code == actor.site)
        if site:
            stmt = stmt.where(Subject.site_code == site)
        if subject:
            stmt = stmt.where(Subject.subject_code.contains(subject.strip()))
        if visit:
            stmt = stmt.where(DataQuery.visit_code == visit)
        if form:
            stmt = stmt.where(DataQuery.form_code == form)
        if status == "unresolved":
            stmt = stmt.where(DataQuery.status.in_(UNRESOLVED))
        elif status:
            stmt = stmt.where(DataQuery.status == status)
        found = session.execute(stmt).all()
        messages: dict[int, list[dict[str, Any]]] = defaultdict(list)
        ids = [q.id for q, _, _ in found]
        for chunk in range(0, len(ids), 900):
            for m in session.scalars(select(QueryMessage).where(QueryMessage.query_id.in_(ids[chunk:chunk + 900]))
                                     .order_by(QueryMessage.id)):
                messages[m.query_id].append({"kind": m.kind, "username": m.username, "role": m.role,
                                             "ts_utc": m.ts_utc, "text": m.text})
    out = []
    for q, code, site_code in found:
        age = _age_days(q.opened_utc, q.closed_utc if q.status == "closed" else None, today)
        if min_age is not None and age < min_age:
            continue
        thread = messages.get(q.id, [])
        form_def = protocol.forms.get(q.form_code)
        out.append({"number": numbers[q.id], "subject_code": code, "site": site_code, "seq": q.query_seq,
                    "visit_code": q.visit_code, "form_code": q.form_code,
                    "form_label": form_def.label if form_def else q.form_code, "field": q.field, "status": q.status,
                    "opened_by": q.opened_by, "opened_utc": q.opened_utc, "closed_utc": q.closed_utc,
                    "age_days": age, "messages": thread, "last_text": thread[-1]["text"] if thread else None,
                    "last_by": thread[-1]["username"] if thread else None})
    visit_order = {v: i for i, v in enumerate(protocol.visit_codes)}
    keys = {"number": lambda r: r["number"], "subject": lambda r: (r["subject_code"], r["seq"]),
            "site": lambda r: (r["site"], r["number"]), "visit": lambda r: (visit_order.get(r["visit_code"], 99),
                                                                             r["number"]),
            "form": lambda r: (r["form_code"], r["number"]), "status": lambda r: (r["status"], r["number"]),
            "age": lambda r: (r["age_days"], r["number"])}
    out.sort(key=keys.get(sort, keys["number"]), reverse=descending)
    return out


def open_query_count(engine: Engine, actor: Actor) -> int:
    """Unresolved (open or answered) queries of the actor's sites: the number in the menu."""
    with Session(engine) as session:
        stmt = select(func.count()).select_from(DataQuery).where(DataQuery.status.in_(UNRESOLVED))
        if actor.site is not None:
            stmt = stmt.join(Subject, Subject.id == DataQuery.subject_id).where(Subject.site_code == actor.site)
        return int(session.scalar(stmt) or 0)
