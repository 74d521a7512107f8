"""Read model of the web application: subject lists, casebooks, schedules and the audit trail.

Reads only (every write goes through CaptureService, WorkflowService or AccountService). Every
function takes the acting user and shows only the subjects of its site.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from regenheart.capture.common import UNRESOLVED, find_subject, require
from regenheart.capture.errors import NotFound
from regenheart.capture.permissions import Actor
from regenheart.protocol.models import Protocol
from regenheart.protocol.models import Visit as VisitDef
from regenheart.store.models import AdverseEvent, AuditRecord, DataQuery, FormRecord, Subject
from regenheart.web import audit_trail, dashboard

CELL_LABELS = {
    "not_started": "not started", "incomplete": "incomplete", "complete": "complete", "verified": "verified",
    "locked": "locked", "not_scheduled": "",
}


def decode(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _require_view(actor: Actor) -> None:
    require(actor, "view")


def visible_subject(session: Session, actor: Actor, code: str) -> Subject:
    """The subject if the actor may view it (404 for another site's subject)."""
    _require_view(actor)
    return find_subject(session, actor, code, lock=False)


def window_dates(visit: VisitDef, infusion: dt.date | None) -> dict[str, str | None]:
    """Target date and window of a visit from the infusion date (day 0) and the protocol window."""
    if infusion is None:
        return {"target_date": None, "window_start": None, "window_end": None}
    return {"target_date": (infusion + dt.timedelta(days=visit.day)).isoformat(),
            "window_start": (infusion + dt.timedelta(days=visit.window[0])).isoformat(),
            "window_end": (infusion + dt.timedelta(days=visit.window[1])).isoformat()}


def subject_facts(subject: Subject) -> dashboard.SubjectFacts:
    return dashboard.SubjectFacts(subject.id, subject.subject_code, subject.site_code, subject.status,
                                  subject.screening_date, subject.enrolled_date, subject.infusion_date,
                                  subject.disposition_date)


def next_visit(protocol: Protocol, subject: Subject, rows: dashboard.StudyRows, today: dt.date) -> dict[str, Any] | None:
    """The next visit: the first visit with required forms not entered (``dashboard.first_missing_visit``).

    ``state``: ``overdue`` (window closed), ``due`` (inside the window), ``upcoming`` (window not open
    yet), ``pending`` (dates not known yet: before infusion), or ``action`` for a step that is not a
    visit (eligibility, enrolment); ``missing`` of ``forms`` forms of that visit are not entered.
    """
    facts = subject_facts(subject)
    return dashboard.first_missing_visit(protocol, facts, dashboard.subject_grid(protocol, facts, rows, today))


@dataclass(frozen=True)
class Cell:
    form: str
    status: str  # not_started, incomplete, complete, verified, locked, not_scheduled
    version: int
    verified: bool
    locked: bool
    signed: bool
    open_queries: int

    def as_dict(self) -> dict[str, Any]:
        return {"form": self.form, "status": self.status, "version": self.version, "verified": self.verified,
                "locked": self.locked, "signed": self.signed, "open_queries": self.open_queries}


def cell_status(record: FormRecord | None) -> str:
    if record is None:
        return "not_started"
    if record.locked:
        return "locked"
    if record.verified:
        return "verified"
    return record.status


def _unresolved_counts(session: Session, subject_ids: list[int] | None = None) -> dict[tuple, int]:
    stmt = select(DataQuery.subject_id, DataQuery.visit_code, DataQuery.form_code, func.count()).where(
        DataQuery.status.in_(UNRESOLVED)).group_by(DataQuery.subject_id, DataQuery.visit_code, DataQuery.form_code)
    if subject_ids is not None:
        stmt = stmt.where(DataQuery.subject_id.in_(subject_ids))
    return {(s, v, f): n for s, v, f, n in session.execute(stmt)}


def subject_summary(protocol: Protocol, subject: Subject, rows: dashboard.StudyRows, today: dt.date,
                    open_queries: int) -> dict[str, Any]:
    failed = json.loads(subject.eligibility_failed) if subject.eligibility_failed else []
    return {
        "subject_id": subject.subject_code, "site": subject.site_code, "status": subject.status,
        "screening_date": _iso(subject.screening_date), "consent_date": _iso(subject.consent_date),
        "eligible": subject.eligible, "eligibility_failed": failed, "enrolled_date": _iso(subject.enrolled_date),
        "arm": subject.arm_code, "infusion_date": _iso(subject.infusion_date),
        "disposition": None if not subject.disposition else {
            "status": subject.disposition, "date": _iso(subject.disposition_date),
            "reason": subject.disposition_reason},
        "synthetic": subject.synthetic, "version": subject.version, "open_queries": open_queries,
        "next_visit": next_visit(protocol, subject, rows, today),
    }


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


SUBJECT_SORTS = ("subject", "site", "status", "screened", "infusion", "next", "queries")
_NEXT_ORDER = {"overdue": 0, "due": 1, "action": 2, "upcoming": 3, "pending": 4}


def list_subjects(engine: Engine, protocol: Protocol, actor: Actor, today: dt.date,
                  status: str | None = None, *, site: str | None = None, search: str | None = None,
                  sort: str = "subject", descending: bool = False) -> list[dict[str, Any]]:
    """Subjects the actor sees, filtered by status and site, searched by subject code, sorted by ``sort``
    (one of :data:`SUBJECT_SORTS`; ``next`` puts overdue first, then due, then by target date)."""
    _require_view(actor)
    with Session(engine) as session:
        rows = dashboard.load_study(session, actor, site)
        stmt = select(Subject).where(Subject.id.in_([s.id for s in rows.subjects])).order_by(Subject.subject_code)
        if status:
            stmt = stmt.where(Subject.status == status)
        subjects = session.scalars(stmt).all()
        needle = (search or "").strip().lower()
        subjects = [s for s in subjects if not needle or needle in s.subject_code.lower()]
        queries: dict[int, int] = {}
        for (sid, _v, _f), n in rows.open_queries.items():
            queries[sid] = queries.get(sid, 0) + n
        out = [subject_summary(protocol, s, rows, today, queries.get(s.id, 0)) for s in subjects]

    def next_key(row: dict[str, Any]) -> tuple:
        n = row["next_visit"]
        return (9, "", row["subject_id"]) if n is None else (_NEXT_ORDER.get(n["state"], 5), n["target_date"] or "",
                                                             row["subject_id"])
    keys = {"subject": lambda r: r["subject_id"], "site": lambda r: (r["site"], r["subject_id"]),
            "status": lambda r: (r["status"], r["subject_id"]),
            "screened": lambda r: (r["screening_date"] or "", r["subject_id"]),
            "infusion": lambda r: (r["infusion_date"] or "9999", r["subject_id"]), "next": next_key,
            "queries": lambda r: (-r["open_queries"], r["subject_id"])}
    out.sort(key=keys.get(sort, keys["subject"]), reverse=descending)
    return out


def subject_detail(engine: Engine, protocol: Protocol, actor: Actor, code: str, today: dt.date) -> dict[str, Any]:
    """A subject with its schedule: every protocol visit (date, study day, window) and form status."""
    with Session(engine) as session:
        subject = visible_subject(session, actor, code)
        visits = {v.visit_code: v for v in subject.visits}
        records = {(r.visit_code, r.form_code): r for r in session.scalars(
            select(FormRecord).where(FormRecord.subject_id == subject.id))}
        counts = _unresolved_counts(session, [subject.id])
        ae_count = session.scalar(select(func.count()).select_from(AdverseEvent).where(
            AdverseEvent.subject_id == subject.id)) or 0
        rows = dashboard.StudyRows(
            [subject_facts(subject)],
            {(subject.id, c): dashboard.VisitFacts(v.visit_date, v.study_day, v.in_window) for c, v in visits.items()},
            {(subject.id, v, f): dashboard.RecordFacts(r.status, r.verified, r.locked, r.signed, r.version)
             for (v, f), r in records.items()},
            {key: n for key, n in counts.items()})
        out = subject_summary(protocol, subject, rows, today, sum(counts.values()))
        out["adverse_events"] = ae_count
        out["visits"] = []
        for vdef in protocol.visits:
            visit = visits.get(vdef.code)
            cells = []
            for form in vdef.forms:
                record = records.get((vdef.code, form))
                cells.append(Cell(form, cell_status(record), record.version if record else 0,
                                  bool(record and record.verified), bool(record and record.locked),
                                  bool(record and record.signed),
                                  counts.get((subject.id, vdef.code, form), 0)).as_dict()
                             # the entry status under a lock or SDV mark (a locked form may be incomplete)
                             | {"label": protocol.forms[form].label,
                                "entry": record.status if record else "not_started"})
            out["visits"].append({
                "visit": vdef.code, "label": vdef.label, "day": vdef.day, "window": list(vdef.window),
                **window_dates(vdef, subject.infusion_date),
                "visit_date": _iso(visit.visit_date) if visit else None,
                "study_day": visit.study_day if visit else None,
                "in_window": visit.in_window if visit else None,
                "forms": cells,
            })
        return out


def form_rows(protocol: Protocol) -> list[tuple[str, str]]:
    """Forms in schedule order (first appearance), for the rows of the casebook grid."""
    seen: dict[str, str] = {}
    for visit in protocol.visits:
        for form in visit.forms:
            seen.setdefault(form, protocol.forms[form].label)
    return list(seen.items())


def visit_info(engine: Engine, actor: Actor, code: str, visit_code: str) -> dict[str, Any] | None:
    with Session(engine) as session:
        subject = visible_subject(session, actor, code)
        visit = next((v for v in subject.visits if v.visit_code == visit_code), None)
        if visit is None:
            return None
        return {"visit_date": visit.visit_date.isoformat(), "study_day": visit.study_day,
                "in_window": visit.in_window}


def audit_rows(engine: Engine, actor: Actor, code: str, *, visit: str | None = None, form: str | None = None,
               field: str | None = None, limit: int = 5000) -> list[dict[str, Any]]:
    """Audit trail of one subject, oldest first (optionally one visit, form, field)."""
    with Session(engine) as session:
        visible_subject(session, actor, code)
        stmt = select(AuditRecord).where(audit_trail.subject_records(session, code))  # earlier codes included
        if visit:
            stmt = stmt.where(AuditRecord.visit_code == visit)
        if form:
            stmt = stmt.where(AuditRecord.form_code == form)
        if field:
            stmt = stmt.where(AuditRecord.field == field)
        rows = session.scalars(stmt.order_by(AuditRecord.seq).limit(limit)).all()
        return [{"seq": r.seq, "ts_utc": r.ts_utc, "username": r.username, "role": r.role, "action": r.action,
                 "entity": r.entity, "visit": r.visit_code, "form": r.form_code, "record": r.record_key,
                 "field": r.field, "old_value": decode(r.old_value), "new_value": decode(r.new_value),
                 "reason": r.reason} for r in rows]


def adverse_events(engine: Engine, actor: Actor, code: str) -> list[dict[str, Any]]:
    with Session(engine) as session:
        subject = visible_subject(session, actor, code)
        rows = session.scalars(select(AdverseEvent).where(AdverseEvent.subject_id == subject.id)
                               .order_by(AdverseEvent.ae_seq)).all()
        return [{"seq": a.ae_seq, "version": a.version, "term": a.term, "category": a.category,
                 "onset_date": _iso(a.onset_date), "stop_date": _iso(a.stop_date), "study_day": a.study_day,
                 "ctcae_grade": a.ctcae_grade, "serious": a.serious,
                 "sae_criteria": json.loads(a.sae_criteria) if a.sae_criteria else [],
                 "related_product": a.related_product, "related_procedure": a.related_procedure,
                 "outcome": a.outcome, "data": json.loads(a.data),
                 "verified": a.verified, "locked": a.locked, "signed": a.signed} for a in rows]


def adverse_event(engine: Engine, actor: Actor, code: str, seq: int) -> dict[str, Any]:
    for ae in adverse_events(engine, actor, code):
        if ae["seq"] == seq:
            return ae
    raise NotFound(f"adverse event {seq} of subject {code} not found")
