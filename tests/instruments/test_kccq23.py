"""KCCQ (23 items): public domain map (instruments.md section 2) with the named, assumed rule sets."""

from __future__ import annotations

import pytest

from regenheart.instruments import INSTRUMENTS, METHODS_NOTES, InstrumentInputError, score

EXAMPLE = {
    "q1a": 4, "q1b": 4, "q1c": 3, "q1d": 3, "q1e": 2, "q1f": 6,
    "q2": 6,
    "q3": 5, "q4": 6, "q5": 4, "q6": 3, "q7": 7, "q8": 2, "q9": 3,
    "q10": 5, "q11": 4,
    "q12": 2, "q13": 3, "q14": 4,
    "q15a": 5, "q15b": 6, "q15c": 3, "q15d": 6,
}


def test_item_and_score_layout():
    spec = INSTRUMENTS["kccq"]
    assert len(spec.items) == 23
    assert spec.item_keys[:6] == ("q1a", "q1b", "q1c", "q1d", "q1e", "q1f")
    assert spec.item_keys[6:19] == tuple(f"q{i}" for i in range(2, 15))
    assert spec.item_keys[19:] == ("q15a", "q15b", "q15c", "q15d")
    assert spec.score_names == ("physical_limitation", "symptom_stability", "symptom_frequency",
                                "symptom_burden", "total_symptom", "self_efficacy", "quality_of_life",
                                "social_limitation", "clinical_summary", "overall_summary")


def test_hand_worked_default_rules():
    got = score("kccq", EXAMPLE)  # rules="kccq23-public-2024"
    # PL: q1f=6 -> missing; 5 answered (>=3): mean (4+4+3+3+2)/5 = 3.2 -> 100*(3.2-1)/4 = 55
    assert got["physical_limitation"] == pytest.approx(55.0, abs=1e-12)
    # stability: q2=6 ('no symptoms') -> 3 ('not changed') -> 100*(3-1)/4 = 50
    assert got["symptom_stability"] == pytest.approx(50.0, abs=1e-12)
    # SF: q3=5 -> 100*4/4=100; q5=4 -> 100*3/6=50; q7=7 -> 100*6/6=100; q9=3 -> 100*2/4=50 -> 75
    assert got["symptom_frequency"] == pytest.approx(75.0, abs=1e-12)
    # SB: q4=6 ('no swelling') -> 5 -> 100; q6=3 -> 50; q8=2 -> 25 -> 175/3 = 58.3333
    assert got["symptom_burden"] == pytest.approx(175 / 3, abs=1e-12)
    # TS = (75 + 58.3333)/2 = 66.6667
    assert got["total_symptom"] == pytest.approx((75 + 175 / 3) / 2, abs=1e-12)
    # SE: (5+4)/2 = 4.5 -> 87.5; QL: (2+3+4)/3 = 3 -> 50; SL: 15b,15d = 6 -> missing; (5+3)/2 = 4 -> 75
    assert got["self_efficacy"] == pytest.approx(87.5, abs=1e-12)
    assert got["quality_of_life"] == pytest.approx(50.0, abs=1e-12)
    assert got["social_limitation"] == pytest.approx(75.0, abs=1e-12)
    # CSS = (55 + 66.6667)/2 = 60.8333; OSS = (55 + 66.6667 + 50 + 75)/4 = 61.6667
    assert got["clinical_summary"] == pytest.approx((55 + (75 + 175 / 3) / 2) / 2, abs=1e-12)
    assert got["overall_summary"] == pytest.approx((55 + (75 + 175 / 3) / 2 + 50 + 75) / 4, abs=1e-12)


def test_hand_worked_special_missing_rules():
    got = score("kccq", EXAMPLE, rules="kccq23-special-missing-2024")
    assert got["symptom_stability"] is None                               # q2 = 6 -> missing
    assert got["symptom_burden"] == pytest.approx(37.5, abs=1e-12)       # (50 + 25)/2, 2 of 3
    assert got["total_symptom"] == pytest.approx(56.25, abs=1e-12)       # (75 + 37.5)/2
    assert got["clinical_summary"] == pytest.approx(55.625, abs=1e-12)   # (55 + 56.25)/2
    assert got["overall_summary"] == pytest.approx(59.0625, abs=1e-12)   # (55+56.25+50+75)/4


@pytest.mark.parametrize("items,score_name", [
    ({"q1a": 5, "q1b": 5, "q1c": 6, "q1d": 6, "q1e": 6, "q1f": 6}, "physical_limitation"),  # 2 of 6
    ({"q3": 5}, "symptom_frequency"),                                                        # 1 of 4
    ({"q4": 5}, "symptom_burden"),                                                           # 1 of 3
    ({"q12": 5}, "quality_of_life"),                                                         # 1 of 3
    ({"q15a": 5, "q15b": 6, "q15c": 6, "q15d": 6}, "social_limitation"),                     # 1 of 4
])
def test_half_of_items_minimum(items, score_name):
    assert score("kccq", items)[score_name] is None


def test_minimum_reached():
    got = score("kccq", {"q1a": 5, "q1b": 5, "q1c": 1, "q10": 3, "q4": 5, "q6": 1})
    assert got["physical_limitation"] == pytest.approx(100 * (11 / 3 - 1) / 4, abs=1e-12)  # 3 of 6
    assert got["self_efficacy"] == pytest.approx(50.0, abs=1e-12)                         # 1 of 2
    assert got["symptom_burden"] == pytest.approx(50.0, abs=1e-12)                        # 2 of 3
    assert got["symptom_frequency"] is None
    assert got["total_symptom"] == pytest.approx(50.0, abs=1e-12)        # from burden alone
    assert got["overall_summary"] == pytest.approx((got["physical_limitation"] + 50.0) / 2, abs=1e-12)


def test_frequency_matches_kccq12_mapping():
    # Inferred correspondence (instruments.md 2.1): KCCQ-12 q2..q5 <-> KCCQ q3, q5, q7, q9.
    for a, b, c, d in [(1, 1, 1, 1), (2, 4, 7, 3), (5, 7, 7, 5), (3, 2, 6, 1)]:
        s23 = score("kccq", {"q3": a, "q5": b, "q7": c, "q9": d})["symptom_frequency"]
        s12 = score("kccq12", {"q2": a, "q3": b, "q4": c, "q5": d})["symptom_frequency"]
        assert s23 == pytest.approx(s12, abs=1e-12)


def test_rule_sets_named_documented_and_not_official():
    spec = INSTRUMENTS["kccq"]
    assert spec.default_rules == "kccq23-public-2024"
    assert spec.version == "kccq/kccq23-public-2024"
    assert set(spec.rule_sets) == {"kccq23-public-2024", "kccq23-special-missing-2024"}
    assert not any(rs.official for rs in spec.rule_sets.values())
    note = METHODS_NOTES["kccq"]
    assert "GAP" in note and "licensed" in note and "ASSUMED" in note
    assert spec.rule_sets["kccq23-public-2024"].params["min_items"]["physical_limitation"] == 3


@pytest.mark.parametrize("key,value", [("q3", 6), ("q5", 8), ("q10", 6), ("q2", 7), ("q15d", 0)])
def test_refuses_codes_outside_each_item_range(key, value):
    with pytest.raises(InstrumentInputError) as ei:
        score("kccq", {key: value})
    assert (ei.value.item, ei.value.value) == (key, value)
