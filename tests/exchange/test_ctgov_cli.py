"""``regenheart ctgov``: synthetic data only as a marked draft, the registration record, the preview page,
and clear one-line errors (exit 2) instead of tracebacks."""

from __future__ import annotations

import shutil

import pytest
from lxml import etree
from tests.exchange._ctgov_data import PRS_XSD, RRS_XSD, ctgov_study  # noqa: F401
from typer.testing import CliRunner

from regenheart.cli.main import app
from regenheart.exchange.ctgov.prs_xml import validate

runner = CliRunner()


@pytest.fixture
def db(ctgov_study, tmp_path):  # noqa: F811
    copy = tmp_path / "study.db"
    shutil.copy(ctgov_study.db_path, copy)
    return copy


def test_results_from_synthetic_data_are_refused_without_draft(db, tmp_path):
    out = tmp_path / "results.xml"
    result = runner.invoke(app, ["ctgov", "results", "--db", str(db), "--out", str(out)])
    assert result.exit_code == 2
    assert "SYNTHETIC" in result.output and "Nothing written" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_draft_results_from_synthetic_data_are_marked_and_valid(db, tmp_path):
    out, twin = tmp_path / "results.xml", tmp_path / "results.json"
    result = runner.invoke(app, ["ctgov", "results", "--db", str(db), "--out", str(out), "--draft",
                                 "--json", str(twin)])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC DRAFT" in result.output
    tree = etree.parse(str(out))
    assert validate(tree, RRS_XSD) == []
    text = out.read_text(encoding="utf-8")
    assert "SYNTHETIC DATA - DRAFT, NOT FOR POSTING" in text and "Do not upload" in text
    assert '"synthetic": true' in twin.read_text(encoding="utf-8")


def test_protocol_record_command(tmp_path):
    out = tmp_path / "protocol.xml"
    result = runner.invoke(app, ["ctgov", "protocol", "--out", str(out)])
    assert result.exit_code == 0, result.output
    schema = etree.XMLSchema(etree.parse(str(PRS_XSD)))
    assert schema.validate(etree.parse(str(out)))


def test_preview_page(db, tmp_path):
    out = tmp_path / "preview.html"
    result = runner.invoke(app, ["ctgov", "preview", "--db", str(db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert "SYNTHETIC DATA: NOT TRIAL RESULTS" in html
    for heading in ("Participant Flow", "Baseline Characteristics", "Outcome Measures", "Adverse Events",
                    "All-Cause Mortality", "Serious Adverse Events", "Other (Not Including Serious) Adverse Events",
                    "Statistical Analysis 1", "PRS checks"):
        assert heading in html, heading
    assert "<script" not in html and "http://" not in html and "https://" not in html  # self-contained
    assert "<style>" in html


def test_missing_database_is_one_clear_error(tmp_path):
    result = runner.invoke(app, ["ctgov", "results", "--db", str(tmp_path / "nope.db"), "--out",
                                 str(tmp_path / "r.xml")])
    assert result.exit_code == 2
    assert "error" in result.output and "Traceback" not in result.output


def test_broken_protocol_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nstudy: [not, a, mapping\n", encoding="utf-8")
    result = runner.invoke(app, ["ctgov", "protocol", "--out", str(tmp_path / "p.xml"), "--protocol", str(bad)])
    assert result.exit_code == 2
    assert "bad.yaml" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p.xml").exists()


def test_analysis_writes_the_ctgov_files_and_the_report_links_the_preview(db, protocol, tmp_path):
    from regenheart.cli.pipeline import analyze
    from regenheart.store.db import open_study_database

    engine = open_study_database(db)
    try:
        run = analyze(engine, protocol, tmp_path / "out")
    finally:
        engine.dispose()
    out = tmp_path / "out"
    assert run.ctgov_path == out / "ctgov_results.json"
    assert validate(etree.parse(str(out / "ctgov_results_draft.xml")), RRS_XSD) == []
    assert "SYNTHETIC DATA: NOT TRIAL RESULTS" in (out / "ctgov_preview.html").read_text(encoding="utf-8")
    assert '<a href="ctgov_preview.html">' in run.report_path.read_text(encoding="utf-8")


@pytest.fixture
def real_study_builder(protocol, ctgov_study, monkeypatch):  # noqa: F811
    """Stand in for the database pipeline with a real (non-synthetic) study whose contact lacks e-mail/phone."""
    from tests.exchange._ctgov_data import clean_results, complete_protocol, real_data

    from regenheart.cli import ctgov_commands
    from regenheart.exchange.ctgov.checks import check_results
    from regenheart.exchange.ctgov.results import build_results

    state = {"protocol": protocol}

    def fake(db, protocol_file, *, draft):
        record = build_results(state["protocol"], clean_results(ctgov_study.results), real_data(ctgov_study.data),
                               draft=draft)
        return state["protocol"], record, check_results(record)

    monkeypatch.setattr(ctgov_commands, "build_from_database", fake)
    state["complete"] = complete_protocol(protocol)
    return state


def test_real_record_with_prs_errors_is_written_only_as_draft(real_study_builder, tmp_path):
    out = tmp_path / "results.xml"
    refused = runner.invoke(app, ["ctgov", "results", "--db", "x.db", "--out", str(out)])
    assert refused.exit_code == 2 and not out.exists()
    assert "pointOfContact/email" in refused.output and "nothing written" in refused.output
    drafted = runner.invoke(app, ["ctgov", "results", "--db", "x.db", "--out", str(out), "--draft"])
    assert drafted.exit_code == 0, drafted.output
    text = out.read_text(encoding="utf-8")
    assert "[DRAFT]" in text and "SYNTHETIC" not in text
    assert validate(etree.parse(str(out)), RRS_XSD) == []


def test_clean_real_record_is_written_unmarked(real_study_builder, tmp_path):
    real_study_builder["protocol"] = real_study_builder["complete"]
    out = tmp_path / "results.xml"
    result = runner.invoke(app, ["ctgov", "results", "--db", "x.db", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert "[DRAFT]" not in text and "SYNTHETIC" not in text and "<!--" not in text
    assert validate(etree.parse(str(out)), RRS_XSD) == []
