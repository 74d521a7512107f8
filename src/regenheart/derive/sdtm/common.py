"""Shared pieces of the SDTM builders: study context, ISO dates, --DY, EPOCH, --SEQ, --LOBXFL, metadata.

Everything here is generic SDTMIG 3.4 logic over protocol concepts (arms, visits, day 0); what a
form or field means in SDTM is read from the protocol's ``sdtm`` annotations, never written here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from regenheart.derive.datasets import Dataset, Method, ValueLevel, Variable
from regenheart.protocol.models import FieldDef, Protocol
from regenheart.store.snapshot import Snapshot

SDTMIG_VERSION = "3.4"
SDTM_VERSION = "2.0"
CT_VERSION = "SDTM CT 2025-03-28"

# Epochs (CDISC CT C99079) of the three generic elements every study here has: before day 0,
# the day-0 treatment (infusion or randomization), after it.
EPOCH_SCREENING, EPOCH_TREATMENT, EPOCH_FOLLOWUP = "SCREENING", "TREATMENT", "FOLLOW-UP"

METHODS = {
    "MT.DY": Method("MT.DY", "Study day", "--DY = --DTC - DM.RFSTDTC + 1 on or after RFSTDTC, --DTC - RFSTDTC "
                                         "before it (there is no day 0). RFSTDTC is the day-0 treatment date."),
    "MT.SEQ": Method("MT.SEQ", "Sequence number", "--SEQ numbers each subject's records 1, 2, ... in the order of "
                                                  "the dataset keys."),
    "MT.EPOCH": Method("MT.EPOCH", "Epoch", "The epoch of the subject element (SE) containing --DTC (SESTDTC <= "
                                            "--DTC < SEENDTC): SCREENING before RFSTDTC, TREATMENT on it, "
                                            "FOLLOW-UP after it."),
    "MT.LOBXFL": Method("MT.LOBXFL", "Last observation before exposure",
                        "Y on the last record with a result per subject and test (and location, direction, method, "
                        "time point) dated before RFXSTDTC; null otherwise."),
    "MT.VISITDY": Method("MT.VISITDY", "Planned study day", "The protocol's target day converted to the SDTM "
                                                            "convention: day + 1 on or after day 0, day before it."),
    "MT.AGE": Method("MT.AGE", "Age", "Age in years as collected on the demographics form at consent."),
    "MT.STRES": Method("MT.STRES", "Standardized result", "--STRESC = --ORRES in CDISC submission values; --STRESN "
                                                          "its number when numeric; --STRESU = --ORRESU (no unit "
                                                          "conversion)."),
    "MT.NRIND": Method("MT.NRIND", "Reference range indicator", "HIGH when --STRESN > --STNRHI, LOW when < "
                                                                "--STNRLO, else NORMAL; null without a range."),
    "MT.CMENRTPT": Method("MT.CMENRTPT", "Ongoing therapy", "A prespecified therapy taken (CMOCCUR = Y) at the "
                                                             "visit it was asked at: CMENRTPT = ONGOING relative "
                                                             "to CMENTPT = that visit."),
    "MT.ARMNRS": Method("MT.ARMNRS", "Arm null reason", "SCREEN FAILURE when the eligibility evaluation failed; "
                                                        "NOT ASSIGNED when eligible but never enrolled; ASSIGNED, "
                                                        "NOT TREATED when enrolled but the day-0 treatment was not "
                                                        "given."),
    "MT.DTHDTC": Method("MT.DTHDTC", "Date of death", "The disposition date of a DEATH disposition, else the end "
                                                        "(or start) date of an adverse event with outcome FATAL or "
                                                        "AESDTH = Y."),
}


@dataclass(frozen=True)
class Context:
    """What every domain builder needs: protocol, snapshot, study identifier, per-subject reference dates."""

    protocol: Protocol
    snap: Snapshot
    studyid: str
    ref: pd.DataFrame  # one row per subject: subject_code, USUBJID, RFSTDTC (Timestamp), RFXSTDTC (Timestamp)

    items_by_form: dict[str, pd.DataFrame]
    scores_by_form: dict[str, pd.DataFrame]
    _wide_cache: dict[tuple[str, str], pd.DataFrame | pd.Series] = field(default_factory=dict)

    @property
    def visitnum(self) -> dict[str, float]:
        return {v.code: float(i) for i, v in enumerate(self.protocol.visits, start=1)}

    def visit_dates(self, subject_codes: pd.Series, visit_codes: pd.Series) -> pd.Series:
        """The visit date of each (subject, visit) pair (None when the visit is not recorded)."""
        if ("visit_dates", "") not in self._wide_cache:
            dates = self.snap.visits.set_index(["subject_code", "visit_code"])["visit_date"]
            self._wide_cache[("visit_dates", "")] = dates[~dates.index.duplicated()]
        dates = self._wide_cache[("visit_dates", "")]
        keys = pd.MultiIndex.from_arrays([subject_codes.to_numpy(), visit_codes.to_numpy()])
        return pd.Series(dates.reindex(keys).to_numpy(), index=subject_codes.index, dtype=object)

    def wide(self, form_code: str) -> pd.DataFrame:
        """One row per subject and visit of a form, one column per field (as :meth:`Snapshot.wide`)."""
        rows = self.items_by_form.get(form_code)
        if rows is None or rows.empty:
            return pd.DataFrame(columns=["subject_code", "visit_code"])
        if ("items", "") not in self._wide_cache:  # one unstack of every form's items, split per form below
            items = self.snap.items.drop_duplicates(["form_code", "subject_code", "visit_code", "field"])
            self._wide_cache[("items", "")] = items.set_index(
                ["form_code", "subject_code", "visit_code", "field"])["value"].unstack("field")
        every = self._wide_cache[("items", "")]
        part = every.xs(form_code, level="form_code")[list(dict.fromkeys(rows["field"]))]
        part.columns.name = None
        return part.reset_index()

    def scores(self, form_code: str) -> pd.DataFrame:
        """One row per subject and visit of a form, one column per derived score."""
        key = ("scores", form_code)
        if key not in self._wide_cache:
            self._wide_cache[key] = _unstack(self.scores_by_form.get(form_code), "name")
        return self._wide_cache[key].copy()


def _unstack(rows: pd.DataFrame | None, column: str) -> pd.DataFrame:
    if rows is None or rows.empty:
        return pd.DataFrame(columns=["subject_code", "visit_code"])
    rows = rows.drop_duplicates(["subject_code", "visit_code", column])
    wide = rows.set_index(["subject_code", "visit_code", column])["value"].unstack(column)
    wide.columns.name = None
    return wide.reset_index()


def studyid_of(protocol: Protocol) -> str:
    """STUDYID: the registry number, else the acronym."""
    return protocol.study.nct_id or protocol.study.acronym


def make_context(snap: Snapshot, protocol: Protocol) -> Context:
    studyid = studyid_of(protocol)
    subjects = snap.subjects
    ref = pd.DataFrame({"subject_code": subjects["subject_code"]})
    ref["USUBJID"] = studyid + "-" + ref["subject_code"].astype(str)
    arms = {a.code: a for v in protocol.protocol_versions for a in v.arms}
    day0 = [None if not isinstance(arm, str) or arm not in arms else
            (inf if arms[arm].day0 == "infusion" else enr)
            for arm, inf, enr in zip(subjects["arm_code"], subjects["infusion_date"], subjects["enrolled_date"])]
    ref["RFSTDTC"] = pd.to_datetime(pd.Series(day0, dtype=object), errors="coerce")
    ref["RFXSTDTC"] = pd.to_datetime(subjects["infusion_date"], errors="coerce")
    items = {code: rows for code, rows in snap.items.groupby("form_code", sort=False)} if not snap.items.empty else {}
    scores = {code: rows for code, rows in snap.derived.groupby("form_code", sort=False)} \
        if not snap.derived.empty else {}
    return Context(protocol, snap, studyid, ref, items, scores)


def to_ts(values: pd.Series) -> pd.Series:
    """Dates (date objects, ISO strings or None) as pandas Timestamps (NaT when missing)."""
    if isinstance(values, pd.Series) and pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    return pd.to_datetime(pd.Series(values, dtype=object), errors="coerce", format="ISO8601")


def iso(values: pd.Series) -> pd.Series:
    """ISO 8601 dates (YYYY-MM-DD) as strings, None when missing."""
    ts = to_ts(values)
    return pd.Series(np.where(ts.notna(), ts.dt.strftime("%Y-%m-%d"), None), index=values.index, dtype=object)


def study_day(dates: pd.Series, reference: pd.Series) -> pd.Series:
    """SDTM --DY in days: date - reference + 1 on/after the reference day, date - reference before (no day 0)."""
    delta = (to_ts(dates) - to_ts(reference)).dt.days
    out = delta.where(delta < 0, delta + 1)
    return out.astype("Int64")


def epoch(dates: pd.Series, day0: pd.Series) -> pd.Series:
    """EPOCH from the subject elements: SCREENING before day 0, TREATMENT on it, FOLLOW-UP after it."""
    d, r = to_ts(dates), to_ts(day0)
    out = np.select([d.isna(), r.isna() | (d < r), d == r], [None, EPOCH_SCREENING, EPOCH_TREATMENT], EPOCH_FOLLOWUP)
    return pd.Series(out, index=dates.index, dtype=object).where(d.notna(), None)


def with_reference(frame: pd.DataFrame, ctx: Context) -> pd.DataFrame:
    """Join USUBJID, RFSTDTC and RFXSTDTC onto records that carry ``subject_code``."""
    return frame.merge(ctx.ref, on="subject_code", how="left")


def assign_seq(frame: pd.DataFrame, domain: str, order: list[str]) -> pd.DataFrame:
    """--SEQ: 1..n per subject in the order of ``order`` (stable), as integers."""
    frame = frame.sort_values(["USUBJID", *order], kind="stable", na_position="last").reset_index(drop=True)
    frame[f"{domain}SEQ"] = frame.groupby("USUBJID").cumcount() + 1
    return frame


def last_before_exposure(frame: pd.DataFrame, domain: str, keys: list[str]) -> pd.Series:
    """--LOBXFL: Y on the last record with a result before RFXSTDTC per subject and ``keys``, else null."""
    when = to_ts(frame[f"{domain}DTC"])
    has_result = frame[f"{domain}ORRES"].notna() if f"{domain}ORRES" in frame else pd.Series(True, index=frame.index)
    eligible = has_result & when.notna() & frame["RFXSTDTC"].notna() & (when < frame["RFXSTDTC"])
    flag = pd.Series(None, index=frame.index, dtype=object)
    if eligible.any():
        sub = frame[eligible].assign(_when=when[eligible])
        group = ["USUBJID", *[k for k in keys if k in frame]]
        last = sub.sort_values("_when", kind="stable").groupby(group, dropna=False).tail(1).index
        flag.loc[last] = "Y"
    return flag


def missing_codes_of(ctx: Context, form_code: str, subjects: pd.Series, visits: pd.Series,
                     items: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The missing-data code and its reason (None where there is none) of each (subject, visit, item) of a
    form, from the snapshot's ``missing_code``/``missing_reason`` columns (the value itself is null there)."""
    rows = ctx.items_by_form.get(form_code)
    none = pd.Series(None, index=subjects.index, dtype=object)
    if rows is None or "missing_code" not in rows or not rows["missing_code"].notna().any():
        return none, none.copy()
    coded = rows[rows["missing_code"].notna()].drop_duplicates(["subject_code", "visit_code", "field"])
    table = coded.set_index(["subject_code", "visit_code", "field"])[["missing_code", "missing_reason"]]
    keys = pd.MultiIndex.from_arrays([subjects.to_numpy(), visits.to_numpy(), items.to_numpy()])
    found = table.reindex(keys)
    code = pd.Series(found["missing_code"].to_numpy(), index=subjects.index, dtype=object)
    reason = pd.Series(found["missing_reason"].to_numpy(), index=subjects.index, dtype=object)
    return code.where(code.notna(), None), reason.where(reason.notna(), None)


