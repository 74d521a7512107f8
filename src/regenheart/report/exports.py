"""Exports for submission and registry posting.

- ADaM datasets as SAS transport v5 (``.xpt``, via pyreadstat) and CSV: variable names of at most
  8 characters, labels of at most 40, dates as SAS dates; the XPT is what regulators and SAS users
  read, the CSV is for everyone else.
- A ClinicalTrials.gov results section (``ctgov_results.json``) in the structure of the
  ClinicalTrials.gov API v2 ``resultsSection`` (participant flow, baseline characteristics, outcome
  measures, adverse events), built only from the SAP results so that it agrees with the report.
  It is a draft for the PRS data entry, not a submission.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyreadstat

from regenheart.derive.adam import AnalysisDatasets
from regenheart.protocol.models import Protocol

DATASET_LABELS = {
    "adsl": "Subject-Level Analysis Dataset",
    "adeff": "Efficacy Analysis Dataset (BDS)",
    "adae": "Adverse Events Analysis Dataset",
    "adpse": "Primary Safety Composite Events",
}
VARIABLE_LABELS = {
    "STUDYID": "Study Identifier", "USUBJID": "Unique Subject Identifier", "SUBJID": "Subject Identifier",
    "SITEID": "Study Site Identifier", "AGE": "Age", "AGEU": "Age Units", "SEX": "Sex",
    "HEIGHTBL": "Baseline Height (cm)", "WEIGHTBL": "Baseline Weight (kg)", "BMIBL": "Baseline BMI (kg/m2)",
    "BSABL": "Baseline BSA, Mosteller (m2)", "ARMCD": "Planned Arm Code", "ARM": "Description of Planned Arm",
    "TRT01A": "Actual Treatment for Period 01", "RFICDT": "Date of Informed Consent", "SCRNDT": "Screening Date",
    "ENRLDT": "Enrollment Date", "TRTSDT": "Date of Infusion (Day 0)", "SCRNFL": "Screened Population Flag",
    "ELIGFL": "Eligible Flag", "IEFAIL": "Failed Eligibility Criteria", "ENRLFL": "Enrolled Population Flag",
    "SAFFL": "Safety Population Flag", "EFFFL": "Efficacy Population Flag", "EOSSTT": "End of Study Status",
    "DCSREAS": "Reason for Discontinuation", "DCSREASP": "Reason for Discontinuation Details",
    "EOSDT": "End of Study Date", "DTHFL": "Subject Death Flag", "DTHDT": "Date of Death",
    "SYNTHFL": "Synthetic Data Flag", "HFETIOL": "Heart Failure Etiology", "ICDFL": "ICD Implanted",
    "PARAMCD": "Parameter Code", "PARAM": "Parameter", "PARAMN": "Parameter (N)", "AVAL": "Analysis Value",
    "AVISIT": "Analysis Visit", "AVISITN": "Analysis Visit (N)", "VISIT": "Visit Name", "ADT": "Analysis Date",
    "ADY": "Analysis Relative Day", "PDAY": "Protocol Day (Day 0 = Infusion)", "AWTARGET": "Analysis Window Target",
    "AWLO": "Analysis Window Beginning", "AWHI": "Analysis Window End", "ABLFL": "Baseline Record Flag",
    "BASE": "Baseline Value", "CHG": "Change from Baseline", "PCHG": "Percent Change from Baseline",
    "ANL01FL": "Analysis Flag 01", "AESEQ": "Sequence Number", "AETERM": "Reported Term for the Adverse Event",
    "AECAT": "Category for Adverse Event", "AECATDC": "Category for Adverse Event (Decoded)",
    "ASTDT": "Analysis Start Date", "AENDT": "Analysis End Date", "ASTDY": "Analysis Start Relative Day",
    "AETOXGR": "Standard Toxicity Grade", "AESER": "Serious Event", "SAECRIT": "SAE Criteria Met",
    "AREL": "Causality to Cell Product", "ARELPR": "Causality to Procedure", "AEOUT": "Outcome of Adverse Event",
    "TRTEMFL": "Treatment Emergent Analysis Flag", "PERIFL": "Peri-procedural (Day 0-5) Flag",
    "PRIMFL": "Primary Safety Composite Flag", "SOURCE": "Source of Event", "PSECOMP": "Primary Safety Composite Component",
    "DETAIL": "Event Detail",
}


SAS_EPOCH = dt.date(1960, 1, 1)


def _xpt_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Types SAS transport can hold: numbers, text, and dates as SAS dates (days since 1960-01-01)
    with the DATE9. format. Returns the frame and the variable formats."""
    out = frame.copy()
    formats: dict[str, str] = {}
    for column in out.columns:
        values = out[column].dropna()
        if len(values) and all(isinstance(v, dt.date) for v in values):
            out[column] = out[column].map(lambda d: float((d - SAS_EPOCH).days) if isinstance(d, dt.date) else None)
            out[column] = out[column].astype(float)
            formats[column] = "DATE9"
        elif out[column].dtype == object or str(out[column].dtype) in ("string", "str"):
            out[column] = out[column].map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    return out, formats


