"""CDISC ODM 1.3.2 both ways: the export is schema-valid and complete (metadata, users, sites, every value's
audit history, signatures); the reader handles regenheart's, OpenClinica/odmlib's and REDCap's files and
bad input without raising; and export -> read -> import gives back the same study, to the SAP results."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict

import pandas as pd
import pytest
from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.conftest import SHARED
from typer.testing import CliRunner

from regenheart.capture.accounts import AccountService
from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.capture.workflow import WorkflowService
from regenheart.cli.main import app
from regenheart.cli.pipeline import study_meta
from regenheart.exchange.importer import import_source
from regenheart.exchange.mapping import Mapping
from regenheart.exchange.odm import ODM_NS, OdmExportError, read_odm, write_odm
from regenheart.store.db import create_study_database, open_study_database
from regenheart.store.models import AuditRecord, Subject
from regenheart.store.snapshot import take_snapshot
from regenheart.synth import enter_cohort, generate_cohort
from regenheart.synth.entry import SYNTH_COORDINATOR

NS = {"odm": ODM_NS}
SCHEMA_PATH = SHARED / "schemas" / "odm-1.3.2" / "ODM1-3-2.xsd"
EXAMPLES = sorted((SHARED / "examples" / "odm-1.3.2").glob("*.xml")) + \
    sorted((SHARED / "examples" / "redcap").glob("*/project.xml"))
IMPORTER = Actor("dm.import", "data_manager")
PASSWORD = "Signing-Secret-2020!"
HISTORY_ENTITIES = ("subject", "visit", "item", "score", "adverse_event")


@pytest.fixture(scope="module")
def schema():
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))


@pytest.fixture(scope="module")
def study(tmp_path_factory, protocol):
    """A small SYNTHETIC cohort (screen failures, corrections, AEs, dispositions) plus a corrected visit date,
    a followed-up adverse event and an electronically signed form; exported once to ODM."""
    folder = tmp_path_factory.mktemp("odm")
    engine = create_study_database(folder / "study.db", study_meta(protocol, synthetic=True, seed=11), durable=False)
    service = CaptureService(engine, protocol)
    cohort = generate_cohort(protocol, seed=11, n_enrolled=5, n_screen_failures=2)
    enter_cohort(service, cohort)
    infused = [s for s in cohort.subjects if s.enrol]
    first = infused[0]
    m1 = first.visit_dates["M1"] + dt.timedelta(days=1)
    service.record_visit(SYNTH_COORDINATOR, first.code, "M1", m1, reason="visit date transcribed wrongly")
    with_ae = next(s for s in infused if s.adverse_events)
    ae = with_ae.adverse_events[0]
    new_outcome = "RECOVERING" if ae["outcome"] != "RECOVERING" else "RECOVERED"
    service.update_adverse_event(SYNTH_COORDINATOR, with_ae.code, 1, {"outcome": new_outcome},
                                 reason="follow-up call")
    accounts = AccountService(engine, protocol)
    accounts.create_user(Actor("admin", "admin"), "inv.smith", "investigator", PASSWORD, site="01",
                         full_name="Irene Smith")
    workflow = WorkflowService(engine, protocol, accounts)
    workflow.sign(Actor("inv.smith", "investigator", "01"), first.code, "SCR", "eligibility", password=PASSWORD)
    workflow.verify(Actor("mon1", "monitor"), first.code, "SCR", "demographics")
    workflow.lock(Actor("dm1", "data_manager"), first.code, "SCR", "medical_history", reason="database lock",
                  confirm=True)
    workflow.open_query(Actor("mon1", "monitor"), first.code, "SCR", "vital_signs", "sbp_mmhg",
                        "Please confirm the systolic pressure against the source")
    result = write_odm(engine, protocol, folder / "study.xml")
    return {"engine": engine, "path": folder / "study.xml", "result": result, "cohort": cohort, "folder": folder,
            "signed": (first.code, "SCR", "eligibility"), "m1": (first.code, m1),
            "ae": (with_ae.code, ae["outcome"], new_outcome)}


@pytest.fixture(scope="module")
def doc(study):
    return etree.parse(str(study["path"]))


@pytest.fixture(scope="module")
def reimported(study, protocol):
    """The export read back and imported into a new database through the capture service."""
    source = read_odm(study["path"], protocol, Mapping.identity(protocol))
    engine = create_study_database(study["folder"] / "back.db", study_meta(protocol, synthetic=True),
                                   durable=False)
    service = CaptureService(engine, protocol)
    report = import_source(service, IMPORTER, source)
    return {"source": source, "engine": engine, "service": service, "report": report}


def _audit_rows(engine) -> list[AuditRecord]:
    with Session(engine) as session:
        return list(session.scalars(select(AuditRecord).order_by(AuditRecord.seq)))


# ------------------------------------------------------------------------------------------------ export
def test_export_is_valid_against_the_official_odm_132_schema(study, doc, schema):
    valid = schema.validate(doc)
    assert valid, "\n".join(f"line {e.line}: {e.message}" for e in list(schema.error_log)[:10])
    root = doc.getroot()
    assert root.get("ODMVersion") == "1.3.2" and root.get("FileType") == "Transactional"
    assert root.get("Description").startswith("SYNTHETIC")  # synthetic data are labelled
    result = study["result"]
    assert result.subjects == len(study["cohort"].subjects) and result.synthetic
    assert result.item_data == result.audit_records == len(doc.findall(".//odm:ItemData", NS))


def test_every_oid_reference_resolves(doc):
    root = doc.getroot()
    mdv = root.find("odm:Study/odm:MetaDataVersion", NS)
    defined = {tag: {e.get("OID") for e in mdv.findall(f"odm:{tag}", NS)}
               for tag in ("StudyEventDef", "FormDef", "ItemGroupDef", "ItemDef", "CodeList", "MethodDef")}
    units = {e.get("OID") for e in root.findall("odm:Study/odm:BasicDefinitions/odm:MeasurementUnit", NS)}
    admin = {tag: {e.get("OID") for e in root.findall(f"odm:AdminData/odm:{tag}", NS)}
             for tag in ("User", "Location", "SignatureDef")}
    refs = [(".//odm:StudyEventRef", "StudyEventOID", defined["StudyEventDef"]),
            (".//odm:StudyEventData", "StudyEventOID", defined["StudyEventDef"]),
            (".//odm:FormRef", "FormOID", defined["FormDef"]), (".//odm:FormData", "FormOID", defined["FormDef"]),
            (".//odm:ItemGroupRef", "ItemGroupOID", defined["ItemGroupDef"]),
            (".//odm:ItemGroupData", "ItemGroupOID", defined["ItemGroupDef"]),
            (".//odm:ItemRef", "ItemOID", defined["ItemDef"]), (".//odm:ItemData", "ItemOID", defined["ItemDef"]),
            (".//odm:CodeListRef", "CodeListOID", defined["CodeList"]),
            (".//odm:MeasurementUnitRef", "MeasurementUnitOID", units),
            (".//odm:ItemRef[@MethodOID]", "MethodOID", defined["MethodDef"]),
            (".//odm:UserRef", "UserOID", admin["User"]), (".//odm:LocationRef", "LocationOID", admin["Location"]),
            (".//odm:SiteRef", "LocationOID", admin["Location"]),
            (".//odm:SignatureRef", "SignatureOID", admin["SignatureDef"])]
    for path, attribute, targets in refs:
        found = {e.get(attribute) for e in root.findall(path, NS)}
        assert found, path
        assert found <= targets, (path, found - targets)


def test_metadata_states_the_protocol(doc, protocol):
    mdv = doc.find("odm:Study/odm:MetaDataVersion", NS)
    refs = mdv.findall("odm:Protocol/odm:StudyEventRef", NS)
    assert [r.get("StudyEventOID") for r in refs] == [f"SE.{v.code}" for v in protocol.visits] + ["SE.SUBJECT"]
    assert [int(r.get("OrderNumber")) for r in refs] == list(range(1, len(protocol.visits) + 2))
    assert {r.get("Mandatory") for r in refs} == {"Yes"}
    m1 = mdv.find("odm:StudyEventDef[@OID='SE.M1']", NS)
    text = m1.findtext("odm:Description/odm:TranslatedText", namespaces=NS)
    visit = protocol.visit("M1")
    assert f"Target study day {visit.day}" in text and f"window days {visit.window[0]} to {visit.window[1]}" in text
    aliases = {a.get("Context"): a.get("Name") for a in m1.findall("odm:Alias", NS)}
    assert aliases == {"regenheart:target-study-day": str(visit.day),
                       "regenheart:window-study-days": f"{visit.window[0]}..{visit.window[1]}"}
    assert [f.get("FormOID") for f in m1.findall("odm:FormRef", NS)] == \
        ["F.VISIT"] + [f"F.{f.upper()}" for f in visit.forms]
    lvef = mdv.find("odm:ItemDef[@OID='IT.ECHO.LVEF_PCT']", NS)
    field = protocol.forms["echo"].field("lvef_pct")
    assert lvef.get("Name") == "lvef_pct" and lvef.get("DataType") == "float"
    assert lvef.get("SignificantDigits") == str(field.decimals)
    checks = {rc.get("Comparator"): (float(rc.findtext("odm:CheckValue", namespaces=NS)), rc.get("SoftHard"))
              for rc in lvef.findall("odm:RangeCheck", NS)}
    assert checks == {"GE": (field.range[0], "Hard"), "LE": (field.range[1], "Hard")}
    unit_oid = lvef.find("odm:MeasurementUnitRef", NS).get("MeasurementUnitOID")
    unit = doc.find(f"odm:Study/odm:BasicDefinitions/odm:MeasurementUnit[@OID='{unit_oid}']", NS)
    assert unit.get("Name") == field.unit
    # A MeasurementUnit for every unit the protocol's fields use.
    used = {f.unit for form in [*protocol.forms.values(), protocol.adverse_events, protocol.disposition]
            for f in form.fields if f.unit}
    assert used <= {u.get("Name") for u in doc.findall("odm:Study/odm:BasicDefinitions/odm:MeasurementUnit", NS)}
    # Code lists with their decodes; the AE group repeats; scores are derived items with a method.
    sex = mdv.find("odm:CodeList[@OID='CL.SEX']", NS)
    assert {(i.get("CodedValue"), i.findtext("odm:Decode/odm:TranslatedText", namespaces=NS))
            for i in sex.findall("odm:CodeListItem", NS)} == {(str(c.code), c.decode) for c in protocol.codelists["sex"]}
    nyha = mdv.find("odm:ItemDef[@OID='IT.NYHA.NYHA_CLASS']", NS)
    assert nyha.get("DataType") == "integer" and nyha.find("odm:CodeListRef", NS).get("CodeListOID") == "CL.NYHA"
    assert mdv.find("odm:ItemGroupDef[@OID='IG.AE']", NS).get("Repeating") == "Yes"
    score = mdv.find("odm:ItemDef[@OID='IT.KCCQ.OVERALL_SUMMARY']", NS)
    assert score.get("Origin") == "Derived"
    assert "Derived" in score.findtext("odm:Description/odm:TranslatedText", namespaces=NS)
    ref = mdv.find("odm:ItemGroupDef[@OID='IG.KCCQ']/odm:ItemRef[@ItemOID='IT.KCCQ.OVERALL_SUMMARY']", NS)
    assert ref.get("MethodOID") == "MT.KCCQ"


def test_every_audited_value_is_an_item_transaction_with_its_audit_record(study, doc):
    rows = {r.seq: r for r in _audit_rows(study["engine"])}
    expected = {seq for seq, r in rows.items()
                if r.entity in HISTORY_ENTITIES and r.subject_code and r.field and r.new_value is not None}
    seen = []
    for item in doc.iterfind(".//odm:ItemData", NS):
        record = item.find("odm:AuditRecord", NS)
        assert record is not None, item.get("ItemOID")
        seq = int(record.findtext("odm:SourceID", namespaces=NS))
        row = rows[seq]
        assert record.find("odm:UserRef", NS).get("UserOID") == f"USR.{row.username}"
        assert record.findtext("odm:DateTimeStamp", namespaces=NS) == row.ts_utc
        assert record.findtext("odm:ReasonForChange", namespaces=NS) == row.reason
        assert record.find("odm:LocationRef", NS).get("LocationOID") == "LOC.01"
        seen.append(seq)
    assert len(seen) == len(set(seen))
    assert expected <= set(seen)
    users_in_trail = {rows[s].username for s in seen}
    admin_users = {u.findtext("odm:LoginName", namespaces=NS) for u in doc.iterfind("odm:AdminData/odm:User", NS)}
    assert admin_users == users_in_trail | {"inv.smith"}
    assert {loc.get("OID") for loc in doc.iterfind("odm:AdminData/odm:Location", NS)} == {"LOC.01"}


def _history(doc, subject: str, event: str, item: str, repeat: str | None = None) -> list[etree._Element]:
    group = "odm:ItemGroupData" + (f"[@ItemGroupRepeatKey='{repeat}']" if repeat else "")
    return doc.findall(f"odm:ClinicalData/odm:SubjectData[@SubjectKey='{subject}']/"
                       f"odm:StudyEventData[@StudyEventOID='{event}']/odm:FormData/{group}/"
                       f"odm:ItemData[@ItemOID='{item}']", NS)


def test_corrections_keep_the_old_value_as_an_earlier_transaction(study, doc):
    engine = study["engine"]
    corrections = [r for r in _audit_rows(engine) if r.entity == "item" and r.action == "update"]
    assert corrections, "the synthetic cohort has corrections"
    for row in corrections:
        history = _history(doc, row.subject_code, f"SE.{row.visit_code}", f"IT.{row.form_code.upper()}."
                           f"{row.field.upper()}")
        kinds = [h.get("TransactionType") for h in history]
        assert kinds[0] == "Insert" and kinds[-1] in ("Update", "Remove")
        update = next(h for h in history if h.findtext("odm:AuditRecord/odm:SourceID", namespaces=NS) == str(row.seq))
        assert update.findtext("odm:AuditRecord/odm:ReasonForChange", namespaces=NS) == row.reason
        before = history[history.index(update) - 1]
        assert float(before.get("Value")) == pytest.approx(json.loads(row.old_value))
        assert float(update.get("Value")) == pytest.approx(json.loads(row.new_value))
    code, m1 = study["m1"]
    visit_dates = _history(doc, code, "SE.M1", "IT.VISIT.VISIT_DATE")
    assert [v.get("TransactionType") for v in visit_dates] == ["Insert", "Update"]
    assert visit_dates[-1].get("Value") == m1.isoformat()
    assert visit_dates[-1].findtext("odm:AuditRecord/odm:ReasonForChange", namespaces=NS) == \
        "visit date transcribed wrongly"
    code, old, new = study["ae"]
    outcome = _history(doc, code, "SE.SUBJECT", "IT.AE.OUTCOME", repeat="1")
    assert [(o.get("TransactionType"), o.get("Value")) for o in outcome] == [("Insert", old), ("Update", new)]


def test_subject_level_facts_and_signatures(study, doc):
    engine = study["engine"]
    with Session(engine) as session:
        subjects = {s.subject_code: s for s in session.scalars(select(Subject))}
    failed = [s for s in subjects.values() if s.status == "screen_failed"]
    assert len(failed) == 2
    for subject in subjects.values():
        def last(name, code=subject.subject_code):
            values = _history(doc, code, "SE.SUBJECT", f"IT.SUBJECT.{name.upper()}")
            return values[-1].get("Value") if values and values[-1].get("TransactionType") != "Remove" else None

        assert last("consent_date") == subject.consent_date.isoformat()
        assert last("eligible") == ("Y" if subject.eligible else "N")
        assert last("eligibility_failed") == (", ".join(json.loads(subject.eligibility_failed))
                                              if subject.eligibility_failed else None)
        assert last("status") == subject.status
        assert last("infusion_date") == (subject.infusion_date.isoformat() if subject.infusion_date else None)
        sd = doc.find(f"odm:ClinicalData/odm:SubjectData[@SubjectKey='{subject.subject_code}']", NS)
        assert sd.find("odm:SiteRef", NS).get("LocationOID") == f"LOC.{subject.site_code}"
        ds = sd.findall("odm:StudyEventData/odm:FormData[@FormOID='F.DS']//odm:ItemData[@ItemOID='IT.DS.STATUS']", NS)
        assert (ds[-1].get("Value") if ds else None) == subject.disposition
    assert {s.disposition for s in subjects.values()} >= {"COMPLETED", "DEATH"}
    code, visit, form = study["signed"]
    signature = doc.find(f"odm:ClinicalData/odm:SubjectData[@SubjectKey='{code}']/odm:StudyEventData"
                         f"[@StudyEventOID='SE.{visit}']/odm:FormData[@FormOID='F.{form.upper()}']/odm:Signature", NS)
    assert signature.find("odm:UserRef", NS).get("UserOID") == "USR.inv.smith"
    definition = doc.find(f"odm:AdminData/odm:SignatureDef[@OID='{signature.find('odm:SignatureRef', NS).get('SignatureOID')}']",
                          NS)
    assert definition.get("Methodology") == "Electronic" and definition.findtext("odm:Meaning", namespaces=NS)
    assert doc.find("odm:AdminData/odm:User[@OID='USR.inv.smith']/odm:FullName", NS).text == "Irene Smith"
    assert len(doc.findall(".//odm:Signature", NS)) == 1 == study["result"].signatures


def test_a_database_changed_outside_capture_is_refused(tmp_path, protocol):
    engine = create_study_database(tmp_path / "x.db", study_meta(protocol, synthetic=True), durable=False)
    service = CaptureService(engine, protocol)
    service.screen_subject(SYNTH_COORDINATOR, "01-001", "01", "2020-03-02", "2020-03-01")
    with engine.begin() as connection:  # the audit trail cannot be touched, but a data table can
        connection.exec_driver_sql("UPDATE subjects SET consent_date = '2020-02-01'")
    with pytest.raises(OdmExportError, match="differ from the audit trail"):
        write_odm(engine, protocol, tmp_path / "x.xml")
    assert not (tmp_path / "x.xml").exists()


# ------------------------------------------------------------------------------------------------ round trip
def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)


def test_round_trip_gives_back_the_same_study(study, reimported):
    report = reimported["report"]
    assert report.committed and not report.refusals, [r.as_row() for r in report.refusals[:5]]
    assert report.subjects.written == len(study["cohort"].subjects)
    # Derived items (scores, status, infusion date, failed criteria) are skipped, not imported; the one
    # thing reported is that the source subjects are synthetic (the importing database labels its own data).
    [synthetic] = reimported["source"].unmapped
    assert "SYNTHETIC" in synthetic.note and "IT.SUBJECT.SYNTHETIC" in synthetic.what
    a, b = take_snapshot(study["engine"]), take_snapshot(reimported["engine"])
    columns = [c for c in a.subjects.columns if c != "synthetic"]
    pd.testing.assert_frame_equal(_sorted(a.subjects[columns], ["subject_code"]),
                                  _sorted(b.subjects[columns], ["subject_code"]), check_dtype=False)
    for name, keys in (("visits", ["subject_code", "visit_code"]),
                       ("items", ["subject_code", "visit_code", "form_code", "field"]),
                       ("derived", ["subject_code", "visit_code", "form_code", "name"]),
                       ("adverse_events", ["subject_code", "ae_seq"])):
        pd.testing.assert_frame_equal(_sorted(getattr(a, name), keys), _sorted(getattr(b, name), keys),
                                      check_dtype=False, obj=name)
    assert (a.subjects["status"] == "screen_failed").sum() == 2
    assert a.subjects["eligibility_failed"].map(len).sum() >= 2  # failed criteria came back too


def test_round_trip_gives_the_same_sap_results(study, reimported, protocol):
    from regenheart.derive.adam import derive_all
    from regenheart.stats.analysis import run_sap

    original = run_sap(protocol, derive_all(protocol, take_snapshot(study["engine"])))
    back = run_sap(protocol, derive_all(protocol, take_snapshot(reimported["engine"])))
    assert json.dumps(original, sort_keys=True, default=str) == json.dumps(back, sort_keys=True, default=str)
    assert original["primary"]["n_total"] == 5


def test_second_import_of_the_same_file_writes_nothing(reimported):
    again = import_source(reimported["service"], IMPORTER, reimported["source"])
    assert again.audit_records == 0 and not again.refusals
    assert again.subjects.written == again.forms.written == again.values.written == 0
    assert again.values.unchanged == reimported["report"].values.written


# ------------------------------------------------------------------------------------------------ reader
def test_reader_origins_are_odm_paths(study, reimported):
    entry = next(s for s in reimported["source"].subjects if any(f.form == "echo" for f in s.forms))
    echo = next(f for f in entry.forms if f.form == "echo" and f.visit == "M1")
    origin = echo.values["lvef_pct"].origin
    assert origin.file == str(study["path"])
    assert origin.location.startswith(
        f"SubjectData[@SubjectKey='{entry.code}']/StudyEventData[@StudyEventOID='SE.M1']/FormData[@FormOID='F.ECHO']"
        "/ItemGroupData/ItemData[@ItemOID='IT.ECHO.LVEF_PCT'] (line ")
    assert echo.visit_date is not None and echo.visit_date.origin.location.startswith(
        f"SubjectData[@SubjectKey='{entry.code}']/StudyEventData[@StudyEventOID='SE.M1']/FormData[@FormOID='F.VISIT']")


def _odm(body: str, metadata: str = "") -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<ODM xmlns="{ODM_NS}" xmlns:redcap="https://projectredcap.org" '
            'ODMVersion="1.3.1" FileOID="F1" FileType="Snapshot" CreationDateTime="2024-01-01T00:00:00">'
            f'{metadata}<ClinicalData StudyOID="S" MetaDataVersionOID="M">{body}</ClinicalData></ODM>')


@pytest.mark.parametrize(("content", "rule", "where"), [
    ("<ODM><Study>", "xml", "line 1"),
    ('<?xml version="1.0"?><Define xmlns="http://www.cdisc.org/ns/def/v2.1"/>', "format", "line 1"),
    ('<ODM xmlns="http://www.cdisc.org/ns/odm/v2.0" FileOID="x"/>', "format", "line 1"),
])
def test_bad_files_are_refused_with_the_place_and_never_raise(tmp_path, protocol, content, rule, where):
    path = tmp_path / "bad.xml"
    path.write_text(content)
    data = read_odm(path, protocol, Mapping.identity(protocol))
    assert [p.rule for p in data.problems] == [rule] and not data.subjects
    assert data.problems[0].origin.file == str(path) and data.problems[0].origin.location.startswith(where)
    if "v2.0" in content:
        assert "ODM 2.0 is not supported" in data.problems[0].message
    missing = read_odm(tmp_path / "absent.xml", protocol, Mapping.identity(protocol))
    assert [p.rule for p in missing.problems] == ["file"]


def test_entities_are_not_resolved(tmp_path, protocol):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    body = ('<SubjectData SubjectKey="01-001"><StudyEventData StudyEventOID="SCR"><FormData FormOID="nyha">'
            '<ItemGroupData ItemGroupOID="g"><ItemData ItemOID="nyha_class" Value="&xxe;"/></ItemGroupData>'
            '</FormData></StudyEventData></SubjectData>')
    text = _odm(body).replace("<ODM ", f'<!DOCTYPE ODM [<!ENTITY xxe SYSTEM "file://{secret}">]>\n<ODM ', 1)
    path = tmp_path / "xxe.xml"
    path.write_text(text)
    data = read_odm(path, protocol, Mapping.identity(protocol))
    values = [v.raw for s in data.subjects for f in s.forms for v in f.values.values()]
    assert "TOP-SECRET" not in json.dumps(values)


def test_unknown_oids_and_non_repeating_forms_are_reported_not_dropped(tmp_path, protocol):
    body = ('<SubjectData SubjectKey="01-001"><StudyEventData StudyEventOID="SE.UNKNOWN">'
            '<FormData FormOID="F.ECHO"><ItemGroupData ItemGroupOID="IG"><ItemData ItemOID="IT.ECHO.LVEF_PCT" Value="30"/>'
            '</ItemGroupData></FormData></StudyEventData>'
            '<StudyEventData StudyEventOID="SE.SCR"><FormData FormOID="F.MYSTERY"><ItemGroupData ItemGroupOID="IG">'
            '<ItemData ItemOID="IT.X" Value="1"/></ItemGroupData></FormData>'
            '<FormData FormOID="F.NYHA" FormRepeatKey="2"><ItemGroupData ItemGroupOID="IG">'
            '<ItemData ItemOID="IT.NYHA.NYHA_CLASS" Value="3"/></ItemGroupData></FormData>'
            '<FormData FormOID="F.ECHO"><ItemGroupData ItemGroupOID="IG"><ItemData ItemOID="IT.ECHO.BOGUS" Value="1"/>'
            '<ItemData ItemOID="IT.ECHO.LVEF_PCT" Value="31.0" TransactionType="Insert"/>'
            '<ItemData ItemOID="IT.ECHO.LVEF_PCT" Value="29.5" TransactionType="Update"/>'
            '<ItemData ItemOID="IT.ECHO.LVEDV_ML" Value="250" TransactionType="Insert"/>'
            '<ItemData ItemOID="IT.ECHO.LVEDV_ML" TransactionType="Remove"/>'
            '</ItemGroupData></FormData>'
            '<FormData FormOID="F.VITAL_SIGNS" TransactionType="Remove"/></StudyEventData></SubjectData>')
    path = tmp_path / "partial.xml"
    path.write_text(_odm(body))
    data = read_odm(path, protocol, Mapping.identity(protocol))
    whats = {u.what: u for u in data.unmapped}
    assert "event 'SE.UNKNOWN' (SE.UNKNOWN)" in whats
    assert "form 'F.MYSTERY' (F.MYSTERY)" in whats
    assert "ItemOID 'IT.ECHO.BOGUS' (IT.ECHO.BOGUS) on form 'echo'" in whats
    assert whats["form 'F.MYSTERY' (F.MYSTERY)"].origin.location.startswith(
        "SubjectData[@SubjectKey='01-001']/StudyEventData[@StudyEventOID='SE.SCR']/FormData[@FormOID='F.MYSTERY']")
    repeat, removal = data.problems
    assert repeat.rule == "repeat" and repeat.form == "nyha" and "FormRepeatKey 2" in repeat.message
    assert removal.rule == "transaction" and removal.form == "vital_signs" and "F.VITAL_SIGNS" in removal.origin.location
    [entry] = data.subjects
    [echo] = entry.forms
    assert (echo.visit, echo.form) == ("SCR", "echo")
    assert {k: v.raw for k, v in echo.values.items()} == {"lvef_pct": "29.5"}  # last transaction wins; removed


def test_redcap_project_xml_with_a_mapping(tmp_path, protocol):
    """REDCap's classic-project dialect: forms under SubjectData, ItemOIDs = field names, DAG as an item."""
    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text(
        "events: {event_1_arm_1: SCR}\n"
        "fields: {age: demographics.age_years}\n"
        "recodes: {demographics.sex: {'0': F, '1': M}}\n"
        "subject: {site: redcap_data_access_group}\n"
        "ignore: [name_first, name_last, address, telephone, email, dob, demographics_complete]\n")
    mapping = Mapping.load(mapping_file, protocol)
    data = read_odm(SHARED / "examples" / "redcap" / "redcapr-simple" / "project.xml", protocol, mapping)
    assert not data.problems
    by_code = {s.code: s for s in data.subjects}
    first = by_code["1"]
    demographics = next(f for f in first.forms if f.form == "demographics")
    assert demographics.visit == "SCR"
    assert {k: v.raw for k, v in demographics.values.items()} == {"age_years": "11", "sex": "F"}
    assert first.site.raw == "dag_1"
    assert demographics.values["sex"].origin.location.startswith(
        "SubjectData[@SubjectKey='1']/FormData[@FormOID='Form.demographics'][@FormRepeatKey='1']/ItemGroupData"
        "[@ItemGroupRepeatKey='1']/ItemData[@ItemOID='sex'] (line ")
    whats = {u.what for u in data.unmapped}
    assert "form 'Form.health' (health)" in whats and "ItemOID 'record_id'" not in " ".join(whats)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_files_read_without_error_and_unmapped_is_complete(path, protocol):
    data = read_odm(path, protocol, Mapping.identity(protocol))
    assert not data.problems
    root = etree.parse(str(path)).getroot()
    keys = {sd.get("SubjectKey") for sd in root.iter(f"{{{ODM_NS}}}SubjectData")}
    assert {s.code for s in data.subjects} == keys
    reported = " ".join(u.what for u in data.unmapped)
    imported = defaultdict(set)
    for s in data.subjects:
        for f in s.forms:
            imported[f.form] |= set(f.values)
    # Every form in the file is either imported or named in the unmapped report (itself, its event or its items).
    for fd in root.iter(f"{{{ODM_NS}}}FormData"):
        event = fd.getparent().get("StudyEventOID") or "event_1_arm_1"
        items = {i.get("ItemOID") for i in fd.iter() if isinstance(i.tag, str) and i.get("ItemOID")}
        assert (f"'{fd.get('FormOID')}'" in reported or f"'{event}'" in reported
                or all(f"'{i}'" in reported for i in items if i != "record_id")), fd.get("FormOID")


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_export_odm(study, tmp_path, schema):
    runner = CliRunner()
    out = tmp_path / "cli.xml"
    result = runner.invoke(app, ["export", "odm", "--db", str(study["folder"] / "study.db"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "ODM 1.3.2" in flat and "SYNTHETIC" in flat and f"{study['result'].subjects} subjects" in flat
    assert schema.validate(etree.parse(str(out)))
    missing = runner.invoke(app, ["export", "odm", "--db", str(tmp_path / "none.db"), "--out", str(out)])
    assert missing.exit_code == 2 and "no database" in " ".join(missing.output.split())
    assert "Traceback" not in missing.output
    unreachable = runner.invoke(app, ["export", "odm", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/none",
                                      "--out", str(out)])
    assert unreachable.exit_code == 2 and "cannot open the study database" in " ".join(unreachable.output.split())
    assert "Traceback" not in unreachable.output
    folder = runner.invoke(app, ["export", "odm", "--db", str(study["folder"] / "study.db"), "--out", str(tmp_path)])
    assert folder.exit_code == 2 and "is a folder" in " ".join(folder.output.split())
    assert not list(tmp_path.parent.glob("*.part"))
    bad_out = runner.invoke(app, ["export", "odm", "--db", str(study["folder"] / "study.db"),
                                  "--out", str(tmp_path / "nowhere" / "x.xml")])
    assert bad_out.exit_code == 2 and "does not exist" in " ".join(bad_out.output.split())


def test_openclinica_style_repeating_adverse_event_form_with_a_mapping(tmp_path, protocol):
    """OpenClinica 3 writes one FormData per AE (FormRepeatKey) in a common event, with its own OIDs and names."""
    metadata = (
        '<Study OID="S_RH"><GlobalVariables><StudyName>x</StudyName><StudyDescription>x</StudyDescription>'
        '<ProtocolName>x</ProtocolName></GlobalVariables><MetaDataVersion OID="M" Name="v1">'
        '<StudyEventDef OID="SE_AELOG" Name="AE log" Repeating="No" Type="Common"/>'
        '<FormDef OID="F_AE_V10" Name="AE" Repeating="Yes"/>'
        '<ItemGroupDef OID="IG_AE_UNGROUPED" Name="ungrouped" Repeating="No"/>'
        '<ItemDef OID="I_AE_AETERM" Name="AETERM" DataType="text"/>'
        '<ItemDef OID="I_AE_AESTDAT" Name="AESTDAT" DataType="date"/>'
        '<ItemDef OID="I_AE_AEENDAT" Name="AEENDAT" DataType="date"/>'
        '<ItemDef OID="I_AE_AETOXGR" Name="AETOXGR" DataType="integer"/>'
        '</MetaDataVersion></Study>')

    def ae(repeat: int, term: str, start: str, grade: str, end: str | None) -> str:
        stop = f'<ItemData ItemOID="I_AE_AEENDAT" Value="{end}"/>' if end else \
            '<ItemData ItemOID="I_AE_AEENDAT" IsNull="Yes"/>'
        return (f'<FormData FormOID="F_AE_V10" FormRepeatKey="{repeat}"><ItemGroupData ItemGroupOID="IG_AE_UNGROUPED">'
                f'<ItemData ItemOID="I_AE_AETERM" Value="{term}"/><ItemData ItemOID="I_AE_AESTDAT" Value="{start}"/>'
                f'{stop}<ItemData ItemOID="I_AE_AETOXGR" Value="{grade}"/></ItemGroupData></FormData>')

    body = ('<SubjectData SubjectKey="01-007"><SiteRef LocationOID="S_RH_01"/>'
            '<StudyEventData StudyEventOID="SE_AELOG">'
            + ae(1, "Headache", "03/04/2020", "1", "05/04/2020") + ae(2, "Fever", "04/04/2020", "2", None)
            + '</StudyEventData></SubjectData>')
    path = tmp_path / "oc.xml"
    path.write_text(_odm(body, metadata))
    mapping_file = tmp_path / "oc.yaml"
    mapping_file.write_text("forms: {AE: adverse_events}\n"
                            "fields: {AETERM: adverse_events.term, AESTDAT: adverse_events.onset_date,\n"
                            "         AEENDAT: adverse_events.stop_date, AETOXGR: adverse_events.ctcae_grade}\n"
                            "date_format: '%d/%m/%Y'\n")
    data = read_odm(path, protocol, Mapping.load(mapping_file, protocol))
    assert not data.problems and not data.unmapped
    [entry] = data.subjects
    assert entry.site.raw == "01"  # OpenClinica's site OID S_<study>_<site> ends with the protocol's site code
    assert [(a.seq, {k: v.raw for k, v in a.values.items()}) for a in entry.adverse_events] == [
        (1, {"term": "Headache", "onset_date": "2020-04-03", "stop_date": "2020-04-05", "ctcae_grade": "1"}),
        (2, {"term": "Fever", "onset_date": "2020-04-04", "ctcae_grade": "2"}),
    ]
    assert entry.adverse_events[1].origin.location.startswith(
        "SubjectData[@SubjectKey='01-007']/StudyEventData[@StudyEventOID='SE_AELOG']/FormData[@FormOID='F_AE_V10']"
        "[@FormRepeatKey='2']/ItemGroupData")


def test_source_names_for_a_draft_mapping(study, protocol):
    from regenheart.exchange.mapping import Mapping as M
    from regenheart.exchange.mapping import draft_mapping
    from regenheart.exchange.odm import odm_source_names

    fields, events, forms = odm_source_names(SHARED / "examples" / "redcap" / "redcapr-simple" / "project.xml")
    by_name = {f.name: f for f in fields}
    assert by_name["name_first"].form == "demographics" and by_name["height"].form == "health"
    assert by_name["height"].label  # the question text is the label
    assert {f.name for f in forms} == {"demographics", "health", "race_and_ethnicity"}
    ours, our_events, our_forms = odm_source_names(study["path"])
    assert {"subject", "visit", "adverse_events", "disposition", "echo"} <= {f.name for f in our_forms}
    assert [e.name for e in our_events][:len(protocol.visits)] == protocol.visit_codes
    lvef = next(f for f in ours if f.name == "lvef_pct")
    assert lvef.form == "echo" and lvef.label.startswith(protocol.forms["echo"].field("lvef_pct").label)
    draft = study["folder"] / "draft.yaml"
    draft.write_text(draft_mapping(protocol, fields, events, forms))
    M.load(draft, protocol)  # the draft built from ODM names loads as a mapping file
    assert odm_source_names(study["folder"] / "missing.xml") == ([], [], [])


def test_export_with_a_protocol_that_lacks_stored_data_is_refused(study, protocol, tmp_path):
    amended = protocol.model_copy(update={"visits": [v for v in protocol.visits if v.code != "M6"]})
    with pytest.raises(OdmExportError, match="visit M6"):
        write_odm(study["engine"], amended, tmp_path / "amended.xml")
    assert not (tmp_path / "amended.xml").exists()


def test_cli_export_then_import_format_odm(study, tmp_path, protocol):
    """The two commands end to end: 'export odm' and 'import --format odm' into a new database, twice."""
    from regenheart.store.audit import head_hash

    runner = CliRunner()
    out = tmp_path / "study.xml"
    assert runner.invoke(app, ["export", "odm", "--db", str(study["folder"] / "study.db"),
                               "--out", str(out)]).exit_code == 0
    target = tmp_path / "target.db"
    create_study_database(target, study_meta(protocol, synthetic=True), durable=False).dispose()
    first = runner.invoke(app, ["import", str(out), "--db", str(target), "--format", "odm"])
    assert "Traceback" not in first.output and first.exit_code in (0, 1), first.output
    engine = open_study_database(target)
    snapshot = take_snapshot(engine)
    assert len(snapshot.subjects) == len(study["cohort"].subjects)
    assert len(snapshot.items) == len(take_snapshot(study["engine"]).items)
    before = head_hash(engine)
    second = runner.invoke(app, ["import", str(out), "--db", str(target), "--format", "odm"])
    assert "Traceback" not in second.output and second.exit_code in (0, 1), second.output
    assert head_hash(engine) == before  # nothing written the second time


def test_redcap_longitudinal_events_and_repeating_instrument(tmp_path, protocol):
    """REDCap 1.3.1 dialect of a longitudinal project: Event.<unique name> OIDs resolved through
    redcap:UniqueEventName, Form.<name> OIDs through redcap:FormName, a repeating AE instrument."""
    metadata = (
        '<Study OID="Project.X"><GlobalVariables><StudyName>x</StudyName><StudyDescription>x</StudyDescription>'
        '<ProtocolName>x</ProtocolName></GlobalVariables>'
        '<MetaDataVersion OID="M" Name="x" redcap:RecordIdField="record_id">'
        '<StudyEventDef OID="Event.baseline_arm_1" Name="Baseline" Repeating="No" Type="Common" '
        'redcap:UniqueEventName="baseline_arm_1"/>'
        '<StudyEventDef OID="Event.month_1_arm_1" Name="Month 1" Repeating="No" Type="Common" '
        'redcap:UniqueEventName="month_1_arm_1"/>'
        '<FormDef OID="Form.nyha_form" Name="NYHA" Repeating="No" redcap:FormName="nyha_form"/>'
        '<FormDef OID="Form.adverse_events" Name="Adverse events" Repeating="Yes" redcap:FormName="adverse_events"/>'
        '<ItemDef OID="record_id" Name="record_id" DataType="text" redcap:Variable="record_id"/>'
        '<ItemDef OID="nyha_class" Name="nyha_class" DataType="text" redcap:Variable="nyha_class"/>'
        '<ItemDef OID="visit_dt" Name="visit_dt" DataType="date" redcap:Variable="visit_dt"/>'
        '<ItemDef OID="ae_term" Name="ae_term" DataType="text" redcap:Variable="ae_term"/>'
        '</MetaDataVersion></Study>')

    def nyha(event: str, value: str, date: str) -> str:
        return (f'<StudyEventData StudyEventOID="Event.{event}" StudyEventRepeatKey="1">'
                '<FormData FormOID="Form.nyha_form" FormRepeatKey="1">'
                '<ItemGroupData ItemGroupOID="nyha_form.record_id" ItemGroupRepeatKey="1">'
                '<ItemData ItemOID="record_id" Value="01-001"/></ItemGroupData>'
                '<ItemGroupData ItemGroupOID="nyha_form.nyha_class" ItemGroupRepeatKey="1">'
                f'<ItemData ItemOID="visit_dt" Value="{date}"/><ItemData ItemOID="nyha_class" Value="{value}"/>'
                '</ItemGroupData></FormData></StudyEventData>')

    aes = ''.join(f'<FormData FormOID="Form.adverse_events" FormRepeatKey="{k}">'
                  f'<ItemGroupData ItemGroupOID="adverse_events.ae_term" ItemGroupRepeatKey="1">'
                  f'<ItemData ItemOID="ae_term" Value="{term}"/></ItemGroupData></FormData>'
                  for k, term in ((1, "Headache"), (2, "Rash")))
    body = ('<SubjectData SubjectKey="01-001" redcap:RecordIdField="record_id">'
            + nyha("baseline_arm_1", "3", "2020-03-02") + nyha("month_1_arm_1", "2", "2020-04-10")
            + f'<StudyEventData StudyEventOID="Event.month_1_arm_1" StudyEventRepeatKey="1">{aes}</StudyEventData>'
            '</SubjectData>')
    path = tmp_path / "redcap_long.xml"
    path.write_text(_odm(body, metadata))
    mapping_file = tmp_path / "m.yaml"
    mapping_file.write_text("events: {baseline_arm_1: SCR, month_1_arm_1: M1}\nforms: {nyha_form: nyha}\n"
                            "fields: {ae_term: adverse_events.term}\n")
    # A protocol drafted for this project dates visits by its 'visit_dt' field (protocol dates.visit).
    from regenheart.protocol.models import DateSources, FieldDef

    nyha_form = protocol.forms["nyha"]
    drafted = protocol.model_copy(update={
        "forms": {**protocol.forms, "nyha": nyha_form.model_copy(update={
            "fields": [*nyha_form.fields, FieldDef(name="visit_dt", label="Visit date", type="date")]})},
        "dates": DateSources(visit="visit_dt")})
    data = read_odm(path, drafted, Mapping.load(mapping_file, drafted))
    assert not data.problems and not data.unmapped, data.unmapped
    [entry] = data.subjects
    assert [(f.visit, f.form, f.values["nyha_class"].raw, f.visit_date.raw) for f in entry.forms] == [
        ("SCR", "nyha", "3", "2020-03-02"), ("M1", "nyha", "2", "2020-04-10")]
    # Without that declaration the source's date field is reported, not guessed.
    plain = read_odm(path, protocol, Mapping.load(mapping_file, protocol))
    assert [u.what for u in plain.unmapped] == ["ItemOID 'visit_dt' (visit_dt) on form 'nyha_form'"]
    assert [(a.seq, a.values["term"].raw) for a in entry.adverse_events] == [(1, "Headache"), (2, "Rash")]


def test_odmlib_example_with_a_mapping_by_oid(tmp_path, protocol):
    """A third-party ODM 1.3.2 file (odmlib's test snapshot): names with spaces, so the mapping uses OIDs;
    AEs in a repeating item group next to a non-repeating one."""
    mapping_file = tmp_path / "odmlib.yaml"
    mapping_file.write_text(
        "events: {SE.SCREENING: SCR, 'SE.VISIT 1': M1}\n"
        "forms: {DM: demographics, AE: adverse_events}\n"
        "fields: {IT.AGE: demographics.age_years, IT.SEX: demographics.sex, IT.AETERM: adverse_events.term}\n"
        "recodes: {demographics.sex: {Male: M, Female: F}}\n")
    data = read_odm(SHARED / "examples" / "odm-1.3.2" / "odmlib-odm-data-snapshot.xml", protocol,
                    Mapping.load(mapping_file, protocol))
    assert not data.problems
    subjects = {s.code: s for s in data.subjects}
    [dm] = [f for f in subjects["SS_0001"].forms if f.form == "demographics"]
    assert dm.visit == "SCR" and {k: v.raw for k, v in dm.values.items()} == {"age_years": "56", "sex": "M"}
    terms = [(a.seq, a.values["term"].raw) for a in subjects["SS_0002"].adverse_events]
    assert terms[:3] == [(1, "Other"), (2, "Other"), (3, "Other")]
    whats = " ".join(u.what for u in data.unmapped)
    assert "'IT.AGEU'" in whats and "'IT.AEYN'" in whats and "form 'VS'" in whats


def test_metadata_only_export_is_valid_and_matches_the_full_export(study, doc, schema, tmp_path):
    runner = CliRunner()
    out = tmp_path / "metadata.xml"
    result = runner.invoke(app, ["export", "odm", "--metadata-only", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metadata = etree.parse(str(out))
    assert schema.validate(metadata), schema.error_log
    root = metadata.getroot()
    assert root.get("Granularity") == "Metadata" and root.get("FileType") == "Snapshot"
    assert root.find("odm:ClinicalData", NS) is None and root.find("odm:AdminData", NS) is None
    full = doc.find("odm:Study/odm:MetaDataVersion", NS)
    alone = metadata.find("odm:Study/odm:MetaDataVersion", NS)
    assert etree.tostring(alone, method="c14n") == etree.tostring(full, method="c14n")
    missing = runner.invoke(app, ["export", "odm", "--out", str(out)])
    assert missing.exit_code == 2 and "--db is required" in " ".join(missing.output.split())


def test_workflow_state_and_queries_are_annotations(study, doc):
    code = study["signed"][0]

    def annotations(form: str) -> list[etree._Element]:
        return doc.findall(f"odm:ClinicalData/odm:SubjectData[@SubjectKey='{code}']/odm:StudyEventData"
                           f"[@StudyEventOID='SE.SCR']/odm:FormData[@FormOID='F.{form.upper()}']/odm:Annotation", NS)

    def flags(annotation: etree._Element) -> dict[str, str]:
        return {f.findtext("odm:FlagType", namespaces=NS): f.findtext("odm:FlagValue", namespaces=NS)
                for f in annotation.findall("odm:Flag", NS)}

    assert flags(annotations("demographics")[0]) == {"STATUS": "complete", "SDV": "Y", "LOCK": "N"}
    assert flags(annotations("medical_history")[0]) == {"STATUS": "complete", "SDV": "N", "LOCK": "Y"}
    state, query = annotations("vital_signs")
    assert flags(state)["LOCK"] == "N" and flags(query) == {"QUERY": "open"}
    comment = query.findtext("odm:Comment", namespaces=NS)
    assert comment.startswith("Query 1 on sbp_mmhg (open): open by mon1 (monitor)")
    assert comment.endswith("Please confirm the systolic pressure against the source")
