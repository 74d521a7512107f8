"""Shared fixtures: the embedded protocol, a fresh study database, a capture service and actors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.protocol import load_protocol
from regenheart.store.db import create_study_database

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
ORACLES = SHARED / "oracles"

COORDINATOR = Actor("coord1", "coordinator", "01")
INVESTIGATOR = Actor("inv1", "investigator", "01")
MONITOR = Actor("mon1", "monitor", None)


@pytest.fixture(scope="session")
def protocol():
    return load_protocol()


@pytest.fixture
def engine(tmp_path, protocol):
    return create_study_database(tmp_path / "study.db", {"study": protocol.study.nct_id})


@pytest.fixture
def service(engine, protocol):
    return CaptureService(engine, protocol, today=lambda: dt.date(2026, 1, 1))


def eligible_screening_data() -> dict[str, dict]:
    """Complete, valid screening forms of an eligible subject (by form code)."""
    return {
        "demographics": {"age_years": 52, "sex": "M", "height_cm": 176, "weight_kg": 82.5},
        "medical_history": {
            "hf_etiology": "IDCM", "hf_duration_months": 30, "hf_hospitalizations_12m": 1,
            "atrial_fibrillation": "N", "hypertension": "Y", "diabetes": "N", "icd_implanted": "N",
            "crt_implanted": "N", "raas_inhibitor": "ARNI", "beta_blocker": "Y", "mra": "Y", "sglt2i": "Y",
            "loop_diuretic": "Y",
        },
        "eligibility": {
            "registered_at_center": "Y", "nidcm_diagnosis": "Y", "nonischemic_confirmed": "Y",
            "nonischemic_method": "ANGIO", "icd_indication": "Y", "organ_dysfunction": "N",
            "malignancy_5y": "N", "consent_signed": "Y", "ischemic_or_cardiac_surgery": "N",
            "structural_exclusion": "N", "stroke_2y": "N", "autoimmune_immunodeficiency": "N",
            "polyvalent_allergy": "N", "decompensated_comorbidity": "N", "immunosuppressants_4w": "N",
            "hepatitis_positive": "N",
        },
        "nyha": {"nyha_class": 3},
        "echo": {"modality": "TTE", "lvef_pct": 27.0, "lvedv_ml": 250, "lvesv_ml": 182, "lvedd_mm": 69,
                 "lvesd_mm": 58, "ivsd_mm": 9.5, "lvpwd_mm": 9.0},
    }
