"""Clinically important differences (instruments.md 2.3, 5, 7): sourced thresholds only."""

from __future__ import annotations

import numpy as np
import pytest

from regenheart.instruments import interpretation as it


@pytest.mark.parametrize("instrument,score", [("kccq", "overall_summary"), ("kccq", "clinical_summary"),
                                              ("kccq12", "summary")])
def test_kccq_thresholds_5_10_20(instrument, score):
    t = it.thresholds(instrument, score)
    assert {k: v.threshold for k, v in t.items()} == {"small": 5.0, "moderate": 10.0, "large": 20.0}
    assert all(v.higher_is_better and "[S" in v.source for v in t.values())


def test_responder_scalar_and_array():
    assert it.responder("kccq", "overall_summary", 5.0) is True          # >= threshold
    assert it.responder("kccq", "overall_summary", 4.99) is False
    assert it.responder("kccq", "overall_summary", -6.0, direction="deterioration") is True
    got = it.responder("kccq12", "summary", np.array([3.0, 10.0, 25.0, np.nan]), level="moderate")
    assert got.dtype == bool and got.tolist() == [False, True, True, False]  # NaN -> not a responder


def test_classify_change():
    labels = it.classify_change("kccq", "overall_summary", np.array([-25.0, -7.0, 0.0, 12.0, 20.0, np.nan]))
    assert labels.tolist() == ["large deterioration", "small deterioration", "no important change",
                               "moderate improvement", "large improvement", None]
    assert it.classify_change("kccq12", "summary", 5.0) == "small improvement"


@pytest.mark.parametrize("instrument,score", [("mlhfq", "total"), ("mlhfq", "physical"),
                                              ("sixmwt", "distance_m"),
                                              ("sf12v1", "pcs")])
def test_not_found_is_not_invented(instrument, score):
    with pytest.raises(it.ThresholdNotFoundError, match="NOT FOUND"):
        it.responder(instrument, score, 10.0)
    assert not any(d.instrument == instrument for d in it.CLINICALLY_IMPORTANT_DIFFERENCES)


def test_bands():
    assert it.band("kccq", "overall_summary", 24.9) == "very poor to poor"
    assert it.band("kccq12", "summary", 75.0) == "good to excellent"
    assert it.band("mlhfq", "total", np.array([25.0, 26.0, 45.0, 46.0])).tolist() == [
        "good", "moderate", "moderate", "poor"]
    with pytest.raises(it.ThresholdNotFoundError):
        it.band("sf12v1", "pcs", 40.0)
