"""The submission package: every file present and hashed in the manifest, formats valid against the official
schemas, nothing half-written on failure, a broken audit chain refused, and ``regenheart submission`` on a
small synthetic trial entered through the capture service."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil

import jsonschema
import pyreadstat
import pytest
from lxml import etree
from sqlalchemy import text
from tests.conftest import SHARED
from tests.exchange import _cdisc_data as data
from typer.testing import CliRunner

from regenheart.capture.service import CaptureService
from regenheart.cli.main import app
from regenheart.cli.pipeline import study_meta
from regenheart.exchange.cdisc.metadata import SubmissionError
from regenheart.exchange.cdisc.submission import build_submission, study_info, write_package
from regenheart.store.db import create_study_database, make_engine
from regenheart.synth import enter_cohort, generate_cohort

XSD = etree.XMLSchema(etree.parse(str(SHARED / "schemas" / "define-xml-2.1" / "cdisc-define-2.1" / "define2-1-0.xsd")))
JSON_SCHEMA = jsonschema.Draft201909Validator(json.loads(
    (SHARED / "schemas" / "dataset-json-1.1" / "dataset.schema.json").read_text(encoding="utf-8")))
runner = CliRunner()


def flat(output: str) -> str:
    return " ".join(output.split())


@pytest.fixture
def report_html(tmp_path):
    path = tmp_path / "report-in.html"
    path.write_text("<!DOCTYPE html><html><head><style>@page{size:A4}</style></head><body><h1>Study report</h1>"
                    "<p>SYNTHETIC DATA</p><svg width='80' height='40'><rect width='80' height='40'/></svg>"
                    "</body></html>", encoding="utf-8")
    return path


def _package(tmp_path, report_html, **kwargs):
    return write_package(data.sdtm(), data.adam(), tmp_path / "pkg", study=data.STUDY, report_html=report_html,
                         provenance={"database": {"audit_head_hash": "ab" * 32, "audit_records": 7}}, **kwargs)


def test_package_files_and_manifest(tmp_path, report_html):
    result = _package(tmp_path, report_html)
    out = tmp_path / "pkg"
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(listed) == on_disk
    for std, names in (("sdtm", ["dm", "cv", "ae"]), ("adam", ["adsl", "adeff"])):
        for name in names:
            assert f"{std}/{name}.xpt" in listed and f"{std}/{name}.json" in listed
        assert {f"{std}/define.xml", f"{std}/define.html", f"{std}/define.xsl"} <= set(listed)
    assert {"report.html", "report.pdf", "conformance.csv"} <= set(listed)
    for path, entry in listed.items():
        content = (out / path).read_bytes()
        assert entry["sha256"] == hashlib.sha256(content).hexdigest() and entry["bytes"] == len(content)
    assert manifest["controlled_terminology"]["SDTM"]["version"] == "2025-03-28"
    assert manifest["controlled_terminology"]["SDTM"]["sha256"] == \
        "61a71fa44d6c3513de8553694c306add303229be72e426b8245a58dc602d4529"
    assert manifest["database"]["audit_head_hash"] == "ab" * 32 and manifest["synthetic"] is True
    assert manifest["regenheart_version"] and manifest["created_utc"] == data.STUDY.created_utc
    assert manifest["conformance"] == {"errors": 0, "warnings": 3, "by_rule": result.manifest["conformance"]["by_rule"]}
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF-") and result.pdf_problem is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pkg.")]  # no staging folder left


def test_package_formats_valid_and_consistent(tmp_path, report_html):
    _package(tmp_path, report_html, pdf=False)
    out = tmp_path / "pkg"
    for std, sets in (("sdtm", data.sdtm()), ("adam", data.adam())):
        define = etree.parse(str(out / std / "define.xml"))
        assert XSD.validate(define), [e.message for e in XSD.error_log]
        hrefs = define.xpath("//def:leaf/@xlink:href", namespaces={"def": "http://www.cdisc.org/ns/def/v2.1",
                                                                     "xlink": "http://www.w3.org/1999/xlink"})
        for ds in sets.values():
            doc = json.loads((out / std / f"{ds.name.lower()}.json").read_text(encoding="utf-8"))
            assert not list(JSON_SCHEMA.iter_errors(doc))
            assert doc["metaDataRef"] == "define.xml" and f"{ds.name.lower()}.xpt" in hrefs
            frame, meta = pyreadstat.read_xport(str(out / std / f"{ds.name.lower()}.xpt"))
            assert list(frame.columns) == [c["name"] for c in doc["columns"]] and len(frame) == doc["records"]
            assert meta.column_labels == [c["label"] for c in doc["columns"]]
    rows = list(csv.DictReader((out / "conformance.csv").open(encoding="utf-8")))
    assert {r["rule"] for r in rows} == {"RH0002"}


def test_a_failure_leaves_nothing_half_written(tmp_path, report_html):
    adsl = data.adsl()
    adsl.records.loc[1, "TRT01P"] = "y" * 201
    with pytest.raises(SubmissionError, match=r"dataset ADSL, variable TRT01P, USUBJID TEST01-002"):
        write_package(data.sdtm(), {"ADSL": adsl}, tmp_path / "pkg", study=data.STUDY, report_html=report_html)
    assert list(tmp_path.iterdir()) == [report_html]


def test_an_earlier_package_is_replaced_anything_else_refused(tmp_path, report_html):
    _package(tmp_path, report_html, pdf=False)
    (tmp_path / "pkg" / "stale.txt").write_text("from an earlier run")
    _package(tmp_path, report_html, pdf=False)
    assert not (tmp_path / "pkg" / "stale.txt").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.docx").write_text("keep me")
    with pytest.raises(SubmissionError, match="is not an earlier submission package"):
        write_package(data.sdtm(), data.adam(), other, study=data.STUDY)
    assert (other / "thesis.docx").read_text() == "keep me"


@pytest.fixture(scope="module")
def small_study(tmp_path_factory, protocol):
    """A synthetic trial of 4 infused patients and 1 screen failure, entered through the capture service."""
    path = tmp_path_factory.mktemp("small") / "study.db"
    engine = create_study_database(path, study_meta(protocol, synthetic=True, seed=7), durable=False)
    enter_cohort(CaptureService(engine, protocol), generate_cohort(protocol, seed=7, n_enrolled=4,
                                                                   n_screen_failures=1))
    engine.dispose()
    return path


def test_a_database_whose_audit_chain_is_broken_is_refused(small_study, tmp_path, protocol):
    copy = tmp_path / "tampered.db"
    shutil.copy(small_study, copy)
    engine = make_engine(copy)
    with engine.begin() as conn:  # someone with file access drops the guard and rewrites history
        conn.execute(text("DROP TRIGGER audit_trail_no_update"))
        conn.execute(text("UPDATE audit_trail SET new_value = '\"99\"' WHERE seq = 40"))
    with pytest.raises(SubmissionError, match="does not verify at record 40"):
        build_submission(engine, protocol, tmp_path / "pkg", protocol_bytes=b"x")
    engine.dispose()
    result = runner.invoke(app, ["submission", "--db", str(copy), "--out", str(tmp_path / "pkg2")])
    assert result.exit_code == 2 and "does not verify at record 40" in flat(result.output)
    assert not (tmp_path / "pkg").exists() and not (tmp_path / "pkg2").exists()


def test_cli_errors_are_one_clear_line(tmp_path):
    missing = runner.invoke(app, ["submission", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "p")])
    assert missing.exit_code == 2 and "no database" in flat(missing.output) and "Traceback" not in missing.output
    bad_protocol = tmp_path / "bad.yaml"
    bad_protocol.write_text("study: [unclosed")
    refused = runner.invoke(app, ["submission", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "p"),
                                  "--protocol", str(bad_protocol)])
    assert refused.exit_code == 2 and "Traceback" not in refused.output


def test_cli_builds_a_valid_package_from_a_study_database(small_study, tmp_path):
    out = tmp_path / "pkg"
    result = runner.invoke(app, ["submission", "--db", str(small_study), "--out", str(out), "--no-pdf"])
    assert result.exit_code == 0, result.output
    text_out = flat(result.output)
    assert "Conformance:" in text_out and "SYNTHETIC" in text_out and "manifest.json" in text_out
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["database"]["audit_chain_verified"] is True and manifest["synthetic"] is True
    assert manifest["protocol"]["version"] == "2.0" and len(manifest["protocol"]["sha256"]) == 64
    assert manifest["report_pdf"]["problem"] == "PDF not requested (--no-pdf)"
    for std in ("sdtm", "adam"):
        define = etree.parse(str(out / std / "define.xml"))
        assert XSD.validate(define), [e.message for e in XSD.error_log][:5]
        item_oids = set(define.xpath("//odm:ItemDef/@OID", namespaces={"odm": "http://www.cdisc.org/ns/odm/v1.3"}))
        for path in sorted((out / std).glob("*.json")):
            doc = json.loads(path.read_text(encoding="utf-8"))
            assert not list(JSON_SCHEMA.iter_errors(doc)), path.name
            assert {c["itemOID"] for c in doc["columns"]} <= item_oids
            frame, meta = pyreadstat.read_xport(str(path.with_suffix(".xpt")))
            assert list(frame.columns) == [c["name"] for c in doc["columns"]] and len(frame) == doc["records"]
            assert meta.table_name == doc["name"] and meta.file_label == doc["label"]
    assert (out / "sdtm" / "dm.xpt").exists() and (out / "adam" / "adsl.xpt").exists()
    rows = list(csv.DictReader((out / "conformance.csv").open(encoding="utf-8")))
    errors = {(r["dataset"], r["variable"], r["rule"]) for r in rows if r["severity"] == "Error"}
    assert not errors, sorted(errors)[:10]  # zero conformance errors on a study entered through capture


def test_define_links_the_report_pdf_only_when_there_is_one(protocol):
    with_pdf = study_info(protocol, data.sdtm(), "2026-01-01T00:00:00Z", synthetic=False)
    assert with_pdf.documents == (("LF.REPORT", "../report.pdf", "Study report (PDF)"),)
    assert with_pdf.name == "TEST01" and with_pdf.note is None  # STUDYID from the data; not synthetic
    without = study_info(protocol, data.sdtm(), "2026-01-01T00:00:00Z", synthetic=True, report_pdf=False)
    assert without.documents == () and "SYNTHETIC" in without.note


def test_a_pdf_rendered_beside_other_work_is_moved_into_the_package(tmp_path, report_html):
    from regenheart.exchange.cdisc.pdf import PdfRender

    rendering = PdfRender.start()  # as the demo does: the engine loads while the report is being written
    early = tmp_path / ".report-early.pdf"
    rendering.render(report_html, early)
    result = _package(tmp_path, report_html, pdf_render=rendering)
    out = tmp_path / "pkg"
    assert result.pdf_problem is None and not early.exists()
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF-")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["report_pdf"]["engine"].startswith("WeasyPrint")
    assert "report.pdf" in {f["path"] for f in manifest["files"]}


def test_a_cancelled_render_leaves_no_file(tmp_path, report_html):
    from regenheart.exchange.cdisc.pdf import PdfRender

    rendering = PdfRender.start()
    target = tmp_path / ".report-x.pdf"
    target.write_bytes(b"")  # as mkstemp leaves it
    rendering.render(report_html, target)
    rendering.cancel()
    assert not target.exists()


def test_cli_package_with_pdf_reuses_the_analysis_of_the_same_snapshot(small_study, tmp_path):
    out = tmp_path / "pkg"
    result = runner.invoke(app, ["submission", "--db", str(small_study), "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["report_pdf"]["problem"] is None and (out / "report.pdf").read_bytes().startswith(b"%PDF-")
    assert manifest["database"]["audit_chain_verified"] is True
    define = (out / "sdtm" / "define.xml").read_text(encoding="utf-8")
    assert 'xlink:href="../report.pdf"' in define
    # The package's datasets are those of the analysed snapshot: its head is the one the report shows.
    report = (out / "report.html").read_text(encoding="utf-8")
    assert manifest["database"]["audit_head_hash"][:16] in report
