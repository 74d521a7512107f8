"""ADaM exports as SAS transport v5 (read back with pyreadstat). The ClinicalTrials.gov results are
tested in tests/exchange/test_ctgov*.py."""

from __future__ import annotations

import datetime as dt

import pyreadstat
import pytest

from regenheart.report.exports import write_adam

from ..derive.test_adam import one_subject  # noqa: F401 - fixture


def test_xpt_round_trip(one_subject, tmp_path):  # noqa: F811
    files = write_adam(one_subject, tmp_path)
    assert {f.name for f in files} >= {"adsl.xpt", "adeff.xpt", "adae.xpt", "adpse.xpt", "adsl.csv"}
    frame, meta = pyreadstat.read_xport(str(tmp_path / "adeff.xpt"))
    assert meta.table_name == "ADEFF" and all(len(c) <= 8 for c in frame.columns)
    assert meta.column_names_to_labels["CHG"] == "Change from Baseline"
    lvef = frame[(frame["PARAMCD"] == "LVEF") & (frame["VISIT"] == "M1")].iloc[0]
    assert lvef["AVAL"] == 30.0 and lvef["CHG"] == pytest.approx(3.0)
    # SAS dates: 2025-02-25 is day 23797 after 1960-01-01; pyreadstat reads DATE9. back as a date
    assert lvef["ADT"] == dt.date(2025, 2, 25)
    adsl, _ = pyreadstat.read_xport(str(tmp_path / "adsl.xpt"))
    assert adsl.loc[0, "TRTSDT"] == dt.date(2025, 1, 24) and adsl.loc[0, "SAFFL"] == "Y"
