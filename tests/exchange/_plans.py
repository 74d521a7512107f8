"""Turn a synthetic cohort plan into the neutral SourceData a reader would produce (test helper)."""

from __future__ import annotations

import datetime as dt
import hashlib

from regenheart.exchange.records import AdverseEventEntry, FormEntry, Origin, SourceData, SourceValue, SubjectEntry
from regenheart.synth.cohort import CohortPlan


def _text(value):
    return value.isoformat() if isinstance(value, dt.date) else value


def plan_to_source(plan: CohortPlan, name: str = "plan.json") -> SourceData:
    """Every subject of ``plan`` with its final (corrected) values, as text-like raw values."""
    source = SourceData(name, hashlib.sha256(name.encode()).hexdigest(), "template")
    for row, subject in enumerate(plan.subjects, start=2):
        origin = Origin("subjects.csv", f"row {row}")

        def sv(value, column, origin=origin):
            return SourceValue(_text(value), Origin(origin.file, origin.location, column))

        entry = SubjectEntry(subject.code, origin, site=sv(subject.site, "site"),
                             screening_date=sv(subject.screening_date, "screening_date"),
                             consent_date=sv(subject.consent_date, "consent_date"),
                             enrolled_date=sv(subject.enrolled_date, "enrolled_date") if subject.enrolled_date else None,
                             stated_eligible=sv("Y" if subject.enrol else "N", "eligible"),
                             synthetic=sv("Y", "synthetic"))
        corrected = {(c.visit, c.form): c.data for c in subject.corrections}
        for i, form in enumerate(subject.forms):
            form_origin = Origin(f"{form.form}.csv", f"row {row * 100 + i}")
            data = {**form.data, **corrected.get((form.visit, form.form), {})}
            entry.forms.append(FormEntry(
                form.visit, form.form, {k: sv(v, k, form_origin) for k, v in data.items()}, form_origin,
                visit_date=sv(subject.visit_dates[form.visit], "visit_date", form_origin)))
        for seq, ae in enumerate(subject.adverse_events, start=1):
            ae_origin = Origin("adverse_events.csv", f"row {row * 100 + seq}")
            entry.adverse_events.append(AdverseEventEntry({k: sv(v, k, ae_origin) for k, v in ae.items()},
                                                          ae_origin, seq))
        if subject.disposition:
            d_origin = Origin("disposition.csv", f"row {row}")
            entry.disposition = {k: sv(v, k, d_origin) for k, v in subject.disposition.items()}
            entry.disposition_origin = d_origin
        source.subjects.append(entry)
    return source
