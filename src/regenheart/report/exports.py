"""Exports for submission and registry posting.

- ADaM datasets as SAS transport v5 (``.xpt``, via pyreadstat) and CSV: variable names of at most
  8 characters, labels of at most 40, dates as SAS dates; the XPT is what regulators and SAS users
  read, the CSV is for everyone else.

The ClinicalTrials.gov results (PRS upload XML and its API-v2-shaped JSON twin) are written by
:mod:`regenheart.exchange.ctgov`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyreadstat

from regenheart.derive.adam import AnalysisDatasets

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