def not_done_reason(protocol: Protocol, code: pd.Series, reason: pd.Series) -> pd.Series:
    """--REASND of a value recorded as a missing-data code: the reason given with it, else the code's label."""
    labels = {m.code: m.label for m in protocol.missing_codes}
    return reason.where(reason.notna(), code.map(labels)).where(code.notna(), None)


def code_map(protocol: Protocol, field: FieldDef) -> dict[str, str]:
    """Vectorisable mapping of a code field's stored values (as strings) to SDTM values."""
    if field.codelist:
        return {str(i.code): (i.sdtm if i.sdtm is not None else str(i.code)) for i in protocol.codelists[field.codelist]}
    return {str(c): str(c) for c in (field.codes or [])}


def format_result(values: pd.Series, field: FieldDef, protocol: Protocol) -> pd.Series:
    """--ORRES text of collected values: numbers with the field's decimals, codes as submission values."""
    values = pd.Series(values, dtype=object)
    missing = values.isna().to_numpy()
    if field.type in ("integer", "float"):
        num = pd.to_numeric(values, errors="coerce")
        decimals = 0 if field.type == "integer" else field.decimals
        text = num.round(decimals).map(f"{{:.{decimals}f}}".format) if decimals is not None else num.map("{:g}".format)
        return text.where(num.notna(), None).astype(object)
    text = values.astype(str)
    if field.type == "code":
        mapping = code_map(protocol, field)
        text = text.map(lambda v: mapping.get(v, v))
    return pd.Series(np.where(missing, None, text), index=values.index, dtype=object)


