"""`regenheart demo` end to end: database, cohort through capture, analysis, report, results.json;
then the audit verification and analysis commands on the database it made."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from regenheart.cli.main import app

runner = CliRunner()


def flat(output: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(output.split())


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = runner.invoke(app, ["demo", "--out", str(out), "--seed", "20200301"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_demo_writes_report_results_and_database(demo_dir):
    out, output = demo_dir
    assert (out / "study.db").exists() and (out / "report.html").exists()
    results = json.loads((out / "results.json").read_text())
    assert results["synthetic"] is True and "SYNTHETIC" in results["label"]
    flow = results["flow"]
    assert flow["infused"] == 30 and flow["screened"] == flow["infused"] + flow["screen_failed"]
    assert flow["screen_failed"] == 5 and sum(flow["excluded_reasons"].values()) >= 5
    primary = results["primary"]
    assert primary["n_total"] == 30 and 0 <= primary["lower"] <= primary["proportion"] <= primary["upper"]
    assert results["snapshot"]["audit_records"] > 10000
    assert re.fullmatch(r"[0-9a-f]{64}", results["snapshot"]["audit_head_hash"])
    lvef = next(b for b in results["efficacy"] if b["paramcd"] == "LVEF")
    assert [v["visit"] for v in lvef["visits"]] == ["M1", "M3", "M6"]
    assert "error" not in results["mmrm"]["results"]["LVEF"]
    # The printed summary names the primary endpoint with its CI and the month-6 LVEF change.
    assert "Primary endpoint" in output and "exact 95% CI" in output and "LVEF change at Month 6" in output
    assert "SYNTHETIC" in output


def test_demo_writes_the_submission_package_of_the_analysed_snapshot(demo_dir):
    out, output = demo_dir
    package = out / "submission"
    manifest = json.loads((package / "manifest.json").read_text())
    results = json.loads((out / "results.json").read_text())
    # One snapshot, verified once, for the report and the package.
    assert manifest["database"]["audit_head_hash"] == results["snapshot"]["audit_head_hash"]
    assert manifest["database"]["snapshot_utc"] == results["snapshot"]["taken_utc"]
    assert manifest["conformance"]["errors"] == 0 and manifest["report_pdf"]["problem"] is None
    assert (package / "report.pdf").read_bytes().startswith(b"%PDF-")
    assert (package / "report.html").read_bytes() == (out / "report.html").read_bytes()
    assert not list(out.glob(".report-*.pdf")) and not list(out.glob(".submission.*"))  # nothing left behind
    assert "Submission package" in output


def test_report_is_self_contained_and_labelled_synthetic(demo_dir):
    out, _ = demo_dir
    html = (out / "report.html").read_text()
    assert "SYNTHETIC" in html
    assert not re.search(r"""<(script|img|link)[^>]+(src|href)=["']https?://""", html)


def test_audit_verify_and_analyze_commands(demo_dir, tmp_path):
    out, _ = demo_dir
    verified = runner.invoke(app, ["audit", "verify", "--db", str(out / "study.db")])
    assert verified.exit_code == 0 and "OK" in verified.output
    analysed = runner.invoke(app, ["analyze", "--db", str(out / "study.db"), "--out", str(tmp_path / "again")])
    assert analysed.exit_code == 0, analysed.output
    first = json.loads((out / "results.json").read_text())
    second = json.loads((tmp_path / "again" / "results.json").read_text())
    # Same data, same numbers (only the snapshot time differs).
    for key in ("flow", "primary", "efficacy", "shift_tables", "mmrm", "sensitivity"):
        assert first[key] == second[key], key


def test_demo_is_deterministic_from_its_seed():
    from regenheart.protocol import load_protocol
    from regenheart.synth import generate_cohort

    a = generate_cohort(load_protocol(), seed=20200301)
    b = generate_cohort(load_protocol(), seed=20200301)
    assert [s.forms for s in a.subjects] == [s.forms for s in b.subjects]
    assert [s.forms for s in generate_cohort(load_protocol(), seed=1).subjects] != [s.forms for s in a.subjects]


def test_demo_refuses_to_overwrite_a_real_database(tmp_path):
    (tmp_path / "study.db").write_bytes(b"not a demo")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a synthetic demo database" in flat(result.output)
    assert (tmp_path / "study.db").read_bytes() == b"not a demo"
    # the PDF renderer started with the demo is stopped with it
    import multiprocessing

    assert not [p.name for p in multiprocessing.active_children() if p.name.startswith("regenheart-")]


