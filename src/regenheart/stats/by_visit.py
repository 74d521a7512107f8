"""Descriptive statistics of form fields by visit: the default plan of a protocol without endpoints.

Numeric fields: n, mean, SD, median, quartiles (SAS definition 5), range per visit. Code fields: the
number and percentage of each permitted code per visit (denominator: subjects with a value), plus
the number missing. Input is the snapshot's long item table (subject, visit, form, field, value).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from regenheart.protocol.models import Protocol
from regenheart.protocol.sap import SapPlan
from regenheart.stats import descriptive as ds


def descriptive_by_visit(protocol: Protocol, plan: SapPlan, adsl: pd.DataFrame, items: pd.DataFrame) -> list[dict[str, Any]]:
    """Per plan variable and visit where its form is collected: summary or frequencies."""
    spec = plan.descriptive
    if spec is None:
        return []
    flag = plan.population(spec.population).flag
    population = set(adsl.loc[adsl[flag] == "Y", "SUBJID"]) if flag in adsl.columns else set()
    items = items[items["subject_code"].isin(population)]
    out = []
    for var in spec.variables:
        field = protocol.forms[var.form].field(var.field)
        rows = items[(items["form_code"] == var.form) & (items["field"] == var.field)]
        entry: dict[str, Any] = {"form": var.form, "field": var.field, "label": field.label, "unit": field.unit,
                                 "kind": var.kind, "visits": []}
        for visit in protocol.visits:
            if var.form not in visit.forms:
                continue
            values = rows.loc[rows["visit_code"] == visit.code, "value"]
            if var.kind == "numeric":
                summary = ds.summarize(pd.to_numeric(values, errors="coerce"))
                entry["visits"].append({"visit": visit.code, "label": visit.label, **summary.to_dict(nan_as_none=True)})
            else:
                present = values.dropna()
                total = len(present)
                levels = []
                for code in protocol.allowed_codes(field):
                    n = int((present.astype(str) == str(code)).sum())
                    decode = protocol.decode(field.codelist, code) if field.codelist else str(code)
                    levels.append({"code": code, "decode": decode, "n": n,
                                   "percent": None if total == 0 else 100.0 * n / total})
                entry["visits"].append({"visit": visit.code, "label": visit.label, "n": total,
                                        "n_missing": int(values.isna().sum()), "levels": levels})
        out.append(entry)
    return out
