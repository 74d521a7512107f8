"""Special-purpose domains: DM (one record per consented subject), SV (visits), SE (subject elements)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from regenheart.derive.datasets import Dataset
from regenheart.derive.sdtm.common import (
    EPOCH_FOLLOWUP,
    EPOCH_SCREENING,
    EPOCH_TREATMENT,
    Context,
    assign_seq,
    build_dataset,
    epoch,
    format_result,
    iso,
    study_day,
    to_ts,
    with_reference,
)
from regenheart.derive.sdtm.events import deaths, reference_end

# Elements (TE) of every study here: screening, the day-0 treatment of an arm, follow-up.
SCREENING_ELEMENT = ("SCRN", "Screening", EPOCH_SCREENING)
FOLLOWUP_ELEMENT = ("FU", "Follow-up", EPOCH_FOLLOWUP)


def arm_element(arm) -> tuple[str, str, str]:
    """The treatment element of an arm (ETCD = arm code, <= 8)."""
    return arm.code[:8], arm.label[:40], EPOCH_TREATMENT


def _dm_fields(ctx: Context) -> pd.DataFrame:
    """Values of form fields annotated with a DM variable (AGE, SEX, ...) from the baseline visit."""
    out = pd.DataFrame({"subject_code": ctx.snap.subjects["subject_code"]})
    for code, form in ctx.protocol.forms.items():
        fields = [f for f in form.fields if f.sdtm is not None and f.sdtm.var and
                  (f.sdtm.domain or (form.sdtm.domain if form.sdtm else None) or f.sdtm.var[:2]) == "DM"]
        if not fields:
            continue
        wide = ctx.wide(code)
        if wide.empty:
            continue
        wide = wide.sort_values("visit_code", key=lambda v: v.map({c: i for i, c in enumerate(ctx.protocol.visit_codes)}))
        wide = wide.drop_duplicates("subject_code")
        for f in fields:
            if f.name in wide:
                values = pd.to_numeric(wide[f.name], errors="coerce") if f.type in ("integer", "float") \
                    else format_result(wide[f.name].astype(object), f, ctx.protocol)
                out = out.merge(pd.DataFrame({"subject_code": wide["subject_code"], f.sdtm.var: values.to_numpy()}),
                                on="subject_code", how="left")
                if f.unit and f.sdtm.var == "AGE":
                    out["AGEU"] = f.unit.upper()
    return out


def build_dm(ctx: Context) -> Dataset:
    """DM: identifiers, reference dates, site, age/sex, arm (planned and actual) per consented subject."""
    protocol = ctx.protocol
    s = ctx.snap.subjects
    s = s[s["consent_date"].notna()].copy()
    rec = with_reference(s, ctx).merge(_dm_fields(ctx), on="subject_code", how="left")
    rec = rec.merge(reference_end(ctx).rename(columns={"d": "_last"}), on="subject_code", how="left")
    rec = rec.merge(deaths(ctx).rename(columns={"date": "_death"}), on="subject_code", how="left")
    arms = {a.code: a for v in protocol.protocol_versions for a in v.arms}
    sites = {site.code: site for site in protocol.study.sites}
    rec["STUDYID"], rec["DOMAIN"] = ctx.studyid, "DM"
    rec["SUBJID"] = rec["subject_code"]
    rec["RFSTDTC"] = iso(rec["RFSTDTC"])
    rec["RFENDTC"] = iso(rec["disposition_date"].where(rec["disposition_date"].notna(), rec["_last"]))
    rec.loc[rec["arm_code"].isna(), "RFENDTC"] = None
    rec["RFXSTDTC"] = iso(rec["RFXSTDTC"])
    rec["RFXENDTC"] = rec["RFXSTDTC"]
    rec["RFICDTC"] = iso(rec["consent_date"])
    rec["RFPENDTC"] = iso(rec["_last"])
    rec["DTHDTC"] = iso(rec["_death"])
    rec["DTHFL"] = np.where(rec["_death"].notna(), "Y", None)
    rec["SITEID"] = rec["site_code"]
    rec["COUNTRY"] = rec["site_code"].map(lambda c: sites[c].country if c in sites else None)
    if "AGE" in rec and "AGEU" not in rec:
        rec["AGEU"] = "YEARS"
    rec["RACE"], rec["ETHNIC"] = None, None
    planned = rec["arm_code"].where(rec["arm_code"].isin(arms))
    treated = rec["RFXSTDTC"].notna() | planned.map(lambda a: a in arms and not arms[a].receives_cells)
    rec["ARMCD"] = planned
    rec["ARM"] = planned.map(lambda a: arms[a].label if a in arms else None)
    rec["ACTARMCD"] = planned.where(treated)
    rec["ACTARM"] = rec["ARM"].where(treated)
    failed = rec["eligible"].astype("boolean").fillna(True).eq(False)
    rec["ARMNRS"] = np.select([failed, planned.isna(), ~treated], ["SCREEN FAILURE", "NOT ASSIGNED",
                                                                  "ASSIGNED, NOT TREATED"], None)
    rec["ARMNRS"] = pd.Series(rec["ARMNRS"], dtype=object).where(lambda x: x != "None", None)
    rec["DMDTC"] = iso(rec["screening_date"])
    rec["DMDY"] = study_day(rec["screening_date"], rec["RFSTDTC"])
    order = ["STUDYID", "DOMAIN", "USUBJID", "SUBJID", "RFSTDTC", "RFENDTC", "RFXSTDTC", "RFXENDTC", "RFICDTC",
             "RFPENDTC", "DTHDTC", "DTHFL", "SITEID", "AGE", "AGEU", "SEX", "RACE", "ETHNIC", "ARMCD", "ARM",
             "ACTARMCD", "ACTARM", "ARMNRS", "COUNTRY", "DMDTC", "DMDY"]
    t, i = "text", "Identifier"
    specific = {
        "SUBJID": ("Subject Identifier for the Study", t, "Topic", "Req"),
        "RFSTDTC": ("Subject Reference Start Date/Time", "date", "Record Qualifier", "Exp"),
        "RFENDTC": ("Subject Reference End Date/Time", "date", "Record Qualifier", "Exp"),
        "RFXSTDTC": ("Date/Time of First Study Treatment", "date", "Record Qualifier", "Exp"),
        "RFXENDTC": ("Date/Time of Last Study Treatment", "date", "Record Qualifier", "Exp"),
        "RFICDTC": ("Date/Time of Informed Consent", "date", "Record Qualifier", "Exp"),
        "RFPENDTC": ("Date/Time of End of Participation", "date", "Record Qualifier", "Exp"),
        "DTHDTC": ("Date/Time of Death", "date", "Record Qualifier", "Exp"),
        "DTHFL": ("Subject Death Flag", t, "Record Qualifier", "Exp"),
        "SITEID": ("Study Site Identifier", t, i, "Req"),
        "AGE": ("Age", "integer", "Record Qualifier", "Exp"),
        "AGEU": ("Age Units", t, "Variable Qualifier", "Exp"),
        "SEX": ("Sex", t, "Record Qualifier", "Req"),
        "RACE": ("Race", t, "Record Qualifier", "Exp"),
        "ETHNIC": ("Ethnicity", t, "Record Qualifier", "Perm"),
        "ARMCD": ("Planned Arm Code", t, "Record Qualifier", "Exp"),
        "ARM": ("Description of Planned Arm", t, "Synonym Qualifier", "Exp"),
        "ACTARMCD": ("Actual Arm Code", t, "Record Qualifier", "Exp"),
        "ACTARM": ("Description of Actual Arm", t, "Synonym Qualifier", "Exp"),
        "ARMNRS": ("Reason Arm and/or Actual Arm is Null", t, "Record Qualifier", "Exp"),
        "COUNTRY": ("Country", t, "Record Qualifier", "Req"),
        "DMDTC": ("Date/Time of Collection", "date", "Timing", "Perm"),
        "DMDY": ("Study Day of Collection", "integer", "Timing", "Perm"),
    }
    origins = {"SUBJID": ("Collected", "subject registration"), "RFSTDTC": ("Derived", "MT.RFSTDTC"),
               "RFENDTC": ("Derived", "MT.RFENDTC"), "RFXSTDTC": ("Derived", "EX.EXSTDTC"),
               "RFXENDTC": ("Derived", "EX.EXENDTC"), "RFICDTC": ("Collected", "consent date"),
               "RFPENDTC": ("Derived", "MT.RFENDTC"), "DTHDTC": ("Derived", "MT.DTHDTC"),
               "DTHFL": ("Derived", "MT.DTHDTC"), "SITEID": ("Collected", "subject registration"),
               "AGE": ("Collected", "demographics.age_years"), "AGEU": ("Assigned", None),
               "SEX": ("Collected", "demographics.sex"), "RACE": ("Not Available", None),
               "ETHNIC": ("Not Available", None), "ARMCD": ("Assigned", "enrolment"), "ARM": ("Assigned", "enrolment"),
               "ACTARMCD": ("Derived", "EX"), "ACTARM": ("Derived", "EX"), "ARMNRS": ("Derived", "MT.ARMNRS"),
               "COUNTRY": ("Protocol", "study.sites.country"), "DMDTC": ("Collected", "screening date")}
    from regenheart.derive.datasets import Method, Variable
    ds = build_dataset("DM", rec, order, keys=["STUDYID", "USUBJID"], specific=specific, origins={
        k: (v if v[0] != "Not Available" else ("Assigned", None)) for k, v in origins.items()},
        codelists={"COUNTRY": "ISO 3166-1 alpha-3", "ARMCD": "SPONSOR:ARMCD", "ACTARMCD": "SPONSOR:ARMCD"},
        structure="One record per subject", methods=["MT.DY", "MT.DTHDTC", "MT.ARMNRS"],
        comment="RACE and ETHNIC are not collected by the study's forms: null. Screen failures have null "
                "ARMCD/ARM/ACTARMCD/ACTARM and ARMNRS = SCREEN FAILURE (SDTMIG 3.4).")
    ds.variables[:] = [Variable(**{**v.__dict__, "comment": "Not collected on the CRF"})
                       if v.name in ("RACE", "ETHNIC") else v for v in ds.variables]
    ds.methods.extend([
        Method("MT.RFSTDTC", "Reference start", "RFSTDTC: the day-0 date of the subject's arm (the infusion; for "
                                                "an arm without a procedure, the randomization date)."),
        Method("MT.RFENDTC", "Reference end", "RFENDTC: the end-of-study (disposition) date, else the last contact; "
                                              "RFPENDTC: the latest of visit, disposition and adverse-event dates.")])
    return ds


def build_sv(ctx: Context) -> Dataset:
    """SV: one record per subject visit that took place, with its date and whether it was in window."""
    v = ctx.snap.visits.copy()
    rec = with_reference(v, ctx)
    rec["STUDYID"], rec["DOMAIN"] = ctx.studyid, "SV"
    rec["VISITNUM"] = rec["visit_code"].map(ctx.visitnum)
    rec["VISIT"] = rec["visit_code"].map({x.code: x.label for x in ctx.protocol.visits})
    rec["VISITDY"] = rec["visit_code"].map({x.code: x.day + 1 if x.day >= 0 else x.day for x in ctx.protocol.visits})
    rec["SVSTDTC"] = iso(rec["visit_date"])
    rec["SVENDTC"] = rec["SVSTDTC"]
    rec["SVSTDY"] = study_day(rec["visit_date"], rec["RFSTDTC"])
    rec["SVENDY"] = rec["SVSTDY"]

    rec["EPOCH"] = epoch(rec["visit_date"], rec["RFSTDTC"])
    rec["SVUPDES"] = None
    rec["SVOCCUR"] = "Y"
    rec = rec.sort_values(["USUBJID", "VISITNUM"]).reset_index(drop=True)
    order = ["STUDYID", "DOMAIN", "USUBJID", "VISITNUM", "VISIT", "VISITDY", "EPOCH", "SVSTDTC", "SVENDTC",
             "SVSTDY", "SVENDY", "SVUPDES"]
    specific = {"SVSTDTC": ("Start Date/Time of Observation", "date", "Timing", "Exp"),
                "SVENDTC": ("End Date/Time of Observation", "date", "Timing", "Exp"),
                "SVSTDY": ("Study Day of Start of Observation", "integer", "Timing", "Perm"),
                "SVENDY": ("Study Day of End of Observation", "integer", "Timing", "Perm"),
                "SVUPDES": ("Description of Unplanned Visit", "text", "Record Qualifier", "Perm")}
    return build_dataset("SV", rec, order, keys=["STUDYID", "USUBJID", "VISITNUM"], specific=specific,
                         origins={"SVSTDTC": ("Collected", "visit date"), "SVENDTC": ("Collected", "visit date")},
                         structure="One record per subject per actual visit",
                         methods=["MT.DY", "MT.EPOCH", "MT.VISITDY"])


def build_se(ctx: Context) -> Dataset:
    """SE: screening, the arm's day-0 element and follow-up per subject (SEENDTC = next element's start)."""
    protocol = ctx.protocol
    s = ctx.snap.subjects
    s = s[s["consent_date"].notna()]
    arms = {a.code: a for v in protocol.protocol_versions for a in v.arms}
    rec = with_reference(s, ctx).merge(reference_end(ctx).rename(columns={"d": "_last"}), on="subject_code",
                                       how="left")
    start = to_ts(rec["consent_date"])
    day0 = rec["RFSTDTC"]
    last = to_ts(rec["disposition_date"]).where(to_ts(rec["disposition_date"]).notna(), rec["_last"])
    parts = [pd.DataFrame({"USUBJID": rec["USUBJID"], "ETCD": SCREENING_ELEMENT[0], "ELEMENT": SCREENING_ELEMENT[1],
                           "EPOCH": SCREENING_ELEMENT[2], "_start": start,
                           "_end": day0.where(day0.notna(), rec["_last"]), "TAETORD": 1})]
    treated = rec[day0.notna()]
    arm = treated["arm_code"].map(lambda a: arm_element(arms[a]) if a in arms else (None, None, None))
    parts.append(pd.DataFrame({"USUBJID": treated["USUBJID"], "ETCD": arm.str[0], "ELEMENT": arm.str[1],
                               "EPOCH": EPOCH_TREATMENT, "_start": day0[day0.notna()],
                               "_end": day0[day0.notna()] + pd.Timedelta(days=1), "TAETORD": 2}))
    follow = day0.notna() & (last > day0)
    parts.append(pd.DataFrame({"USUBJID": rec.loc[follow, "USUBJID"], "ETCD": FOLLOWUP_ELEMENT[0],
                               "ELEMENT": FOLLOWUP_ELEMENT[1], "EPOCH": FOLLOWUP_ELEMENT[2],
                               "_start": day0[follow] + pd.Timedelta(days=1), "_end": last[follow], "TAETORD": 3}))
    out = pd.concat(parts, ignore_index=True)
    out = out.merge(ctx.ref[["USUBJID", "RFSTDTC"]], on="USUBJID", how="left")
    out["STUDYID"], out["DOMAIN"] = ctx.studyid, "SE"
    out["SESTDTC"], out["SEENDTC"] = iso(out["_start"]), iso(out["_end"])
    out["SESTDY"] = study_day(out["_start"], out["RFSTDTC"])
    out["SEENDY"] = study_day(out["_end"], out["RFSTDTC"])
    out = assign_seq(out, "SE", ["TAETORD"])
    order = ["STUDYID", "DOMAIN", "USUBJID", "SESEQ", "ETCD", "ELEMENT", "TAETORD", "EPOCH", "SESTDTC", "SEENDTC",
             "SESTDY", "SEENDY"]
    specific = {"ETCD": ("Element Code", "text", "Topic", "Req"),
                "ELEMENT": ("Description of Element", "text", "Synonym Qualifier", "Perm"),
                "TAETORD": ("Planned Order of Element within Arm", "integer", "Timing", "Perm"),
                "EPOCH": ("Epoch", "text", "Timing", "Req"),
                "SESTDTC": ("Start Date/Time of Element", "date", "Timing", "Req"),
                "SEENDTC": ("End Date/Time of Element", "date", "Timing", "Exp"),
                "SESTDY": ("Study Day of Start of Element", "integer", "Timing", "Perm"),
                "SEENDY": ("Study Day of End of Element", "integer", "Timing", "Perm")}
    from regenheart.derive.datasets import Method
    ds = build_dataset("SE", out, order, keys=["STUDYID", "USUBJID", "ETCD", "SESTDTC"], specific=specific,
                       origins={k: ("Derived", "MT.SE") for k in ("ETCD", "ELEMENT", "EPOCH", "SESTDTC", "SEENDTC",
                                                                  "TAETORD")},
                       structure="One record per actual Element per subject", methods=["MT.SEQ", "MT.DY"])
    ds.methods.append(Method("MT.SE", "Subject elements", "Screening from informed consent to day 0 (or the last "
                                                          "contact of a subject never treated); the arm's treatment "
                                                          "element on day 0; follow-up from the day after day 0 to the "
                                                          "end of study. SEENDTC equals the next element's SESTDTC."))
    return ds
