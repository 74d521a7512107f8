"""Read model of the audit-trail page and of acknowledged soft-check warnings.

Reads only. The audit page lists one subject's trail newest first, filtered by user, date range
(UTC days, inclusive), form and field, paged, with the protocol's field and form labels; the same
filtered rows export to CSV.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select
from sqlalchemy.orm import Session

from regenheart.capture.common import find_subject, require
from regenheart.capture.permissions import Actor
from regenheart.protocol.models import Protocol
from regenheart.store.models import AuditRecord
from regenheart.store.reconcile import CodeHistory

PAGE_SIZE = 50
CSV_COLUMNS = ("seq", "ts_utc", "username", "role", "action", "entity", "visit", "form", "form_label", "record",
               "field", "field_label", "old_value", "new_value", "reason")
# Labels of the audited columns that are not protocol form fields (subject, visit and form-state values).
_OTHER_LABELS = {
    "visit_date": "Visit date", "site_code": "Site", "status": "Status", "screening_date": "Screening date",
    "consent_date": "Informed consent date", "eligible": "Eligible", "eligibility_failed": "Eligibility not met",
    "enrolled_date": "Enrolment date", "arm_code": "Arm", "infusion_date": "Infusion date (day 0)",
    "disposition": "Disposition", "disposition_date": "Disposition date", "disposition_reason": "Disposition reason",
    "synthetic": "Synthetic", "verified": "Source data verified", "locked": "Locked", "signed": "Signed",
}


@dataclass(frozen=True)
class AuditFilter:
    """What the audit page shows: ``date_from``/``date_to`` are UTC calendar days (inclusive)."""

    username: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    visit: str | None = None
    form: str | None = None
    field: str | None = None


def parse_day(text: str | None) -> dt.date | None:
    """An ISO day from a query string, or None when blank or not a date (the filter is then ignored)."""
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _decode(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def field_label(protocol: Protocol, form: str | None, field: str | None) -> str:
    """The label a user knows a field by (the protocol's), else a readable form of its name."""
    if not field:
        return ""
    forms = [protocol.forms[form]] if form in protocol.forms else []
    logs = [f for f in (protocol.adverse_events, protocol.disposition) if f is not None]
    for container in forms + logs:
        for f in container.fields:
            if f.name == field:
                return f.label
    for container in protocol.forms.values():
        for f in container.fields:
            if f.name == field and form is None:
                return f.label
    return _OTHER_LABELS.get(field, field.replace("_", " "))


def subject_records(session: Session, code: str) -> ColumnElement[bool]:
    """SQL condition selecting the audit records of the subject whose code is ``code`` today, those written
    under an earlier code (a corrected subject code) included (:class:`CodeHistory`)."""
    history = CodeHistory.load(session)
    if not history:
        return AuditRecord.subject_code == code
    parts = []
    for earlier, start, end in history.segments(code):
        part = and_(AuditRecord.subject_code == earlier, AuditRecord.seq >= start)
        parts.append(part if end is None else and_(part, AuditRecord.seq < end))
    return or_(*parts)


def _statement(code: str, flt: AuditFilter, session: Session):
    stmt = select(AuditRecord).where(subject_records(session, code))
    if flt.username:
        stmt = stmt.where(AuditRecord.username == flt.username)
    if flt.date_from:
        stmt = stmt.where(AuditRecord.ts_utc >= flt.date_from.isoformat())
    if flt.date_to:  # ts_utc is ISO text: everything before the next day
        stmt = stmt.where(AuditRecord.ts_utc < (flt.date_to + dt.timedelta(days=1)).isoformat())
    if flt.visit:
        stmt = stmt.where(AuditRecord.visit_code == flt.visit)
    if flt.form:
        stmt = stmt.where(AuditRecord.form_code == flt.form)
    if flt.field:
        stmt = stmt.where(AuditRecord.field == flt.field)
    return stmt


def audit_page(engine: Engine, protocol: Protocol, actor: Actor, code: str, flt: AuditFilter, *, page: int = 1,
               page_size: int = PAGE_SIZE) -> tuple[list[dict[str, Any]], int, list[str]]:
    """One page of a subject's audit trail, newest first: (rows, total rows matching, users in the trail).

    ``page_size`` 0 returns every matching row (the CSV export)."""
    require(actor, "view")
    with Session(engine) as session:
        find_subject(session, actor, code, lock=False)  # 404 for another site's subject
        stmt = _statement(code, flt, session)
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        stmt = stmt.order_by(AuditRecord.seq.desc())
        if page_size:
            stmt = stmt.offset(max(page - 1, 0) * page_size).limit(page_size)
        users = sorted(session.scalars(select(AuditRecord.username).where(subject_records(session, code))
                                       .distinct()).all())
        rows = [{"seq": r.seq, "ts_utc": r.ts_utc, "username": r.username, "role": r.role, "action": r.action,
                 "entity": r.entity, "visit": r.visit_code, "form": r.form_code,
                 "form_label": protocol.forms[r.form_code].label if r.form_code in protocol.forms else "",
                 "record": r.record_key, "field": r.field,
                 "field_label": field_label(protocol, r.form_code, r.field),
                 "old_value": _decode(r.old_value), "new_value": _decode(r.new_value), "reason": r.reason}
                for r in session.scalars(stmt)]
        return rows, total, users


def audit_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV (UTF-8 text, header first, values as audited; blank for none)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(["" if row[c] is None else (json.dumps(row[c]) if isinstance(row[c], list | dict) else row[c])
                         for c in CSV_COLUMNS])
    return out.getvalue()


def acknowledged_checks(engine: Engine, code: str, visit: str, form: str) -> dict[str, str | None]:
    """Soft checks acknowledged on a form: check id -> the checked value (canonical text) acknowledged (those
    acknowledged under an earlier code of the subject included)."""
    with Session(engine) as session:
        rows = session.execute(select(AuditRecord.field, AuditRecord.new_value).where(
            AuditRecord.entity == "soft_check", AuditRecord.visit_code == visit, AuditRecord.form_code == form,
            subject_records(session, code)).order_by(AuditRecord.seq)).all()
    return {field: value for field, value in rows}
