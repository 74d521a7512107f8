"""ADaM derivations: CDISC study days, baseline/change, analysis windows and ANL01FL, populations,
primary-composite events from every protocol source. Expected values are worked out by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from regenheart.derive.adam import cdisc_day, derive_all
from regenheart.store.snapshot import take_snapshot

from ..capture.test_capture import enrol_and_infuse
from ..conftest import COORDINATOR


def test_cdisc_day_has_no_day_zero():
    ref = dt.date(2021, 3, 1)
    assert cdisc_day(dt.date(2021, 3, 1), ref) == 1
    assert cdisc_day(dt.date(2021, 3, 31), ref) == 31
    assert cdisc_day(dt.date(2021, 2, 28), ref) == -1
    assert cdisc_day(None, ref) is None


@pytest.fixture
def one_subject(service, engine, protocol):
    """One infused subject (day 0 = 2025-01-24) with M1 in window and M3 out of window."""
    enrol_and_infuse(service)
    echo = {"modality": "TTE", "lvedv_ml": 240, "lvesv_ml": 160, "lvedd_mm": 67, "lvesd_mm": 56,
            "ivsd_mm": 9.5, "lvpwd_mm": 9.0}
    service.save_form(COORDINATOR, "01-001", "M1", "echo", dict(echo, lvef_pct=30.0),
                      visit_date="2025-02-25")  # day 32, window [23, 37]
    service.save_form(COORDINATOR, "01-001", "M3", "echo", dict(echo, lvef_pct=33.0),
                      visit_date="2025-05-10")  # day 106, outside [76, 104]
    for k in range(1, 3):
        service.save_form(COORDINATOR, "01-001", f"D{k}", "vital_signs", {
            "sbp_mmhg": 110, "dbp_mmhg": 70, "heart_rate_bpm": 70, "temperature_c": 38.3 if k == 2 else 36.8},
            visit_date=dt.date(2025, 1, 24) + dt.timedelta(days=k))
    return derive_all(protocol, take_snapshot(engine))


def test_baseline_change_and_windows(one_subject):
    lvef = one_subject.adeff[one_subject.adeff["PARAMCD"] == "LVEF"].set_index("VISIT")
    # baseline 27.0 at screening (2025-01-10 = protocol day -14 = CDISC day -14)
    assert lvef.loc["SCR", "ABLFL"] == "Y" and lvef.loc["SCR", "AVAL"] == 27.0
    assert lvef.loc["SCR", "ADY"] == -14 and lvef.loc["SCR", "PDAY"] == -14
    m1 = lvef.loc["M1"]
    assert (m1["AVISIT"], m1["AVISITN"], m1["PDAY"], m1["ADY"]) == ("Month 1", 30, 32, 33)
    assert m1["BASE"] == 27.0 and m1["CHG"] == pytest.approx(3.0)
    assert m1["PCHG"] == pytest.approx(100 * 3 / 27) and m1["ANL01FL"] == "Y"
    assert (m1["AWLO"], m1["AWHI"]) == (23, 37)
    m3 = lvef.loc["M3"]
    assert m3["AVISIT"] == "Out of window" and m3["ANL01FL"] == "" and np.isnan(m3["AVISITN"])


def test_derived_echo_parameters_are_hand_checkable(one_subject):
    row = one_subject.adeff[(one_subject.adeff["PARAMCD"] == "LVFS") & (one_subject.adeff["VISIT"] == "SCR")]
    # screening LVEDD 69 mm, LVESD 58 mm: FS = (6.9 - 5.8) / 6.9 * 100 = 15.942 %
    assert row["AVAL"].item() == pytest.approx(15.942029, abs=1e-5)
    rwt = one_subject.adeff[(one_subject.adeff["PARAMCD"] == "RWT") & (one_subject.adeff["VISIT"] == "SCR")]
    assert rwt["AVAL"].item() == pytest.approx(2 * 0.90 / 6.9, abs=1e-9)  # 2 x PWd / LVIDd


def test_populations_and_primary_sources(one_subject):
    adsl = one_subject.adsl.set_index("SUBJID")
    assert adsl.loc["01-001", ["SAFFL", "EFFFL", "ENRLFL"]].tolist() == ["Y", "Y", "Y"]
    assert adsl.loc["01-001", "TRTSDT"] == dt.date(2025, 1, 24)
    events = one_subject.adpse
    # fever 38.3 C on day 2 from vital signs; TIMI 3 after infusion gives no event
    assert events[["SOURCE", "PDAY"]].values.tolist() == [["Vital signs", 2]]
