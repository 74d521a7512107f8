"""A protocol without endpoints or analysis plan (as drafted from a REDCap project) gets the default
plan: descriptive statistics by visit of every numeric field and frequencies of every code field.
The whole analysis (capture -> derive -> SAP -> report -> results.json) runs on it; the numbers
are checked against numpy/pandas computed independently from the entered values."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import yaml

from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.protocol import parse_protocol
from regenheart.protocol.sap import default_plan
from regenheart.stats.descriptive import quantile
from regenheart.store.db import create_study_database

PROTOCOL_YAML = """
schema_version: 1
study:
  nct_id: null
  acronym: DRAFT
  brief_title: A study drafted from a REDCap data dictionary
  sites: [{code: "01", name: Site one}]
protocol_versions:
  - version: "1"
    date: 2024-01-01
    design: single_arm
    allocation: none
    planned_enrollment: 10
    arms: [{code: ARM1, label: Treatment, description: Open-label treatment, receives_cells: true}]
    summary: Drafted.
active_protocol_version: "1"
codelists:
  yes_no: [{code: "Y", decode: "Yes"}, {code: "N", decode: "No"}]
forms:
  vitals:
    label: Vital signs
    fields:
      - {name: sbp, label: Systolic blood pressure, type: integer, unit: mmHg, range: [60, 250]}
      - {name: weight, label: Weight, type: float, unit: kg, range: [30, 250], decimals: 1}
  status:
    label: Status
    fields:
      - {name: smoker, label: Current smoker, type: code, codelist: yes_no}
      - {name: note, label: Note, type: text, max_length: 50}
visits:
  - {code: SCR, label: Screening, day: -7, window: [-14, -1], baseline: true, forms: [vitals, status]}
  - {code: D0, label: Day 0, day: 0, window: [0, 0], forms: [vitals]}
  - {code: W4, label: Week 4, day: 28, window: [21, 35], forms: [vitals, status]}
