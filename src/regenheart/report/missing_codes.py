"""The report's "Missing-data codes" table: how many values were recorded as each code, by form and visit.

A value recorded as one of the protocol's missing-data codes (not done, unknown, ...) is missing to
every analysis, exactly like a blank; this table shows how many there are and where, so a reader sees
which results rest on fewer values and why. Counts come from the snapshot's ``missing_code`` column
(one row per stored item value), never from the analysis. Rendered as an HTML fragment placed in the
report's data-snapshot section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

from regenheart.protocol.models import Protocol
from regenheart.store.snapshot import Snapshot


@dataclass(frozen=True)
class MissingCodeCounts:
    """Counts of coded values: per code (values, subjects) and per form and visit (values per code)."""

    codes: list[tuple[str, str, int, int]]                   # code, label, values, subjects
    by_form_visit: list[tuple[str, str, dict[str, int], int]] = field(default_factory=list)  # form, visit, per code, total

    @property
    def total(self) -> int:
        """Number of item values recorded as a missing-data code."""
        return sum(values for _, _, values, _ in self.codes)


def missing_code_counts(protocol: Protocol, snapshot: Snapshot) -> MissingCodeCounts | None:
    """Counts of the snapshot's coded item values; None when the protocol declares no codes."""
    if not protocol.missing_codes:
        return None
    items = snapshot.items
    if "missing_code" in items.columns:
        coded = items[items["missing_code"].notna()]
    else:
        coded = items.iloc[0:0]
    codes = []
    for m in protocol.missing_codes:
        rows = coded[coded["missing_code"] == m.code] if len(coded) else coded
        codes.append((m.code, m.label, len(rows), rows["subject_code"].nunique() if len(rows) else 0))
    by_form_visit = []
    if len(coded):
        visit_order = {code: i for i, code in enumerate(protocol.visit_codes)}
        form_order = {code: i for i, code in enumerate(protocol.forms)}
        table = pd.crosstab([coded["form_code"], coded["visit_code"]], coded["missing_code"])
        keys = sorted(table.index, key=lambda k: (form_order.get(k[0], len(form_order)), k[0],
                                                  visit_order.get(k[1], len(visit_order)), k[1]))
        for form, visit in keys:
            per_code = {m.code: int(table.loc[(form, visit)].get(m.code, 0)) for m in protocol.missing_codes}
            by_form_visit.append((form, visit, per_code, sum(per_code.values())))
    return MissingCodeCounts(codes, by_form_visit)


def missing_codes_html(protocol: Protocol, snapshot: Snapshot) -> Markup:
    """The "Missing-data codes" subsection (HTML, escaped); empty when the protocol declares no codes."""
    counts = missing_code_counts(protocol, snapshot)
    if counts is None:
        return Markup("")
    forms = {code: form.label for code, form in protocol.forms.items()}
    visits = {v.code: v.label for v in protocol.visits}
    parts: list[Any] = [
        Markup('<h3 id="missing-codes">Missing-data codes</h3>\n'),
        Markup("<p>Values recorded as one of the protocol's missing-data codes instead of a result. They are "
               "missing to every analysis, like blank values; the reason given with a code is in the audit "
               "trail and in SDTM --REASND (--STAT = NOT DONE). {}</p>\n").format(
            Markup("No value was recorded as a code.") if counts.total == 0 else
            Markup("{} values in all.").format(counts.total)),
        Markup('<div class="table-wrap"><table class="missing-codes"><thead><tr><th scope="col">Code</th><th scope="col">Meaning'
               '</th><th scope="col" class="num">Values</th><th scope="col" class="num">Subjects</th></tr>'
               "</thead><tbody>\n"),
    ]
    for code, label, values, subjects in counts.codes:
        parts.append(Markup('<tr><td class="mono">{}</td><td>{}</td><td class="num">{}</td><td class="num">{}'
                            "</td></tr>\n").format(code, label, values, subjects))
    parts.append(Markup("</tbody></table></div>\n"))
    if counts.by_form_visit:
        codes = [m.code for m in protocol.missing_codes]
        header = "".join(str(Markup('<th scope="col" class="num mono">{}</th>').format(c)) for c in codes)
        parts.append(Markup('<div class="table-wrap"><table class="missing-codes-by-form"><caption>Coded values by form and visit'
                            '</caption><thead><tr><th scope="col">Form</th><th scope="col">Visit</th>'
                            + header + '<th scope="col" class="num">Total</th></tr></thead><tbody>\n'))
        for form, visit, per_code, total in counts.by_form_visit:
            cells = "".join(str(Markup('<td class="num">{}</td>').format(per_code[c])) for c in codes)
            parts.append(Markup("<tr><td>{}</td><td>{}</td>").format(forms.get(form, form), visits.get(visit, visit))
                         + Markup(cells) + Markup('<td class="num">{}</td></tr>\n').format(total))
        parts.append(Markup("</tbody></table></div>\n"))
    return Markup("").join(escape(p) for p in parts)
