"""Missing-data codes at the boundary (issue 12 item 1): REDCap carries the code itself and the project's
"missing data codes" setting; ODM 1.3.2 a null ItemData with the code as a flag and the reason as comment
(schema-valid); templates ``ND`` or ``ND: reason`` in a cell. Each round trip (database -> file -> new
database through the importer) gives back the same coded values; a second import writes nothing."""

from __future__ import annotations

import csv

import pandas as pd
import pytest
from lxml import etree
from tests.conftest import SHARED

from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.cli.pipeline import study_meta
from regenheart.exchange.importer import import_source
from regenheart.exchange.mapping import Mapping
from regenheart.exchange.odm import ODM_NS, read_odm, write_odm
from regenheart.exchange.redcap import read_redcap_records
from regenheart.exchange.redcap_export import export_redcap, redcap_layout
from regenheart.exchange.templates import read_templates, write_filled_templates
from regenheart.protocol.missing import coded
from regenheart.store.db import create_study_database
from regenheart.store.snapshot import take_snapshot
from regenheart.synth import enter_cohort, generate_cohort
from regenheart.synth.entry import SYNTH_COORDINATOR

NS = {"odm": ODM_NS}
SCHEMA_PATH = SHARED / "schemas" / "odm-1.3.2" / "ODM1-3-2.xsd"
IMPORTER = Actor("dm.import", "data_manager")
WHY = "coded for the missing-data code exchange tests"
# (visit, form, field) -> the coded value, per subject index in the cohort's enrolled subjects
CODES = {
    0: [("M1", "labs", "ntprobnp_pg_ml", coded("ND", "sample haemolysed")),
        ("M1", "kccq", "q1a", coded("UNK"))],
    1: [("SCR", "vital_signs", "spo2_pct", coded("NA")),
        ("M1", "labs", "creatinine_mg_dl", coded("NASK", "not in the local panel"))],
}
SIXMWT_OTHER = {"performed": "N", "distance_m": None, "not_done_reason": "OTHER",
                "not_done_reason_other": "SYNTHETIC: knee pain"}


