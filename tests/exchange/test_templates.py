"""Form templates: layout (sheets, columns, drop-downs, dictionary), the round trip database ->
filled templates -> import -> same study, bad input as listed refusals, and the CLI commands."""

from __future__ import annotations

import csv
import datetime as dt
import shutil

import pandas as pd
import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.cli.main import app
from regenheart.exchange.importer import import_source
from regenheart.exchange.mapping import Mapping, SourceName, draft_mapping
from regenheart.exchange.records import Refusal
from regenheart.exchange.templates import read_templates, write_filled_templates, write_templates
from regenheart.store.audit import verify_chain
from regenheart.store.db import create_study_database
from regenheart.store.models import AuditRecord, Subject
from regenheart.store.snapshot import take_snapshot
from regenheart.synth import enter_cohort, generate_cohort

IMPORTER = Actor("cli:tester", "data_manager")
TODAY = dt.date(2026, 1, 1)
runner = CliRunner()


def flat(text: str) -> str:
    """Console output with rich's line wrapping undone."""
    return " ".join(text.split())


def today() -> dt.date:
    return TODAY


@pytest.fixture(scope="module")
def study(tmp_path_factory, protocol):
    """A small SYNTHETIC study typed in through capture: 4 infused patients (corrections, AEs, a death,
    a loss to follow-up) and 2 screen failures; plus its filled templates in both formats."""
    folder = tmp_path_factory.mktemp("study")
    engine = create_study_database(folder / "source.db", {"synthetic": "true"})
    cohort = generate_cohort(protocol, seed=3, n_enrolled=4, n_screen_failures=2)
    assert sum(len(s.corrections) for s in cohort.subjects) >= 1
    enter_cohort(CaptureService(engine, protocol, today=today), cohort)
    snapshot = take_snapshot(engine)
    xlsx = write_filled_templates(snapshot, protocol, folder / "xlsx", "xlsx")[0]
    write_filled_templates(snapshot, protocol, folder / "csv", "csv")
    return {"engine": engine, "snapshot": snapshot, "cohort": cohort, "xlsx": xlsx, "csv": folder / "csv"}


def fresh(tmp_path, protocol, name="copy.db"):
    engine = create_study_database(tmp_path / name, {})
    return engine, CaptureService(engine, protocol, today=today)


def audit_count(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(AuditRecord))


def subject_count(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Subject))


# ------------------------------------------------------------------------------- layout


def test_empty_workbook_has_a_sheet_per_form_with_drop_downs_and_a_dictionary(tmp_path, protocol):
    path = write_templates(protocol, tmp_path)[0]
    assert path.name == "regenheart-data.xlsx"
    book = load_workbook(path)
    assert book.sheetnames == ["README", "subjects", *protocol.forms, "adverse_events", "disposition", "dictionary",
                               "_lists"]
    assert book["_lists"].sheet_state == "hidden"
    echo = book["echo"]
    assert [c.value for c in echo[1]] == ["subject", "visit", "visit_date", *protocol.forms["echo"].field_names]
    assert "LV ejection fraction" in echo["E1"].comment.text and "unit: %" in echo["E1"].comment.text
    validations = {str(v.sqref): v for v in echo.data_validations.dataValidation}
    modality = validations["D2:D5000"]
    assert modality.type == "list"
    lists = book["_lists"]
    column = next(c for c in lists[1] if c.value == "imaging_modality").column_letter
    assert modality.formula1 == f"'_lists'!${column}$2:${column}$3"
    assert [lists[f"{column}2"].value, lists[f"{column}3"].value] == ["TTE", "CT"]
    lvef = validations["E2:E5000"]
    assert (lvef.type, lvef.operator, lvef.formula1, lvef.formula2) == ("decimal", "between", "5.0", "80.0")
    visit_list = validations["B2:B5000"].formula1
    visit_column = visit_list.split("$")[1]
    assert [c.value for c in lists[visit_column][1:] if c.value] == ["SCR", "M1", "M3", "M6"]
    header, *body = list(book["dictionary"].values)
    dictionary = pd.DataFrame(body, columns=header)
    row = dictionary[(dictionary.table == "echo") & (dictionary.column == "lvef_pct")].iloc[0]
    assert (row.label, row.type, row.unit, row.range_min, row.range_max, row.decimals, row.required) == (
        "LV ejection fraction (biplane Simpson)", "float", "%", 5, 80, 1, "Y")
    assert dictionary[(dictionary.table == "nyha")].iloc[-1].codes == "1=I; 2=II; 3=III; 4=IV"
    assert [c.value for c in book["subjects"][1]] == ["subject", "site", "screening_date", "consent_date", "eligible",
                                                     "enrolled_date", "arm", "synthetic"]
    readme = " ".join(str(c.value) for c in book["README"]["A"] if c.value)
    assert "regenheart import" in readme and "day-0" in readme and "SYNTHETIC" not in readme