"""

COORDINATOR = Actor("coord1", "coordinator", "01")
VALUES = {  # subject -> visit -> form -> data
    "S1": {"SCR": {"vitals": {"sbp": 120, "weight": 70.0}, "status": {"smoker": "Y"}},
           "D0": {"vitals": {"sbp": 118, "weight": 70.2}},
           "W4": {"vitals": {"sbp": 115, "weight": 69.5}, "status": {"smoker": "N"}}},
    "S2": {"SCR": {"vitals": {"sbp": 140, "weight": 82.5}, "status": {"smoker": "N"}},
           "D0": {"vitals": {"sbp": 135, "weight": 82.0}},
           "W4": {"vitals": {"sbp": 131, "weight": 81.0}, "status": {"smoker": "N"}}},
    "S3": {"SCR": {"vitals": {"sbp": 133, "weight": 64.0}, "status": {"smoker": "Y"}},
           "D0": {"vitals": {"sbp": 130, "weight": 64.1}},
           "W4": {"vitals": {"sbp": 128}, "status": {"smoker": "Y"}}},
    "S4": {"SCR": {"vitals": {"sbp": 151, "weight": 90.3}, "status": {"smoker": "N"}}},  # screened only
}
DAYS = {"SCR": -7, "D0": 0, "W4": 28}


@pytest.fixture(scope="module")
def protocol():
    return parse_protocol(yaml.safe_load(PROTOCOL_YAML), "draft.yaml")


def enter_values(engine, protocol) -> None:
    """Screen, enrol and enter VALUES through the capture service (the only write path)."""
    service = CaptureService(engine, protocol, today=lambda: dt.date(2024, 12, 31))
    start = dt.date(2024, 3, 1)
    for subject, visits in VALUES.items():
        service.screen_subject(COORDINATOR, subject, "01", start + dt.timedelta(DAYS["SCR"]),
                               start + dt.timedelta(DAYS["SCR"] - 1))
        for form, data in visits["SCR"].items():
            service.save_form(COORDINATOR, subject, "SCR", form, data, visit_date=start + dt.timedelta(DAYS["SCR"]))
        service.evaluate_eligibility(COORDINATOR, subject)
        if len(visits) == 1:
            continue
        service.enrol(COORDINATOR, subject, start - dt.timedelta(1))
        for visit in ("D0", "W4"):
            date = start + dt.timedelta(DAYS[visit])
            service.record_visit(COORDINATOR, subject, visit, date)
            for form, data in visits[visit].items():
                service.save_form(COORDINATOR, subject, visit, form, data, visit_date=date)


@pytest.fixture(scope="module")
def analysed(protocol, tmp_path_factory):
    from regenheart.cli.pipeline import analyze

    folder = tmp_path_factory.mktemp("default-plan")
    engine = create_study_database(folder / "study.db", {"study": "DRAFT"}, durable=False)
    enter_values(engine, protocol)
    run = analyze(engine, protocol, folder / "out")
    engine.dispose()
    return run


def test_default_plan_lists_every_numeric_and_code_field(protocol):
    plan = default_plan(protocol)
    assert protocol.sap is None and protocol.endpoints is None
    assert protocol.analysis_plan == plan
    assert [(v.form, v.field, v.kind) for v in plan.descriptive.variables] == [
        ("vitals", "sbp", "numeric"), ("vitals", "weight", "numeric"), ("status", "smoker", "code")]
    assert plan.primary is None and plan.endpoints == [] and plan.between_arms is None


def test_numeric_fields_by_visit_match_numpy(analysed):
    results = json.loads(analysed.results_path.read_text(encoding="utf-8"))
    assert "primary" not in results and "mmrm" not in results and results["plan"]["source"] == "default"
    by_field = {(v["form"], v["field"]): v for v in results["descriptive"]}
    for field in ("sbp", "weight"):
        entry = by_field[("vitals", field)]
        assert [v["visit"] for v in entry["visits"]] == ["SCR", "D0", "W4"]
        for v in entry["visits"]:
            values = np.array([VALUES[s][v["visit"]]["vitals"][field] for s in VALUES
                               if v["visit"] in VALUES[s] and field in VALUES[s][v["visit"]]["vitals"]], float)
            assert v["n"] == len(values)
            assert v["mean"] == pytest.approx(values.mean(), rel=1e-12)
            assert v["sd"] == pytest.approx(values.std(ddof=1), rel=1e-12)
            assert v["median"] == pytest.approx(np.median(values), rel=1e-12)
            assert (v["min"], v["max"]) == (values.min(), values.max())
            assert v["q1"] == pytest.approx(quantile(values, 0.25), rel=1e-12)


def test_code_fields_by_visit_are_counted(analysed):
    results = json.loads(analysed.results_path.read_text(encoding="utf-8"))
    smoker = next(v for v in results["descriptive"] if v["field"] == "smoker")
    scr, w4 = smoker["visits"]
    assert [(lvl["decode"], lvl["n"]) for lvl in scr["levels"]] == [("Yes", 2), ("No", 2)]
    assert scr["n"] == 4 and scr["levels"][0]["percent"] == 50.0
    assert [(lvl["decode"], lvl["n"]) for lvl in w4["levels"]] == [("Yes", 1), ("No", 2)]


def test_report_shows_the_default_plan(analysed):
    html = analysed.report_path.read_text(encoding="utf-8")
    assert "Descriptive statistics by visit" in html
    assert "Systolic blood pressure (mmHg) [vitals.sbp]" in html
    assert "The analysis plan has no primary endpoint analysis" in html
    assert "the default plan" in html
    body = html.split("</style>", 1)[1]
    assert ">None<" not in body and " None " not in body  # no Python None rendered for a missing identity field
    assert "The analysis plan has no adverse-event analysis" in body and "Any serious adverse event" not in body


def test_analyze_command_runs_the_default_plan_of_the_stored_protocol(protocol, tmp_path):
    """``regenheart db init --protocol draft.yaml`` stores the protocol; ``regenheart analyze`` runs its
    default plan and prints a summary without an endpoint to name (exit 0, no traceback)."""
    from typer.testing import CliRunner

    from regenheart.cli.main import app
    from regenheart.store.db import make_engine

    runner = CliRunner()
    (tmp_path / "draft.yaml").write_text(PROTOCOL_YAML, encoding="utf-8")
    db = tmp_path / "study.db"
    created = runner.invoke(app, ["db", "init", "--db", str(db), "--protocol", str(tmp_path / "draft.yaml")])
    assert created.exit_code == 0, created.output
    engine = make_engine(db)
    enter_values(engine, protocol)
    engine.dispose()
    result = runner.invoke(app, ["analyze", "--db", str(db), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "Analysis plan: Default analysis plan" in " ".join(result.output.split())
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert [v["field"] for v in results["descriptive"]] == ["sbp", "weight", "smoker"]
