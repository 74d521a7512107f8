"""Events domains: MH (prespecified history), AE (the adverse-event log) and DS (disposition)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from regenheart.derive.datasets import Dataset, ValueLevel
from regenheart.derive.sdtm.common import (
    Context,
    assign_seq,
    build_dataset,
    epoch,
    iso,
    study_day,
    to_ts,
    with_reference,
)
from regenheart.derive.sdtm.occurrences import code_field_map, log_records


def _timing(rec: pd.DataFrame, ctx: Context, domain: str) -> pd.DataFrame:
    rec = with_reference(rec, ctx)
    rec["STUDYID"] = ctx.studyid
    if "_visit" in rec:
        rec["VISITNUM"] = rec["_visit"].map(ctx.visitnum)
        rec["VISIT"] = rec["_visit"].map({v.code: v.label for v in ctx.protocol.visits})
    return rec


def build_mh(ctx: Context, raw: pd.DataFrame | None) -> tuple[Dataset, pd.DataFrame] | None:
    """MH: prespecified medical-history items (MHPRESP = Y, MHOCCUR) and recorded history (the etiology)."""
    if raw is None or raw.empty:
        return None
    rec = _timing(raw, ctx, "MH").rename(columns={"TERM": "MHTERM", "CAT": "MHCAT", "PRESP": "MHPRESP",
                                                  "OCCUR": "MHOCCUR", "STAT": "MHSTAT", "REASND": "MHREASND"})
    rec["MHDTC"] = iso(rec["_date"])
    rec["MHDY"] = study_day(rec["_date"], rec["RFSTDTC"])
    rec["EPOCH"] = epoch(rec["_date"], rec["RFSTDTC"])
    rec = assign_seq(rec, "MH", ["MHCAT", "_anchor"])
    order = ["STUDYID", "DOMAIN", "USUBJID", "MHSEQ", "MHTERM", "MHDECOD", "MHCAT", "MHPRESP", "MHOCCUR",
             "MHSTAT", "MHREASND", "VISITNUM", "VISIT", "EPOCH", "MHDTC", "MHDY"]
    specific = {"MHTERM": ("Reported Term for the Medical History", "text", "Topic", "Req"),
                "MHDECOD": ("Dictionary-Derived Term", "text", "Synonym Qualifier", "Perm")}
    origins = {"MHTERM": ("Collected", "medical_history"), "MHOCCUR": ("Collected", "medical_history"),
               "MHSTAT": ("Collected", "medical_history"), "MHREASND": ("Collected", "medical_history"),
               "MHPRESP": ("Assigned", None), "MHCAT": ("Assigned", None), "MHDTC": ("Collected", "visit date")}
    ds = build_dataset("MH", rec, order, keys=["STUDYID", "USUBJID", "MHCAT", "MHTERM"],
                                      specific=specific, origins=origins,
                                      structure="One record per medical history event per subject",
                                      methods=["MT.SEQ", "MT.DY", "MT.EPOCH"],
                                      comment="History terms are not MedDRA-coded (MHDECOD null).")
    return ds, anchors(ds, rec)


def anchors(ds: Dataset, rec: pd.DataFrame) -> pd.DataFrame:
    """The record keys (subject, visit, form, anchor field or log key) with the --SEQ given, for SUPP-- links."""
    keys = rec[[c for c in ("USUBJID", "subject_code", "_visit", "_form", "_anchor", "_key") if c in rec]].copy()
    keys["SEQ"] = rec[f"{ds.name}SEQ"].to_numpy()
    return keys


def build_ae(ctx: Context) -> tuple[Dataset | None, pd.DataFrame, pd.DataFrame]:
    """AE: one record per adverse event of the log, with seriousness criteria, grade, relatedness, outcome."""
    protocol = ctx.protocol
    rec, supp = log_records(ctx, "adverse_events", ctx.snap.adverse_events, "ae_seq")
    if rec.empty:
        return None, supp, pd.DataFrame()
    rec = _timing(rec, ctx, "AE")
    log = protocol.adverse_events
    category = next((f for f in log.fields if f.sdtm is not None and f.sdtm.var == "AECAT"), None)
    if category is not None and category.codelist and "category" in ctx.snap.adverse_events:
        # the coder's system organ class where the event is coded, else the category's (assigned)
        soc = {str(i.code): i.soc for i in protocol.codelists[category.codelist]}
        by_category = ctx.snap.adverse_events[category.name].astype(str).map(soc).to_numpy()
        coded = rec["AEBODSYS"].to_numpy() if "AEBODSYS" in rec else np.full(len(rec), None, dtype=object)
        rec["AEBODSYS"] = np.where(pd.notna(coded), coded, by_category)
    rec["AESTDY"] = study_day(rec.get("AESTDTC"), rec["RFSTDTC"])
    rec["AEENDY"] = study_day(rec["AEENDTC"], rec["RFSTDTC"]) if "AEENDTC" in rec else None
    rec["EPOCH"] = epoch(rec["AESTDTC"], rec["RFSTDTC"])
    for flag in ("AESDTH", "AESLIFE", "AESHOSP", "AESDISAB", "AESCONG", "AESMIE"):
        if flag in rec:  # a serious event's criteria not ticked are N; a non-serious event's are null
            rec[flag] = np.where(rec[flag].notna(), rec[flag], np.where(rec.get("AESER") == "Y", "N", None))
    rec = assign_seq(rec, "AE", ["_key"])  # AESEQ follows the log sequence, so ADAE.AESEQ traces to it
    order = ["STUDYID", "DOMAIN", "USUBJID", "AESEQ", "AESPID", "AETERM", "AEDECOD", "AECAT", "AEBODSYS", "AESER",
             "AEREL", "AEOUT", "AESCONG", "AESDISAB", "AESDTH", "AESHOSP", "AESLIFE", "AESMIE", "AETOXGR", "EPOCH",
             "AESTDTC", "AEENDTC", "AESTDY", "AEENDY"]
    rec["AESPID"] = rec["_key"].astype(str)
    yn = ("text", "Record Qualifier", "Exp")
    specific = {
        "AETERM": ("Reported Term for the Adverse Event", "text", "Topic", "Req"),
        "AEDECOD": ("Dictionary-Derived Term", "text", "Synonym Qualifier", "Req"),
        "AECAT": ("Category for Adverse Event", "text", "Grouping Qualifier", "Perm"),
        "AEBODSYS": ("Body System or Organ Class", "text", "Record Qualifier", "Exp"),
        "AESER": ("Serious Event", *yn), "AEREL": ("Causality", *yn), "AEOUT": ("Outcome of Adverse Event", *yn),
        "AESCONG": ("Congenital Anomaly or Birth Defect", *yn), "AESDISAB": ("Persist or Signif Disability/Incapacity", *yn),
        "AESDTH": ("Results in Death", *yn), "AESHOSP": ("Requires or Prolongs Hospitalization", *yn),
        "AESLIFE": ("Is Life Threatening", *yn), "AESMIE": ("Other Medically Important Serious Event", *yn),
        "AETOXGR": ("Standard Toxicity Grade", "text", "Record Qualifier", "Exp"),
        "AESTDTC": ("Start Date/Time of Adverse Event", "date", "Timing", "Exp"),
        "AEENDTC": ("End Date/Time of Adverse Event", "date", "Timing", "Exp"),
        "AESTDY": ("Study Day of Start of Adverse Event", "integer", "Timing", "Perm"),
        "AEENDY": ("Study Day of End of Adverse Event", "integer", "Timing", "Perm"),
    }
    origins = {v: ("Collected", f"adverse_events.{f.name}") for f in log.fields if f.sdtm and (v := f.sdtm.var)}
    if "AEBODSYS" not in origins:
        origins["AEBODSYS"] = ("Assigned", "ae_category code list (soc)")
    origins["AESPID"] = ("Assigned", "AE log sequence")
    ds = build_dataset("AE", rec, order, keys=["STUDYID", "USUBJID", "AETERM", "AESTDTC"], specific=specific,
                       origins=origins, codelists={"AEREL": "SPONSOR:AEREL", "AECAT": "SPONSOR:AECAT",
                                                   "AETOXGR": "SPONSOR:CTCAE_GRADE"},
                       structure="One record per adverse event per subject", methods=["MT.SEQ", "MT.DY", "MT.EPOCH"],
                       comment="Events are categorised by the protocol's safety list and graded by CTCAE. AEDECOD "
                               "and AEBODSYS are the coder's MedDRA preferred term and system organ class as "
                               "entered on the adverse-event log; an uncoded event has AEDECOD null and the "
                               "category's system organ class.")
    return ds, supp, anchors(ds, rec)


def deaths(ctx: Context) -> pd.DataFrame:
    """Subject_code and date of death: a DEATH disposition date, else a fatal adverse event's date."""
    s = ctx.snap.subjects
    dispo = s[s["disposition"] == "DEATH"][["subject_code", "disposition_date"]].rename(
        columns={"disposition_date": "date"})
    aes = ctx.snap.adverse_events
    if not aes.empty:
        fatal = aes["outcome"].eq("FATAL") if "outcome" in aes else pd.Series(False, index=aes.index)
        if "sae_death" in aes:
            fatal |= aes["sae_death"].eq("Y")
        end = aes["stop_date"] if "stop_date" in aes else aes["onset_date"]
        ae = pd.DataFrame({"subject_code": aes["subject_code"], "date": end.where(end.notna(), aes["onset_date"])})[fatal]
        dispo = pd.concat([dispo, ae[~ae["subject_code"].isin(dispo["subject_code"])]]).drop_duplicates("subject_code")
    return dispo.reset_index(drop=True)


