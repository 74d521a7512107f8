"""The report's "Missing-data codes" table (issue 12 item 1): counts by code, and by form and visit, taken
from the snapshot's missing_code column; counted here by hand on a known set of coded values."""

from __future__ import annotations

import dataclasses
import re

import pandas as pd

from regenheart.report import build_report
from regenheart.report.missing_codes import missing_code_counts, missing_codes_html

# (subject, visit, form, field, code, reason): 5 coded values in 3 subjects, 3 forms, 2 visits
CODED = [
    ("01-001", "M1", "labs", "ntprobnp_pg_ml", "ND", "sample haemolysed"),
    ("01-002", "M1", "labs", "ntprobnp_pg_ml", "ND", "sample lost"),
    ("01-002", "M1", "kccq", "q1a", "UNK", None),
    ("01-002", "M3", "kccq", "q1b", "UNK", None),
    ("01-003", "SCR", "vital_signs", "spo2_pct", "NA", None),
]


def with_codes(snapshot):
    extra = pd.DataFrame([{"subject_code": s, "visit_code": v, "form_code": f, "field": n, "value": None,
                           "missing_code": c, "missing_reason": r} for s, v, f, n, c, r in CODED])
    items = snapshot.items
    keys = set(zip(extra.subject_code, extra.visit_code, extra.form_code, extra.field, strict=True))
    kept = items[[k not in keys for k in zip(items.subject_code, items.visit_code, items.form_code, items.field,
                                              strict=True)]]
    return dataclasses.replace(snapshot, items=pd.concat([kept.assign(missing_code=None, missing_reason=None), extra],
                                                         ignore_index=True))


def test_counts_by_code_and_by_form_and_visit(protocol, small_study):
    counts = missing_code_counts(protocol, with_codes(small_study.snapshot))
    assert counts.codes == [("ND", "Not done", 2, 2), ("UNK", "Unknown", 2, 1), ("NA", "Not applicable", 1, 1),
                            ("NASK", "Not asked", 0, 0)]
    assert counts.total == 5
    table = {(form, visit): (per_code, total) for form, visit, per_code, total in counts.by_form_visit}
    assert table == {
        ("vital_signs", "SCR"): ({"ND": 0, "UNK": 0, "NA": 1, "NASK": 0}, 1),
        ("labs", "M1"): ({"ND": 2, "UNK": 0, "NA": 0, "NASK": 0}, 2),
        ("kccq", "M1"): ({"ND": 0, "UNK": 1, "NA": 0, "NASK": 0}, 1),
        ("kccq", "M3"): ({"ND": 0, "UNK": 1, "NA": 0, "NASK": 0}, 1),
    }
    # protocol order: forms as declared (vital signs, labs, kccq), visits in schedule order within a form
    assert [(f, v) for f, v, _, _ in counts.by_form_visit] == [("vital_signs", "SCR"), ("labs", "M1"),
                                                                ("kccq", "M1"), ("kccq", "M3")]


def test_the_report_shows_the_table_in_the_snapshot_section(protocol, small_study):
    snapshot = with_codes(small_study.snapshot)
    html = build_report(protocol, snapshot, small_study.data, small_study.results, synthetic=True)
    section = html[html.index('<section class="report-section" id="snapshot">'):]
    section = section[:section.index("</section>")]
    assert '<h3 id="missing-codes">Missing-data codes</h3>' in section and "5 values in all." in section
    rows = re.findall(r'<tr><td class="mono">(\w+)</td><td>([^<]+)</td><td class="num">(\d+)</td>'
                      r'<td class="num">(\d+)</td></tr>', section)
    assert rows == [("ND", "Not done", "2", "2"), ("UNK", "Unknown", "2", "1"), ("NA", "Not applicable", "1", "1"),
                    ("NASK", "Not asked", "0", "0")]
    assert "<tr><td>NT-proBNP and chemistry</td><td>Month 1</td>" in section


def test_no_codes_recorded_says_so_and_no_declared_codes_shows_nothing(protocol, small_study):
    snapshot = small_study.snapshot
    plain = dataclasses.replace(snapshot, items=snapshot.items.assign(missing_code=None, missing_reason=None))
    html = str(missing_codes_html(protocol, plain))
    assert "No value was recorded as a code." in html and "by form and visit" not in html
    assert str(missing_codes_html(protocol.model_copy(update={"missing_codes": []}), plain)) == ""


def test_labels_are_escaped(protocol, small_study):
    odd = protocol.model_copy(deep=True)
    odd.missing_codes[0] = odd.missing_codes[0].model_copy(update={"label": "Not <b>done</b>"})
    html = str(missing_codes_html(odd, with_codes(small_study.snapshot)))
    assert "Not &lt;b&gt;done&lt;/b&gt;" in html and "<b>" not in html
