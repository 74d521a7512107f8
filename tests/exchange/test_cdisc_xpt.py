"""SAS XPT v5 writer: read back with pyreadstat (names, labels, values), v5 limits as clear errors, and a
round trip of CDISC's own dm.xpt (the Dataset-JSON 1.1 example data)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyreadstat
import pytest
from tests.conftest import SHARED
from tests.exchange import _cdisc_data as data

from regenheart.derive.datasets import Dataset, Variable
from regenheart.exchange.cdisc.metadata import SubmissionError
from regenheart.exchange.cdisc.xpt import write_xpt


def _read(path):
    return pyreadstat.read_xport(str(path), disable_datetime_conversion=True)


@pytest.mark.parametrize("make", [data.dm, data.cv, data.ae, data.adsl, data.adeff])
def test_read_back_names_labels_and_values(make, tmp_path):
    ds = make()
    frame, meta = _read(write_xpt(ds, tmp_path / f"{ds.name.lower()}.xpt"))
    assert meta.table_name == ds.name and meta.file_label == ds.label
    assert list(frame.columns) == [v.name for v in ds.variables]
    assert meta.column_labels == [v.label for v in ds.variables]
    for v in ds.variables:
        got, want = frame[v.name], ds.records[v.name]
        if v.type == "text" or v.name.endswith("DTC"):
            expected = ["" if pd.isna(x) else str(x) for x in want]
            assert list(got) == expected, v.name
            assert meta.variable_storage_width[v.name] == max([1] + [len(x) for x in expected]), v.name
        elif v.type == "date":  # ADaM numeric date: days since 1960-01-01 with DATE9.
            expected = [None if pd.isna(x) else float((x - dt.date(1960, 1, 1)).days) for x in want]
            assert [None if pd.isna(x) else x for x in got] == expected
            assert meta.original_variable_types[v.name] == "DATE9."
        else:
            assert got.astype(float).tolist() == pytest.approx(pd.to_numeric(want).astype(float).tolist(),
                                                              nan_ok=True), v.name


def test_sas_date_hand_calculation(tmp_path):
    # 2020-01-02: 60 years from 1960-01-01 = 21,915 days (15 leap days: 1960, 1964, ..., 2016) + 1
    ds = data.adsl()
    ds.records.loc[0, "TRTSDT"] = dt.date(2020, 1, 2)
    frame, _ = _read(write_xpt(ds, tmp_path / "adsl.xpt"))
    assert frame["TRTSDT"].iloc[0] == 60 * 365 + 15 + 1


def test_value_over_200_bytes_names_dataset_variable_and_subject(tmp_path):
    ds = data.ae()
    ds.records.loc[1, "AETERM"] = "x" * 199 + "é"  # 201 bytes in UTF-8
    with pytest.raises(SubmissionError) as info:
        write_xpt(ds, tmp_path / "ae.xpt")
    message = str(info.value)
    assert "dataset AE" in message and "variable AETERM" in message and "USUBJID TEST01-002" in message
    assert "201 bytes (at most 200)" in message
    assert not (tmp_path / "ae.xpt").exists()


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: setattr(d, "name", "DEMOGRAPH"), "dataset name 'DEMOGRAPH' is not a SAS v5 name"),
    (lambda d: setattr(d, "label", "L" * 41), r"has 41 characters \(at most 40\)"),
    (lambda d: d.variables.__setitem__(0, Variable("STUDYIDEN", "Study", "text")), "'STUDYIDEN' is not a SAS v5"),
    (lambda d: d.variables.__setitem__(0, Variable("STUDYID", "S" * 45, "text")), "has 45 characters"),
])
def test_names_and_labels_over_the_v5_limits_are_refused(change, expected, tmp_path):
    ds = data.dm()
    change(ds)
    with pytest.raises(SubmissionError, match=expected):
        write_xpt(ds, tmp_path / "dm.xpt")


def test_described_variable_missing_from_records(tmp_path):
    ds = data.dm()
    ds.records = ds.records.drop(columns="SEX")
    with pytest.raises(SubmissionError, match=r"\['SEX'\] are described but not in the records"):
        write_xpt(ds, tmp_path / "dm.xpt")


def test_round_trip_of_cdisc_dm_example(tmp_path):
    source = SHARED / "examples" / "dataset-json-1.1" / "sdtm" / "dm.xpt"
    frame, meta = _read(source)
    types = {name: ("text" if kind == "string" else "integer") for name, kind in meta.readstat_variable_types.items()}
    ds = Dataset("DM", meta.file_label, "SDTM", "One record per subject", "SPECIAL PURPOSE", ["STUDYID", "USUBJID"],
                 [Variable(n, lbl, types[n]) for n, lbl in zip(frame.columns, meta.column_labels, strict=True)],
                 frame)
    again, meta2 = _read(write_xpt(ds, tmp_path / "dm.xpt"))
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)
    assert meta2.column_labels == meta.column_labels and meta2.table_name == "DM"
    # Sized to the data: never wider than CDISC's file, which is padded to planned lengths.
    assert all(meta2.variable_storage_width[c] <= meta.variable_storage_width[c] for c in frame.columns)
