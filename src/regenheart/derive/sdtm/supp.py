"""SUPP-- datasets: supplemental qualifiers (values with no standard variable), linked to their parent
record by IDVAR = --SEQ (or, for a subject-level parent, no IDVAR)."""

from __future__ import annotations

import pandas as pd

from regenheart.derive.datasets import Dataset
from regenheart.derive.sdtm.common import Context, build_dataset


def build_supp(ctx: Context, domain: str, supp: pd.DataFrame, anchors: pd.DataFrame) -> Dataset | None:
    """SUPP<domain> from raw supplemental values and the parent records' keys -> --SEQ.

    Raw rows carry ``subject_code`` and either ``_key`` (a log record) or ``_visit``/``_form``/``_anchor``
    (a form row; ``_anchor`` names the field whose record is qualified, None for the row's single record).
    """
    if supp.empty or anchors.empty:
        return None
    if "_key" in supp and supp["_key"].notna().any():
        link = supp.merge(anchors[["subject_code", "_key", "USUBJID", "SEQ"]], on=["subject_code", "_key"], how="inner")
    else:
        a = anchors.copy()
        a["_anchor"] = a["_anchor"].where(a["_anchor"].notna(), "")
        s = supp.copy()
        s["_anchor"] = s["_anchor"].where(s["_anchor"].notna(), "")
        link = s.merge(a[["subject_code", "_visit", "_form", "_anchor", "USUBJID", "SEQ"]],
                       on=["subject_code", "_visit", "_form", "_anchor"], how="inner")
    if link.empty:
        return None
    link["STUDYID"] = ctx.studyid
    link["RDOMAIN"] = domain
    link["IDVAR"] = f"{domain}SEQ"
    link["IDVARVAL"] = link["SEQ"].astype(int).astype(str)
    link["QEVAL"] = None
    link = link.sort_values(["USUBJID", "SEQ", "QNAM"]).reset_index(drop=True)
    order = ["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QLABEL", "QVAL", "QORIG", "QEVAL"]
    return build_dataset(domain, link, order, name=f"SUPP{domain}", label=f"Supplemental Qualifiers for {domain}",
                         klass="RELATIONSHIP", keys=["STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM"],
                         structure="One record per supplemental qualifier per related parent domain record",
                         origins={"QVAL": ("Collected", ", ".join(sorted(set(supp.get("_form", pd.Series(
                             [domain])).dropna().astype(str)))) or None)},
                         codelists={"QNAM": f"SPONSOR:SUPP{domain}.QNAM"})
