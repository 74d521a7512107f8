"""A read-only snapshot of a study database as pandas DataFrames (the I/O edge of the analysis).

Everything downstream (ADaM derivation, statistics, report) works on a :class:`Snapshot` and never
touches the database, so an analysis is reproducible from the snapshot's time and audit-chain head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from regenheart.protocol.missing import missing_code, missing_reason
from regenheart.store.audit import head_hash, utc_now
from regenheart.store.models import (
    AdverseEvent,
    DerivedValue,
    FormRecord,
    ItemValue,
    RandomizationSlot,
    StudyMeta,
    Subject,
    Visit,
)


@dataclass(frozen=True)
class Snapshot:
    """Study data at one point in time. Dates are ``datetime.date`` objects (object dtype)."""

    taken_utc: str
    meta: dict[str, str]
    subjects: pd.DataFrame        # one row per subject (stratum: the randomization stratum, None if not randomized)
    visits: pd.DataFrame          # subject_code, visit_code, visit_date, study_day, in_window
    items: pd.DataFrame           # long: subject_code, visit_code, form_code, field, value (None if coded),
    #                               missing_code and missing_reason of a missing-data code
    derived: pd.DataFrame         # long: subject_code, visit_code, form_code, name, value, scoring_version
    forms: pd.DataFrame           # subject_code, visit_code, form_code, status, version, verified, locked
    adverse_events: pd.DataFrame  # one row per AE with every captured field
    audit_records: int
    audit_head_hash: str

    def wide(self, form_code: str) -> pd.DataFrame:
        """One row per subject x visit for a form, one column per field (typed values)."""
        rows = self.items[self.items["form_code"] == form_code]
        if rows.empty:
            return pd.DataFrame(columns=["subject_code", "visit_code"])
        wide = rows.pivot_table(index=["subject_code", "visit_code"], columns="field", values="value",
                                aggfunc="first")
        wide.columns.name = None
        return wide.reset_index()

    def scores(self, form_code: str) -> pd.DataFrame:
        """One row per subject x visit, one column per derived score of the form."""
        rows = self.derived[self.derived["form_code"] == form_code]
        if rows.empty:
            return pd.DataFrame(columns=["subject_code", "visit_code"])
        wide = rows.pivot_table(index=["subject_code", "visit_code"], columns="name", values="value",
                                aggfunc="first", dropna=False)
        wide.columns.name = None
        return wide.reset_index()


def take_snapshot(engine: Engine) -> Snapshot:
    """Read the whole study database in one transaction."""
    with Session(engine) as session:
        meta = {m.key: m.value for m in session.scalars(select(StudyMeta))}
        subject_rows = session.scalars(select(Subject).order_by(Subject.subject_code)).all()
        codes = {s.id: s.subject_code for s in subject_rows}
        # The stratum of each randomized subject (its used slot); unused slots stay concealed (never read).
        strata = dict(session.execute(select(RandomizationSlot.subject_id, RandomizationSlot.stratum)
                                      .where(RandomizationSlot.subject_id.is_not(None))).all())
        subjects = pd.DataFrame([{
            "subject_code": s.subject_code, "site_code": s.site_code, "status": s.status,
            "screening_date": s.screening_date, "consent_date": s.consent_date, "eligible": s.eligible,
            "eligibility_failed": json.loads(s.eligibility_failed) if s.eligibility_failed else [],
            "enrolled_date": s.enrolled_date, "arm_code": s.arm_code, "infusion_date": s.infusion_date,
            "disposition": s.disposition, "disposition_date": s.disposition_date,
            "disposition_reason": s.disposition_reason, "synthetic": s.synthetic, "stratum": strata.get(s.id),
        } for s in subject_rows])
        visits = pd.DataFrame([{
            "subject_code": codes[v.subject_id], "visit_code": v.visit_code, "visit_date": v.visit_date,
            "study_day": v.study_day, "in_window": v.in_window,
        } for v in session.execute(select(*Visit.__table__.c))], columns=["subject_code", "visit_code", "visit_date",
                                                           "study_day", "in_window"])
        # Plain rows, not ORM objects, for the tables with many rows (the ORM's bookkeeping of each object
        # cost a third of the snapshot); the same values.
        records = {r.id: r for r in session.execute(select(*FormRecord.__table__.c))}
        forms = pd.DataFrame([{
            "subject_code": codes[r.subject_id], "visit_code": r.visit_code, "form_code": r.form_code,
            "status": r.status, "version": r.version, "verified": r.verified, "locked": r.locked,
        } for r in records.values()], columns=["subject_code", "visit_code", "form_code", "status", "version",
                                              "verified", "locked"])
        item_rows = []
        for i in session.execute(select(*ItemValue.__table__.c)):
            value = None if i.value is None else json.loads(i.value)
            code = missing_code(value)  # a coded value is missing to analysis; its code is kept beside
            item_rows.append({
                "subject_code": codes[records[i.record_id].subject_id],
                "visit_code": records[i.record_id].visit_code, "form_code": records[i.record_id].form_code,
                "field": i.field, "value": None if code else value, "missing_code": code,
                "missing_reason": missing_reason(value),
            })
        items = pd.DataFrame(item_rows, columns=["subject_code", "visit_code", "form_code", "field", "value",
                                                 "missing_code", "missing_reason"])
        derived = pd.DataFrame([{
            "subject_code": codes[records[d.record_id].subject_id], "visit_code": records[d.record_id].visit_code,
            "form_code": records[d.record_id].form_code, "name": d.name, "value": d.value,
            "scoring_version": d.scoring_version,
        } for d in session.execute(select(*DerivedValue.__table__.c))], columns=["subject_code", "visit_code", "form_code",
                                                                  "name", "value", "scoring_version"])
        aes = []
        for ae in session.scalars(select(AdverseEvent).order_by(AdverseEvent.subject_id, AdverseEvent.ae_seq)):
            row = json.loads(ae.data)
            row.update({"subject_code": codes[ae.subject_id], "ae_seq": ae.ae_seq, "study_day": ae.study_day,
                        "sae_criteria": json.loads(ae.sae_criteria) if ae.sae_criteria else []})
            for key in ("onset_date", "stop_date"):
                row[key] = pd.Timestamp(row[key]).date() if row.get(key) else None
            aes.append(row)
    count, digest = head_hash(engine)
    return Snapshot(taken_utc=utc_now(), meta=meta, subjects=subjects, visits=visits, items=items,
                    derived=derived, forms=forms, adverse_events=pd.DataFrame(aes), audit_records=count,
                    audit_head_hash=digest)
