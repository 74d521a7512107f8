"""Missing-data codes in SDTM (issue 12 item 1): a coded finding is a record with --ORRES/--STRESC/--STRESN
null, --STAT = NOT DONE and --REASND = the reason (else the code's label), in every findings domain built
from form fields; an "Other" reason of a test not done is ``OTHER: <text>`` in --REASND; the "Other"
etiology's text is a SUPPMH qualifier. Define-XML validates against the official schema and the
conformance checks report no error."""

from __future__ import annotations

import pandas as pd
import pytest
from lxml import etree

from regenheart.capture.service import CaptureService
from regenheart.cli.pipeline import study_meta
from regenheart.derive.adam import adam_datasets
from regenheart.derive.sdtm import build_sdtm
from regenheart.exchange.cdisc.conformance import check_datasets
from regenheart.exchange.cdisc.ct import default_terminology
from regenheart.exchange.cdisc.define import StudyInfo, build_define
from regenheart.protocol.missing import coded
from regenheart.store.db import create_study_database
from regenheart.store.snapshot import take_snapshot
from regenheart.synth import enter_cohort, generate_cohort
from regenheart.synth.entry import SYNTH_COORDINATOR

from ..conftest import SHARED

XSD = SHARED / "schemas" / "define-xml-2.1" / "cdisc-define-2.1" / "define2-1-0.xsd"
WHY = "coded for the SDTM missing-data tests"


@pytest.fixture(scope="module")
def coded_study(tmp_path_factory, protocol):
    engine = create_study_database(tmp_path_factory.mktemp("sdtm_missing") / "study.db",
                                   study_meta(protocol, synthetic=True, seed=11), durable=False)
    service = CaptureService(engine, protocol)
    cohort = generate_cohort(protocol, seed=11, n_enrolled=4, n_screen_failures=1)
    enter_cohort(service, cohort)
    first, second = [s for s in cohort.subjects if s.enrol and "M3" in s.visit_dates][:2]
    last = second

    def save(subject, visit, form, data):
        service.save_form(SYNTH_COORDINATOR, subject.code, visit, form, data, reason=WHY)

    save(first, "M1", "labs", {"ntprobnp_pg_ml": coded("ND", "sample haemolysed")})
    save(first, "M1", "kccq", {"q1a": coded("UNK")})
    save(second, "SCR", "vital_signs", {"spo2_pct": coded("NA")})
    save(second, "M1", "echo", {"lvef_pct": coded("NASK", "echo machine out of service")})
    save(last, "M3", "sixmwt", {"performed": "N", "distance_m": None, "not_done_reason": "OTHER",
                                "not_done_reason_other": "SYNTHETIC: knee pain"})
    save(first, "SCR", "medical_history", {"hf_etiology": "OTHER",
                                           "hf_etiology_other": "SYNTHETIC: peripartum cardiomyopathy"})
    save(second, "SCR", "medical_history", {"atrial_fibrillation": coded("UNK"),
                                            "sglt2i": coded("NASK", "not asked at screening")})
    snap = take_snapshot(engine)
    engine.dispose()
    return {"snap": snap, "sdtm": build_sdtm(snap, protocol), "usubjid": lambda s: f"NCT04325594-{s.code}",
            "first": first, "second": second, "last": last}


def record(ds, **where) -> pd.Series:
    frame = ds.records
    mask = pd.Series(True, index=frame.index)
    for name, value in where.items():
        mask &= frame[name] == value
    rows = frame[mask]
    assert len(rows) == 1, (where, len(rows))
    return rows.iloc[0]


def test_a_coded_lab_result_is_not_done_with_its_reason(coded_study):
    lb = coded_study["sdtm"]["LB"]
    row = record(lb, USUBJID=coded_study["usubjid"](coded_study["first"]), LBTESTCD="BNPPRONT", VISIT="Month 1")
    assert row["LBSTAT"] == "NOT DONE" and row["LBREASND"] == "sample haemolysed"
    assert row["LBORRES"] is None and row["LBSTRESC"] is None and pd.isna(row["LBSTRESN"])
    assert row["LBORRESU"] is None and row["LBLOBXFL"] is None
    # the other test of the same form keeps its result
    creat = record(lb, USUBJID=coded_study["usubjid"](coded_study["first"]), LBTESTCD="CREAT", VISIT="Month 1")
    assert creat["LBSTAT"] is None and creat["LBREASND"] is None and creat["LBORRES"] is not None


def test_a_code_without_a_reason_gives_its_label(coded_study):
    sdtm, usubjid = coded_study["sdtm"], coded_study["usubjid"]
    qs = record(sdtm["QS"], USUBJID=usubjid(coded_study["first"]), QSTESTCD="KCCQ01A", VISIT="Month 1")
    assert (qs["QSSTAT"], qs["QSREASND"], qs["QSORRES"]) == ("NOT DONE", "Unknown", None)
    vs = record(sdtm["VS"], USUBJID=usubjid(coded_study["second"]), VSTESTCD="OXYSAT", VISIT="Screening / baseline")
    assert (vs["VSSTAT"], vs["VSREASND"], vs["VSORRES"]) == ("NOT DONE", "Not applicable", None)
    cv = sdtm["CV"].records
    echo = cv[(cv.USUBJID == usubjid(coded_study["second"])) & (cv.VISIT == "Month 1") & (cv.CVSTAT == "NOT DONE")]
    assert len(echo) == 1 and echo.iloc[0]["CVREASND"] == "echo machine out of service"


