"""ADEFF derived before the SDTM and traced afterwards is exactly ADEFF derived with the SDTM."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from regenheart.capture.service import CaptureService
from regenheart.derive.adam import derive_untraced, derive_with_sdtm, traced
from regenheart.store.db import create_study_database
from regenheart.store.snapshot import take_snapshot
from regenheart.synth import enter_cohort, generate_cohort


@pytest.fixture(scope="module")
def small_snapshot(protocol, tmp_path_factory):
    engine = create_study_database(tmp_path_factory.mktemp("traced") / "study.db", {"synthetic": "true"},
                                   durable=False)
    enter_cohort(CaptureService(engine, protocol, today=lambda: dt.date(2026, 1, 1)),
                 generate_cohort(protocol, n_enrolled=5, n_screen_failures=1))
    snapshot = take_snapshot(engine)
    engine.dispose()
    return snapshot


def test_each_record_traced_afterwards_points_at_the_sdtm_record_holding_its_value(protocol, small_snapshot):
    untraced = derive_untraced(protocol, small_snapshot)
    assert not {"SRCDOM", "SRCSEQ", "SRCVAR", "AVALC"} & set(untraced.data.adeff.columns)
    assert untraced.sources.index.equals(untraced.data.adeff.index)
    data, sdtm = traced(protocol, small_snapshot, untraced)
    adeff = data.adeff
    # the trace columns come after SYNTHFL; the other columns and every row are those analysed
    assert list(adeff.columns[-6:]) == ["SRCDOM", "SRCSEQ", "SRCVAR", "AVALC", "TRTP", "TRTA"]
    pd.testing.assert_frame_equal(adeff.drop(columns=["SRCDOM", "SRCSEQ", "SRCVAR", "AVALC"]), untraced.data.adeff)
    for name in ("adsl", "adae", "adpse"):
        assert getattr(data, name) is getattr(untraced.data, name)
    linked = adeff[adeff["SRCDOM"].notna()]
    # every record read from one form field or score is traced; values computed from several (LV mass) are not
    read = untraced.sources["_form"].notna()
    assert read.any() and (~read).any()
    assert adeff.loc[read, "SRCDOM"].notna().all() and adeff.loc[~read, "SRCDOM"].isna().all()
    text_results = 0
    for row in linked.itertuples():
        records = sdtm[row.SRCDOM].records
        source = records[(records["USUBJID"] == row.USUBJID) & (records[f"{row.SRCDOM}SEQ"] == row.SRCSEQ)]
        assert len(source) == 1, (row.PARAMCD, row.SUBJID, row.VISIT)
        value = source.iloc[0][row.SRCVAR]
        if row.SRCVAR.endswith("STRESC"):  # a coded (or not done) result: its text is AVALC
            assert row.AVALC == value or (pd.isna(row.AVALC) and pd.isna(value)), (row.PARAMCD, row.SUBJID)
            text_results += pd.notna(value)
        else:
            assert row.AVAL == pytest.approx(float(value), rel=1e-12), (row.PARAMCD, row.SUBJID, row.VISIT)
    assert text_results > 0  # NYHA class


def test_deriving_with_the_sdtm_is_deriving_then_tracing(protocol, small_snapshot):
    later, later_sdtm = traced(protocol, small_snapshot, derive_untraced(protocol, small_snapshot))
    at_once, sdtm = derive_with_sdtm(protocol, small_snapshot)
    for name in ("adsl", "adeff", "adae", "adpse"):
        pd.testing.assert_frame_equal(getattr(later, name), getattr(at_once, name))
    assert set(later_sdtm) == set(sdtm)


def test_a_protocol_the_sdtm_would_refuse_is_refused_before_the_analysis(tmp_path):
    from regenheart.derive.sdtm import SdtmAnnotationError
    from regenheart.protocol import load_protocol

    from .test_sdtm import TINY, _tiny_snapshot

    path = tmp_path / "bad.yaml"
    path.write_text(TINY.replace("sdtm: {testcd: SYSBP, test: Systolic Blood Pressure}",
                                 "sdtm: {testcd: SYSBP, test: Systolic Blood Pressure, of: nosuch}"))
    with pytest.raises(SdtmAnnotationError, match="'nosuch' is not a field of this form"):
        derive_untraced(load_protocol(path), _tiny_snapshot())