def coded_items(engine) -> pd.DataFrame:
    items = take_snapshot(engine).items
    rows = items[items["missing_code"].notna()]
    return rows[["subject_code", "visit_code", "form_code", "field", "value", "missing_code", "missing_reason"]] \
        .sort_values(["subject_code", "visit_code", "form_code", "field"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def study(tmp_path_factory, protocol):
    """A small SYNTHETIC cohort in which a few values were replaced by missing-data codes (with reasons)."""
    folder = tmp_path_factory.mktemp("missing")
    engine = create_study_database(folder / "study.db", study_meta(protocol, synthetic=True, seed=11), durable=False)
    service = CaptureService(engine, protocol)
    cohort = generate_cohort(protocol, seed=11, n_enrolled=4, n_screen_failures=0)
    enter_cohort(service, cohort)
    enrolled = [s for s in cohort.subjects if s.enrol and "M3" in s.visit_dates]
    for index, changes in CODES.items():
        for visit, form, name, value in changes:
            service.save_form(SYNTH_COORDINATOR, enrolled[index].code, visit, form, {name: value}, reason=WHY)
    service.save_form(SYNTH_COORDINATOR, enrolled[-1].code, "M3", "sixmwt", SIXMWT_OTHER, reason=WHY)
    return {"engine": engine, "folder": folder, "codes": coded_items(engine), "subjects": enrolled,
            "snapshot": take_snapshot(engine)}


def fresh(folder, name, protocol) -> tuple:
    engine = create_study_database(folder / f"{name}.db", study_meta(protocol, synthetic=True), durable=False)
    return engine, CaptureService(engine, protocol)


def test_the_study_holds_the_coded_values(study):
    codes = study["codes"]
    assert sorted(codes["missing_code"]) == ["NA", "NASK", "ND", "UNK"]
    assert codes["value"].isna().all()
    assert set(codes["missing_reason"].dropna()) == {"sample haemolysed", "not in the local panel"}


# ------------------------------------------------------------------------------------------------ REDCap
@pytest.fixture(scope="module")
def redcap(study, protocol):
    out = study["folder"] / "redcap"
    paths = export_redcap(study["snapshot"], protocol, out)
    return {"out": out, "paths": paths}


def test_redcap_records_carry_the_code_itself(redcap, study):
    with redcap["paths"]["records"].open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    first, second = (s.code for s in study["subjects"][:2])

    def cell(subject, event, column):
        return next(r[column] for r in rows if r["record_id"] == subject and r["redcap_event_name"] == event)

    assert cell(first, "m1_arm_1", "ntprobnp_pg_ml") == "ND"
    assert cell(first, "m1_arm_1", "q1a") == "UNK"
    assert cell(second, "scr_arm_1", "spo2_pct") == "NA"
    assert cell(second, "m1_arm_1", "creatinine_mg_dl") == "NASK"
    # the reasons are nowhere in the records (REDCap has no place for them)
    assert not any("haemolysed" in value for r in rows for value in r.values())


def test_redcap_missing_data_codes_setting_and_notes(redcap):
    setting = redcap["paths"]["missing_codes"].read_text(encoding="utf-8").strip()
    assert setting == "ND, Not done | UNK, Unknown | NA, Not applicable | NASK, Not asked"
    readme = " ".join(redcap["paths"]["readme"].read_text(encoding="utf-8").split())
    assert "missing_data_codes.txt" in readme and "Missing Data Codes" in readme
    assert "reason given with a code" in readme and "has no place in REDCap's model" in readme
    assert "recorded as <CODE> in records.csv" in readme


def test_redcap_specify_fields_show_only_for_other(protocol):
    items = {i.name: i for inst in redcap_layout(protocol).instruments for i in inst.items}
    assert items["hf_etiology_other"].branching == "[hf_etiology] = 'OTHER'"
    assert items["not_done_reason_other"].branching == "[not_done_reason] = 'OTHER'"


def test_redcap_round_trip_keeps_the_codes(redcap, study, protocol):
    source = read_redcap_records(redcap["out"], protocol, Mapping.identity(protocol))
    assert source.problems == []
    engine, service = fresh(study["folder"], "from_redcap", protocol)
    report = import_source(service, IMPORTER, source)
    assert report.refusals == []
    back = coded_items(engine)
    expected = study["codes"].copy()
    # REDCap keeps no reason: a code that needs one gets where it came from
    needs = expected["missing_code"].isin(["ND", "NASK"])
    expected.loc[needs, "missing_reason"] = expected.loc[needs, "missing_code"].map(
        lambda c: f"recorded as {c} in records.csv")
    pd.testing.assert_frame_equal(back, expected)
    again = import_source(service, IMPORTER, read_redcap_records(redcap["out"], protocol, Mapping.identity(protocol)))
    assert again.refusals == [] and again.values.written == 0 and again.audit_records == 0


def test_redcap_value_in_a_code_list_stays_an_answer(tmp_path, protocol):
    """A REDCap value equal to a code is the code unless the field's own code list has it as an answer."""
    mapping = Mapping.identity(protocol)
    assert mapping.missing("labs", "ntprobnp_pg_ml", "ND", "records.csv") == coded("ND", "recorded as ND in records.csv")
    assert mapping.missing("kccq", "q1a", "UNK", "records.csv") == coded("UNK")
    assert mapping.missing("labs", "ntprobnp_pg_ml", "2400", "records.csv") == "2400"
    assert mapping.missing("adverse_events", "term", "ND", "records.csv") == "ND"  # log forms hold values only
    with_na = protocol.model_copy(deep=True)
    with_na.codelists["yes_no"].append(with_na.codelists["yes_no"][0].model_copy(update={"code": "NA"}))
    assert Mapping.identity(with_na).missing("vital_signs", "spo2_pct", "NA", "x.csv") == coded("NA")
    field = next(name for name, form in with_na.forms.items() for f in form.fields if f.codelist == "yes_no")
    name = next(f.name for f in with_na.forms[field].fields if f.codelist == "yes_no")
    assert Mapping.identity(with_na).missing(field, name, "NA", "x.csv") == "NA"


# ------------------------------------------------------------------------------------------------ ODM
@pytest.fixture(scope="module")
def odm(study, protocol):
    path = study["folder"] / "study.xml"
    write_odm(study["engine"], protocol, path)
    return path


def test_odm_export_is_schema_valid_with_null_flagged_items(odm, study):
    schema = etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))
    doc = etree.parse(str(odm))
    assert schema.validate(doc), schema.error_log.last_error
    nulls = doc.findall(".//odm:ItemData[@IsNull='Yes']", NS)
    assert len(nulls) == 4
    by_item = {n.get("ItemOID"): n for n in nulls}
    nd = by_item["IT.LABS.NTPROBNP_PG_ML"]
    assert nd.get("Value") is None and nd.get("TransactionType") == "Update"
    assert nd.find("odm:AuditRecord/odm:ReasonForChange", NS).text == WHY
    assert nd.find("odm:Annotation/odm:Comment", NS).text == "sample haemolysed"
    flag = nd.find("odm:Annotation/odm:Flag", NS)
    assert flag.find("odm:FlagValue", NS).text == "ND"
    assert flag.find("odm:FlagValue", NS).get("CodeListOID") == "CL.REGENHEART.MISSING"
    assert flag.find("odm:FlagType", NS).text == "MISSING"
    assert by_item["IT.KCCQ.Q1A"].find("odm:Annotation/odm:Comment", NS) is None  # UNK: no reason given
    # the value before the code is the transaction before it (the audit history is kept)
    group = nd.getparent()
    history = [i for i in group.findall("odm:ItemData", NS) if i.get("ItemOID") == "IT.LABS.NTPROBNP_PG_ML"]
    assert [i.get("TransactionType") for i in history] == ["Insert", "Update"] and history[0].get("Value")
    codes = {i.get("CodedValue") for i in doc.findall(".//odm:CodeList[@OID='CL.REGENHEART.MISSING']/odm:CodeListItem",
                                                       NS)}
    assert codes == {"ND", "UNK", "NA", "NASK"}


