"""Interventions domains (CM, EX, PR) from annotated forms: prespecified therapies and devices, and the
single records a form's ``fixed`` values and ``var`` fields make (the infusion in EX, the catheterization in PR)."""

from __future__ import annotations

import pandas as pd

from regenheart.derive.datasets import Dataset
from regenheart.derive.sdtm.common import Context, assign_seq, build_dataset, epoch, iso, study_day, with_reference
from regenheart.derive.sdtm.events import anchors

_SPECIFIC = {
    "CMTRT": ("Reported Name of Drug, Med, or Therapy", "text", "Topic", "Req"),
    "CMCLAS": ("Medication Class", "text", "Variable Qualifier", "Perm"),
    "CMCAT": ("Category for Medication", "text", "Grouping Qualifier", "Perm"),
    "EXTRT": ("Name of Treatment", "text", "Topic", "Req"),
    "EXLOC": ("Location of Dose Administration", "text", "Record Qualifier", "Perm"),
    "EXSTDTC": ("Start Date/Time of Treatment", "date", "Timing", "Exp"),
    "EXENDTC": ("End Date/Time of Treatment", "date", "Timing", "Exp"),
    "EXSTDY": ("Study Day of Start of Treatment", "integer", "Timing", "Perm"),
    "EXENDY": ("Study Day of End of Treatment", "integer", "Timing", "Perm"),
    "PRTRT": ("Reported Name of Procedure", "text", "Topic", "Req"),
    "PRCAT": ("Category", "text", "Grouping Qualifier", "Perm"),
    "PRLOC": ("Location of Procedure", "text", "Record Qualifier", "Perm"),
    "PRSTDTC": ("Start Date/Time of Procedure", "date", "Timing", "Exp"),
    "PRSTDY": ("Study Day of Start of Procedure", "integer", "Timing", "Perm"),
    "CMDTC": ("Date/Time of Collection", "date", "Timing", "Perm"),
    "PRDTC": ("Date/Time of Collection", "date", "Timing", "Perm"),
    "CMDY": ("Study Day of Collection", "integer", "Timing", "Perm"),
    "PRDY": ("Study Day of Collection", "integer", "Timing", "Perm"),
}
_ORDER = {
    "CM": ["STUDYID", "DOMAIN", "USUBJID", "CMSEQ", "CMTRT", "CMDECOD", "CMCAT", "CMCLAS", "CMPRESP", "CMOCCUR",
           "CMSTAT", "CMREASND", "VISITNUM", "VISIT", "EPOCH", "CMDTC", "CMDY", "CMENRTPT", "CMENTPT"],
    "EX": ["STUDYID", "DOMAIN", "USUBJID", "EXSEQ", "EXTRT", "EXDOSE", "EXDOSU", "EXDOSFRM", "EXDOSFRQ", "EXROUTE",
           "EXLOC", "VISITNUM", "VISIT", "EPOCH", "EXSTDTC", "EXENDTC", "EXSTDY", "EXENDY"],
    "PR": ["STUDYID", "DOMAIN", "USUBJID", "PRSEQ", "PRTRT", "PRCAT", "PRPRESP", "PROCCUR", "PRSTAT", "PRREASND",
           "PRLOC", "VISITNUM",
           "VISIT", "EPOCH", "PRDTC", "PRDY", "PRSTDTC", "PRSTDY"],
}


