"""Data bound to its audit trail: a direct change of any kind of stored record is detected and named."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from sqlalchemy import text

from regenheart.capture.service import CaptureService
from regenheart.store.audit import verify_chain
from regenheart.store.db import create_study_database, open_study_database
from regenheart.store.reconcile import IntegrityError, check_integrity, reconcile, require_integrity
from regenheart.synth import enter_cohort, generate_cohort


@pytest.fixture(scope="module")
def study_file(protocol, tmp_path_factory):
    path = tmp_path_factory.mktemp("reconcile") / "study.db"
    engine = create_study_database(path, {"study": "TEST", "synthetic": "true"}, durable=False)
    cohort = generate_cohort(protocol, n_enrolled=4, n_screen_failures=1)
    enter_cohort(CaptureService(engine, protocol, today=lambda: dt.date(2026, 1, 1)), cohort)
    engine.dispose()
    return path


@pytest.fixture
def copy(study_file, tmp_path):
    target = tmp_path / "copy.db"
    shutil.copy(study_file, target)
    engine = open_study_database(target)
    yield engine
    engine.dispose()


def tamper(engine, sql: str, **params) -> None:
    with engine.begin() as conn:
        result = conn.execute(text(sql), params)
        assert result.rowcount >= 1, f"the tampering statement changed nothing: {sql}"


def test_untouched_database_reconciles(copy, protocol):
    report = reconcile(copy, protocol)
    assert report.ok, [str(m) for m in report.mismatches[:5]]
    assert report.values_checked > 1000
    assert check_integrity(copy, protocol).ok


ITEM = ("SELECT iv.id FROM item_values iv JOIN form_records fr ON fr.id = iv.record_id "
        "WHERE fr.visit_code = 'SCR' AND fr.form_code = 'echo' AND iv.field = 'lvef_pct' LIMIT 1")


@pytest.mark.parametrize("label,sql,table,field", [
    ("item value", f"UPDATE item_values SET value = '55.0' WHERE id = ({ITEM})", "item_values", "lvef_pct"),
    ("derived score", "UPDATE derived_values SET value = value + 1 WHERE id = (SELECT MIN(id) FROM derived_values)",
     "derived_values", None),
    ("visit date", "UPDATE visits SET visit_date = '2021-01-01' WHERE id = (SELECT MAX(id) FROM visits)",
     "visits", "visit_date"),
    ("subject status", "UPDATE subjects SET status = 'completed' WHERE status = 'screen_failed'",
     "subjects", "status"),
    ("subject date", "UPDATE subjects SET consent_date = '2019-01-01' WHERE id = 1", "subjects", "consent_date"),
    ("adverse event data", ("UPDATE adverse_events SET data = replace(data, '\"ctcae_grade\": ', "
                            "'\"ctcae_grade\": 4') WHERE id = (SELECT MIN(id) FROM adverse_events)"),
     "adverse_events", "ctcae_grade"),
    ("adverse event column", ("UPDATE adverse_events SET term = 'something else' "
                              "WHERE id = (SELECT MIN(id) FROM adverse_events)"), "adverse_events", "term"),
    ("form state", "UPDATE form_records SET locked = 1 WHERE id = (SELECT MIN(id) FROM form_records)",
     "form_records", "locked"),
    ("adverse event flag", "UPDATE adverse_events SET locked = 1 WHERE id = (SELECT MIN(id) FROM adverse_events)",
     "adverse_events", "locked"),
    ("adverse event signed flag",
     "UPDATE adverse_events SET signed = 1 WHERE id = (SELECT MIN(id) FROM adverse_events)", "adverse_events",
     "signed"),
    ("form status", "UPDATE form_records SET status = 'incomplete' WHERE id = (SELECT MIN(id) FROM form_records)",
     "form_records", "status"),
    ("adverse event unreadable",
     "UPDATE adverse_events SET data = '{broken' WHERE id = (SELECT MIN(id) FROM adverse_events)",
     "adverse_events", "data"),
    ("deleted value", f"DELETE FROM item_values WHERE id = ({ITEM})", "item_values", "lvef_pct"),
    ("value without audit", ("INSERT INTO item_values (record_id, field, value) "
                             "SELECT MIN(id), 'spo2_extra', '1' FROM form_records"), "item_values", "spo2_extra"),
])
def test_direct_change_is_detected(copy, protocol, label, sql, table, field):
    tamper(copy, sql)
    assert verify_chain(copy).ok  # the hash chain alone cannot see it
    report = reconcile(copy, protocol)
    assert not report.ok, label
    hit = [m for m in report.mismatches if m.table == table and (field is None or m.field == field)]
    assert hit, f"{label}: {[str(m) for m in report.mismatches]}"
    with pytest.raises(IntegrityError, match="differ from the audit trail"):
        require_integrity(copy, protocol)


def test_mismatch_names_table_record_field_and_both_values(copy, protocol):
    tamper(copy, f"UPDATE item_values SET value = '55.0' WHERE id = ({ITEM})")
    (mismatch,) = reconcile(copy, protocol).mismatches
    assert mismatch.table == "item_values" and mismatch.record.endswith("/SCR/echo")
    assert mismatch.field == "lvef_pct" and mismatch.stored == "55.0" and mismatch.audited not in (None, "55.0")
    assert "stored 55.0" in str(mismatch) and f"audited {mismatch.audited}" in str(mismatch)


def test_cli_audit_verify_and_analyze_refuse_a_tampered_database(study_file, tmp_path):
    from typer.testing import CliRunner

    from regenheart.cli.main import app

    target = tmp_path / "tampered.db"
    shutil.copy(study_file, target)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--db", str(target)])
    assert ok.exit_code == 0 and "stored values match their audit trail" in ok.output
    engine = open_study_database(target)
    tamper(engine, f"UPDATE item_values SET value = '55.0' WHERE id = ({ITEM})")
    engine.dispose()
    bad = runner.invoke(app, ["audit", "verify", "--db", str(target)])
    assert bad.exit_code == 1 and "lvef_pct" in bad.output and "55.0" in bad.output
    refused = runner.invoke(app, ["analyze", "--db", str(target), "--out", str(tmp_path / "out")])
    assert refused.exit_code == 2 and "cannot be analysed" in refused.output
    assert not (tmp_path / "out" / "results.json").exists()
    assert "Traceback" not in refused.output


@pytest.mark.parametrize("command", [
    ["export", "redcap", "--out", "{out}"],
    ["export", "odm", "--out", "{out}/study.xml"],
    ["ctgov", "results", "--draft", "--out", "{out}/results.xml"],
    ["submission", "--out", "{out}", "--no-pdf"],
])
def test_exports_refuse_a_database_that_does_not_reconcile(study_file, tmp_path, command):
    from typer.testing import CliRunner

    from regenheart.cli.main import app

    target = tmp_path / "tampered.db"
    shutil.copy(study_file, target)
    engine = open_study_database(target)
    tamper(engine, f"UPDATE item_values SET value = '55.0' WHERE id = ({ITEM})")
    engine.dispose()
    out = tmp_path / "out"
    out.mkdir()
    args = [part.format(out=out) for part in command] + ["--db", str(target)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0, result.output
    assert "differ from the audit trail" in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not [p for p in out.rglob("*") if p.is_file()], "nothing may be written"


@pytest.mark.parametrize("sql,field", [
    ("UPDATE sites SET name = 'Somewhere else' WHERE code = '01'", "name"),
    ("UPDATE sites SET active = 0 WHERE code = '01'", "active"),
    ("INSERT INTO sites (code, name, active, created_utc, version) VALUES ('09', 'Unaudited', 1, 'x', 1)", "name"),
])
def test_direct_change_of_a_site_is_detected(copy, protocol, sql, field):
    from regenheart.capture.sites import SiteService

    SiteService(copy, protocol).seed_from_protocol()  # the sites table as 'db init' fills it, audited
    assert reconcile(copy, protocol).ok
    tamper(copy, sql)
    hit = [m for m in reconcile(copy, protocol).mismatches if m.table == "sites" and m.field == field]
    assert hit and hit[0].record in ("01", "09")
