"""Small SDTM and ADaM datasets built by hand for the CDISC writer and conformance tests (synthetic).

They use only the dataset metadata model, like the real builders: DM, CV (echo findings with value-level
metadata per CVTESTCD), AE; ADSL and a BDS dataset tracing back to CV through SRCDOM/SRCVAR/SRCSEQ.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from regenheart.derive.datasets import Dataset, Method, ValueLevel, Variable
from regenheart.exchange.cdisc.define import StudyInfo

STUDY = StudyInfo(oid="STUDY.TEST01", name="TEST01", description="Synthetic test study", protocol_name="TEST01",
                  created_utc="2026-01-01T10:00:00Z", source_system_version="0.0-test",
                  note="SYNTHETIC DATA for tests")

DY = Method("MT.DY", "Study day", "--DY = date - RFSTDTC + 1 on or after RFSTDTC, date - RFSTDTC before (no day 0).")
SEQ = Method("MT.SEQ", "Sequence number", "Consecutive integers per USUBJID in key order.")
CHG = Method("MT.CHG", "Change from baseline", "CHG = AVAL - BASE for post-baseline records.")


def dm() -> Dataset:
    records = pd.DataFrame({
        "STUDYID": ["TEST01"] * 3, "DOMAIN": ["DM"] * 3,
        "USUBJID": ["TEST01-001", "TEST01-002", "TEST01-003"], "SUBJID": ["001", "002", "003"],
        "RFSTDTC": ["2024-01-10", "2024-02-01", None], "SITEID": ["01", "01", "02"],
        "AGE": [54, 61, 47], "AGEU": ["YEARS"] * 3, "SEX": ["M", "F", "M"],
        "ARMCD": ["CELLS", "CELLS", "SCRNFAIL"], "ARM": ["Cell infusion", "Cell infusion", "Screen Failure"],
        "ACTARMCD": ["CELLS", "CELLS", "SCRNFAIL"], "ACTARM": ["Cell infusion", "Cell infusion", "Screen Failure"],
        "COUNTRY": ["POL"] * 3,
    })
    variables = [
        Variable("STUDYID", "Study Identifier", "text", role="Identifier", core="Req", origin="Protocol"),
        Variable("DOMAIN", "Domain Abbreviation", "text", role="Identifier", core="Req", origin="Assigned"),
        Variable("USUBJID", "Unique Subject Identifier", "text", role="Identifier", core="Req", origin="Assigned"),
        Variable("SUBJID", "Subject Identifier for the Study", "text", role="Topic", core="Req",
                 source="enrolment.subject_code"),
        Variable("RFSTDTC", "Subject Reference Start Date/Time", "date", role="Record Qualifier", core="Exp",
                 origin="Derived", source="MT.RFSTDTC"),
        Variable("SITEID", "Study Site Identifier", "text", role="Record Qualifier", core="Req",
                 codelist="SPONSOR:Sites"),
        Variable("AGE", "Age", "integer", role="Record Qualifier", core="Exp", source="demographics.age_years"),
        Variable("AGEU", "Age Units", "text", role="Variable Qualifier", core="Exp", codelist="C66781",
                 origin="Assigned"),
        Variable("SEX", "Sex", "text", role="Record Qualifier", core="Req", codelist="C66731",
                 source="demographics.sex"),
        Variable("ARMCD", "Planned Arm Code", "text", role="Record Qualifier", core="Req", origin="Assigned"),
        Variable("ARM", "Description of Planned Arm", "text", role="Synonym Qualifier", core="Req",
                 origin="Assigned"),
        Variable("ACTARMCD", "Actual Arm Code", "text", role="Record Qualifier", core="Req", origin="Derived",
                 source="MT.RFSTDTC"),
        Variable("ACTARM", "Description of Actual Arm", "text", role="Synonym Qualifier", core="Req",
                 origin="Assigned"),
        Variable("COUNTRY", "Country", "text", role="Record Qualifier", core="Req",
                 origin="Assigned", comment="ISO 3166-1 alpha-3 country of the site."),
    ]
    method = Method("MT.RFSTDTC", "Reference start", "Date of the day-0 procedure (first study treatment).")
    return Dataset("DM", "Demographics", "SDTM", "One record per subject", "SPECIAL PURPOSE",
                   ["STUDYID", "USUBJID"], variables, records, methods=[method])


def cv() -> Dataset:
    records = pd.DataFrame({
        "STUDYID": ["TEST01"] * 6, "DOMAIN": ["CV"] * 6,
        "USUBJID": ["TEST01-001"] * 3 + ["TEST01-002"] * 3,
        "CVSEQ": [1, 2, 3, 1, 2, 3],
        "CVTESTCD": ["LVEF", "EDV", "LVEF", "LVEF", "EDV", "LVEF"],
        "CVTEST": ["Left Ventricular Ejection Fraction", "End Diastolic Volume",
                   "Left Ventricular Ejection Fraction"] * 2,
        "CVORRES": ["27", "250", "31.5", "30", "221", "33"],
        "CVORRESU": ["%", "mL", "%", "%", "mL", "%"],
        "CVSTRESN": [27.0, 250.0, 31.5, 30.0, 221.0, 33.0],
        "CVSTRESU": ["%", "mL", "%", "%", "mL", "%"],
        "VISITNUM": [1, 1, 2, 1, 1, 2],
        "CVDTC": ["2024-01-05", "2024-01-05", "2024-07-12", "2024-01-29", "2024-01-29", "2024-08-01"],
        "CVDY": [-5, -5, 185, -3, -3, 183],
    })
    variables = [
        Variable("STUDYID", "Study Identifier", "text", role="Identifier", core="Req", origin="Protocol"),
        Variable("DOMAIN", "Domain Abbreviation", "text", role="Identifier", core="Req", origin="Assigned"),
        Variable("USUBJID", "Unique Subject Identifier", "text", role="Identifier", core="Req", origin="Assigned"),
        Variable("CVSEQ", "Sequence Number", "integer", role="Identifier", core="Req", origin="Derived",
                 source="MT.SEQ"),
        Variable("CVTESTCD", "Short Name of Cardiovascular Test", "text", role="Topic", core="Req",
                 codelist="C101847", origin="Assigned"),
        Variable("CVTEST", "Name of Cardiovascular Test", "text", role="Synonym Qualifier", core="Req",
                 codelist="C101846", origin="Assigned"),
        Variable("CVORRES", "Result or Finding in Original Units", "text", role="Result Qualifier", core="Exp",
                 source="echo"),
        Variable("CVORRESU", "Original Units", "text", role="Variable Qualifier", core="Exp", codelist="C71620",
                 origin="Assigned"),
        Variable("CVSTRESN", "Numeric Result/Finding in Standard Units", "float", role="Result Qualifier",
                 core="Exp", origin="Derived", source="MT.STRESN"),
        Variable("CVSTRESU", "Standard Units", "text", role="Variable Qualifier", core="Exp", codelist="C71620",
                 origin="Assigned"),
        Variable("VISITNUM", "Visit Number", "integer", role="Timing", core="Exp", origin="Assigned"),
        Variable("CVDTC", "Date/Time of Measurement", "date", role="Timing", core="Exp", source="echo.visit_date"),
        Variable("CVDY", "Study Day of Measurement", "integer", role="Timing", core="Perm", origin="Derived",
                 source="MT.DY"),
    ]
    value_level = [
        ValueLevel("CVORRES", "CVTESTCD", "LVEF", "Left ventricular ejection fraction", "float", unit="%",
                   source="echo.lvef_pct"),
        ValueLevel("CVORRES", "CVTESTCD", "EDV", "LV end-diastolic volume", "integer", unit="mL",
                   source="echo.lvedv_ml"),
    ]
    stresn = Method("MT.STRESN", "Standard numeric result", "CVORRES as a number (units are already standard).")
    return Dataset("CV", "Cardiovascular System Findings", "SDTM",
                   "One record per finding or result per time point per visit per subject", "FINDINGS",
                   ["STUDYID", "USUBJID", "CVTESTCD", "VISITNUM"], variables, records, value_level=value_level,
                   methods=[SEQ, DY, stresn])


def ae() -> Dataset:
    records = pd.DataFrame({
        "STUDYID": ["TEST01"] * 2, "DOMAIN": ["AE"] * 2, "USUBJID": ["TEST01-001", "TEST01-002"],
        "AESEQ": [1, 1], "AETERM": ["Fever after infusion", "Access site haematoma"],
        "AEDECOD": ["Pyrexia", "Vascular access site haematoma"], "AESEV": ["MILD", "MODERATE"],
        "AESER": ["N", "N"], "AESTDTC": ["2024-01-10", "2024-02-02"], "AESTDY": [1, 2],
    })
    variables = [
        Variable("STUDYID", "Study Identifier", "text", role="Identifier", core="Req", origin="Protocol"),
        Variable("DOMAIN", "Domain Abbreviation", "text", role="Identifier", core="Req", origin="Assigned"),
        Variable("USUBJID", "Unique Subject Identifier", "text", role="Identifier", core="Req", origin="Assigned"),
        Variable("AESEQ", "Sequence Number", "integer", role="Identifier", core="Req", origin="Derived",
                 source="MT.SEQ"),
        Variable("AETERM", "Reported Term for the Adverse Event", "text", role="Topic", core="Req",
                 source="adverse_events.term"),
        Variable("AEDECOD", "Dictionary-Derived Term", "text", role="Synonym Qualifier", core="Req",
                 origin="Assigned"),
        Variable("AESEV", "Severity/Intensity", "text", role="Record Qualifier", core="Perm", codelist="C66769"),
        Variable("AESER", "Serious Event", "text", role="Record Qualifier", core="Exp", codelist="C66742"),
        Variable("AESTDTC", "Start Date/Time of Adverse Event", "date", role="Timing", core="Exp"),
        Variable("AESTDY", "Study Day of Start of Adverse Event", "integer", role="Timing", core="Perm",
                 origin="Derived", source="MT.DY"),
    ]
    return Dataset("AE", "Adverse Events", "SDTM", "One record per adverse event per subject", "EVENTS",
                   ["STUDYID", "USUBJID", "AETERM", "AESTDTC"], variables, records, methods=[SEQ, DY])


def sdtm() -> dict[str, Dataset]:
    return {d.name: d for d in (dm(), cv(), ae())}


def adsl() -> Dataset:
    records = pd.DataFrame({
        "STUDYID": ["TEST01"] * 3, "USUBJID": ["TEST01-001", "TEST01-002", "TEST01-003"],
        "SUBJID": ["001", "002", "003"], "SITEID": ["01", "01", "02"], "AGE": [54, 61, 47],
        "AGEU": ["YEARS"] * 3, "SEX": ["M", "F", "M"], "ARM": ["Cell infusion", "Cell infusion", "Screen Failure"],
        "TRT01P": ["Cell infusion", "Cell infusion", ""],
        "TRTSDT": [dt.date(2024, 1, 10), dt.date(2024, 2, 1), None],
        "SAFFL": ["Y", "Y", "N"], "BMIBL": [26.4, 24.05, None],
    })
    variables = [
        Variable("STUDYID", "Study Identifier", "text", core="Req", origin="Predecessor", source="DM.STUDYID"),
        Variable("USUBJID", "Unique Subject Identifier", "text", core="Req", origin="Predecessor",
                 source="DM.USUBJID"),
        Variable("SUBJID", "Subject Identifier for the Study", "text", core="Req", origin="Predecessor",
                 source="DM.SUBJID"),
        Variable("SITEID", "Study Site Identifier", "text", core="Req", origin="Predecessor", source="DM.SITEID"),
        Variable("AGE", "Age", "integer", core="Req", origin="Predecessor", source="DM.AGE"),
        Variable("AGEU", "Age Units", "text", core="Req", origin="Predecessor", source="DM.AGEU", codelist="C66781"),
        Variable("SEX", "Sex", "text", core="Req", origin="Predecessor", source="DM.SEX", codelist="C66731"),
        Variable("ARM", "Description of Planned Arm", "text", core="Req", origin="Predecessor", source="DM.ARM"),
        Variable("TRT01P", "Planned Treatment for Period 01", "text", core="Req", origin="Derived",
                 source="MT.TRT01P"),
        Variable("TRTSDT", "Date of First Exposure to Treatment", "date", core="Perm", origin="Derived",
                 source="MT.TRTSDT"),
        Variable("SAFFL", "Safety Population Flag", "text", core="Perm", origin="Derived", source="MT.SAFFL",
                 codelist="C66742"),
        Variable("BMIBL", "Baseline BMI (kg/m2)", "float", core="Perm", origin="Derived", source="MT.BMI"),
    ]
    methods = [Method("MT.TRT01P", "Planned treatment", "ARM of subjects randomized or enrolled."),
               Method("MT.TRTSDT", "Treatment start", "Date part of DM.RFXSTDTC."),
               Method("MT.SAFFL", "Safety population", "Y when the subject received the cell product."),
               Method("MT.BMI", "Body mass index", "weight (kg) / height (m)^2 at baseline.")]
    return Dataset("ADSL", "Subject-Level Analysis Dataset", "ADaM", "One record per subject",
                   "SUBJECT LEVEL ANALYSIS DATASET", ["STUDYID", "USUBJID"], variables, records, methods=methods)


def adeff() -> Dataset:
    records = pd.DataFrame({
        "STUDYID": ["TEST01"] * 4, "USUBJID": ["TEST01-001", "TEST01-001", "TEST01-002", "TEST01-002"],
        "PARAMCD": ["LVEF"] * 4, "PARAM": ["Left ventricular ejection fraction (%)"] * 4,
        "AVISIT": ["Baseline", "Month 6", "Baseline", "Month 6"], "AVISITN": [0, 180, 0, 180],
        "ADT": [dt.date(2024, 1, 5), dt.date(2024, 7, 12), dt.date(2024, 1, 29), dt.date(2024, 8, 1)],
        "AVAL": [27.0, 31.5, 30.0, 33.0], "BASE": [27.0, 27.0, 30.0, 30.0], "CHG": [None, 4.5, None, 3.0],
        "ABLFL": ["Y", "", "Y", ""], "ANL01FL": ["Y"] * 4,
        "SRCDOM": ["CV"] * 4, "SRCVAR": ["CVSTRESN"] * 4, "SRCSEQ": [1, 3, 1, 3],
    })
    variables = [
        Variable("STUDYID", "Study Identifier", "text", core="Req", origin="Predecessor", source="ADSL.STUDYID"),
        Variable("USUBJID", "Unique Subject Identifier", "text", core="Req", origin="Predecessor",
                 source="ADSL.USUBJID"),
        Variable("PARAMCD", "Parameter Code", "text", core="Req", origin="Assigned"),
        Variable("PARAM", "Parameter", "text", core="Req", origin="Assigned"),
        Variable("AVISIT", "Analysis Visit", "text", core="Perm", origin="Derived", source="MT.AVISIT"),
        Variable("AVISITN", "Analysis Visit (N)", "integer", core="Perm", origin="Derived", source="MT.AVISIT"),
        Variable("ADT", "Analysis Date", "date", core="Perm", origin="Derived", source="MT.ADT"),
        Variable("AVAL", "Analysis Value", "float", core="Req", origin="Predecessor", source="CV.CVSTRESN"),
        Variable("BASE", "Baseline Value", "float", core="Perm", origin="Derived", source="MT.BASE"),
        Variable("CHG", "Change from Baseline", "float", core="Perm", origin="Derived", source="MT.CHG"),
        Variable("ABLFL", "Baseline Record Flag", "text", core="Perm", origin="Derived", source="MT.BASE"),
        Variable("ANL01FL", "Analysis Flag 01", "text", core="Perm", origin="Derived", source="MT.BASE"),
        Variable("SRCDOM", "Source Data", "text", core="Perm", origin="Assigned"),
        Variable("SRCVAR", "Source Variable", "text", core="Perm", origin="Assigned"),
        Variable("SRCSEQ", "Source Sequence Number", "integer", core="Perm", origin="Assigned"),
    ]
    value_level = [ValueLevel("AVAL", "PARAMCD", "LVEF", "Left ventricular ejection fraction", "float", unit="%",
                              origin="Predecessor", source="CV.CVSTRESN")]
    methods = [Method("MT.AVISIT", "Analysis visit", "Protocol visit window containing the assessment day."),
               Method("MT.ADT", "Analysis date", "Date part of CVDTC."),
               Method("MT.BASE", "Baseline", "AVAL of the last assessment on or before day 0 (ABLFL = Y)."), CHG]
    return Dataset("ADEFF", "Efficacy Analysis Dataset", "ADaM",
                   "One record per subject per parameter per analysis visit", "BASIC DATA STRUCTURE",
                   ["STUDYID", "USUBJID", "PARAMCD", "AVISITN"], variables, records, value_level=value_level,
                   methods=methods)


def adam() -> dict[str, Dataset]:
    return {d.name: d for d in (adsl(), adeff())}
