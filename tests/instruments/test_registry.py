"""Registry metadata, version strings, methods notes and the copyright rule (no item wording)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regenheart import instruments
from regenheart.instruments import INSTRUMENTS, METHODS_NOTES, SCORING_VERSION, scoring_version

EXPECTED_ITEMS = {
    "kccq12": ["q1a", "q1b", "q1c", "q2", "q3", "q4", "q5", "q6", "q7", "q8a", "q8b", "q8c"],
    "kccq": (["q1a", "q1b", "q1c", "q1d", "q1e", "q1f"] + [f"q{i}" for i in range(2, 15)]
             + ["q15a", "q15b", "q15c", "q15d"]),
    "sf12v1": ["gh1", "pf02", "pf04", "rp2", "rp3", "re2", "re3", "bp2", "mh3", "vt2", "mh4", "sf2"],
    "sf12v2": ["i1", "i2a", "i2b", "i3a", "i3b", "i4a", "i4b", "i5", "i6a", "i6b", "i6c", "i7"],
    "mlhfq": [f"q{i}" for i in range(1, 22)],
}
EXPECTED_SCORES = {
    "kccq12": ["physical_limitation", "symptom_frequency", "quality_of_life", "social_limitation", "summary"],
    "sf12v1": ["pcs", "mcs"],
    "sf12v2": ["pf", "rp", "bp", "gh", "vt", "sf", "re", "mh", "pcs", "mcs"],
    "mlhfq": ["total", "physical", "emotional"],
}


def test_instrument_items_and_scores():
    assert set(INSTRUMENTS) == set(EXPECTED_ITEMS)
    for name, keys in EXPECTED_ITEMS.items():
        assert list(INSTRUMENTS[name].item_keys) == keys
    for name, scores in EXPECTED_SCORES.items():
        assert list(INSTRUMENTS[name].score_names) == scores


def test_allowed_codes():
    k = INSTRUMENTS["kccq12"]
    assert k.item("q1a").codes == (1, 2, 3, 4, 5, 6) and 6 in k.item("q1a").special_codes
    assert k.item("q3").codes == tuple(range(1, 8)) and not k.item("q3").special_codes
    assert INSTRUMENTS["sf12v1"].item("mh3").codes == tuple(range(1, 7))
    assert INSTRUMENTS["sf12v2"].item("i2a").codes == (1, 2, 3)
    assert INSTRUMENTS["mlhfq"].item("q21").codes == tuple(range(6))


def test_score_metadata():
    for spec in INSTRUMENTS.values():
        for s in spec.scores:
            assert s.minimum < s.maximum
            assert s.direction in ("higher = better", "higher = worse")
    assert INSTRUMENTS["mlhfq"].score_spec("total").direction == "higher = worse"
    assert INSTRUMENTS["kccq12"].score_spec("summary").direction == "higher = better"
    # SF-12 v1 bounds: constant + sum of the most negative / most positive weights per item
    pcs = INSTRUMENTS["sf12v1"].score_spec("pcs")
    assert pcs.maximum > 56.57706 > pcs.minimum


def test_versions():
    assert INSTRUMENTS["kccq12"].version == "kccq12/cvoutcomes-2012"
    assert INSTRUMENTS["kccq"].version == "kccq/kccq23-public-2024"
    assert INSTRUMENTS["mlhfq"].version == "mlhfq/complete-items"
    assert re.fullmatch(r"regenheart-instruments/\d+\.\d+\.\d+", SCORING_VERSION)
    assert scoring_version("kccq12") == f"kccq12/cvoutcomes-2012;{SCORING_VERSION}"
    assert scoring_version("mlhfq", "mlhfq-prorate-20pct").startswith("mlhfq/prorate-20pct;")
    versions = [rs.version for spec in INSTRUMENTS.values() for rs in spec.rule_sets.values()]
    assert len(versions) == len(set(versions))


def test_methods_notes():
    assert set(METHODS_NOTES) == set(INSTRUMENTS)
    assert "GAP" in METHODS_NOTES["kccq"] and "GAP" in METHODS_NOTES["mlhfq"]
    assert "1990" in METHODS_NOTES["sf12v1"]
    with pytest.raises(TypeError):
        METHODS_NOTES["kccq"] = "changed"  # read-only mapping


def test_topic_labels_are_short_paraphrases():
    # Copyright rule: topics are short labels, never question text.
    for spec in INSTRUMENTS.values():
        for item in spec.items:
            assert 3 <= len(item.topic) <= 70, item
            assert "?" not in item.topic
            assert not item.topic.lower().startswith(("how ", "do you", "in the past"))


def test_package_is_self_contained():
    # No imports from other regenheart sub-packages and no I/O in the package.
    root = Path(instruments.__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+regenheart\.(?!instruments)", text, re.MULTILINE), path
        assert "open(" not in text and "read_csv" not in text, path