# ---- variable metadata ------------------------------------------------------------------------------
# Generic SDTMIG 3.4 variables: label (with {d} = domain description where it varies), type, role, core.
_ID = "Identifier"
_TIM = "Timing"
_GEN = {
    "STUDYID": ("Study Identifier", "text", _ID, "Req"),
    "DOMAIN": ("Domain Abbreviation", "text", _ID, "Req"),
    "USUBJID": ("Unique Subject Identifier", "text", _ID, "Req"),
    "VISITNUM": ("Visit Number", "float", _TIM, "Exp"),
    "VISIT": ("Visit Name", "text", _TIM, "Perm"),
    "VISITDY": ("Planned Study Day of Visit", "integer", _TIM, "Perm"),
    "EPOCH": ("Epoch", "text", _TIM, "Perm"),
    "RDOMAIN": ("Related Domain Abbreviation", "text", _ID, "Req"),
    "IDVAR": ("Identifying Variable", "text", _ID, "Exp"),
    "IDVARVAL": ("Identifying Variable Value", "text", _ID, "Exp"),
    "QNAM": ("Qualifier Variable Name", "text", "Topic", "Req"),
    "QLABEL": ("Qualifier Variable Label", "text", "Synonym Qualifier", "Req"),
    "QVAL": ("Data Value", "text", "Result Qualifier", "Req"),
    "QORIG": ("Origin", "text", "Record Qualifier", "Req"),
    "QEVAL": ("Evaluator", "text", "Record Qualifier", "Exp"),
}
_SUFFIX = {
    "SEQ": ("Sequence Number", "integer", _ID, "Req"),
    "GRPID": ("Group ID", "text", _ID, "Perm"),
    "SPID": ("Sponsor-Defined Identifier", "text", _ID, "Perm"),
    "TESTCD": ("{d} Test Short Name", "text", "Topic", "Req"),
    "TEST": ("{d} Test Name", "text", "Synonym Qualifier", "Req"),
    "CAT": ("Category for {d}", "text", "Grouping Qualifier", "Perm"),
    "SCAT": ("Subcategory for {d}", "text", "Grouping Qualifier", "Perm"),
    "POS": ("{d} Position of Subject", "text", "Record Qualifier", "Perm"),
    "ORRES": ("Result or Finding in Original Units", "text", "Result Qualifier", "Exp"),
    "ORRESU": ("Original Units", "text", "Variable Qualifier", "Exp"),
    "ORNRLO": ("Normal Range Lower Limit-Original Units", "text", "Variable Qualifier", "Perm"),
    "ORNRHI": ("Normal Range Upper Limit-Original Units", "text", "Variable Qualifier", "Perm"),
    "STRESC": ("Character Result/Finding in Std Format", "text", "Result Qualifier", "Exp"),
    "STRESN": ("Numeric Result/Finding in Standard Units", "float", "Result Qualifier", "Exp"),
    "STRESU": ("Standard Units", "text", "Variable Qualifier", "Exp"),
    "STNRLO": ("Normal Range Lower Limit-Std Units", "float", "Variable Qualifier", "Perm"),
    "STNRHI": ("Normal Range Upper Limit-Std Units", "float", "Variable Qualifier", "Perm"),
    "NRIND": ("Reference Range Indicator", "text", "Variable Qualifier", "Perm"),
    "STAT": ("Completion Status", "text", "Record Qualifier", "Perm"),
    "REASND": ("Reason Not Done", "text", "Record Qualifier", "Perm"),
    "LOC": ("Location Used for the Measurement", "text", "Record Qualifier", "Perm"),
    "LAT": ("Laterality", "text", "Variable Qualifier", "Perm"),
    "DIR": ("Directionality", "text", "Variable Qualifier", "Perm"),
    "METHOD": ("Method of Test or Examination", "text", "Record Qualifier", "Perm"),
    "SPEC": ("Specimen Type", "text", "Record Qualifier", "Perm"),
    "LOBXFL": ("Last Observation Before Exposure Flag", "text", "Record Qualifier", "Exp"),
    "DRVFL": ("Derived Flag", "text", "Record Qualifier", "Perm"),
    "EVAL": ("Evaluator", "text", "Record Qualifier", "Perm"),
    "DTC": ("Date/Time of Collection", "date", _TIM, "Exp"),
    "DY": ("Study Day of Visit/Collection/Exam", "integer", _TIM, "Perm"),
    "TPT": ("Planned Time Point Name", "text", _TIM, "Perm"),
    "TPTNUM": ("Planned Time Point Number", "float", _TIM, "Perm"),
    "EVLINT": ("Evaluation Interval", "text", _TIM, "Perm"),
    "STDTC": ("Start Date/Time of Observation", "date", _TIM, "Exp"),
    "ENDTC": ("End Date/Time of Observation", "date", _TIM, "Perm"),
    "STDY": ("Study Day of Start of Observation", "integer", _TIM, "Perm"),
    "ENDY": ("Study Day of End of Observation", "integer", _TIM, "Perm"),
    "ENRTPT": ("End Relative to Reference Time Point", "text", _TIM, "Perm"),
    "ENTPT": ("End Reference Time Point", "text", _TIM, "Perm"),
    "TERM": ("Reported Term", "text", "Topic", "Req"),
    "DECOD": ("Dictionary-Derived Term", "text", "Synonym Qualifier", "Perm"),
    "TRT": ("Reported Name of Treatment", "text", "Topic", "Req"),
    "CLAS": ("Class", "text", "Variable Qualifier", "Perm"),
    "PRESP": ("Pre-specified", "text", "Variable Qualifier", "Perm"),
    "OCCUR": ("Occurrence", "text", "Record Qualifier", "Perm"),
    "DOSE": ("Dose", "float", "Record Qualifier", "Exp"),
    "DOSU": ("Dose Units", "text", "Variable Qualifier", "Exp"),
    "DOSFRM": ("Dose Form", "text", "Variable Qualifier", "Exp"),
    "DOSFRQ": ("Dosing Frequency per Interval", "text", "Variable Qualifier", "Perm"),
    "ROUTE": ("Route of Administration", "text", "Variable Qualifier", "Perm"),
    "BODSYS": ("Body System or Organ Class", "text", "Record Qualifier", "Exp"),
}
# Variables whose CDISC codelist is fixed by the IG (NCI codes, SDTM CT 2025-03-28).
CODELISTS = {
    "SEX": "C66731", "AGEU": "C66781", "ARMNRS": "C142179", "DSCAT": "C74558", "IECAT": "C66797",
    "IEORRES": "C66742", "IESTRESC": "C66742", "AEOUT": "C66768", "AESER": "C66742", "AESDTH": "C66742",
    "AESLIFE": "C66742", "AESHOSP": "C66742", "AESDISAB": "C66742", "AESCONG": "C66742", "AESMIE": "C66742",
    "EXROUTE": "C66729", "EXDOSU": "C71620", "EXDOSFRM": "C66726", "EXDOSFRQ": "C71113", "EXLOC": "C74456",
    "PRLOC": "C74456", "PRTRT": "C101858", "EPOCH": "C99079", "TSPARMCD": "C66738", "TSPARM": "C67152",
    "NRIND": "C78736", "STAT": "C66789", "LOC": "C74456", "DIR": "C99074", "METHOD": "C85492",
    "SPEC": "C78734", "ORRESU": "C71620", "STRESU": "C71620", "PRESP": "C66742", "OCCUR": "C66742",
    "LOBXFL": "C66742", "DRVFL": "C66742", "DTHFL": "C66742", "ENRTPT": "C66728",
}