def test_odm_round_trip_keeps_the_codes_and_reasons(odm, study, protocol):
    source = read_odm(odm, protocol, Mapping.identity(protocol))
    assert source.problems == []
    engine, service = fresh(study["folder"], "from_odm", protocol)
    report = import_source(service, IMPORTER, source)
    assert report.refusals == []
    pd.testing.assert_frame_equal(coded_items(engine), study["codes"])
    again = import_source(service, IMPORTER, read_odm(odm, protocol, Mapping.identity(protocol)))
    assert again.refusals == [] and again.values.written == 0 and again.audit_records == 0


def test_odm_flag_without_a_reason_gets_where_it_came_from(odm, tmp_path, protocol):
    doc = etree.parse(str(odm))
    for comment in doc.findall(".//odm:ItemData/odm:Annotation/odm:Comment", NS):
        comment.getparent().remove(comment)
    path = tmp_path / "no_reasons.xml"
    doc.write(str(path), xml_declaration=True, encoding="UTF-8")
    source = read_odm(path, protocol, Mapping.identity(protocol))
    values = [v.raw for s in source.subjects for f in s.forms for v in f.values.values() if isinstance(v.raw, dict)]
    assert coded("ND", "recorded as ND in no_reasons.xml") in values and coded("UNK") in values


# ------------------------------------------------------------------------------------------------ templates
@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_template_round_trip_keeps_the_codes(study, protocol, fmt):
    out = study["folder"] / f"templates_{fmt}"
    written = write_filled_templates(study["snapshot"], protocol, out, fmt)
    source_path = written[0] if fmt == "xlsx" else out
    if fmt == "csv":
        labs = (out / "labs.csv").read_text(encoding="utf-8")
        assert "ND: sample haemolysed" in labs and "NASK: not in the local panel" in labs
        readme = (out / "README.txt").read_text(encoding="utf-8")
        assert "Missing-data codes" in readme and "ND = Not done (reason required)" in readme
    source = read_templates(source_path, protocol)
    assert source.problems == []
    engine, service = fresh(study["folder"], f"from_{fmt}", protocol)
    report = import_source(service, IMPORTER, source)
    assert report.refusals == []
    pd.testing.assert_frame_equal(coded_items(engine), study["codes"])
    again = import_source(service, IMPORTER, read_templates(source_path, protocol))
    assert again.refusals == [] and again.values.written == 0 and again.audit_records == 0


def test_template_header_lists_the_codes(study, protocol):
    from openpyxl import load_workbook

    path = write_filled_templates(study["snapshot"], protocol, study["folder"] / "header", "xlsx")[0]
    book = load_workbook(path)
    header = {c.value: c for c in book["labs"][1]}
    assert "missing-data code: ND, UNK, NA, NASK" in header["ntprobnp_pg_ml"].comment.text
    readme = " ".join(str(r[0].value) for r in book["README"].iter_rows())
    assert "ND = Not done (reason required)" in readme and "'ND: sample haemolysed'" in readme


def test_template_code_without_a_required_reason_is_refused_naming_it(tmp_path, study, protocol):
    out = tmp_path / "csv"
    write_filled_templates(study["snapshot"], protocol, out, "csv")
    labs = out / "labs.csv"
    labs.write_text(labs.read_text(encoding="utf-8").replace("ND: sample haemolysed", "ND"), encoding="utf-8")
    _engine, service = fresh(tmp_path, "refused", protocol)
    report = import_source(service, IMPORTER, read_templates(out, protocol))
    refusal = next(r for r in report.refusals if r.field == "ntprobnp_pg_ml")
    assert refusal.rule == "reason_required" and "ND (Not done) needs a reason" in refusal.message
    assert refusal.origin.file == "labs.csv"
