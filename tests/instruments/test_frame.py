"""score_frame: agreement with score(), dtype handling, absent/extra columns, refusals with row labels."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from regenheart.instruments import INSTRUMENTS, InstrumentInputError, score, score_frame, scoring_version

from ._oracles import load_csv, load_json


def _random_frame(instrument: str, n: int, seed: int, p_missing: float = 0.15) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spec = INSTRUMENTS[instrument]
    data = {}
    for it in spec.items:
        col = rng.integers(it.low, it.high + 1, size=n).astype(float)
        col[rng.random(n) < p_missing] = np.nan
        data[it.key] = col
    return pd.DataFrame(data, index=pd.Index([f"r{i}" for i in range(n)], name="rid"))


def _rows_as_dicts(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if pd.isna(v) else int(v)) for k, v in row.items()} for _, row in frame.iterrows()]


@pytest.mark.parametrize("instrument", list(INSTRUMENTS))
def test_frame_agrees_with_score(instrument):
    frame = _random_frame(instrument, 300, seed=len(instrument))
    result = score_frame(instrument, frame)
    assert list(result.columns) == list(INSTRUMENTS[instrument].score_names)
    assert result.index.equals(frame.index)
    assert all(result.dtypes == np.float64)
    for label, responses in zip(frame.index, _rows_as_dicts(frame)):
        single = score(instrument, responses)
        for name, value in single.items():
            got = result.at[label, name]
            if value is None:
                assert np.isnan(got), (label, name)
            else:
                assert got == pytest.approx(value, abs=1e-12), (label, name)


def test_frame_kccq12_awell_oracle():
    cases = load_json("kccq12_awell_vectors.json")["cases"]
    frame = pd.DataFrame([c["items"] for c in cases], index=[c["case"] for c in cases])
    result = score_frame("kccq12", frame)
    assert result.at["random", "summary"] == pytest.approx(33.854166666666664, abs=1e-12)
    assert result.at["only_pl_answered", "summary"] == 100.0
    assert result.loc["empty"].isna().all() and result.loc["all_missing_codes"].isna().all()


def test_frame_sf12v1_oracle():
    # 5 printed decimals -> tolerance 0.5e-5
    rows = load_csv("sf12v1_awell_vectors.csv")
    items = [k for k in rows[0] if k not in ("case", "exp_pcs12", "exp_mcs12")]
    frame = pd.DataFrame([{k: int(r[k]) for k in items} for r in rows])
    result = score_frame("sf12v1", frame)
    np.testing.assert_allclose(result["pcs"], [float(r["exp_pcs12"]) for r in rows], rtol=0, atol=0.5e-5)
    np.testing.assert_allclose(result["mcs"], [float(r["exp_mcs12"]) for r in rows], rtol=0, atol=0.5e-5)


@pytest.mark.parametrize("instrument", list(INSTRUMENTS))
def test_dtype_paths_give_identical_results(instrument):
    frame = _random_frame(instrument, 200, seed=7)
    expected = score_frame(instrument, frame)
    nullable = frame.astype("Int64")
    as_object = frame.astype(object).where(frame.notna(), None)
    for variant in (nullable, as_object, frame.astype("Float64")):
        pd.testing.assert_frame_equal(score_frame(instrument, variant), expected)
    complete = _random_frame(instrument, 200, seed=8, p_missing=0.0).astype(np.int64)
    pd.testing.assert_frame_equal(score_frame(instrument, complete),
                                  score_frame(instrument, complete.astype(float)))
    for small in (np.int8, np.uint8, np.uint16):
        pd.testing.assert_frame_equal(score_frame(instrument, complete.astype(small)),
                                      score_frame(instrument, complete.astype(float)))


def test_absent_columns_count_as_unanswered():
    frame = pd.DataFrame({"q1a": [5, 4], "q1b": [5, 2]}, index=[10, 20])
    result = score_frame("kccq12", frame)
    assert result["physical_limitation"].tolist() == [100.0, 50.0]
    assert result["summary"].tolist() == [100.0, 50.0]
    assert result[["symptom_frequency", "quality_of_life", "social_limitation"]].isna().all().all()


def test_empty_frame():
    result = score_frame("sf12v1", pd.DataFrame({"gh1": pd.Series([], dtype=float)}))
    assert result.shape == (0, 2) and list(result.columns) == ["pcs", "mcs"]


def test_special_code_is_missing_in_frames():
    frame = pd.DataFrame({"q1a": [6, 6], "q1b": [5, 6], "q1c": [5, 6]})
    assert score_frame("kccq12", frame)["physical_limitation"].tolist()[0] == 100.0
    assert np.isnan(score_frame("kccq12", frame)["physical_limitation"].tolist()[1])


def test_rules_keyword_and_version_stamp():
    frame = pd.DataFrame({"q2": [6], "q3": [5]})
    default = score_frame("kccq", frame)
    alt = score_frame("kccq", frame, rules="kccq23-special-missing-2024")
    assert default.at[0, "symptom_stability"] == 50.0 and np.isnan(alt.at[0, "symptom_stability"])
    assert default.attrs["scoring_version"] == scoring_version("kccq")
    assert alt.attrs["scoring_version"].startswith("kccq/kccq23-special-missing-2024;")


def test_refusal_names_item_value_and_first_row_label():
    frame = pd.DataFrame({"q1a": [5, 5, 9, 5], "q3": [1, 2, 3, 8]}, index=["s1", "s2", "s3", "s4"])
    # first offending ROW is s3 (q1a = 9), although q3 = 8 in s4 is earlier in item order
    with pytest.raises(InstrumentInputError) as ei:
        score_frame("kccq12", frame)
    e = ei.value
    assert (e.item, e.value, e.row, e.kind) == ("q1a", 9, "s3", "out_of_range")
    assert "q1a" in str(e) and "9" in str(e) and "'s3'" in str(e) and "allowed codes 1..6" in str(e)


def test_refusal_same_row_uses_item_order():
    frame = pd.DataFrame({"q3": [9.0], "q1b": [2.5]}, index=[42])
    with pytest.raises(InstrumentInputError) as ei:
        score_frame("kccq12", frame)
    assert (ei.value.item, ei.value.value, ei.value.row, ei.value.kind) == ("q1b", 2.5, 42, "not_integer")


@pytest.mark.parametrize("column,kind", [
    (pd.Series([1, "abc", 2], dtype=object), "not_numeric"),
    (pd.Series(["1", "2", "3"], dtype=object), "not_numeric"),
    (pd.Series([1.0, np.inf, 2.0]), "out_of_range"),
    (pd.Series([1, 2, 0], dtype="Int64"), "out_of_range"),
    (pd.Series([True, False, True]), "not_numeric"),
])
def test_refusal_of_bad_columns(column, kind):
    frame = pd.DataFrame({"q3": column.to_numpy() if column.dtype == bool else column})
    with pytest.raises(InstrumentInputError) as ei:
        score_frame("kccq12", frame)
    assert ei.value.item == "q3" and ei.value.kind == kind and ei.value.row is not None


def test_unknown_and_duplicate_columns():
    frame = pd.DataFrame({"q1a": [5], "Q1B": [5], "subject": ["x"]})
    with pytest.raises(InstrumentInputError) as ei:
        score_frame("kccq12", frame)
    assert ei.value.kind == "unknown_item" and ei.value.item == "Q1B"
    ok = score_frame("kccq12", frame, extra_columns="ignore")
    assert np.isnan(ok.at[0, "physical_limitation"])   # Q1B is not q1b: only 1 PL item
    dup = pd.DataFrame([[5, 5]], columns=["q1a", "q1a"])
    with pytest.raises(InstrumentInputError, match="duplicate"):
        score_frame("kccq12", dup)


def test_vectorized_speed_smoke():
    # A Python loop per row (~tens of microseconds per row) would need several seconds here.
    frame = _random_frame("kccq12", 200_000, seed=1).reset_index(drop=True)
    t0 = time.perf_counter()
    score_frame("kccq12", frame)
    assert time.perf_counter() - t0 < 2.0
