"""Test data of the ClinicalTrials.gov tests: a small synthetic study entered through capture, analysed
once per session, and helpers that make a clean (non-synthetic, complete) or a two-arm variant."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import SHARED

from regenheart.capture.service import CaptureService
from regenheart.derive.adam import AnalysisDatasets, derive_all
from regenheart.protocol.models import Protocol
from regenheart.protocol.registry import Contact
from regenheart.stats.analysis import run_sap
from regenheart.store.db import create_study_database
from regenheart.store.snapshot import take_snapshot
from regenheart.synth import enter_cohort, generate_cohort

RRS_XSD = SHARED / "schemas" / "ctgov-prs" / "RRSUploadSchema.xsd"
PRS_XSD = SHARED / "schemas" / "ctgov-prs" / "ProtocolRecordSchema.xsd"
SEED = SHARED / "seed" / "NCT04325594.txt"


@dataclass(frozen=True)
class Study:
    db_path: Path
    data: AnalysisDatasets
    results: dict[str, Any]


def analysed(protocol: Protocol, data: AnalysisDatasets, synthetic: bool) -> dict[str, Any]:
    try:
        results = run_sap(protocol, data)
    except Exception:  # noqa: BLE001 - a tiny cohort may not support every model; the record must still build
        results = run_sap(protocol, data, with_mmrm=False)
    return {"synthetic": synthetic, **results}


@pytest.fixture(scope="session")
def ctgov_study(protocol, tmp_path_factory) -> Study:
    path = tmp_path_factory.mktemp("ctgov") / "study.db"
    engine = create_study_database(path, {"study": protocol.study.nct_id, "synthetic": "true"}, durable=False)
    cohort = generate_cohort(protocol, n_enrolled=12, n_screen_failures=3)
    enter_cohort(CaptureService(engine, protocol, today=lambda: dt.date(2026, 1, 1)), cohort)
    snapshot = take_snapshot(engine)
    engine.dispose()
    data = derive_all(protocol, snapshot)
    return Study(path, data, analysed(protocol, data, synthetic=True))


def complete_protocol(protocol: Protocol) -> Protocol:
    """The protocol with the results point of contact's e-mail and phone filled in (the public record lacks them)."""
    registry = protocol.registry
    contact = Contact(name="Results Office", organization=protocol.study.sponsor, email="results@example.org",
                      phone="+7 000 000 0000")
    results = registry.results.model_copy(update={"point_of_contact": contact})
    return protocol.model_copy(update={"registry": registry.model_copy(update={"results": results})})


def real_data(data: AnalysisDatasets) -> AnalysisDatasets:
    """The same datasets with the synthetic flag cleared (to exercise the path of a real study)."""
    adsl = data.adsl.copy()
    adsl["SYNTHFL"] = "N"
    return dataclasses.replace(data, adsl=adsl)


def clean_results(results: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(results)
    out["synthetic"] = False
    return out
