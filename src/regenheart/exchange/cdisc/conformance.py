"""Conformance checks of SDTM and ADaM datasets, reported as rows (dataset, variable, record, rule, severity,
message), in the spirit of Pinnacle 21 / CDISC CORE but regenheart's own rules (ids ``RH....``).

Rules (each row of :data:`RULES`): required and expected variables present (per the dataset metadata and the
SDTM/ADaM models' core identifiers); metadata and records agree; values of variables with a CDISC codelist
found in that codelist (non-extensible: error; extensible: reported as an extension, warning); --SEQ unique per
subject; ISO 8601 --DTC values; every USUBJID in DM (and ADSL); --DY consistent with RFSTDTC (no day 0);
--ENDTC not before --STDTC; findings not done (--STAT = NOT DONE) without a result, --REASND only on
them, no result without NOT DONE, no --OCCUR on a prespecified event or intervention not done; ADSL one record per subject; ADaM records traceable to SDTM (SRCDOM/SRCVAR/
SRCSEQ resolve to an SDTM record holding the same value); SAS XPT v5 limits; derivations documented.
All checks are vectorised with pandas and read only the dataset metadata model.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from regenheart.derive.datasets import Dataset
from regenheart.exchange.cdisc.ct import TerminologySet
from regenheart.exchange.cdisc.metadata import (
    as_text,
    external_dictionary,
    is_missing,
    iso_dates,
    missing_mask,
    numeric,
    text_series,
)
from regenheart.exchange.cdisc.xpt import MAX_CHAR_BYTES, MAX_LABEL, MAX_NAME, SAS_NAME

Severity = Literal["Error", "Warning", "Notice"]
MAX_ROWS_PER_RULE = 50  # per dataset, variable and rule: further hits are summarised in one row

RULES: dict[str, tuple[Severity, str]] = {
    "RH0001": ("Error", "Required variable missing from the dataset"),
    "RH0002": ("Warning", "Expected variable missing from the dataset"),
    "RH0003": ("Error", "Required variable with a missing value"),
    "RH0004": ("Error", "Variable described in the metadata but absent from the records, or the reverse"),
    "RH0010": ("Error", "Value not in a non-extensible CDISC codelist"),
    "RH0011": ("Warning", "Value not in an extensible CDISC codelist (sponsor extension)"),
    "RH0012": ("Error", "Codelist reference not found in CDISC CT and not a sponsor codelist"),
    "RH0013": ("Error", "Value not in the form of its external dictionary"),
    "RH0020": ("Error", "--SEQ not unique within USUBJID"),
    "RH0021": ("Error", "DOMAIN value differs from the dataset name"),
    "RH0030": ("Error", "--DTC value is not ISO 8601"),
    "RH0031": ("Warning", "End date before start date"),
    "RH0040": ("Error", "USUBJID not found in DM"),
    "RH0041": ("Error", "USUBJID not found in ADSL"),
    "RH0050": ("Error", "--DY inconsistent with --DTC and DM.RFSTDTC"),
    "RH0051": ("Error", "--DY equals 0 (there is no study day 0 in the CDISC convention)"),
    "RH0060": ("Error", "ADSL has more than one record per subject"),
    "RH0070": ("Error", "SRCDOM/SRCVAR/SRCSEQ do not resolve to an SDTM record"),
    "RH0071": ("Error", "Analysis value differs from the SDTM value it traces to"),
    "RH0072": ("Warning", "Analysed record without SDTM traceability (SRCDOM/SRCVAR/SRCSEQ empty)"),
    "RH0073": ("Error", "ADaM record whose --SEQ names no SDTM record"),
    "RH0080": ("Error", "Name longer than 8 characters or not a SAS name (XPT v5)"),
    "RH0081": ("Error", "Label longer than 40 characters (XPT v5)"),
    "RH0082": ("Error", "Character value longer than 200 bytes (XPT v5)"),
    "RH0083": ("Warning", "Character value with non-ASCII characters"),
    "RH0084": ("Error", "--TESTCD/PARAMCD value longer than 8 characters or not a SAS name"),
    "RH0085": ("Error", "--TEST value longer than 40 characters"),
    "RH0090": ("Warning", "Derived variable without a method"),
    "RH0091": ("Error", "Method referenced but not defined"),
    "RH0092": ("Error", "Key variable missing"),
    "RH0100": ("Error", "--STAT = NOT DONE on a record with a result (--ORRES, --STRESC or --STRESN)"),
    "RH0101": ("Error", "--REASND given on a record whose --STAT is not NOT DONE"),
    "RH0102": ("Warning", "--STAT = NOT DONE without --REASND"),
    "RH0103": ("Error", "Findings record without a result and not marked --STAT = NOT DONE"),
    "RH0104": ("Error", "--STAT = NOT DONE on a prespecified event or intervention whose --OCCUR is given"),
}

# Core identifiers of the SDTM and ADaM models (SDTM v2.0 / SDTMIG 3.4, ADaMIG 1.3): standard facts, not study
# specifics. ``--`` stands for the domain prefix.
SDTM_CLASS_REQUIRED = {
    "FINDINGS": ["STUDYID", "DOMAIN", "USUBJID", "--SEQ", "--TESTCD", "--TEST"],
    "EVENTS": ["STUDYID", "DOMAIN", "USUBJID", "--SEQ", "--TERM"],
    "INTERVENTIONS": ["STUDYID", "DOMAIN", "USUBJID", "--SEQ", "--TRT"],
    "FINDINGS ABOUT": ["STUDYID", "DOMAIN", "USUBJID", "--SEQ", "--TESTCD", "--TEST", "--OBJ"],
}
SDTM_DOMAIN_REQUIRED = {
    "DM": ["STUDYID", "DOMAIN", "USUBJID", "SUBJID", "SITEID", "SEX", "ARMCD", "ARM", "ACTARMCD", "ACTARM",
           "COUNTRY"],
    "SV": ["STUDYID", "DOMAIN", "USUBJID", "VISITNUM"],
    "TS": ["STUDYID", "DOMAIN", "TSSEQ", "TSPARMCD", "TSPARM"],
    "TA": ["STUDYID", "DOMAIN", "ARMCD", "ARM", "TAETORD", "ETCD"],
    "TE": ["STUDYID", "DOMAIN", "ETCD", "ELEMENT", "TESTRL"],
    "TV": ["STUDYID", "DOMAIN", "VISITNUM"],
    "TI": ["STUDYID", "DOMAIN", "IETESTCD", "IETEST", "IECAT"],
}
SDTM_DOMAIN_EXPECTED = {"DM": ["RFSTDTC", "RFENDTC", "AGE", "AGEU", "RACE"]}
ADAM_CLASS_REQUIRED = {
    "SUBJECT LEVEL ANALYSIS DATASET": ["STUDYID", "USUBJID", "SUBJID", "SITEID", "AGE", "AGEU", "SEX", "ARM"],
    "BASIC DATA STRUCTURE": ["STUDYID", "USUBJID", "PARAMCD", "PARAM"],
    "OCCURRENCE DATA STRUCTURE": ["STUDYID", "USUBJID"],
}
ARM_VARIABLES = ("ARMCD", "ARM", "ACTARMCD", "ACTARM")
# --TEST becomes a label when transposed (at most 40); IETEST/TIETEST hold criterion text (SDTMIG: up to 200).
TEST_LABEL_EXEMPT = ("IE", "TI")
ADAM_NEVER_NULL = ("STUDYID", "USUBJID", "PARAMCD", "PARAM")
ADAM_CLASS_EXPECTED = {"SUBJECT LEVEL ANALYSIS DATASET": ["RACE", "TRT01P"], "BASIC DATA STRUCTURE": ["AVISIT"]}

# Forms of external dictionary codes that can be checked without the (licensed or large) dictionary itself.
EXTERNAL_FORMS = {"ISO 3166-1 alpha-3": re.compile(r"^[A-Z]{3}$"), "ISO 3166-1 alpha-2": re.compile(r"^[A-Z]{2}$")}

# ISO 8601 date/datetime, complete or reduced precision (YYYY, YYYY-MM, YYYY-MM-DD, THH, THH:MM, THH:MM:SS[.f]).
ISO_8601 = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])"
                      r"(T([01]\d|2[0-3])(:[0-5]\d(:[0-5]\d(\.\d+)?)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")


@dataclass(frozen=True)
class Finding:
    """One conformance result: where (dataset, variable, record), which rule, how severe, and why."""

    dataset: str
    variable: str
    record: str
    rule: str
    severity: Severity
    message: str


class _Collector:
    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def add(self, rule: str, dataset: str, variable: str, record: str, message: str) -> None:
        key = (dataset, variable, rule)
        self._counts[key] += 1
        if self._counts[key] <= MAX_ROWS_PER_RULE:
            self.findings.append(Finding(dataset, variable, record, rule, RULES[rule][0], message))

    def add_rows(self, rule: str, ds: Dataset, variable: str, mask: np.ndarray | pd.Series, message) -> None:
        """One finding per record where ``mask`` is true; ``message(row_index)`` says why."""
        for index in np.flatnonzero(np.asarray(mask, dtype=bool)):
            self.add(rule, ds.name, variable, _record(ds, int(index)), message(int(index)))

    def close(self) -> list[Finding]:
        for (dataset, variable, rule), n in self._counts.items():
            if n > MAX_ROWS_PER_RULE:
                self.findings.append(Finding(dataset, variable, "", rule, RULES[rule][0],
                                             f"{n - MAX_ROWS_PER_RULE} more records fail {rule} "
                                             f"({RULES[rule][1]}); first {MAX_ROWS_PER_RULE} listed"))
        return self.findings


def _record(ds: Dataset, index: int) -> str:
    parts = []
    if "USUBJID" in ds.records.columns:
        parts.append(as_text(ds.records["USUBJID"].iloc[index]))
    seq = _seq_name(ds)
    if seq:
        parts.append(f"{seq}={as_text(ds.records[seq].iloc[index])}")
    parts.append(f"row {index + 1}")
    return " ".join(p for p in parts if p)


def _seq_name(ds: Dataset) -> str | None:
    name = f"{ds.name}SEQ" if ds.standard == "SDTM" else None
    return name if name and name in ds.records.columns else None


def _prefix(ds: Dataset) -> str:
    return ds.name[:2]


def _text(ds: Dataset, name: str) -> pd.Series:
    return text_series(ds.records[name])


# ---------------------------------------------------------------------------------------------- rules
def _structure(c: _Collector, ds: Dataset) -> None:
    described = [v.name for v in ds.variables]
    columns = list(ds.records.columns)
    for name in described:
        if name not in columns:
            c.add("RH0004", ds.name, name, "", f"{name} is described in the metadata but not in the records")
    for name in columns:
        if name not in described:
            c.add("RH0004", ds.name, name, "", f"{name} is in the records but has no metadata")
    for key in ds.keys:
        if key not in described:
            c.add("RH0092", ds.name, key, "", f"key variable {key} is not a variable of {ds.name}")
    prefix = _prefix(ds)
    if ds.standard == "SDTM":
        required = SDTM_DOMAIN_REQUIRED.get(ds.name) or SDTM_CLASS_REQUIRED.get(ds.klass, [])
        expected = SDTM_DOMAIN_EXPECTED.get(ds.name, [])
    else:
        required = ADAM_CLASS_REQUIRED.get(ds.klass, [])
        expected = ADAM_CLASS_EXPECTED.get(ds.klass, [])
    required = {r.replace("--", prefix) for r in required} | {v.name for v in ds.variables if v.core == "Req"}
    expected = {e.replace("--", prefix) for e in expected} | {v.name for v in ds.variables if v.core == "Exp"}
    # SDTM "Req": present and never null; ADaM "Req": present (values may be null), identifiers never null.
    not_null = required if ds.standard == "SDTM" else set(ADAM_NEVER_NULL)
    for name in sorted(required):
        if name not in columns:
            c.add("RH0001", ds.name, name, "", f"required variable {name} is missing from {ds.name}")
        elif name in not_null:
            missing = missing_mask(ds.records[name])
            if name in ARM_VARIABLES and "ARMNRS" in columns:  # SDTMIG 3.4: arm is null when ARMNRS says why
                missing &= missing_mask(ds.records["ARMNRS"])
            missing = missing.to_numpy()
            c.add_rows("RH0003", ds, name, missing, lambda i, n=name: f"required variable {n} has no value")
    for name in sorted(expected - required):
        if name not in columns:
            c.add("RH0002", ds.name, name, "", f"expected variable {name} is missing from {ds.name}")
    if ds.standard == "SDTM" and "DOMAIN" in columns and ds.klass not in ("RELATIONSHIP",):
        wrong = (_text(ds, "DOMAIN") != ds.name).to_numpy()
        c.add_rows("RH0021", ds, "DOMAIN", wrong,
                   lambda i: f"DOMAIN is {as_text(ds.records['DOMAIN'].iloc[i])!r}, dataset is {ds.name}")


def _terminology(c: _Collector, ds: Dataset, ct: TerminologySet) -> None:
    checks = [(v.name, v.codelist, None) for v in ds.variables if v.codelist]
    checks += [(vl.variable, vl.codelist, vl) for vl in ds.value_level if vl.codelist]
    for name, ref, vl in checks:
        if name not in ds.records.columns:
            continue
        found = ct.find(ref)
        external = external_dictionary(ref)
        if found is None and external:
            pattern = EXTERNAL_FORMS.get(ref)
            if pattern is not None:
                values = _text(ds, name)
                bad = (values != "") & ~values.str.match(pattern)
                c.add_rows("RH0013", ds, name, bad.to_numpy(),
                           lambda i, v=values, r=ref: f"{v.iloc[i]!r} is not a {r} code")
            continue
        if found is None:
            if not ref.startswith("SPONSOR:"):
                c.add("RH0012", ds.name, name, "", f"codelist {ref!r} is not in CDISC CT {ct.sdtm.version} "
                                                   "and not a sponsor codelist ('SPONSOR:<name>')")
            continue
        package, codelist = found
        values = _text(ds, name)
        mask = values != ""
        if vl is not None and vl.where_variable in ds.records.columns:
            mask &= _text(ds, vl.where_variable) == vl.where_value
        outside = mask & ~values.isin(set(codelist.terms))
        rule = "RH0011" if codelist.extensible else "RH0010"
        what = "extended value of extensible" if codelist.extensible else "not in non-extensible"
        c.add_rows(rule, ds, name, outside.to_numpy(),
                   lambda i, v=values, cl=codelist, p=package, w=what:
                   f"{v.iloc[i]!r}: {w} codelist {cl.short_name} ({cl.code}, {p.standard} CT {p.version})")


def _sequences(c: _Collector, ds: Dataset) -> None:
    seq = _seq_name(ds)
    if not seq or "USUBJID" not in ds.records.columns:
        return
    dup = ds.records.duplicated(subset=["USUBJID", seq], keep=False).to_numpy()
    c.add_rows("RH0020", ds, seq, dup, lambda i: f"{seq} {as_text(ds.records[seq].iloc[i])} occurs more than "
                                                 "once for this subject")


def _dates(c: _Collector, ds: Dataset) -> None:
    for name in ds.records.columns:
        if not str(name).endswith("DTC"):
            continue
        values = _text(ds, name)
        bad = (values != "") & ~values.str.match(ISO_8601)
        c.add_rows("RH0030", ds, name, bad.to_numpy(), lambda i, v=values: f"{v.iloc[i]!r} is not ISO 8601")
    prefix = _prefix(ds) if ds.standard == "SDTM" else ""
    start, end = f"{prefix}STDTC", f"{prefix}ENDTC"
    if ds.standard == "SDTM" and start in ds.records.columns and end in ds.records.columns:
        s = iso_dates(ds.records[start])
        e = iso_dates(ds.records[end])
        both = s.notna() & e.notna()
        before = np.zeros(len(ds.records), dtype=bool)
        before[both.to_numpy()] = [b < a for a, b in zip(s[both], e[both])]
        c.add_rows("RH0031", ds, end, before, lambda i: f"{end} {as_text(ds.records[end].iloc[i])} is before "
                                                      f"{start} {as_text(ds.records[start].iloc[i])}")


def _not_done(c: _Collector, ds: Dataset) -> None:
    """SDTMIG 3.4 findings: a test not done has no result, --STAT = NOT DONE and, usually, --REASND (why);
    --REASND belongs only to such records; a record with no result is NOT DONE."""
    if ds.standard != "SDTM":
        return
    p, columns = _prefix(ds), ds.records.columns
    stat_name, reason_name = f"{p}STAT", f"{p}REASND"
    if ds.klass in ("EVENTS", "INTERVENTIONS"):  # a prespecified question not answered: no --OCCUR
        occur = f"{p}OCCUR"
        if stat_name in columns and occur in columns:
            not_done = (_text(ds, stat_name) == "NOT DONE").to_numpy()
            given = ~missing_mask(ds.records[occur]).to_numpy()
            c.add_rows("RH0104", ds, occur, not_done & given, lambda i: f"{stat_name} is NOT DONE but {occur} is "
                       f"{as_text(ds.records[occur].iloc[i])!r}")
        if reason_name in columns:
            stat = _text(ds, stat_name) if stat_name in columns else pd.Series("", index=ds.records.index)
            stray = ~missing_mask(ds.records[reason_name]).to_numpy() & (stat != "NOT DONE").to_numpy()
            c.add_rows("RH0101", ds, reason_name, stray, lambda i: f"{reason_name} "
                       f"{as_text(ds.records[reason_name].iloc[i])!r} without {stat_name} = NOT DONE")
        return
    if ds.klass != "FINDINGS":
        return
    results = [n for n in (f"{p}ORRES", f"{p}STRESC", f"{p}STRESN") if n in columns]
    if not results:
        return
    has_result = np.zeros(len(ds.records), dtype=bool)
    for name in results:
        has_result |= ~missing_mask(ds.records[name]).to_numpy()
    not_done = (_text(ds, stat_name) == "NOT DONE").to_numpy() if stat_name in columns else \
        np.zeros(len(ds.records), dtype=bool)
    reason = ~missing_mask(ds.records[reason_name]).to_numpy() if reason_name in columns else \
        np.zeros(len(ds.records), dtype=bool)
    c.add_rows("RH0100", ds, stat_name, not_done & has_result, lambda i: f"{stat_name} is NOT DONE but "
               f"{next(n for n in results if not is_missing(ds.records[n].iloc[i]))} holds a result")
    c.add_rows("RH0101", ds, reason_name, reason & ~not_done, lambda i: f"{reason_name} "
               f"{as_text(ds.records[reason_name].iloc[i])!r} without {stat_name} = NOT DONE")
    c.add_rows("RH0102", ds, reason_name, not_done & ~reason, lambda i: f"{stat_name} is NOT DONE; no "
               f"{reason_name} says why")
    c.add_rows("RH0103", ds, stat_name, ~has_result & ~not_done, lambda i: f"no {', '.join(results)} and "
               f"{stat_name} is not NOT DONE")


def _subjects(c: _Collector, ds: Dataset, reference: Dataset | None, rule: str, where: str) -> None:
    if reference is None or ds is reference or "USUBJID" not in ds.records.columns \
            or "USUBJID" not in reference.records.columns:
        return
    known = set(_text(reference, "USUBJID"))
    unknown = ~_text(ds, "USUBJID").isin(known)
    c.add_rows(rule, ds, "USUBJID", unknown.to_numpy(),
               lambda i: f"USUBJID {as_text(ds.records['USUBJID'].iloc[i])!r} is not in {where}")


def _study_days(c: _Collector, ds: Dataset, dm: Dataset | None) -> None:
    if ds.standard != "SDTM" or dm is None or "RFSTDTC" not in dm.records.columns or \
            "USUBJID" not in ds.records.columns:
        return
    reference = dict(zip(_text(dm, "USUBJID"), iso_dates(dm.records["RFSTDTC"]), strict=True))
    prefix = _prefix(ds)
    pairs = [(f"{prefix}DY", f"{prefix}DTC"), (f"{prefix}STDY", f"{prefix}STDTC"), (f"{prefix}ENDY", f"{prefix}ENDTC")]
    ref_dates = _text(ds, "USUBJID").map(reference)
    for dy_name, dtc_name in pairs:
        if dy_name not in ds.records.columns:
            continue
        dy = numeric(ds.records[dy_name])
        zero = (dy == 0).to_numpy()
        c.add_rows("RH0051", ds, dy_name, zero, lambda i, n=dy_name: f"{n} is 0")
        if dtc_name not in ds.records.columns:
            continue
        dates = iso_dates(ds.records[dtc_name])
        expected = [_cdisc_day(d, r) for d, r in zip(dates, ref_dates, strict=True)]
        exp = pd.Series(expected, dtype=float, index=ds.records.index)
        bad = (exp.notna() & (dy.isna() | (dy != exp))) | (exp.isna() & dy.notna() & ref_dates.notna()
                                                         & dates.notna())
        c.add_rows("RH0050", ds, dy_name, bad.to_numpy(),
                   lambda i, n=dy_name, e=exp, d=dy, t=dtc_name:
                   f"{n} is {_num(d.iloc[i])}, expected {_num(e.iloc[i])} from {t} and RFSTDTC")


def _cdisc_day(date, reference) -> float:
    if is_missing(date) or is_missing(reference):
        return np.nan
    delta = (date - reference).days
    return float(delta + 1 if delta >= 0 else delta)


def _num(x: float) -> str:
    return "missing" if pd.isna(x) else str(int(x)) if float(x).is_integer() else str(x)


def _adsl_one_per_subject(c: _Collector, ds: Dataset) -> None:
    if ds.klass != "SUBJECT LEVEL ANALYSIS DATASET" or "USUBJID" not in ds.records.columns:
        return
    dup = ds.records.duplicated(subset=["USUBJID"], keep=False).to_numpy()
    c.add_rows("RH0060", ds, "USUBJID", dup, lambda i: "subject has more than one ADSL record")


def _traceability(c: _Collector, ds: Dataset, sdtm: Mapping[str, Dataset]) -> None:
    if ds.standard != "ADaM" or "USUBJID" not in ds.records.columns:
        return
    r = ds.records
    has_src = {"SRCDOM", "SRCVAR", "SRCSEQ"} <= set(r.columns)
    analysed = (_text(ds, "ANL01FL") == "Y") if "ANL01FL" in r.columns else pd.Series(True, index=r.index)
    if ds.klass == "BASIC DATA STRUCTURE":
        derived_row = (_text(ds, "DTYPE") != "") if "DTYPE" in r.columns else pd.Series(False, index=r.index)
        # Parameters derived from other parameters (value-level origin Derived) trace through their method.
        derived_params = {vl.where_value for vl in ds.value_level
                          if vl.variable == "AVAL" and vl.where_variable == "PARAMCD" and vl.origin == "Derived"}
        if derived_params and "PARAMCD" in r.columns:
            derived_row |= _text(ds, "PARAMCD").isin(derived_params)
        if has_src:
            untraced = analysed & ~derived_row & (_text(ds, "SRCDOM") == "")
        else:
            untraced = analysed & ~derived_row
        c.add_rows("RH0072", ds, "SRCDOM", untraced.to_numpy(),
                   lambda i: f"analysed {as_text(r['PARAMCD'].iloc[i]) if 'PARAMCD' in r else ''} record "
                             "has no SDTM source (SRCDOM/SRCVAR/SRCSEQ)")
    if has_src:
        index = _sdtm_index(sdtm)
        src_dom, src_var = _text(ds, "SRCDOM").tolist(), _text(ds, "SRCVAR").tolist()
        src_seq = numeric(r["SRCSEQ"]).tolist()
        subjects = _text(ds, "USUBJID").tolist()
        mine = [r[col].tolist() for col in ("AVAL", "AVALC") if col in r.columns]
        columns: dict[tuple[str, str], list] = {}  # SDTM columns as lists, extracted once
        for i in (j for j, d in enumerate(src_dom) if d):
            dom, var, seq = src_dom[i], src_var[i], src_seq[i]
            target = sdtm.get(dom)
            row = index.get((dom, subjects[i], None if pd.isna(seq) else int(seq)))
            if target is None or row is None or var not in target.records.columns:
                c.add("RH0070", ds.name, "SRCSEQ", _record(ds, i),
                      f"{dom}.{var} with {dom}SEQ {_num(seq)} for this subject does not exist")
                continue
            if (dom, var) not in columns:
                columns[(dom, var)] = target.records[var].tolist()
            source_value = columns[(dom, var)][row]
            # The traced value is AVAL (numeric results) or AVALC (character results, e.g. --STRESC).
            candidates = [values[i] for values in mine]
            if candidates and not any(_same_value(v, source_value) for v in candidates):
                shown = " / ".join(repr(as_text(v)) for v in candidates)
                c.add("RH0071", ds.name, "AVAL", _record(ds, i),
                      f"{shown} differs from {dom}.{var} = {as_text(source_value)!r} ({dom}SEQ {_num(seq)})")
    # Any ADaM dataset carrying an SDTM --SEQ (e.g. AESEQ in ADAE) must point at an existing SDTM record.
    for dom, target in sdtm.items():
        seq_name = f"{dom}SEQ"
        if seq_name not in r.columns or seq_name not in target.records.columns:
            continue
        known = set(zip(_text(target, "USUBJID"), numeric(target.records[seq_name]), strict=True))
        pairs = list(zip(_text(ds, "USUBJID"), numeric(r[seq_name]), strict=True))
        missing = np.array([not pd.isna(s) and (u, s) not in known for u, s in pairs], dtype=bool)
        c.add_rows("RH0073", ds, seq_name, missing,
                   lambda i, n=seq_name, d=dom: f"{n} {_num(numeric(r[n]).iloc[i])} names no {d} record "
                                                "of this subject")


def _sdtm_index(sdtm: Mapping[str, Dataset]) -> dict[tuple[str, str, int], int]:
    index: dict[tuple[str, str, int], int] = {}
    for dom, ds in sdtm.items():
        seq = f"{dom}SEQ"
        if seq not in ds.records.columns or "USUBJID" not in ds.records.columns:
            continue
        for row, (subject, value) in enumerate(zip(_text(ds, "USUBJID"), numeric(ds.records[seq]), strict=True)):
            if not pd.isna(value):
                index[(dom, subject, int(value))] = row
    return index


def _same_value(a, b) -> bool:
    if is_missing(a) and is_missing(b):
        return True
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return as_text(a) == as_text(b)
    return abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y))


def _transport_limits(c: _Collector, ds: Dataset) -> None:
    if len(ds.name) > MAX_NAME or not SAS_NAME.match(ds.name):
        c.add("RH0080", ds.name, "", "", f"dataset name {ds.name!r} is not a SAS v5 name (at most 8 characters)")
    if len(ds.label) > MAX_LABEL:
        c.add("RH0081", ds.name, "", "", f"dataset label has {len(ds.label)} characters: {ds.label!r}")
    for v in ds.variables:
        if len(v.name) > MAX_NAME or not SAS_NAME.match(v.name):
            c.add("RH0080", ds.name, v.name, "", f"variable name {v.name!r} is not a SAS v5 name")
        if len(v.label) > MAX_LABEL:
            c.add("RH0081", ds.name, v.name, "", f"label has {len(v.label)} characters: {v.label!r}")
    for name in ds.records.columns:
        col = ds.records[name]
        if col.dtype != object and not pd.api.types.is_string_dtype(col):
            continue
        values = text_series(col).tolist()
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
        if "".join(values).isascii():
            sizes = lengths
        else:
            sizes = np.fromiter((len(v.encode("utf-8")) for v in values), dtype=np.int64, count=len(values))
            c.add_rows("RH0083", ds, str(name), sizes != lengths,
                       lambda i, v=values: f"{v[i][:40]!r} has non-ASCII characters")
        c.add_rows("RH0082", ds, str(name), sizes > MAX_CHAR_BYTES,
                   lambda i, s=sizes: f"value of {s[i]} bytes (at most {MAX_CHAR_BYTES})")
    code_vars = [f"{_prefix(ds)}TESTCD"] if ds.standard == "SDTM" else ["PARAMCD"]
    for name in code_vars:
        if name in ds.records.columns:
            values = _text(ds, name)
            bad = (values != "") & ((values.str.len() > MAX_NAME) | ~values.str.match(SAS_NAME))
            c.add_rows("RH0084", ds, name, bad.to_numpy(), lambda i, v=values: f"{v.iloc[i]!r} cannot become a "
                                                                               "SAS variable name")
    test = f"{_prefix(ds)}TEST"
    if ds.standard == "SDTM" and test in ds.records.columns and ds.name not in TEST_LABEL_EXEMPT:
        values = _text(ds, test)
        c.add_rows("RH0085", ds, test, (values.str.len() > MAX_LABEL).to_numpy(),
                   lambda i, v=values: f"{v.iloc[i]!r} has {len(v.iloc[i])} characters")


def _methods(c: _Collector, ds: Dataset) -> None:
    defined = {m.id for m in ds.methods}
    entries = [(v.name, v.origin, v.source) for v in ds.variables]
    entries += [(f"{vl.variable} ({vl.where_variable}={vl.where_value})", vl.origin, vl.source)
                for vl in ds.value_level]
    for name, origin, source in entries:
        if origin != "Derived":
            continue
        if not source:
            c.add("RH0090", ds.name, name, "", f"{name} is Derived but names no method")
        elif source.startswith("MT.") and source not in defined:
            c.add("RH0091", ds.name, name, "", f"{name} names method {source}, which the dataset does not define")


# ---------------------------------------------------------------------------------------------- entry points
def check_datasets(sdtm: Mapping[str, Dataset], adam: Mapping[str, Dataset],
                   terminology: TerminologySet) -> list[Finding]:
    """Every conformance finding for a package's SDTM and ADaM datasets (errors first, then warnings)."""
    c = _Collector()
    dm = sdtm.get("DM")
    adsl = next((d for d in adam.values() if d.klass == "SUBJECT LEVEL ANALYSIS DATASET"), None)
    for ds in list(sdtm.values()) + list(adam.values()):
        _structure(c, ds)
        _terminology(c, ds, terminology)
        _sequences(c, ds)
        _dates(c, ds)
        _not_done(c, ds)
        if ds.klass != "TRIAL DESIGN":
            _subjects(c, ds, dm, "RH0040", "DM")
        if ds.standard == "ADaM":
            _subjects(c, ds, adsl, "RH0041", "ADSL")
        _study_days(c, ds, dm)
        _adsl_one_per_subject(c, ds)
        _traceability(c, ds, sdtm)
        _transport_limits(c, ds)
        _methods(c, ds)
    order = {"Error": 0, "Warning": 1, "Notice": 2}
    return sorted(c.close(), key=lambda f: (order[f.severity], f.dataset, f.rule, f.variable))


def summarize(findings: Iterable[Finding]) -> dict[str, dict[str, int]]:
    """Counts by severity, and by rule within severity: ``{"Error": {"RH0010": 2}, ...}``."""
    out: dict[str, dict[str, int]] = {"Error": {}, "Warning": {}, "Notice": {}}
    for f in findings:
        out[f.severity][f.rule] = out[f.severity].get(f.rule, 0) + 1
    return out


def write_conformance_csv(findings: Iterable[Finding], path: Path) -> Path:
    """``conformance.csv``: dataset, variable, record, rule, severity, message, rule description."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["dataset", "variable", "record", "rule", "severity", "message",
                                                    "rule_description"])
        writer.writeheader()
        for f in findings:
            writer.writerow({**asdict(f), "rule_description": RULES[f.rule][1]})
    return path