DOMAIN_LABELS = {
    "DM": "Demographics", "SV": "Subject Visits", "SE": "Subject Elements", "DS": "Disposition",
    "IE": "Inclusion/Exclusion Criteria Not Met", "MH": "Medical History", "CM": "Concomitant/Concomitant Meds",
    "EX": "Exposure", "PR": "Procedures", "VS": "Vital Signs", "LB": "Laboratory Test Results",
    "CV": "Cardiovascular System Findings", "FT": "Functional Tests", "QS": "Questionnaires",
    "RS": "Disease Response and Clin Classification", "AE": "Adverse Events", "TA": "Trial Arms",
    "TE": "Trial Elements", "TV": "Trial Visits", "TI": "Trial Inclusion/Exclusion Criteria",
    "TS": "Trial Summary",
}
DOMAIN_LABELS["CM"] = "Concomitant/Prior Medications"
DOMAIN_CLASS = {
    "DM": "SPECIAL PURPOSE", "SV": "SPECIAL PURPOSE", "SE": "SPECIAL PURPOSE", "DS": "EVENTS", "MH": "EVENTS",
    "AE": "EVENTS", "CM": "INTERVENTIONS", "EX": "INTERVENTIONS", "PR": "INTERVENTIONS", "TA": "TRIAL DESIGN",
    "TE": "TRIAL DESIGN", "TV": "TRIAL DESIGN", "TI": "TRIAL DESIGN", "TS": "TRIAL DESIGN",
}
_SHORT = {"VS": "Vital Signs", "LB": "Lab", "CV": "Cardiovascular", "FT": "Functional", "QS": "Questionnaire",
          "RS": "Assessment", "IE": "Incl/Excl Criterion", "MH": "Medical History", "CM": "Medication",
          "PR": "Procedure", "EX": "Exposure", "AE": "Adverse Event", "DS": "Disposition"}