def test_every_coded_item_with_a_test_code_is_one_not_done_record(coded_study, protocol):
    snap, sdtm = coded_study["snap"], coded_study["sdtm"]
    items = snap.items[snap.items["missing_code"].notna()]
    with_test = [(r.form_code, r.field) for r in items.itertuples()
                 if (f := protocol.forms[r.form_code].field(r.field)).sdtm is not None and f.sdtm.testcd]
    not_done = sum(int((ds.records.get(f"{name}STAT") == "NOT DONE").sum()) for name, ds in sdtm.items()
                   if name != "FT" and f"{name}STAT" in ds.records and ds.klass == "FINDINGS")
    assert len(with_test) == 4 and not_done == 4


def test_other_reason_not_done_and_other_etiology(coded_study):
    sdtm, usubjid = coded_study["sdtm"], coded_study["usubjid"]
    ft = record(sdtm["FT"], USUBJID=usubjid(coded_study["last"]), FTTESTCD="SIXMW106", VISIT="Month 3")
    assert (ft["FTSTAT"], ft["FTREASND"]) == ("NOT DONE", "OTHER: SYNTHETIC: knee pain")
    supp = sdtm["SUPPMH"].records
    rows = supp[(supp.USUBJID == usubjid(coded_study["first"])) & (supp.QNAM == "HFETIOTH")]
    assert list(rows.QVAL) == ["SYNTHETIC: peripartum cardiomyopathy"]
    assert rows.iloc[0]["QLABEL"] == "Other HF Etiology Specify"


def test_define_validates_and_declares_stat_and_reasnd(coded_study, protocol):
    sdtm = coded_study["sdtm"]
    study = StudyInfo(oid="STUDY.T", name="T", description="test", protocol_name="T", created_utc="2026-01-01T00:00:00Z",
                      source_system_version="test", note="SYNTHETIC")
    tree = build_define(sdtm.values(), "SDTM", study, default_terminology())
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    assert schema.validate(tree), [e.message for e in schema.error_log][:3]
    names = {d.get("Name") for d in tree.iter("{http://www.cdisc.org/ns/odm/v1.3}ItemDef")}
    assert {"LBSTAT", "LBREASND", "QSSTAT", "QSREASND", "VSSTAT", "VSREASND", "CVSTAT", "FTREASND", "MHSTAT",
            "MHREASND", "CMSTAT", "CMREASND"} <= names
    lbstat = next(v for v in sdtm["LB"].variables if v.name == "LBSTAT")
    assert lbstat.codelist == "C66789" and lbstat.origin == "Collected"


def test_conformance_reports_no_error_and_catches_a_bad_not_done(coded_study, protocol):
    sdtm = coded_study["sdtm"]
    adam = adam_datasets(coded_study["snap"], protocol)
    findings = check_datasets(sdtm, adam, default_terminology())
    assert [f for f in findings if f.severity == "Error"] == []
    assert not [f for f in findings if f.rule in ("RH0100", "RH0101", "RH0102", "RH0103", "RH0104")]
    broken = dict(sdtm)
    lb = sdtm["LB"]
    records = lb.records.copy()
    index = records.index[records["LBSTAT"] == "NOT DONE"][0]
    records.loc[index, "LBORRES"] = "123"
    other = records.index[records["LBSTAT"].isna()][0]
    records.loc[other, "LBREASND"] = "no reason here"
    from dataclasses import replace
    broken["LB"] = replace(lb, records=records)
    mh = sdtm["MH"].records.copy()
    mh.loc[mh.index[mh["MHSTAT"] == "NOT DONE"][0], "MHOCCUR"] = "Y"
    broken["MH"] = replace(sdtm["MH"], records=mh)
    rules = {f.rule for f in check_datasets(broken, adam, default_terminology())}
    assert {"RH0100", "RH0101", "RH0104"} <= rules


def test_a_prespecified_history_question_coded_is_not_done(coded_study):
    sdtm, usubjid = coded_study["sdtm"], coded_study["usubjid"](coded_study["second"])
    mh = record(sdtm["MH"], USUBJID=usubjid, MHTERM="ATRIAL FIBRILLATION")
    assert (mh["MHPRESP"], mh["MHOCCUR"], mh["MHSTAT"], mh["MHREASND"]) == ("Y", None, "NOT DONE", "Unknown")
    cm = record(sdtm["CM"], USUBJID=usubjid, CMTRT="SGLT2 INHIBITOR")
    assert (cm["CMPRESP"], cm["CMOCCUR"], cm["CMSTAT"], cm["CMREASND"]) == ("Y", None, "NOT DONE",
                                                                            "not asked at screening")
    assert cm["CMENRTPT"] is None
    # answered questions are unchanged
    other = record(sdtm["MH"], USUBJID=usubjid, MHTERM="HYPERTENSION")
    assert other["MHOCCUR"] in ("Y", "N") and other["MHSTAT"] is None
