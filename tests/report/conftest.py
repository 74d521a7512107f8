"""A small synthetic study (6 infused, 1 screen failure) entered through capture, analysed once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest

from regenheart.capture.service import CaptureService
from regenheart.derive.adam import AnalysisDatasets, derive_all
from regenheart.stats.analysis import run_sap
from regenheart.store.db import create_study_database
from regenheart.store.snapshot import Snapshot, take_snapshot
from regenheart.synth import enter_cohort, generate_cohort

METHODS_NOTES = {
    "kccq": "KCCQ note: GAP-KCCQ missing-data rules assumed.",
    "mlhfq": "MLHFQ note: GAP-MLHFQ official missing-data rule unavailable.",
}


@dataclass(frozen=True)
class Study:
    snapshot: Snapshot
    data: AnalysisDatasets
    results: dict[str, Any]


@pytest.fixture(scope="session")
def small_study(protocol, tmp_path_factory) -> Study:
    path = tmp_path_factory.mktemp("report") / "study.db"
    engine = create_study_database(path, {"study": protocol.study.nct_id, "synthetic": "true"}, durable=False)
    cohort = generate_cohort(protocol, n_enrolled=6, n_screen_failures=1)
    enter_cohort(CaptureService(engine, protocol, today=lambda: dt.date(2026, 1, 1)), cohort)
    snapshot = take_snapshot(engine)
    engine.dispose()
    data = derive_all(protocol, snapshot)
    try:
        results = run_sap(protocol, data)
    except Exception:  # noqa: BLE001 - the MMRM part may be unfinished; the report must still render
        results = run_sap(protocol, data, with_mmrm=False)
    return Study(snapshot, data, results)


@pytest.fixture(scope="session")
def report_html(protocol, small_study) -> str:
    from regenheart.report import build_report

    return build_report(protocol, small_study.snapshot, small_study.data, small_study.results,
                        methods_notes=METHODS_NOTES, synthetic=True)