def generic_spec(name: str, domain: str) -> tuple[str, str, str, str] | None:
    """Label, type, role and core of a standard variable, from the generic SDTMIG 3.4 table."""
    if name in _GEN:
        return _GEN[name]
    if name.startswith(domain) and name[len(domain):] in _SUFFIX:
        label, typ, role, core = _SUFFIX[name[len(domain):]]
        return label.format(d=_SHORT.get(domain, domain))[:40], typ, role, core
    return None


def codelist_for(name: str, domain: str) -> str | None:
    if name in CODELISTS:
        return CODELISTS[name]
    suffix = name[len(domain):] if name.startswith(domain) else None
    return CODELISTS.get(suffix) if suffix else None


def _default_origin(var: str) -> tuple[str, str | None]:
    """Sequence numbers, study days and epochs are derived by the generic methods; the rest is assigned."""
    if var == "EPOCH":
        return "Derived", "MT.EPOCH"
    if var == "VISITDY":
        return "Derived", "MT.VISITDY"
    if var.endswith("SEQ") and var != "TSSEQ":
        return "Derived", "MT.SEQ"
    if var.endswith(("DY", "STDY", "ENDY")):
        return "Derived", "MT.DY"
    return "Assigned", None


def build_dataset(domain: str, records: pd.DataFrame, order: list[str], *, keys: list[str], structure: str,
                  specific: dict[str, tuple] | None = None, origins: dict[str, tuple[str, str | None]] | None = None,
                  codelists: dict[str, str] | None = None, value_level: list[ValueLevel] | None = None,
                  methods: list[str] = (), label: str | None = None, klass: str | None = None,
                  comment: str | None = None, name: str | None = None) -> Dataset:
    """Assemble a :class:`Dataset`: columns in ``order``; Perm columns entirely null are left out.

    ``specific`` gives (label, type, role, core) of domain-specific variables; ``origins`` maps a
    variable to (origin, source); ``codelists`` overrides or adds codelist references.
    """
    specific, origins, codelists = specific or {}, origins or {}, codelists or {}
    variables: list[Variable] = []
    columns: list[str] = []
    for var in order:
        spec = specific.get(var) or generic_spec(var, domain)
        if spec is None:
            raise KeyError(f"{domain}.{var}: no metadata")
        label_, typ, role, core = spec
        present = var in records and records[var].notna().any()
        if not present and core == "Perm":
            continue
        origin, source = origins.get(var) or _default_origin(var)
        variables.append(Variable(name=var, label=label_, type=typ, origin=origin, source=source, role=role,
                                  core=core, codelist=codelists.get(var, codelist_for(var, domain))))
        columns.append(var)
    frame = records.reindex(columns=columns).reset_index(drop=True)
    for v in variables:
        if v.type == "integer":
            frame[v.name] = pd.to_numeric(frame[v.name], errors="coerce").astype("Int64")
        elif v.type == "float":
            frame[v.name] = pd.to_numeric(frame[v.name], errors="coerce").astype(float)
        else:
            column = frame[v.name]
            if column.dtype != object:
                column = column.astype(object)
            missing = column.isna()
            frame[v.name] = column.where(~missing, None) if missing.any() else column
    used = set(methods) | {v.source for v in variables if v.source in METHODS}
    return Dataset(name=name or domain, label=label or DOMAIN_LABELS.get(domain, domain), standard="SDTM",
                   structure=structure, klass=klass or DOMAIN_CLASS.get(domain, "FINDINGS"), keys=keys,
                   variables=variables, records=frame, value_level=value_level or [],
                   methods=[METHODS[m] for m in sorted(used)], comment=comment)