def build_ds(ctx: Context) -> Dataset:
    """DS: informed consent (protocol milestone), screen failure, completion or discontinuation with its reason."""
    protocol = ctx.protocol
    s = ctx.snap.subjects
    rows = []
    consent = s[s["consent_date"].notna()]
    rows.append(pd.DataFrame({"subject_code": consent["subject_code"], "DSTERM": "INFORMED CONSENT OBTAINED",
                              "DSDECOD": "INFORMED CONSENT OBTAINED", "DSCAT": "PROTOCOL MILESTONE",
                              "_date": consent["consent_date"], "_order": 1}))
    failed = s[s["eligible"].astype("boolean").fillna(True).eq(False)]
    scr = ctx.snap.visits[ctx.snap.visits["visit_code"] == protocol.baseline_visit.code]
    failed_dates = failed.merge(scr[["subject_code", "visit_date"]], on="subject_code", how="left")
    rows.append(pd.DataFrame({
        "subject_code": failed_dates["subject_code"],
        "DSTERM": failed_dates["eligibility_failed"].map(
            lambda ids: ("CRITERIA NOT MET: " + ", ".join(ids)) if ids else "SCREEN FAILURE"),
        "DSDECOD": "SCREEN FAILURE", "DSCAT": "DISPOSITION EVENT",
        "_date": failed_dates["visit_date"].where(failed_dates["visit_date"].notna(), failed_dates["screening_date"]),
        "_order": 2}))
    decod = code_field_map(protocol, "disposition", "DSDECOD")
    ended = s[s["disposition"].notna()]
    reason = ended["disposition_reason"].where(ended["disposition_reason"].notna(), None)
    decoded = ended["disposition"].astype(str).map(lambda c: decod.get(c, c))
    rows.append(pd.DataFrame({
        "subject_code": ended["subject_code"],
        "DSTERM": np.where(reason.notna() & (decoded != "COMPLETED"), reason.astype(object), decoded),
        "DSDECOD": decoded, "DSCAT": "DISPOSITION EVENT", "_date": ended["disposition_date"], "_order": 3}))
    rec = _timing(pd.concat(rows, ignore_index=True), ctx, "DS")
    rec["DOMAIN"] = "DS"
    rec["DSTERM"] = rec["DSTERM"].astype(str).str.slice(0, 200)
    rec["DSSTDTC"] = iso(rec["_date"])
    rec["DSSTDY"] = study_day(rec["_date"], rec["RFSTDTC"])
    rec["EPOCH"] = epoch(rec["_date"], rec["RFSTDTC"])
    # The end-of-study record belongs to the epoch the subject was in when it happened (FOLLOW-UP after
    # treatment); a screen failure is in SCREENING by definition.
    rec.loc[rec["DSDECOD"] == "SCREEN FAILURE", "EPOCH"] = "SCREENING"
    rec = assign_seq(rec, "DS", ["_order", "DSSTDTC"])
    order = ["STUDYID", "DOMAIN", "USUBJID", "DSSEQ", "DSTERM", "DSDECOD", "DSCAT", "EPOCH", "DSSTDTC", "DSSTDY"]
    specific = {"DSTERM": ("Reported Term for the Disposition Event", "text", "Topic", "Req"),
                "DSDECOD": ("Standardized Disposition Term", "text", "Synonym Qualifier", "Req"),
                "DSCAT": ("Category for Disposition Event", "text", "Grouping Qualifier", "Exp"),
                "DSSTDTC": ("Start Date/Time of Disposition Event", "date", "Timing", "Exp"),
                "DSSTDY": ("Study Day of Start of Disposition Event", "integer", "Timing", "Perm")}
    origins = {"DSTERM": ("Collected", "disposition.reason"), "DSDECOD": ("Collected", "disposition.status"),
               "DSSTDTC": ("Collected", "disposition.date"), "DSCAT": ("Assigned", None)}
    return build_dataset("DS", rec, order, keys=["STUDYID", "USUBJID", "DSDECOD", "DSSTDTC"], specific=specific,
                         origins=origins, codelists={"DSDECOD": None},
                         value_level=[ValueLevel("DSDECOD", "DSCAT", "DISPOSITION EVENT", "Standardized Disposition Term",
                                                "text", origin="Collected", source="disposition.status",
                                                codelist="C66727"),
                                      ValueLevel("DSDECOD", "DSCAT", "PROTOCOL MILESTONE", "Protocol Milestone",
                                                 "text", origin="Assigned", codelist="C114118")],
                         structure="One record per disposition status or protocol milestone per subject",
                         methods=["MT.SEQ", "MT.DY", "MT.EPOCH"],
                         comment="DSDECOD: NCOMPLT (C66727) for disposition events, PROTMLST (C114118) for the "
                                 "informed-consent milestone.")


def reference_end(ctx: Context) -> pd.DataFrame:
    """Per subject: last contact date (RFPENDTC) = latest of visits, disposition and AE dates."""
    v = ctx.snap.visits[["subject_code", "visit_date"]].rename(columns={"visit_date": "d"})
    s = ctx.snap.subjects[["subject_code", "disposition_date"]].rename(columns={"disposition_date": "d"})
    parts = [v, s]
    aes = ctx.snap.adverse_events
    if not aes.empty:
        parts += [aes[["subject_code", c]].rename(columns={c: "d"}) for c in ("onset_date", "stop_date") if c in aes]
    allp = pd.concat(parts, ignore_index=True)
    allp["d"] = to_ts(allp["d"])
    return allp.groupby("subject_code")["d"].max().reset_index()