def test_csv_template_is_one_file_per_table_with_dictionary_and_readme(tmp_path, protocol):
    files = write_templates(protocol, tmp_path, "csv")
    names = sorted(f.name for f in files)
    assert names == sorted([*(f"{form}.csv" for form in protocol.forms), "subjects.csv", "adverse_events.csv",
                            "disposition.csv", "dictionary.csv", "README.txt"])
    with (tmp_path / "adverse_events.csv").open(encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == ["subject", "ae_seq", *protocol.adverse_events.field_names]
    empty = read_templates(tmp_path, protocol)
    assert empty.subjects == [] and empty.problems == [] and empty.unmapped == []


# ------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_round_trip_through_filled_templates(study, protocol, tmp_path, fmt):
    source = read_templates(study[fmt], protocol)
    assert source.problems == [] and source.unmapped == []
    engine, service = fresh(tmp_path, protocol)
    report = import_source(service, IMPORTER, source)
    assert report.ok and report.subjects.written == 6
    original, copy = study["snapshot"], take_snapshot(engine)
    subject_columns = ["subject_code", "site_code", "status", "screening_date", "consent_date", "eligible",
                       "eligibility_failed", "enrolled_date", "arm_code", "infusion_date", "disposition",
                       "disposition_date", "disposition_reason", "synthetic"]
    pd.testing.assert_frame_equal(original.subjects[subject_columns], copy.subjects[subject_columns])
    assert (original.subjects.status == "screen_failed").sum() == 2
    assert all(original.subjects[original.subjects.status == "screen_failed"].eligibility_failed.map(len))

    def ordered(frame, keys):
        return frame.sort_values(keys).reset_index(drop=True)

    visit_keys = ["subject_code", "visit_code"]
    pd.testing.assert_frame_equal(ordered(original.visits, visit_keys), ordered(copy.visits, visit_keys))
    item_keys = ["subject_code", "visit_code", "form_code", "field"]
    pd.testing.assert_frame_equal(ordered(original.items, item_keys), ordered(copy.items, item_keys))
    derived_keys = ["subject_code", "visit_code", "form_code", "name"]
    pd.testing.assert_frame_equal(ordered(original.derived, derived_keys), ordered(copy.derived, derived_keys))
    ae_columns = sorted(original.adverse_events.columns)
    pd.testing.assert_frame_equal(ordered(original.adverse_events[ae_columns], ["subject_code", "ae_seq"]),
                                  ordered(copy.adverse_events[ae_columns], ["subject_code", "ae_seq"]))
    # corrections: the copy holds the final (corrected) value, entered once
    for subject in study["cohort"].subjects:
        for correction in subject.corrections:
            for name, value in correction.data.items():
                rows = copy.items[(copy.items.subject_code == subject.code) & (copy.items.visit_code == correction.visit)
                                  & (copy.items.form_code == correction.form) & (copy.items.field == name)]
                assert rows["value"].iloc[0] == value
    assert verify_chain(engine).ok
    before = audit_count(engine)
    again = import_source(service, IMPORTER, read_templates(study[fmt], protocol))
    assert again.ok and again.audit_records == 0 and audit_count(engine) == before
    assert again.subjects.unchanged == 6 and again.values.written == 0


# ------------------------------------------------------------------------------- bad input


@pytest.fixture
def folder(study, tmp_path):
    """A writable copy of the filled CSV templates."""
    return shutil.copytree(study["csv"], tmp_path / "templates")


def edit_csv(path, row_index: int, column: str, value: str) -> None:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    rows[row_index][rows[0].index(column)] = value
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)


