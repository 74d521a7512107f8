"""Minnesota Living with Heart Failure Questionnaire (MLHFQ): total, physical, emotional sums.

Public facts (shared/reference/instruments.md section 5): 21 items scored 0..5, higher = worse, no
reverse coding; total = sum of items 1-21 (LOINC 71938-5), physical = items 2, 3, 4, 5, 6, 7, 12,
13 (LOINC 85618-7), emotional = items 17-21 (LOINC 85609-6) [S30][S31][S35]. The missing-data
rule is NOT public (licensed University of Minnesota materials) and is handled by named rule sets.
MLHFQ wording is copyrighted (Regents of the University of Minnesota); not shipped here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._kernel import lut, take
from ._spec import InstrumentSpec, ItemSpec, RuleSet, ScoreSpec

NAME = "mlhfq"

_TOPICS = (
    "swelling in ankles or legs",
    "needing to rest during the day",
    "walking about or climbing stairs",
    "work around the house or yard",
    "going places away from home",
    "sleeping well at night",
    "doing things with friends or family",
    "working to earn a living",
    "recreation, sports or hobbies",
    "sexual activities",
    "eating less of the foods you like",
    "shortness of breath",
    "tiredness/fatigue/low energy",
    "staying in hospital",
    "medical costs",
    "treatment side effects",
    "feeling a burden to family or friends",
    "loss of self-control",
    "worry",
    "concentrating or remembering",
    "feeling depressed",
)
ITEMS = tuple(ItemSpec(f"q{i}", t, 0, 5) for i, t in enumerate(_TOPICS, start=1))

TOTAL_ITEMS = tuple(f"q{i}" for i in range(1, 22))
PHYSICAL_ITEMS = tuple(f"q{i}" for i in (2, 3, 4, 5, 6, 7, 12, 13))
EMOTIONAL_ITEMS = tuple(f"q{i}" for i in (17, 18, 19, 20, 21))
SCALE_ITEMS = {"total": TOTAL_ITEMS, "physical": PHYSICAL_ITEMS, "emotional": EMOTIONAL_ITEMS}

SCORES = (
    ScoreSpec("total", "Total score", 0.0, 105.0, False, TOTAL_ITEMS),
    ScoreSpec("physical", "Physical dimension", 0.0, 40.0, False, PHYSICAL_ITEMS),
    ScoreSpec("emotional", "Emotional dimension", 0.0, 25.0, False, EMOTIONAL_ITEMS),
)

RULES = {
    "mlhfq-complete": RuleSet(
        name="mlhfq-complete",
        version="mlhfq/complete-items",
        official=False,
        description=(
            "Sums of the item codes; a score is computed only when ALL of its contributing items are "
            "answered (conservative interim rule: the official missing-data rule is in the licensed "
            "University of Minnesota materials and was not available)."
        ),
        params={"max_missing_fraction": 0.0},
    ),
    "mlhfq-prorate-20pct": RuleSet(
        name="mlhfq-prorate-20pct",
        version="mlhfq/prorate-20pct",
        official=False,
        description=(
            "NON-OFFICIAL option for sensitivity analyses: when at most 20% of a score's items are "
            "missing (total <= 4 of 21, physical <= 1 of 8, emotional <= 1 of 5), the score is the "
            "mean of the answered items x the number of items (prorated sum, may be non-integer); "
            "otherwise missing. Not endorsed by the instrument owner."
        ),
        params={"max_missing_fraction": 0.2},
    ),
}

_T = {it.key: lut(it, {c: float(c) for c in it.codes}) for it in ITEMS}


def compute(idx: Mapping[str, np.ndarray | None], n: int, rules: RuleSet) -> dict[str, np.ndarray]:
    frac = float(rules.params["max_missing_fraction"])
    vals = {k: take(idx[k], _T[k], n) for k in TOTAL_ITEMS}
    out = {}
    for name, keys in SCALE_ITEMS.items():
        if frac <= 0.0:
            total = np.zeros(n)
            for k in keys:
                total += vals[k]  # NaN propagates: all items required
            out[name] = total
            continue
        s = np.zeros(n)
        c = np.zeros(n)
        for k in keys:
            ok = ~np.isnan(vals[k])
            s += np.where(ok, vals[k], 0.0)
            c += ok
        n_items = len(keys)
        min_answered = n_items - int(np.floor(frac * n_items + 1e-9))
        with np.errstate(invalid="ignore", divide="ignore"):
            prorated = np.where(c == n_items, s, s / c * n_items)
        prorated[c < min_answered] = np.nan
        out[name] = prorated
    return out


METHODS_NOTE = (
    "MLHFQ scores are sums of the 0-5 item responses (higher = worse): total (items 1-21, 0-105), "
    "physical dimension (items 2-7, 12, 13; 0-40) and emotional dimension (items 17-21; 0-25) "
    "(LOINC 71938-5, 85618-7, 85609-6). GAP: the official missing-data rule is given only in the "
    "licensed University of Minnesota materials, which were not available; by default (rule set "
    "mlhfq-complete) a score is computed only when all of its items are answered. A non-official "
    "sensitivity option (mlhfq-prorate-20pct) prorates the sum when at most 20% of the items are "
    "missing."
)

SPEC = InstrumentSpec(
    name=NAME,
    title="Minnesota Living with Heart Failure Questionnaire (MLHFQ)",
    items=ITEMS,
    scores=SCORES,
    default_rules="mlhfq-complete",
    rule_sets=RULES,
    references=(
        "LOINC 71939-3 panel, 71938-5 total, 85618-7 physical, 85609-6 emotional.",
        "University of Minnesota MLHFQ licensing page (licensed materials not available).",
    ),
    methods_note=METHODS_NOTE,
    compute=compute,
)
