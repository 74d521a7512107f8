"""MLHFQ sums (instruments.md section 5) against the self-derived spec vectors and the rule sets."""

from __future__ import annotations

import pytest

from regenheart.instruments import INSTRUMENTS, METHODS_NOTES, InstrumentInputError, score

from ._oracles import load_json

CASES = load_json("derived_spec_vectors.json")["mlhfq"]


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_spec_vectors(case):
    # Integer sums: exact comparison (tolerance 0).
    assert score("mlhfq", case["items"]) == {k: float(v) for k, v in case["expected"].items()}


def test_hand_worked_dimensions():
    # q_i = 1 for the physical items (2,3,4,5,6,7,12,13) -> physical 8; q_i = 2 for 17..21 -> emotional 10;
    # the other 8 items = 3 -> total = 8 + 10 + 24 = 42
    items = {f"q{i}": 3 for i in range(1, 22)}
    items.update({f"q{i}": 1 for i in (2, 3, 4, 5, 6, 7, 12, 13)})
    items.update({f"q{i}": 2 for i in (17, 18, 19, 20, 21)})
    assert score("mlhfq", items) == {"total": 42.0, "physical": 8.0, "emotional": 10.0}


def test_default_rule_requires_all_items():
    items = {f"q{i}": 2 for i in range(1, 22)}
    items["q1"] = None  # q1 is only in the total
    assert score("mlhfq", items) == {"total": None, "physical": 16.0, "emotional": 10.0}
    items["q17"] = None
    assert score("mlhfq", items)["emotional"] is None


def test_prorate_rule_set():
    items = {f"q{i}": 2 for i in range(1, 22)}
    items["q17"] = 5
    items["q1"] = None       # with q2: 2 of 21 missing (<= 4) -> total = mean of the 19 answered x 21
    items["q2"] = None       # 1 of 8 physical missing (<= 1) -> physical = mean 2 x 8 = 16
    # 19 answered: 18 items = 2 and q17 = 5 -> sum 41 -> total = 41/19*21 = 45.315789...
    got = score("mlhfq", items, rules="mlhfq-prorate-20pct")
    assert got["total"] == pytest.approx(41 / 19 * 21, abs=1e-12)
    assert got["physical"] == pytest.approx(16.0, abs=1e-12)
    assert got["emotional"] == pytest.approx(13.0, abs=1e-12)   # complete: exact sum
    items["q3"] = None       # 2 of 8 physical missing (> 20%) -> missing
    assert score("mlhfq", items, rules="mlhfq-prorate-20pct")["physical"] is None
    items.update({"q4": None, "q5": None, "q6": None})   # total: 6 of 21 missing (> 4) -> missing
    assert score("mlhfq", items, rules="mlhfq-prorate-20pct")["total"] is None


def test_rule_sets_documented_and_non_official():
    spec = INSTRUMENTS["mlhfq"]
    assert spec.default_rules == "mlhfq-complete"
    assert set(spec.rule_sets) == {"mlhfq-complete", "mlhfq-prorate-20pct"}
    assert all(not rs.official for rs in spec.rule_sets.values())
    assert "NON-OFFICIAL" in spec.rule_sets["mlhfq-prorate-20pct"].description
    assert "GAP" in METHODS_NOTES["mlhfq"]
    assert [s.higher_is_better for s in spec.scores] == [False, False, False]


@pytest.mark.parametrize("value", [6, -1, 2.5, "x"])
def test_refuses_bad_values(value):
    with pytest.raises(InstrumentInputError) as ei:
        score("mlhfq", {"q5": value})
    assert ei.value.item == "q5" and "q5" in str(ei.value)