def build_intervention(ctx: Context, domain: str, raw: pd.DataFrame) -> tuple[Dataset, pd.DataFrame]:
    """Finish an interventions domain: topic variable, timing, --SEQ; returns the dataset and its record keys."""
    rec = with_reference(raw, ctx)
    rec["STUDYID"] = ctx.studyid
    rec["VISITNUM"] = rec["_visit"].map(ctx.visitnum)
    rec["VISIT"] = rec["_visit"].map({v.code: v.label for v in ctx.protocol.visits})
    rec = rec.rename(columns={c: f"{domain}{c}" for c in ("TERM", "TRT", "CAT", "CLAS", "PRESP", "OCCUR", "STAT",
                                                           "REASND", "DOSE", "DOSU", "DOSFRM", "DOSFRQ", "ROUTE",
                                                           "LOC") if c in rec})
    if f"{domain}TERM" in rec:
        rec[f"{domain}TRT"] = rec.pop(f"{domain}TERM") if f"{domain}TRT" not in rec else \
            rec[f"{domain}TRT"].where(rec[f"{domain}TRT"].notna(), rec.pop(f"{domain}TERM"))
    prespecified = rec[f"{domain}PRESP"].eq("Y") if f"{domain}PRESP" in rec else pd.Series(False, index=rec.index)
    # A prespecified item is a question asked at a visit (collection date); a single record is the
    # administration or procedure itself, which happened on the visit date.
    rec[f"{domain}DTC"] = iso(rec["_date"]).where(prespecified, None)
    rec[f"{domain}DY"] = study_day(rec["_date"], rec["RFSTDTC"]).where(prespecified)
    given = ~prespecified
    rec[f"{domain}STDTC"] = iso(rec["_date"]).where(given, None)
    rec[f"{domain}STDY"] = study_day(rec["_date"], rec["RFSTDTC"]).where(given)
    if domain == "EX":
        rec["EXENDTC"], rec["EXENDY"] = rec["EXSTDTC"], rec["EXSTDY"]
    if domain == "CM":
        occurred = rec["CMOCCUR"].eq("Y") if "CMOCCUR" in rec else pd.Series(False, index=rec.index)
        rec["CMENRTPT"] = pd.Series("ONGOING", index=rec.index).where(occurred, None)
        rec["CMENTPT"] = rec["VISIT"].str.upper().where(occurred, None)
    rec["EPOCH"] = epoch(rec["_date"], rec["RFSTDTC"])
    rec = assign_seq(rec, domain, ["VISITNUM", f"{domain}CAT", "_anchor"] if f"{domain}CAT" in rec
                     else ["VISITNUM", "_anchor"])
    forms = sorted(set(rec["_form"]))
    origins = {v: ("Collected", ", ".join(forms)) for v in
               (f"{domain}TRT", f"{domain}OCCUR", f"{domain}STAT", f"{domain}REASND", f"{domain}DOSE", f"{domain}LOC", f"{domain}DTC", f"{domain}STDTC",
                f"{domain}ENDTC")}
    origins.update({v: ("Assigned", None) for v in (f"{domain}CAT", f"{domain}CLAS", f"{domain}PRESP",
                                                    f"{domain}DOSU", f"{domain}DOSFRM", f"{domain}DOSFRQ",
                                                    f"{domain}ROUTE")})
    origins["CMENRTPT"] = origins["CMENTPT"] = ("Derived", "MT.CMENRTPT")
    if domain == "EX":
        origins["EXTRT"] = ("Protocol", "catheterization form: fixed")
    structure = {"CM": "One record per recorded intervention per subject",
                 "EX": "One record per constant-dosing interval per subject",
                 "PR": "One record per recorded procedure per subject"}.get(domain, "One record per intervention")
    keys = {"CM": ["STUDYID", "USUBJID", "CMTRT", "CMCAT"], "EX": ["STUDYID", "USUBJID", "EXTRT", "EXSTDTC"],
            "PR": ["STUDYID", "USUBJID", "PRTRT", "PRSTDTC", "PRCAT"]}.get(domain, ["STUDYID", "USUBJID", f"{domain}TRT"])
    comment = {"CM": "Heart-failure therapy at screening from the medical-history form (prespecified classes); "
                     "not WHODrug-coded (CMDECOD null).",
               "EX": "The cell product; EXDOSE in 10^6 therapeutic cells as collected.",
               "PR": "The day-0 catheterization and device history from the medical-history form."}.get(domain)
    ds = build_dataset(domain, rec, _ORDER[domain], keys=keys, specific=_SPECIFIC, origins=origins,
                       structure=structure, methods=["MT.SEQ", "MT.DY", "MT.EPOCH"], comment=comment,
                       codelists={"CMCAT": "SPONSOR:CMCAT", "CMCLAS": "SPONSOR:CMCLAS"})
    return ds, anchors(ds, rec)