def test_user_errors_are_messages_not_tracebacks(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nstudy: {}\n")
    result = runner.invoke(app, ["protocol", str(bad)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "study.nct_id" in flat(result.output)
    missing = runner.invoke(app, ["audit", "verify", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code == 2 and "no database" in flat(missing.output)


def test_analyze_refuses_a_database_whose_audit_chain_is_broken(demo_dir, tmp_path):
    import shutil

    from sqlalchemy import text

    from regenheart.store.db import make_engine

    out, _ = demo_dir
    copy = tmp_path / "tampered.db"
    shutil.copy(out / "study.db", copy)
    engine = make_engine(copy)
    with engine.begin() as conn:  # an attacker with file access drops the guard and edits history
        conn.execute(text("DROP TRIGGER audit_trail_no_update"))
        conn.execute(text("UPDATE audit_trail SET new_value = '\"99\"' WHERE seq = 100"))
    engine.dispose()
    verified = runner.invoke(app, ["audit", "verify", "--db", str(copy)])
    assert verified.exit_code == 1 and "record 100" in flat(verified.output)
    analysed = runner.invoke(app, ["analyze", "--db", str(copy), "--out", str(tmp_path / "rep")])
    assert analysed.exit_code == 2 and "does not verify at record 100" in flat(analysed.output)
    assert not (tmp_path / "rep" / "report.html").exists()


def test_db_init_and_upgrade_commands(tmp_path):
    db = tmp_path / "new.db"
    created = runner.invoke(app, ["db", "init", "--db", str(db)])
    assert created.exit_code == 0 and db.exists()
    again = runner.invoke(app, ["db", "init", "--db", str(db)])
    assert again.exit_code == 2 and "already exists" in flat(again.output)
    upgraded = runner.invoke(app, ["db", "upgrade", "--db", str(db)])
    assert upgraded.exit_code == 0 and "schema revision" in flat(upgraded.output)


def test_analysis_failing_on_tampered_data_reports_the_integrity_failure(demo_dir, tmp_path, monkeypatch):
    """The integrity check runs beside the analysis: when the analysis fails on data that do not match
    their audit trail, the integrity failure is what the user is told."""
    import shutil

    from sqlalchemy import text

    from regenheart.cli import pipeline
    from regenheart.protocol import load_protocol
    from regenheart.store.db import make_engine
    from regenheart.store.reconcile import IntegrityError

    out, _ = demo_dir
    copy = tmp_path / "tampered.db"
    shutil.copy(out / "study.db", copy)
    engine = make_engine(copy)
    with engine.begin() as conn:  # a direct change of one stored value, past the capture service
        conn.execute(text("UPDATE item_values SET value = '55.0' WHERE id = (SELECT min(id) FROM item_values "
                          "WHERE field = 'lvef_pct')"))

    def derive_fails(*_args, **_kwargs):
        raise ValueError("derivation failed on the changed value")

    monkeypatch.setattr("regenheart.derive.adam.derive_untraced", derive_fails)  # analyze imports it when run
    with pytest.raises(IntegrityError, match="cannot be analysed"):
        pipeline.analyze(engine, load_protocol(), tmp_path / "rep")
    engine.dispose()
    assert not (tmp_path / "rep" / "report.html").exists()


def test_results_count_the_missing_data_codes_as_stored(demo_dir):
    """results.json's missing-code counts equal a direct count of the coded values in the database."""
    import sqlite3
    from collections import Counter

    out, _ = demo_dir
    results = json.loads((out / "results.json").read_text())["missing_codes"]
    with sqlite3.connect(out / "study.db") as db:
        stored = [(json.loads(v)["missing"], s) for v, s in db.execute(
            "SELECT iv.value, fr.subject_id FROM item_values iv JOIN form_records fr ON fr.id = iv.record_id "
            "WHERE iv.value LIKE '{%'")]
    per_code = Counter(code for code, _ in stored)
    assert results["total"] == len(stored) > 0
    assert {c["code"]: c["values"] for c in results["by_code"]} == {c: per_code.get(c, 0)
                                                                     for c in ("ND", "UNK", "NA", "NASK")}
    assert {c["code"]: c["subjects"] for c in results["by_code"] if c["values"]} == {
        code: len({s for c, s in stored if c == code}) for code in per_code}
    assert sum(row["total"] for row in results["by_form_visit"]) == len(stored)


def test_the_cohort_entered_beside_the_imports_relays_its_progress_and_its_refusal(tmp_path):
    """run_demo enters the cohort in a child process: every subject's progress reaches the caller, the
    entry's counts come back, and a refused entry raises its error here (nothing half-entered)."""
    from regenheart.capture.errors import CaptureError
    from regenheart.cli import pipeline
    from regenheart.protocol import load_protocol
    from regenheart.store.db import create_study_database
    from regenheart.synth import generate_cohort
    from regenheart.synth.cohort import cohort_sizes

    protocol = load_protocol()
    engine = create_study_database(tmp_path / "study.db", pipeline.study_meta(protocol, synthetic=True, seed=5))
    cohort = generate_cohort(protocol, seed=5, **cohort_sizes(4))
    seen: list[str] = []
    stats = pipeline._enter_beside(engine, protocol, cohort, seen.append)()
    assert seen == [plan.code for plan in cohort.subjects] and stats.subjects == len(cohort.subjects) == 4
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM subjects").scalar() == 4
        audit_before = conn.exec_driver_sql("SELECT count(*) FROM audit_trail").scalar()
    with pytest.raises(CaptureError, match="subject_code='01-001': is already registered") as refused:
        pipeline._enter_beside(engine, protocol, cohort, seen.append)()  # the same subjects again
    assert [(v.field, v.rule) for v in refused.value.violations] == [("subject_code", "unique")]  # intact
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_trail").scalar() == audit_before
    engine.dispose()


def test_the_console_script_keeps_the_commands_output_and_exit_status(tmp_path):
    """``regenheart`` (cli.console:main, running cli.main:main) ends without the interpreter's teardown: what a
    command printed and wrote is all there, and its exit status is kept (0, a usage error's 2, a refused
    command's 1). Its modules are loaded outside the garbage collector's passes and stay out of them."""
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "from regenheart.cli.console import main; main()", *args],
                              check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)

    from regenheart import __version__

    done = run("version")
    assert done.returncode == 0 and done.stdout.strip() == __version__
    assert run("no-such-command").returncode == 2
    missing = ("audit", "verify", "--db", str(tmp_path / "missing.db"))
    refused, in_process = run(*missing), runner.invoke(app, list(missing))
    assert refused.returncode == in_process.exit_code != 0 and "missing.db" in refused.stderr
    listing = run("--help")  # flushed in full before the process ends: down to the box's last corner
    assert listing.returncode == 0 and " demo " in listing.stdout and listing.stdout.rstrip().endswith("╯")
    import tomllib
    from pathlib import Path

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"regenheart": "regenheart.cli.console:main"}  # the entry tested here
