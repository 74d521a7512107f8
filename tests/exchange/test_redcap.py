"""REDCap both ways: dictionary/events/records export, the records reader, drafting a protocol from any
REDCap project, and round trips (a synthetic RegenHeart cohort; the two real REDCap example projects)."""

from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import SHARED
from typer.testing import CliRunner

from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.cli.main import app
from regenheart.exchange.mapping import Mapping
from regenheart.exchange.redcap import read_redcap_records
from regenheart.exchange.redcap_draft import draft_protocol
from regenheart.exchange.redcap_export import redcap_layout
from regenheart.exchange.redcap_format import (
    DICTIONARY_COLUMNS,
    RedcapFormatError,
    format_choices,
    parse_choices,
    read_dictionary,
    unique_event_name,
    visit_code_for_event,
)
from regenheart.protocol import load_protocol
from regenheart.protocol.loader import parse_protocol
from regenheart.store.db import create_study_database, open_study_database
from regenheart.store.snapshot import take_snapshot
from regenheart.synth import enter_cohort, generate_cohort

EXAMPLES = SHARED / "examples" / "redcap"
TODAY = dt.date(2026, 1, 1)
IMPORTER = Actor("dm1", "data_manager", None)
runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.split())


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def cohort_db(tmp_path_factory):
    """A small synthetic RegenHeart cohort (4 infused, 1 screen failure) entered through capture."""
    protocol = load_protocol()
    path = tmp_path_factory.mktemp("cohort") / "study.db"
    engine = create_study_database(path, {"synthetic": "true", "study_acronym": "RegenHeart"}, durable=False)
    service = CaptureService(engine, protocol, today=lambda: TODAY)
    enter_cohort(service, generate_cohort(protocol, seed=11, n_enrolled=4, n_screen_failures=1))
    engine.dispose()
    return path