def refusals_of(folder, protocol, tmp_path, mapping=None):
    engine, service = fresh(tmp_path, protocol, "bad.db")
    report = import_source(service, IMPORTER, read_templates(folder, protocol, mapping))
    return report, engine


def test_non_utf8_file_is_refused_and_nothing_is_written(folder, protocol, tmp_path):
    (folder / "labs.csv").write_bytes("subject,visit,visit_date,ntprobnp_pg_ml\n01-001,SCR,2020-01-01,caf\xe9\n"
                                      .encode("latin-1"))
    report, engine = refusals_of(folder, protocol, tmp_path)
    assert [(r.origin.file, r.origin.location, r.rule) for r in report.refusals] == [("labs.csv", "row 2", "encoding")]
    assert "not UTF-8" in report.refusals[0].message
    assert not report.committed and subject_count(engine) == 0 and audit_count(engine) == 0


def test_malformed_workbook_is_refused(tmp_path, protocol):
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04 this is not a workbook")
    source = read_templates(broken, protocol)
    assert [(p.origin.file, p.rule) for p in source.problems] == [("broken.xlsx", "unreadable")]
    report = import_source(fresh(tmp_path, protocol)[1], IMPORTER, source)
    assert not report.committed and not report.ok


def test_duplicate_rows_refuse_that_subject_only(folder, protocol, tmp_path):
    with (folder / "nyha.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    rows.append(rows[1])  # the first subject's SCR NYHA row again
    with (folder / "nyha.csv").open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    report, engine = refusals_of(folder, protocol, tmp_path)
    duplicate = [r for r in report.refusals if r.rule == "duplicate"]
    assert len(duplicate) == 1 and duplicate[0].origin.file == "nyha.csv"
    assert duplicate[0].origin.location == f"row {len(rows)}" and "(first: row 2)" in duplicate[0].message
    assert report.subjects.refused == 1 and report.subjects.written == 5 and subject_count(engine) == 5


def test_unknown_visit_column_and_file(folder, protocol, tmp_path):
    edit_csv(folder / "vital_signs.csv", 1, "visit", "M12")
    with (folder / "echo.csv").open(encoding="utf-8") as handle:
        text = handle.read().splitlines()
    (folder / "echo.csv").write_text("\n".join([text[0] + ",bmi"] + [line + ",27" for line in text[1:]]) + "\n",
                                     encoding="utf-8")
    (folder / "notes.csv").write_text("subject,note\n01-001,hello\n", encoding="utf-8")
    report, _ = refusals_of(folder, protocol, tmp_path)
    assert [(r.field, r.value, r.rule) for r in report.refusals if r.rule != "not_checked"] == [
        ("visit", "M12", "unknown_visit")]
    rows = report.rows()
    unmapped = [(r["file"], r["column"], r["rule"]) for r in rows if r["rule"] == "unmapped"]
    assert unmapped == [("echo.csv", "bmi", "unmapped"), ("notes.csv", "", "unmapped")]
    assert not report.ok  # listed, never silently dropped
    # listed under 'ignore' in a mapping file, the column is deliberately left out and no longer reported
    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text("ignore: [bmi]\n", encoding="utf-8")
    (tmp_path / "second").mkdir()
    report, _ = refusals_of(folder, protocol, tmp_path / "second", Mapping.load(mapping_file, protocol))
    assert [u.what for u in report.unmapped] == ["file 'notes.csv'"]


@pytest.mark.parametrize(("form", "column", "value", "rule", "message"), [
    ("echo", "lvedd_mm", "sixty", "type", "must be a number"),
    ("vital_signs", "visit_date", "10/01/2020", "type", "must be a date in the form YYYY-MM-DD"),
    ("echo", "modality", "MRI", "codelist", "must be one of: TTE, CT"),
    ("labs", "creatinine_mg_dl", "1.234", "decimals", "must have at most 2 decimal(s)"),
])
def test_bad_values_are_refused_with_file_row_column_and_rule(folder, protocol, tmp_path, form, column, value, rule,
                                                              message):
    edit_csv(folder / f"{form}.csv", 1, column, value)
    report, engine = refusals_of(folder, protocol, tmp_path)
    first = report.refusals[0]
    assert (first.origin.file, first.origin.location, first.origin.column) == (f"{form}.csv", "row 2", column)
    assert (first.form, first.field, first.value, first.rule, first.message) == (form, column, value, rule, message)
    assert report.subjects.refused == 1 and subject_count(engine) == 5


def test_dates_in_another_format_need_the_mapping_date_format(folder, protocol, tmp_path):
    with (folder / "subjects.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    for row in rows[1:]:
        for index in (2, 3, 5):
            if row[index]:
                row[index] = dt.date.fromisoformat(row[index]).strftime("%d/%m/%Y")
    with (folder / "subjects.csv").open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    report, _ = refusals_of(folder, protocol, tmp_path)
    assert {r.rule for r in report.refusals if r.rule != "not_checked"} == {"type"} and report.subjects.written == 0
    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text('date_format: "%d/%m/%Y"\n', encoding="utf-8")
    (tmp_path / "ok").mkdir()
    report, engine = refusals_of(folder, protocol, tmp_path / "ok", Mapping.load(mapping_file, protocol))
    assert report.ok and subject_count(engine) == 6


def test_draft_mapping_matches_by_name_and_label(protocol, tmp_path):
    text = draft_mapping(protocol, [SourceName("LVEF", "LV ejection fraction (biplane)", "echocardiography"),
                                    SourceName("sex", "Sex", "demog"), SourceName("shoe_size", "Shoe size", None)],
                         events=[SourceName("month_1_arm_1", "Month 1")],
                         forms=[SourceName("echocardiography", "Echocardiography"), SourceName("demog", "Demographics")])
    path = tmp_path / "draft.yaml"
    path.write_text(text, encoding="utf-8")
    mapping = Mapping.load(path, protocol)  # loads as it is
    assert mapping.visit("month_1_arm_1") == "M1"
    assert mapping.form("echocardiography") == "echo" and mapping.form("demog") == "demographics"
    assert mapping.field("LVEF", "echocardiography") == ("echo", "lvef_pct")
    assert "# sex: same name as in the protocol" in text and "shoe_size: NO MATCH" in text


# ------------------------------------------------------------------------------- CLI


def test_cli_template_and_import(study, protocol, tmp_path):
    result = runner.invoke(app, ["template", "--out", str(tmp_path / "t"), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t" / "echo.csv").exists()
    db = tmp_path / "cli.db"
    assert runner.invoke(app, ["db", "init", "--db", str(db)]).exit_code == 0
    dry = runner.invoke(app, ["import", "--db", str(db), str(study["xlsx"]), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "nothing was written" in flat(dry.output)
    report_path = tmp_path / "report.csv"
    done = runner.invoke(app, ["import", "--db", str(db), str(study["xlsx"]), "--report", str(report_path)])
    assert done.exit_code == 0, done.output
    with report_path.open(encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == list(Refusal.REPORT_COLUMNS)
    assert runner.invoke(app, ["audit", "verify", "--db", str(db)]).exit_code == 0


def test_cli_import_refusals_exit_1_with_the_report(folder, tmp_path):
    edit_csv(folder / "echo.csv", 1, "modality", "MRI")
    db = tmp_path / "cli.db"
    runner.invoke(app, ["db", "init", "--db", str(db)])
    report_path = tmp_path / "report.csv"
    result = runner.invoke(app, ["import", "--db", str(db), str(folder), "--report", str(report_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    rows = list(csv.DictReader(report_path.open(encoding="utf-8")))
    assert rows[0]["file"] == "echo.csv" and rows[0]["rule"] == "codelist" and rows[0]["value"] == "MRI"


@pytest.mark.parametrize(("args", "message"), [
    (["--user", "nobody"], "no user account 'nobody'"),
    (["--format", "sas"], "--format must be one of"),
    (["--mapping", "MISSING.yaml"], "cannot read the mapping file"),
])
def test_cli_import_user_errors_are_one_line_exit_2(study, tmp_path, args, message):
    db = tmp_path / "cli.db"
    runner.invoke(app, ["db", "init", "--db", str(db)])
    result = runner.invoke(app, ["import", "--db", str(db), str(study["xlsx"]), *args])
    assert result.exit_code == 2 and message in flat(result.output) and "Traceback" not in result.output


def test_cli_import_without_a_database(study, tmp_path):
    result = runner.invoke(app, ["import", "--db", str(tmp_path / "none.db"), str(study["xlsx"])])
    assert result.exit_code == 2 and "no database at" in flat(result.output)