def write_adam(data: AnalysisDatasets, out_dir: Path) -> list[Path]:
    """Write every analysis dataset as ``NAME.xpt`` (SAS transport v5) and ``NAME.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, label in DATASET_LABELS.items():
        frame = getattr(data, name)
        too_long = [c for c in frame.columns if len(c) > 8]
        if too_long:
            raise ValueError(f"{name}: variable names longer than 8 characters cannot go into XPT v5: {too_long}")
        xpt = out_dir / f"{name}.xpt"
        xpt_frame, formats = _xpt_frame(frame)
        pyreadstat.write_xport(xpt_frame, str(xpt), file_label=label, table_name=name.upper(),
                               column_labels=[VARIABLE_LABELS.get(c, c)[:40] for c in frame.columns],
                               variable_format=formats, file_format_version=5)
        csv = out_dir / f"{name}.csv"
        frame.to_csv(csv, index=False)
        written += [xpt, csv]
    return written


# ---------------------------------------------------------------- ClinicalTrials.gov results
# MedDRA system organ class of each protocol AE category (the registry requires an organ system;
# verbatim terms are not MedDRA-coded in this system yet).
CATEGORY_SOC = {
    "DEATH": "General disorders", "PERIPROC_MI": "Cardiac disorders", "TROPONIN_RISE": "Investigations",
    "CORONARY_INJURY": "Injury, poisoning and procedural complications", "NO_REFLOW": "Cardiac disorders",
    "VT_VF": "Cardiac disorders", "NSVT": "Cardiac disorders", "SVT_AF": "Cardiac disorders",
    "BRADY_AVB": "Cardiac disorders", "STROKE_TIA": "Nervous system disorders",
    "ALLERGIC": "Immune system disorders", "FEVER": "General disorders",
    "ACCESS_SITE": "Injury, poisoning and procedural complications",
    "CONTRAST_NEPHROPATHY": "Renal and urinary disorders", "HF_WORSENING": "Cardiac disorders",
    "MYOCARDITIS_IMMUNE": "Cardiac disorders", "INFECTION": "Infections and infestations",
    "OTHER": "General disorders",
}
def _num(value: Any, digits: int = 2) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def ctgov_results(protocol: Protocol, results: dict[str, Any]) -> dict[str, Any]:
    """A ClinicalTrials.gov API v2 style ``resultsSection`` from the SAP results dictionary."""
    arm = protocol.active_version.arms[0]
    group = {"id": "OG000", "title": arm.label, "description": arm.description}
    flow = results["flow"]
    n_safety = flow["safety_population"]
    drop = [{"type": reason.title(), "reasons": [{"groupId": "FG000", "numSubjects": str(n)}]}
            for reason, n in flow["discontinued"].items()]
    participant_flow = {
        "recruitmentDetails": f"{flow['screened']} screened, {flow['screen_failed']} screen failures.",
        "groups": [dict(group, id="FG000")],
        "periods": [{"title": "Overall Study", "milestones": [
            {"type": "STARTED", "achievements": [{"groupId": "FG000", "numSubjects": str(flow["infused"])}]},
            {"type": "COMPLETED", "achievements": [{"groupId": "FG000", "numSubjects": str(flow["completed"])}]},
            {"type": "NOT COMPLETED", "achievements": [
                {"groupId": "FG000", "numSubjects": str(flow["infused"] - flow["completed"])}]},
        ], "dropWithdraws": drop}],
    }
    measures = []
    for row in results["baseline"]:
        if row["type"] == "continuous":
            measures.append({"title": row["variable"], "paramType": "MEAN", "dispersionType": "STANDARD_DEVIATION",
                             "unitOfMeasure": row["unit"], "classes": [{"categories": [{"measurements": [
                                 {"groupId": "BG000", "value": _num(row["mean"], 1), "spread": _num(row["sd"], 1)}]}]}]})
        else:
            measures.append({"title": row["variable"], "paramType": "COUNT_OF_PARTICIPANTS",
                             "unitOfMeasure": "Participants", "classes": [{"categories": [
                                 {"title": lvl["level"], "measurements": [{"groupId": "BG000", "value": str(lvl["n"])}]}
                                 for lvl in row["levels"]]}]})
    baseline = {"groups": [dict(group, id="BG000")],
                "denoms": [{"units": "Participants", "counts": [{"groupId": "BG000", "value": str(n_safety)}]}],
                "measures": measures}
    primary = results["primary"]
    outcome_measures = [{
        "type": "PRIMARY", "title": primary["label"], "description": primary["definition"],
        "populationDescription": "Safety population: all infused patients.",
        "reportingStatus": "POSTED", "paramType": "COUNT_OF_PARTICIPANTS", "unitOfMeasure": "Participants",
        "timeFrame": "Day 0 (infusion) to day 5",
        "groups": [group], "denoms": [{"units": "Participants",
                                       "counts": [{"groupId": "OG000", "value": str(primary["n_total"])}]}],
        "classes": [{"categories": [{"measurements": [{"groupId": "OG000", "value": str(primary["n_events"])}]}]}],
        "analyses": [{"groupIds": ["OG000"], "paramType": "Proportion", "paramValue": _num(primary["proportion"], 3),
                      "ciPctValue": "95", "ciNumSides": "TWO_SIDED", "ciLowerLimit": _num(primary["lower"], 3),
                      "ciUpperLimit": _num(primary["upper"], 3),
                      "statisticalMethod": "Exact (Clopper-Pearson) confidence interval"}],
    }]
    for block in results["efficacy"]:
        if block["kind"] not in ("secondary", "exploratory") or block["paramcd"] == "NYHA":
            continue
        for visit in block["visits"]:
            outcome_measures.append({
                "type": "SECONDARY" if block["kind"] == "secondary" else "OTHER_PRE_SPECIFIED",
                "title": f"Change from baseline in {block['label']} at {visit['label']}",
                "paramType": "MEAN", "dispersionType": "95% Confidence Interval",
                "unitOfMeasure": block["unit"], "timeFrame": f"Baseline and {visit['label']}",
                "reportingStatus": "POSTED", "groups": [group],
                "denoms": [{"units": "Participants", "counts": [{"groupId": "OG000", "value": str(visit["n"])}]}],
                "classes": [{"categories": [{"measurements": [{
                    "groupId": "OG000", "value": _num(visit["mean_change"]), "lowerLimit": _num(visit["lower"]),
                    "upperLimit": _num(visit["upper"])}]}]}],
                "analyses": [{"groupIds": ["OG000"], "pValue": _num(visit["p_value_t"], 4),
                              "statisticalMethod": "t-test, 2 sided (paired)"}] if visit["p_value_t"] is not None else [],
            })
    ae = results["adverse_events"]
    deaths = len(ae["deaths"])
    serious_subjects = ae["overview"]["Any serious adverse event"]["subjects"]
    other_subjects = ae["overview"]["Any adverse event"]["subjects"]
    by_cat = ae["by_category"]
    soc = {protocol.decode("ae_category", c): CATEGORY_SOC.get(c, "General disorders")
           for c in (item.code for item in protocol.codelists["ae_category"])}
    adverse = {
        "frequencyThreshold": "0", "timeFrame": "From infusion (day 0) to month 6",
        "description": "Adverse events by protocol category; grading by CTCAE.",
        "eventGroups": [dict(group, id="EG000", deathsNumAffected=deaths, deathsNumAtRisk=n_safety,
                             seriousNumAffected=serious_subjects, seriousNumAtRisk=n_safety,
                             otherNumAffected=other_subjects, otherNumAtRisk=n_safety)],
        "seriousEvents": [{"term": c["category"], "organSystem": soc[c["category"]],
                           "stats": [{"groupId": "EG000", "numEvents": c["serious"], "numAffected": c["serious"],
                                      "numAtRisk": n_safety}]} for c in by_cat if c["serious"]],
        "otherEvents": [{"term": c["category"], "organSystem": soc[c["category"]], "stats": [{"groupId": "EG000", "numEvents": c["events"],
                                                            "numAffected": c["subjects"], "numAtRisk": n_safety}]}
                        for c in by_cat],
    }
    return {
        "nctId": protocol.study.nct_id,
        "note": ("DRAFT built by regenheart from the SAP results"
                 + ("; SYNTHETIC DATA, NOT FOR POSTING" if results.get("synthetic") else "")),
        "resultsSection": {"participantFlowModule": participant_flow, "baselineCharacteristicsModule": baseline,
                           "outcomeMeasuresModule": {"outcomeMeasures": outcome_measures},
                           "adverseEventsModule": adverse},
    }


def write_ctgov(protocol: Protocol, results: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(ctgov_results(protocol, results), indent=1), encoding="utf-8")
    return path
