"""KCCQ-12: official CV Outcomes scoring (Rev. 2012).

Source of the rules: "Kansas City Cardiomyopathy Questionnaire (KCCQ-12) Scoring Information",
CV Outcomes, Rev. 2012 [S1 in shared/reference/instruments.md section 1]; Spertus & Jones,
Circ Cardiovasc Qual Outcomes 2015;8:469-476 [S2]. Only item codes, short topic labels and the
scoring rules are shipped here; the item wording is copyrighted (licence: CV Outcomes).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._kernel import lut, mean_min, take
from ._spec import InstrumentSpec, ItemSpec, RuleSet, ScoreSpec

NAME = "kccq12"

_OTHER = "limited for other reasons / did not do the activity (scored as missing)"
_NA = "does not apply / did not do for other reasons (scored as missing)"

ITEMS = (
    ItemSpec("q1a", "physical limitation: showering/bathing", 1, 6, {6: _OTHER}),
    ItemSpec("q1b", "physical limitation: walking 1 block on level ground", 1, 6, {6: _OTHER}),
    ItemSpec("q1c", "physical limitation: hurrying or jogging", 1, 6, {6: _OTHER}),
    ItemSpec("q2", "frequency of swelling (feet/ankles/legs)", 1, 5),
    ItemSpec("q3", "frequency of fatigue", 1, 7),
    ItemSpec("q4", "frequency of shortness of breath", 1, 7),
    ItemSpec("q5", "frequency of sleeping sitting up (orthopnea)", 1, 5),
    ItemSpec("q6", "limitation of enjoyment of life", 1, 5),
    ItemSpec("q7", "satisfaction if life continued as now", 1, 5),
    ItemSpec("q8a", "social limitation: hobbies/recreation", 1, 6, {6: _NA}),
    ItemSpec("q8b", "social limitation: working or household chores", 1, 6, {6: _NA}),
    ItemSpec("q8c", "social limitation: visiting family or friends", 1, 6, {6: _NA}),
)
_BY_KEY = {it.key: it for it in ITEMS}

RULES = {
    "kccq12-cvoutcomes-2012": RuleSet(
        name="kccq12-cvoutcomes-2012",
        version="kccq12/cvoutcomes-2012",
        official=True,
        description=(
            "Official CV Outcomes KCCQ-12 scoring (Rev. 2012): code 6 on q1a-c/q8a-c = missing; "
            "PL needs >=2 of 3 items, SF >=2 of 4 (each item rescaled first with its own divisor "
            "4/6/6/4), QL >=1 of 2, SL >=2 of 3; summary = mean of the available domains (>=1). "
            "No intermediate rounding."
        ),
        params={"min_items": {"physical_limitation": 2, "symptom_frequency": 2,
                              "quality_of_life": 1, "social_limitation": 2, "summary": 1}},
    )
}

SCORES = (
    ScoreSpec("physical_limitation", "Physical Limitation (KCCQ12-PL)", 0.0, 100.0, True,
              ("q1a", "q1b", "q1c")),
    ScoreSpec("symptom_frequency", "Symptom Frequency (KCCQ12-SF)", 0.0, 100.0, True,
              ("q2", "q3", "q4", "q5")),
    ScoreSpec("quality_of_life", "Quality of Life (KCCQ12-QL)", 0.0, 100.0, True, ("q6", "q7")),
    ScoreSpec("social_limitation", "Social Limitation (KCCQ12-SL)", 0.0, 100.0, True,
              ("q8a", "q8b", "q8c")),
    ScoreSpec("summary", "KCCQ-12 Summary Score", 0.0, 100.0, True,
              ("physical_limitation", "symptom_frequency", "quality_of_life", "social_limitation")),
)


def _rescale(key: str, divisor: int, missing: tuple[int, ...] = ()) -> np.ndarray:
    it = _BY_KEY[key]
    return lut(it, {c: (None if c in missing else 100.0 * (c - 1) / divisor)
                    for c in range(it.low, it.high + 1)})


# Tables: code -> 0..100 item score (NaN for unanswered / special code 6 on q1*, q8*).
_T = {
    **{k: _rescale(k, 4, (6,)) for k in ("q1a", "q1b", "q1c", "q8a", "q8b", "q8c")},
    "q2": _rescale("q2", 4), "q3": _rescale("q3", 6), "q4": _rescale("q4", 6),
    "q5": _rescale("q5", 4), "q6": _rescale("q6", 4), "q7": _rescale("q7", 4),
}


def compute(idx: Mapping[str, np.ndarray | None], n: int, rules: RuleSet) -> dict[str, np.ndarray]:
    m = rules.params["min_items"]

    def items(*keys: str) -> list[np.ndarray]:
        return [take(idx[k], _T[k], n) for k in keys]

    # PL/QL/SL: 100*(mean-1)/4 == mean of the per-item rescaled values (same divisor).
    pl = mean_min(items("q1a", "q1b", "q1c"), m["physical_limitation"], n)
    sf = mean_min(items("q2", "q3", "q4", "q5"), m["symptom_frequency"], n)
    ql = mean_min(items("q6", "q7"), m["quality_of_life"], n)
    sl = mean_min(items("q8a", "q8b", "q8c"), m["social_limitation"], n)
    summary = mean_min([pl, sf, ql, sl], m["summary"], n)
    return {"physical_limitation": pl, "symptom_frequency": sf, "quality_of_life": ql,
            "social_limitation": sl, "summary": summary}


METHODS_NOTE = (
    "KCCQ-12 was scored with the official CV Outcomes algorithm (KCCQ-12 Scoring Information, "
    "Rev. 2012; Spertus & Jones 2015): responses 'limited for other reasons / does not apply' "
    "(code 6 on items 1a-c and 8a-c) are treated as missing; each domain is the mean of the "
    "answered items transformed to 0-100 (Symptom Frequency items rescaled individually), "
    "requiring at least 2 of 3 items for Physical Limitation, 2 of 4 for Symptom Frequency, "
    "1 of 2 for Quality of Life and 2 of 3 for Social Limitation; the Summary Score is the mean "
    "of the available domain scores. No intermediate rounding. Higher scores = better health "
    "status. Scoring version kccq12/cvoutcomes-2012."
)

SPEC = InstrumentSpec(
    name=NAME,
    title="Kansas City Cardiomyopathy Questionnaire, 12-item short form (KCCQ-12)",
    items=ITEMS,
    scores=SCORES,
    default_rules="kccq12-cvoutcomes-2012",
    rule_sets=RULES,
    references=(
        "CV Outcomes. KCCQ-12 Scoring Information, Rev. 2012.",
        "Spertus JA, Jones PG. Circ Cardiovasc Qual Outcomes 2015;8:469-476.",
    ),
    methods_note=METHODS_NOTE,
    compute=compute,
)