@pytest.fixture(scope="module")
def exported(cohort_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("redcap")
    result = runner.invoke(app, ["export", "redcap", "--db", str(cohort_db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


# ------------------------------------------------------------------------------------------ format
def test_choices_parse_and_format_inverse():
    assert parse_choices("1, Yes | 0, No") == [("1", "Yes"), ("0", "No")]
    # REDCap splits at the first comma only: labels keep theirs
    assert parse_choices("1, Kenning, UK|2,  B ") == [("1", "Kenning, UK"), ("2", "B")]
    assert format_choices([("Y", "Yes"), ("N", "No")]) == "Y, Yes | N, No"
    with pytest.raises(ValueError, match="not 'code, label'"):
        parse_choices("1 Yes | 0, No")
    with pytest.raises(ValueError, match="used twice"):
        parse_choices("1, A | 1, B")


def test_event_names_follow_redcaps_rule():
    # standards.md 1.5: lower case, hyphens removed, other non-alphanumerics '_', '_arm_N'
    assert unique_event_name("Follow-up 30 min") == "followup_30_min_arm_1"
    assert visit_code_for_event("month_1_arm_1") == "MONTH1"
    assert visit_code_for_event("1st_visit_arm_2") == "V1STVISIT"


def test_example_dictionaries_are_read_with_their_types():
    fields = read_dictionary(EXAMPLES / "redcapr-simple" / "dictionary.csv")
    by_name = {f.field_name: f for f in fields}
    assert fields[0].field_name == "record_id" and len(fields) == 16
    assert by_name["height"].validation == "number" and by_name["height"].text_validation_min == "130"
    assert by_name["race"].choices[1] == ("2", "Asian")
    assert by_name["bmi"].field_type == "calc"


def test_a_file_that_is_not_a_dictionary_is_refused_with_file_and_rule(tmp_path):
    bad = tmp_path / "dict.csv"
    bad.write_text("field,form\nrecord_id,demo\n", encoding="utf-8")
    with pytest.raises(RedcapFormatError, match=r"dict.csv: line 1: not a REDCap data dictionary"):
        read_dictionary(bad)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(",".join(DICTIONARY_COLUMNS).encode() + b"\nname,f\xe9rm,,text,,,,,,,,,,,,,,\n")
    with pytest.raises(RedcapFormatError, match="not UTF-8"):
        read_dictionary(latin)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text(",".join(f'"{c}"' for c in DICTIONARY_COLUMNS) + "\nrecord_id,demo,,text,ID,,,,,,,,,,,,,\n"
                     "sex,demo,,radio,Sex,1 Male,,,,,,,,,,,,\nAge,demo,,number,Age,,,,,,,,,,,,,\n", encoding="utf-8")
    with pytest.raises(RedcapFormatError) as info:
        read_dictionary(wrong)
    message = str(info.value)
    assert "line 3, column Choices, Calculations, OR Slider Labels: '1 Male'" in message
    assert "line 4, column Variable / Field Name: 'Age' is not a REDCap field name" in message
    assert "line 4, column Field Type: 'number' is not a REDCap field type" in message


def test_malformed_records_are_a_clear_problem_not_a_traceback(tmp_path):
    protocol = load_protocol()
    records = tmp_path / "records.csv"
    records.write_text("record_id,redcap_event_name\n01-001,scr_arm_1,extra\n", encoding="utf-8")
    source = read_redcap_records(records, protocol, Mapping.identity(protocol))
    assert not source.subjects
    assert "line 2: 3 cells but the header has 2 columns" in source.problems[0].message
    records.write_bytes(b"record_id,name\n1,J\xfcrgen\n")
    source = read_redcap_records(records, protocol, Mapping.identity(protocol))
    assert "not UTF-8" in source.problems[0].message


# ------------------------------------------------------------------------------------------ export
def test_dictionary_has_redcaps_18_columns_and_project_wide_unique_names(exported):
    with (exported / "data_dictionary.csv").open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == DICTIONARY_COLUMNS
    rows = read_rows(exported / "data_dictionary.csv")
    names = [r["Variable / Field Name"] for r in rows]
    assert names[0] == "record_id" and rows[0]["Form Name"] == "enrolment" and rows[0]["Field Type"] == "text"
    assert len(names) == len(set(names)), "REDCap field names are unique project-wide"
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)
    forms = [r["Form Name"] for r in rows]
    for form in set(forms):
        at = [i for i, f in enumerate(forms) if f == form]
        assert at == list(range(at[0], at[0] + len(at))), f"the rows of form {form} are not contiguous"
    assert {"kccq_q2", "mlhfq_q2", "q1a"} <= set(names)  # q2 is on both forms: prefixed; q1a only on KCCQ


def test_dictionary_types_validation_ranges_branching(exported):
    rows = {r["Variable / Field Name"]: r for r in read_rows(exported / "data_dictionary.csv")}
    lvef = rows["lvef_pct"]
    assert (lvef["Field Type"], lvef["Text Validation Type OR Show Slider Number"]) == ("text", "number_1dp")
    assert (lvef["Text Validation Min"], lvef["Text Validation Max"], lvef["Field Note"]) == ("5", "80", "%")
    assert lvef["Required Field?"] == "y" and "@FORCE-MINMAX" in lvef["Field Annotation"]
    assert rows["age_years"]["Text Validation Type OR Show Slider Number"] == "integer"
    assert rows["onset_date" if "onset_date" in rows else "ae_onset_date"]["Text Validation Type OR Show Slider Number"] \
        == "date_ymd"
    assert rows["sex"]["Field Type"] == "radio" and rows["sex"]["Choices, Calculations, OR Slider Labels"] == \
        "M, Male | F, Female"  # the protocol's codes are kept
    assert rows["ae_category"]["Field Type"] == "dropdown"
    assert rows["distance_m"]["Branching Logic (Show field only if...)"] == "[performed] = 'Y'"
    assert rows["not_done_reason"]["Branching Logic (Show field only if...)"] == "[performed] = 'N'"
    assert rows["ds_reason"]["Branching Logic (Show field only if...)"] == "[ds_status] <> 'COMPLETED'"
    assert rows["ae_term"]["Field Type"] == "text" and rows["ae_term"]["Field Annotation"] == "@CHARLIMIT=200"
    assert rows["ds_reason"]["Field Type"] == "notes"
    assert rows["kccq_overall_summary"]["Field Annotation"] == "@READONLY"
    assert rows["kccq_overall_summary"]["Form Name"] == "kccq_scores"
    assert not any(r["Field Type"] == "calc" for r in rows.values())


def test_events_offsets_come_from_the_visit_windows_and_designations_from_the_schedule(exported):
    protocol = load_protocol()
    events = {e["unique_event_name"]: e for e in read_rows(exported / "events.csv")}
    assert list(events) == [f"{v.code.lower()}_arm_1" for v in protocol.visits]
    m1 = events["m1_arm_1"]
    assert (m1["day_offset"], m1["offset_min"], m1["offset_max"]) == ("30", "7", "7")  # window 23-37
    scr = events["scr_arm_1"]
    assert (scr["day_offset"], scr["offset_min"], scr["offset_max"]) == ("-14", "16", "13")  # window -30 to -1
    mapping = read_rows(exported / "instrument_event_mapping.csv")
    at = {(m["unique_event_name"], m["form"]) for m in mapping}
    assert ("d0_arm_1", "catheterization") in at and ("d1_arm_1", "echo") not in at
    assert ("scr_arm_1", "enrolment") in at and ("scr_arm_1", "adverse_events") in at
    assert ("m6_arm_1", "disposition") in at and ("m6_arm_1", "kccq_scores") in at
    assert read_rows(exported / "repeating_instruments.csv") == [
        {"event_name": "scr_arm_1", "form_name": "adverse_events", "custom_form_label": ""}]


def test_records_are_redcaps_flat_export(exported, cohort_db):
    snapshot = take_snapshot(open_study_database(cohort_db))
    rows = read_rows(exported / "records.csv")
    header = list(rows[0])
    assert header[:5] == ["record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
                          "redcap_data_access_group"]
    visit_rows = [r for r in rows if not r["redcap_repeat_instrument"]]
    # one row per record x event the subject has, plus the last event's row of a subject who left
    # early (it holds the disposition) and the first event's row of one with no visit (enrolment facts)
    first, last = load_protocol().visits[0].code, load_protocol().visits[-1].code
    with_last = set(snapshot.visits[snapshot.visits["visit_code"] == last]["subject_code"])
    with_first = set(snapshot.visits[snapshot.visits["visit_code"] == first]["subject_code"])
    early = snapshot.subjects[snapshot.subjects["disposition"].notna()
                              & ~snapshot.subjects["subject_code"].isin(with_last)]
    unseen = snapshot.subjects[~snapshot.subjects["subject_code"].isin(with_first)]
    assert len(visit_rows) == len(snapshot.visits) + len(early) + len(unseen)
    ae_rows = [r for r in rows if r["redcap_repeat_instrument"] == "adverse_events"]
    assert len(ae_rows) == len(snapshot.adverse_events)
    assert all(r["redcap_event_name"] == "scr_arm_1" and r["adverse_events_complete"] == "2" for r in ae_rows)
    assert {r["redcap_data_access_group"] for r in rows} == {"site_01"}
    first = next(r for r in visit_rows if r["redcap_event_name"] == "d0_arm_1" and r["dose_cells_1e6"])
    assert re.fullmatch(r"\d+\.\d", first["dose_cells_1e6"])  # number_1dp: exactly one decimal
    assert first["catheterization_complete"] == "2" and first["echo_complete"] == ""
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", first["visit_date"])
    readme = (exported / "README.txt").read_text()
    assert "SYNTHETIC" in readme and "kccq_scores" in readme


# ------------------------------------------------------------------------------------------ round trip
def test_round_trip_through_the_importer_gives_the_same_study(exported, cohort_db, tmp_path):
    importer = pytest.importorskip("regenheart.exchange.importer")
    protocol = load_protocol()
    source = read_redcap_records(exported, protocol, Mapping.identity(protocol))
    assert not source.problems
    assert {u.what for u in source.unmapped} == {f"column '{c}'" for c in read_rows(exported / "records.csv")[0]
                                                 if re.match(r"(kccq|sf12|mlhfq)_(?!q\d|complete)", c)
                                                 and not c.endswith("_complete") and "___" not in c
                                                 and c.split("_", 1)[1] in {
                                                     "physical_limitation", "symptom_stability", "symptom_frequency",
                                                     "symptom_burden", "total_symptom", "self_efficacy",
                                                     "quality_of_life", "social_limitation", "clinical_summary",
                                                     "overall_summary", "pcs", "mcs", "total", "physical",
                                                     "emotional"}}
    engine = create_study_database(tmp_path / "copy.db", {"synthetic": "true"}, durable=False)
    report = importer.import_source(CaptureService(engine, protocol, today=lambda: TODAY), IMPORTER, source)
    assert not report.refusals, [r.as_row() for r in report.refusals[:5]]
    before, after = take_snapshot(open_study_database(cohort_db)), take_snapshot(engine)
    keys = ["subject_code", "site_code", "status", "screening_date", "consent_date", "eligible", "enrolled_date",
            "arm_code", "infusion_date", "disposition", "disposition_date", "disposition_reason"]
    assert after.subjects[keys].to_dict("records") == before.subjects[keys].to_dict("records")

    def key(frame, columns):  # sortable rows; NaN (missing) as None, since NaN != NaN
        return sorted((tuple(None if pd.isna(x) else x for x in r) for r in frame[columns].itertuples(index=False)),
                      key=repr)

    assert key(after.visits, ["subject_code", "visit_code", "visit_date", "study_day"]) == \
        key(before.visits, ["subject_code", "visit_code", "visit_date", "study_day"])
    items = ["subject_code", "visit_code", "form_code", "field", "value"]
    assert key(after.items, items) == key(before.items, items)
    derived = ["subject_code", "visit_code", "form_code", "name", "value"]
    assert key(after.derived, derived) == key(before.derived, derived)
    ae_columns = [c for c in before.adverse_events.columns if c != "study_day"] + ["study_day"]
    assert after.adverse_events[ae_columns].fillna("").to_dict("records") == \
        before.adverse_events[ae_columns].fillna("").to_dict("records")


def test_reader_snapshot_values_match_without_the_importer(exported, cohort_db):
    """The reader alone: every stored item value comes back as the exported text of that value."""
    protocol = load_protocol()
    source = read_redcap_records(exported, protocol, Mapping.identity(protocol))
    read = {(s.code, f.visit, f.form, name): v.raw for s in source.subjects for f in s.forms
            for name, v in f.values.items()}
    snapshot = take_snapshot(open_study_database(cohort_db))
    for row in snapshot.items.itertuples(index=False):
        raw = read[(row.subject_code, row.visit_code, row.form_code, row.field)]
        field = protocol.forms[row.form_code].field(row.field)
        if field.type in ("integer", "float"):
            assert float(raw) == pytest.approx(float(row.value), abs=0), (row, raw)
        else:
            assert str(raw) == str(row.value), (row, raw)


# ------------------------------------------------------------------------------------------ any trial
def _mapping_file(tmp_path: Path, example: str) -> Path | None:
    if example != "redcapr-simple":
        return None
    # REDCapR's data.csv went through R, which read the 0/1 radio 'sex' as logical; the project's
    # raw values (project.xml: Value="0"/"1") are restored by a recode, the mapping file's job. The
    # calculated and file fields are ignored deliberately (else reported as not imported).
    path = tmp_path / "mapping.yaml"
    path.write_text('recodes:\n  demographics.sex: {"FALSE": 0, "TRUE": 1}\nignore: [bmi, mugshot]\n',
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("example", ["redcapr-simple", "redcapr-checkboxes-1"])
def test_any_redcap_project_end_to_end(example, tmp_path):
    pytest.importorskip("regenheart.exchange.importer")
    folder = EXAMPLES / example
    protocol_file = tmp_path / "protocol.yaml"
    drafted = runner.invoke(app, ["protocol", "from-redcap", str(folder / "dictionary.csv"), "--out",
                                  str(protocol_file)])
    assert drafted.exit_code == 0, drafted.output
    shown = runner.invoke(app, ["protocol", str(protocol_file)])
    assert shown.exit_code == 0, shown.output
    db = tmp_path / "study.db"
    init = runner.invoke(app, ["db", "init", "--db", str(db), "--protocol", str(protocol_file)])
    assert init.exit_code == 0, init.output
    protocol = load_protocol(protocol_file)
    source = read_redcap_records(folder / "data.csv", protocol, Mapping.identity(protocol),
                                 dictionary=folder / "dictionary.csv")
    assert not source.problems
    dictionary = {f.field_name: f for f in read_dictionary(folder / "dictionary.csv")}
    assert {u.what.split("'")[1] for u in source.unmapped} == {
        n for n, f in dictionary.items() if f.field_type in ("calc", "file")}
    mapping_file = _mapping_file(tmp_path, example)
    report = tmp_path / "report.csv"
    # the database knows its protocol (db init --protocol): no --protocol needed from here on
    imported = runner.invoke(app, ["import", str(folder / "data.csv"), "--format", "redcap", "--db", str(db),
                                   "--dictionary", str(folder / "dictionary.csv"), "--report", str(report),
                                   *(["--mapping", str(mapping_file)] if mapping_file else [])])
    assert imported.exit_code == (0 if mapping_file else 0 if not source.unmapped else 1), imported.output
    assert not [r for r in read_rows(report) if r["rule"] != "unmapped"]
    out = tmp_path / "export"
    exported = runner.invoke(app, ["export", "redcap", "--db", str(db), "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    original = {r["record_id"]: r for r in read_rows(folder / "data.csv")}
    back = {r["record_id"]: r for r in read_rows(out / "records.csv") if not r["redcap_repeat_instrument"]}
    assert set(back) == set(original)
    recode = {"FALSE": "0", "TRUE": "1"} if example == "redcapr-simple" else {}
    compared = 0
    for record, row in original.items():
        for column, value in row.items():
            base = column.split("___")[0]
            if base not in dictionary or base == "record_id" or dictionary[base].field_type in ("calc", "file"):
                continue
            form = dictionary[base].form_name
            entered = any(v.strip() and not (c.split("___")[0] in dictionary and "___" in c and v == "0")
                          for c, v in row.items() if c.split("___")[0] in dictionary
                          and dictionary[c.split("___")[0]].form_name == form
                          and dictionary[c.split("___")[0]].field_type not in ("calc", "file")
                          and c.split("___")[0] != "record_id") or row.get(f"{form}_complete") == "2"
            expected = recode.get(value, value) if entered else ""
            assert back[record][column] == expected, (record, column, value, back[record][column])
            compared += 1
    assert compared >= 4 * len(original)


def test_from_redcap_writes_nothing_for_a_broken_dictionary(tmp_path):
    bad = tmp_path / "dictionary.csv"
    bad.write_text("not,a,dictionary\n", encoding="utf-8")
    result = runner.invoke(app, ["protocol", "from-redcap", str(bad), "--out", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "not a REDCap data dictionary" in flat(result.output)
    assert not (tmp_path / "p.yaml").exists()


def test_drafting_a_longitudinal_project_gives_visits_windows_and_soft_ranges(tmp_path):
    from regenheart.exchange.redcap_format import RedcapEvent

    fields = read_dictionary(EXAMPLES / "redcapr-simple" / "dictionary.csv")
    events = [RedcapEvent("Baseline", 1, "baseline_arm_1", "", 0, 0, 0),
              RedcapEvent("Month 1", 1, "month_1_arm_1", "", 30, 5, 7)]
    designations = [(1, "baseline_arm_1", "demographics"), (1, "baseline_arm_1", "health"),
                    (1, "month_1_arm_1", "health"), (1, "month_1_arm_1", "race_and_ethnicity")]
    import yaml

    text = draft_protocol(fields, events, designations, source="simple")
    protocol = parse_protocol(yaml.safe_load(text), "draft")
    assert [(v.code, v.day, v.window, v.forms) for v in protocol.visits] == [
        ("BASELINE", 0, (0, 0), ["demographics", "health"]), ("MONTH1", 30, (25, 37), ["health", "race_and_ethnicity"])]
    height = protocol.forms["health"].field("height")
    assert height.type == "float" and height.range is None  # REDCap min/max are soft: a warning check
    check = protocol.forms["health"].checks[0]
    assert check.severity == "warning" and check.rule == "height >= 130 and height <= 215"
    assert protocol.forms["race_and_ethnicity"].field("race___2").label == "Race (Select all that apply): Asian"
    assert "health.bmi (calc = round(([weight]*10000)/(([height])^(2)),1))" in text
    layout = redcap_layout(protocol)  # the drafted checkbox exports as one REDCap checkbox again
    race = next(i for inst in layout.instruments for i in inst.items if i.name == "race")
    assert race.kind == "checkbox" and race.choices[1] == ("2", "Asian")


def test_records_alone_read_like_the_folder_forms_from_the_column_order(exported):
    """Without a dictionary the form of a column is read from the flat export's order (<form>_complete ends it)."""
    protocol = load_protocol()
    mapping = Mapping.identity(protocol)

    def values(source):
        return {(s.code, f.visit, f.form, n): v.raw for s in source.subjects for f in s.forms for n, v in f.values.items()}

    alone = read_redcap_records(exported / "records.csv", protocol, mapping)
    folder = read_redcap_records(exported, protocol, mapping)
    assert not alone.problems and values(alone) == values(folder) and len(values(alone)) > 500
    assert [len(s.adverse_events) for s in alone.subjects] == [len(s.adverse_events) for s in folder.subjects]


def test_a_bad_value_is_refused_with_its_row_and_column(tmp_path):
    importer = pytest.importorskip("regenheart.exchange.importer")
    folder = EXAMPLES / "redcapr-checkboxes-1"
    protocol = parse_protocol(__import__("yaml").safe_load(draft_protocol(read_dictionary(folder / "dictionary.csv"))),
                              "draft")
    data = (folder / "data.csv").read_text(encoding="utf-8").splitlines()
    cells = data[1].split(",")
    cells[2] = "7"  # check_one___1 of record 1: a checkbox is 0 or 1
    (tmp_path / "data.csv").write_text("\n".join([data[0], ",".join(cells), *data[2:]]) + "\n", encoding="utf-8")
    source = read_redcap_records(tmp_path / "data.csv", protocol, Mapping.identity(protocol),
                                 dictionary=folder / "dictionary.csv")
    engine = create_study_database(tmp_path / "s.db", {"study": "draft"})
    report = importer.import_source(CaptureService(engine, protocol), IMPORTER, source)
    (refusal,) = [r for r in report.refusals if r.field == "check_one___1"]
    assert (refusal.origin.location, refusal.origin.column, refusal.value, refusal.rule) == \
        ("line 2", "check_one___1", "7", "codelist")
    assert refusal.subject == "1"
    # the subject with the bad value is not written; the others are
    assert report.subjects.refused == 1 and report.subjects.written == len(data) - 2


def test_events_and_sites_map_through_the_mapping_file(exported, tmp_path):
    """A project whose events and DAGs are named its own way: the mapping file's events and subject sections."""
    protocol = load_protocol()
    text = (exported / "records.csv").read_text(encoding="utf-8")
    (tmp_path / "records.csv").write_text(text.replace("scr_arm_1", "baseline_arm_1").replace("site_01", ""),
                                          encoding="utf-8")
    plain = read_redcap_records(tmp_path / "records.csv", protocol, Mapping.identity(protocol))
    assert "event 'baseline_arm_1'" in {u.what for u in plain.unmapped}
    spec = tmp_path / "mapping.yaml"
    spec.write_text("events: {baseline_arm_1: SCR}\nsubject: {default_site: '01'}\n", encoding="utf-8")
    mapped = read_redcap_records(tmp_path / "records.csv", protocol, Mapping.load(spec, protocol))
    assert not any(u.what.startswith("event") for u in mapped.unmapped)
    assert all(s.site.raw == "01" for s in mapped.subjects)
    assert any(f.visit == "SCR" for f in mapped.subjects[0].forms)


def test_a_repeating_instrument_that_is_not_the_ae_log_keeps_instance_one(tmp_path):
    """Capture holds one record per form and visit: instance 1 is the form, later instances are refused."""
    fields = read_dictionary(EXAMPLES / "redcapr-checkboxes-1" / "dictionary.csv")
    import yaml

    protocol = parse_protocol(yaml.safe_load(draft_protocol(fields)), "draft")
    (tmp_path / "data.csv").write_text(
        "record_id,redcap_repeat_instrument,redcap_repeat_instance,desired_result,form_2_complete\n"
        "1,form_2,1,first,2\n1,form_2,2,second,2\n", encoding="utf-8")
    source = read_redcap_records(tmp_path / "data.csv", protocol, Mapping.identity(protocol),
                                 dictionary=EXAMPLES / "redcapr-checkboxes-1" / "dictionary.csv")
    (subject,) = source.subjects
    assert [f.values["desired_result"].raw for f in subject.forms] == ["first"]
    (problem,) = source.problems
    assert (problem.rule, problem.origin.location, problem.value) == ("repeat_instance", "line 3", "2")


def test_the_edc_runs_a_study_drafted_from_redcap(tmp_path):
    """serve --protocol: the web EDC on a drafted protocol (casebook, forms, AE log, audit) with no errors."""
    from fastapi.testclient import TestClient

    from regenheart.capture.accounts import AccountService
    from regenheart.web import create_app

    folder = EXAMPLES / "redcapr-simple"
    protocol_file = tmp_path / "protocol.yaml"
    assert runner.invoke(app, ["protocol", "from-redcap", str(folder / "dictionary.csv"), "--out",
                               str(protocol_file)]).exit_code == 0
    db = tmp_path / "study.db"
    assert runner.invoke(app, ["db", "init", "--db", str(db), "--protocol", str(protocol_file)]).exit_code == 0
    protocol = load_protocol(protocol_file)
    engine = open_study_database(db)
    password = "Correct-horse-battery-9"
    AccountService(engine, protocol).create_user(Actor("cli:test", "admin"), "admin", "admin", password,
                                                 full_name="Ada Admin")
    service = CaptureService(engine, protocol)
    service.screen_subject(IMPORTER, "R1", "01", dt.date.today(), dt.date.today())
    saved = service.save_form(IMPORTER, "R1", "V1", "race_and_ethnicity",
                              {"race___2": 1, "race___5": 1, "ethnicity": 2}, visit_date=dt.date.today())
    assert saved.status == "complete"
    engine.dispose()
    with TestClient(create_app(db, protocol)) as client:
        page = client.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        assert client.post("/login", data={"username": "admin", "password": password, "csrf_token": csrf,
                                           "next": "/subjects"}, follow_redirects=False).status_code == 303
        for url in ("/subjects", "/subjects/R1", "/subjects/R1/forms/V1/race_and_ethnicity",
                    "/subjects/R1/forms/V1/health", "/subjects/R1/adverse-events", "/subjects/R1/audit"):
            response = client.get(url)
            assert response.status_code == 200, (url, response.text[:300])
        form = client.get("/subjects/R1/forms/V1/race_and_ethnicity").text
        assert "Race (Select all that apply): Asian" in form


# ------------------------------------------------------------------------------------------ any study in capture
GENERIC = """
schema_version: 1
study: {nct_id: null, acronym: GEN, brief_title: A generic study, sites: [{code: "01", name: Site}]}
protocol_versions:
  - {version: "1", date: 2024-01-01, design: single_arm, allocation: none, planned_enrollment: 2, summary: s,
     arms: [{code: ALL, label: All, description: d, receives_cells: false}]}
active_protocol_version: "1"
codelists: {}
forms:
  vitals: {label: Vitals, fields: [{name: sbp, label: SBP, type: integer, range: [60, 250]}]}
visits:
  - {code: BL, label: Baseline, day: -7, window: [-14, -1], baseline: true, forms: [vitals]}
  - {code: TX, label: Treatment, day: 0, window: [0, 0], forms: [vitals]}
  - {code: FU, label: Follow-up, day: 28, window: [21, 35], forms: [vitals]}
"""


def test_a_study_without_regenheart_specifics_captures_with_day0_from_its_day0_visit(tmp_path):
    import yaml

    from regenheart.capture.errors import StateError

    protocol = parse_protocol(yaml.safe_load(GENERIC), "generic")
    assert protocol.eligibility == [] and protocol.adverse_events is None and protocol.endpoints is None
    engine = create_study_database(tmp_path / "g.db", {"study": "GEN"})
    service = CaptureService(engine, protocol, today=lambda: TODAY)
    service.screen_subject(IMPORTER, "G1", "01", "2024-03-01", "2024-03-01")
    assert service.evaluate_eligibility(IMPORTER, "G1").eligible  # no criteria: eligible on screening
    service.enrol(IMPORTER, "G1", "2024-03-05")
    with pytest.raises(StateError, match="later visits need the TX visit date first"):
        service.record_visit(IMPORTER, "G1", "FU", "2024-04-05")
    service.save_form(IMPORTER, "G1", "TX", "vitals", {"sbp": 120}, visit_date="2024-03-08")
    warnings = service.record_visit(IMPORTER, "G1", "FU", "2024-04-20")  # day 43: outside 21-35
    assert [w.rule for w in warnings] == ["window"]
    snapshot = take_snapshot(engine)
    assert snapshot.subjects.loc[0, "infusion_date"] == dt.date(2024, 3, 8)
    assert snapshot.subjects.loc[0, "status"] == "enrolled"  # no treatment anchor: status not 'infused'
    days = dict(zip(snapshot.visits["visit_code"], snapshot.visits["study_day"], strict=True))
    assert days == {"TX": 0, "FU": 43}
    with pytest.raises(StateError, match="no adverse-event log"):
        service.record_adverse_event(IMPORTER, "G1", {"term": "x"})
    with pytest.raises(StateError, match="no disposition record"):
        service.record_disposition(IMPORTER, "G1", {"status": "COMPLETED"})


def test_day0_anchor_and_date_sources_are_checked_against_the_protocol():
    import yaml

    from regenheart.protocol import ProtocolError

    document = yaml.safe_load(GENERIC)
    document["day0"] = {"visit": "TX", "form": "labs", "field": "dose"}
    document["dates"] = {"screening": "vitals.sbp", "visit": "visit_date"}
    with pytest.raises(ProtocolError) as info:
        parse_protocol(document, "generic")
    issues = {i.path: i.message for i in info.value.issues}
    assert issues["day0.form"] == "form 'labs' is not collected at visit 'TX'"
    assert issues["dates.screening"] == "'vitals.sbp' is not a date field"
    assert issues["dates.visit"] == "no form has a date field 'visit_date'"
    regenheart = load_protocol()
    assert (regenheart.day0.visit, regenheart.day0.form, regenheart.day0.field) == ("D0", "catheterization",
                                                                                     "dose_cells_1e6")


LONGITUDINAL_DICTIONARY = [
    ("record_id", "registration", "text", "Record ID", "", "", "", "", "", ""),
    ("scr_date", "registration", "text", "Screening date", "", "", "date_ymd", "", "", ""),
    ("consent_date", "registration", "text", "Consent signed on", "", "", "date_ymd", "", "", ""),
    ("visit_date", "assessment", "text", "Date of assessment", "", "", "date_ymd", "", "", ""),
    ("weight", "assessment", "text", "Weight", "", "kg", "number_1dp", "30", "250", "@FORCE-MINMAX"),
    ("symptoms", "assessment", "checkbox", "Symptoms", "1, Cough | 2, Fever", "", "", "", "", ""),
    ("severity", "assessment", "radio", "Severity", "1, Mild | 2, Moderate | 3, Severe", "", "", "", "", ""),
    ("note", "assessment", "notes", "Comment", "", "", "", "", "", ""),
]
LONGITUDINAL_RECORDS = """record_id,redcap_event_name,scr_date,consent_date,registration_complete,visit_date,weight,\
symptoms___1,symptoms___2,severity,note,assessment_complete
A-1,baseline_arm_1,2024-01-10,2024-01-09,2,2024-01-12,71.5,1,0,2,"first, with a comma",2
A-1,week_4_arm_1,,,,2024-02-10,70.0,0,0,1,,2
A-2,baseline_arm_1,2024-01-15,2024-01-15,2,2024-01-16,88.2,1,1,3,,1
A-2,week_4_arm_1,,,,,,0,0,,,0
"""


def test_a_longitudinal_redcap_project_end_to_end(tmp_path):
    """Events with day offsets become visits with windows; date fields become capture's dates; values come back."""
    pytest.importorskip("regenheart.exchange.importer")
    with (tmp_path / "dictionary.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(DICTIONARY_COLUMNS)
        for name, form, kind, label, choices, note, validation, vmin, vmax, annotation in LONGITUDINAL_DICTIONARY:
            writer.writerow([name, form, "", kind, label, choices, note, validation, vmin, vmax, "", "", "", "", "",
                             "", "", annotation])
    (tmp_path / "events.csv").write_text("event_name,arm_num,unique_event_name,custom_event_label,day_offset,"
                                         "offset_min,offset_max\nBaseline,1,baseline_arm_1,,0,0,0\n"
                                         "Week 4,1,week_4_arm_1,,28,3,3\n", encoding="utf-8")
    (tmp_path / "mapping.csv").write_text("arm_num,unique_event_name,form\n1,baseline_arm_1,registration\n"
                                          "1,baseline_arm_1,assessment\n1,week_4_arm_1,assessment\n", encoding="utf-8")
    (tmp_path / "records.csv").write_text(LONGITUDINAL_RECORDS, encoding="utf-8")
    protocol_file = tmp_path / "study.yaml"
    result = runner.invoke(app, ["protocol", "from-redcap", str(tmp_path / "dictionary.csv"), "--events",
                                 str(tmp_path / "events.csv"), "--event-mapping", str(tmp_path / "mapping.csv"),
                                 "--out", str(protocol_file), "--title", "Longitudinal"])
    assert result.exit_code == 0, result.output
    protocol = load_protocol(protocol_file)
    assert [(v.code, v.day, v.window, v.forms) for v in protocol.visits] == [
        ("BASELINE", 0, (0, 0), ["registration", "assessment"]), ("WEEK4", 28, (25, 31), ["assessment"])]
    assert (protocol.dates.screening, protocol.dates.consent, protocol.dates.visit) == \
        ("registration.scr_date", "registration.consent_date", "visit_date")
    weight = protocol.forms["assessment"].field("weight")
    assert (weight.type, weight.decimals, weight.range, weight.unit) == ("float", 1, (30, 250), "kg")
    db = tmp_path / "study.db"
    assert runner.invoke(app, ["db", "init", "--db", str(db), "--protocol", str(protocol_file)]).exit_code == 0
    imported = runner.invoke(app, ["import", str(tmp_path / "records.csv"), "--format", "redcap", "--db", str(db),
                                   "--dictionary", str(tmp_path / "dictionary.csv"), "--events",
                                   str(tmp_path / "events.csv"), "--event-mapping", str(tmp_path / "mapping.csv")])
    assert imported.exit_code == 0, imported.output
    snapshot = take_snapshot(open_study_database(db))
    subjects = snapshot.subjects.set_index("subject_code")
    assert subjects.loc["A-1", "screening_date"] == dt.date(2024, 1, 10)
    assert subjects.loc["A-1", "consent_date"] == dt.date(2024, 1, 9)
    days = {(r.subject_code, r.visit_code): r.study_day for r in snapshot.visits.itertuples()}
    assert days == {("A-1", "BASELINE"): 0, ("A-1", "WEEK4"): 29, ("A-2", "BASELINE"): 0}
    out = tmp_path / "export"
    assert runner.invoke(app, ["export", "redcap", "--db", str(db), "--out", str(out)]).exit_code == 0
    back = {(r["record_id"], r["redcap_event_name"]): r for r in read_rows(out / "records.csv")}
    events = {"baseline_arm_1": "baseline_arm_1", "week_4_arm_1": "week4_arm_1"}
    compared = 0
    for row in csv.DictReader(LONGITUDINAL_RECORDS.splitlines()):
        if not row["visit_date"]:
            assert (row["record_id"], events[row["redcap_event_name"]]) not in back  # nothing was entered there
            continue
        exported = back[(row["record_id"], events[row["redcap_event_name"]])]
        for column, value in row.items():
            if column in ("record_id", "redcap_event_name") or column.endswith("_complete"):
                continue
            assert exported[column] == value, (row["record_id"], column, value, exported[column])
            compared += 1
    assert compared == 3 * 8  # 3 visits with data x 8 data columns


def test_cli_errors_are_one_line_not_tracebacks(tmp_path, exported):
    missing = runner.invoke(app, ["export", "redcap", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "no database" in flat(missing.output) and "Traceback" not in missing.output
    existing = tmp_path / "p.yaml"
    existing.write_text("keep me", encoding="utf-8")
    refused = runner.invoke(app, ["protocol", "from-redcap", str(exported / "data_dictionary.csv"), "--out",
                                  str(existing)])
    assert refused.exit_code == 2 and "exists" in flat(refused.output)
    assert existing.read_text(encoding="utf-8") == "keep me"
    # the default of 'regenheart protocol' is still to validate and show a protocol file
    shown = runner.invoke(app, ["protocol"])
    assert shown.exit_code == 0 and "NCT04325594" in flat(shown.output)


# ------------------------------------------------------------------------------------------ data-quality rules
def _redcap_eval(logic: str, values: dict[str, object]) -> bool:
    """Evaluate REDCap logic of the shapes our translation writes ([f], = <> < <= > >=, and/or, if, abs)."""
    import builtins

    expression = re.sub(r"\[([a-z0-9_]+)\((\w+)\)\]", r"v['\1___\2']", logic)
    expression = re.sub(r"\[([a-z0-9_]+)\]", r"v['\1']", expression)
    expression = expression.replace(" <> ", " != ").replace(" = ", " == ").replace("if(", "_if(")
    env = {"v": {k: ("" if x is None else x) for k, x in values.items()}, "abs": builtins.abs,
           "_if": lambda c, a, b: a if c else b, "__builtins__": {}}
    return bool(eval(expression, env))


def test_quality_rules_flag_exactly_the_failing_checks(exported):
    """Each check's REDCap rule is TRUE exactly when the check fails with every compared field filled."""
    import itertools

    from regenheart.exchange.redcap_logic import discrepancy_logic
    from regenheart.protocol.rules import compile_rule

    rules = {r["rule_name"].split(" ")[0]: r["rule_logic"] for r in read_rows(exported / "data_quality_rules.csv")}
    assert rules["SIXMW01"] == "[performed] <> '' and ([performed] <> 'N' and [distance_m] = '')"
    assert rules["VS01"] == "[dbp_mmhg] <> '' and [sbp_mmhg] <> '' and [dbp_mmhg] >= [sbp_mmhg]"
    assert rules["AE01"] == "[ae_onset_date] <> '' and ([ae_stop_date] <> '' and [ae_stop_date] < [ae_onset_date])"
    protocol = load_protocol()
    grids = {
        "dbp_mmhg < sbp_mmhg": {"dbp_mmhg": [None, 70, 120], "sbp_mmhg": [None, 90, 120]},
        "performed == 'N' or distance_m is not None": {"performed": [None, "Y", "N"], "distance_m": [None, 0, 420]},
        "stop_date is None or stop_date >= onset_date": {"stop_date": [None, "2020-01-01", "2020-02-01"],
                                                         "onset_date": [None, "2020-01-15"]},
        protocol.adverse_events.checks[3].rule: {"category": [None, "FEVER", "OTHER"],
                                                 "max_temperature_c": [None, 37.5, 38.0, 39.1]},
        "ctcae_grade != 5 or outcome == 'FATAL'": {"ctcae_grade": [None, 3, 5], "outcome": [None, "FATAL", "RECOVERED"]},
        "nyha_class in (3, 4) and not lvef_pct > 35": {"nyha_class": [None, 2, 3], "lvef_pct": [None, 30, 40]},
        "abs(a - b) <= 10": {"a": [None, 5, 30], "b": [None, 10]},
        "'Y' in (default(x, 'N'), default(y, 'N')) or s == 'N'": {"x": [None, "Y", "N"], "y": [None, "Y"],
                                                                  "s": [None, "Y", "N"]},
    }
    checked = 0
    for rule, grid in grids.items():
        names = {n: n for n in grid}
        logic = discrepancy_logic(rule, names)
        guarded = set(re.findall(r"\[(\w+)\] <> '' and", logic))
        for combination in itertools.product(*grid.values()):
            values = dict(zip(grid, combination, strict=True))
            ours = compile_rule(rule).evaluate({k: v for k, v in values.items() if v is not None})
            flagged = _redcap_eval(logic, values)
            if flagged:
                assert ours is False, (rule, values, logic)
            elif ours is False:
                assert any(values[n] is None for n in guarded), (rule, values, logic)
            checked += 1
    assert checked == 78  # every combination of every grid


def test_the_api_metadata_export_is_read_like_the_dictionary_download(tmp_path):
    """API content=metadata names the same 18 columns in snake_case."""
    from regenheart.exchange.redcap_format import API_COLUMNS

    text = (EXAMPLES / "redcapr-simple" / "dictionary.csv").read_text(encoding="utf-8")
    _, _, rest = text.partition("\n")
    (tmp_path / "metadata.csv").write_text(",".join(API_COLUMNS) + "\n" + rest, encoding="utf-8")
    assert read_dictionary(tmp_path / "metadata.csv") == read_dictionary(EXAMPLES / "redcapr-simple" / "dictionary.csv")


def test_commands_without_protocol_use_the_one_stored_by_db_init(tmp_path):
    from regenheart.cli.web_commands import _load_protocol

    protocol_file = tmp_path / "p.yaml"
    assert runner.invoke(app, ["protocol", "from-redcap", str(EXAMPLES / "redcapr-checkboxes-1" / "dictionary.csv"),
                               "--out", str(protocol_file), "--title", "Checkboxes"]).exit_code == 0
    db = tmp_path / "s.db"
    assert runner.invoke(app, ["db", "init", "--db", str(db), "--protocol", str(protocol_file)]).exit_code == 0
    engine = open_study_database(db)
    stored = _load_protocol(None, engine)  # what 'serve --db' and 'users add --db' use
    assert stored.study.acronym == "Checkboxes" and list(stored.forms) == ["form_2"]
    from regenheart.store.db import read_meta

    meta = read_meta(engine)
    import hashlib

    assert meta["protocol_sha256"] == hashlib.sha256(protocol_file.read_bytes()).hexdigest()
    engine.dispose()
