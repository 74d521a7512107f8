"""KCCQ (original 23-item version): domain map from public sources, missing-data rules ASSUMED.

What is public (shared/reference/instruments.md section 2): 23 items, the item -> domain map,
the 0-100 transforms and the summary definitions [S3][S9][S10][S11]. What is NOT public: the
minimum number of answered items per domain and how the special answers ("limited for other
reasons", "does not apply", "no symptoms", "no swelling/fatigue/shortness of breath") are
scored; these are in the licensed CV Outcomes scoring document [S7]. The gap is handled with
explicit, named rule sets whose every assumption is stated in ``RULES`` and ``METHODS_NOTE``.
Item wording is copyrighted (CV Outcomes licence); only codes and short topics are shipped.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._kernel import lut, mean_min, take
from ._spec import InstrumentSpec, ItemSpec, RuleSet, ScoreSpec

NAME = "kccq"

_OTHER = "limited for other reasons / did not do the activity"
_NA = "does not apply / did not do for other reasons"

ITEMS = (
    ItemSpec("q1a", "physical limitation: dressing", 1, 6, {6: _OTHER}),
    ItemSpec("q1b", "physical limitation: showering/bathing", 1, 6, {6: _OTHER}),
    ItemSpec("q1c", "physical limitation: walking 1 block on level ground", 1, 6, {6: _OTHER}),
    ItemSpec("q1d", "physical limitation: yardwork/housework/carrying groceries", 1, 6, {6: _OTHER}),
    ItemSpec("q1e", "physical limitation: climbing a flight of stairs", 1, 6, {6: _OTHER}),
    ItemSpec("q1f", "physical limitation: hurrying or jogging", 1, 6, {6: _OTHER}),
    ItemSpec("q2", "change in symptoms over 2 weeks (stability)", 1, 6, {6: "no symptoms in the period"}),
    ItemSpec("q3", "frequency of swelling", 1, 5),
    ItemSpec("q4", "bother from swelling", 1, 6, {6: "no swelling"}),
    ItemSpec("q5", "frequency of fatigue", 1, 7),
    ItemSpec("q6", "bother from fatigue", 1, 6, {6: "no fatigue"}),
    ItemSpec("q7", "frequency of shortness of breath", 1, 7),
    ItemSpec("q8", "bother from shortness of breath", 1, 6, {6: "no shortness of breath"}),
    ItemSpec("q9", "frequency of sleeping sitting up (orthopnea)", 1, 5),
    ItemSpec("q10", "self-efficacy: knowing what to do if heart failure worsens", 1, 5),
    ItemSpec("q11", "self-efficacy: understanding how to prevent worsening", 1, 5),
    ItemSpec("q12", "limitation of enjoyment of life", 1, 5),
    ItemSpec("q13", "satisfaction if life continued as now", 1, 5),
    ItemSpec("q14", "feeling discouraged/down because of heart failure", 1, 5),
    ItemSpec("q15a", "social limitation: hobbies/recreation", 1, 6, {6: _NA}),
    ItemSpec("q15b", "social limitation: working or household chores", 1, 6, {6: _NA}),
    ItemSpec("q15c", "social limitation: visiting family or friends", 1, 6, {6: _NA}),
    ItemSpec("q15d", "social limitation: intimate relationships", 1, 6, {6: _NA}),
)
_BY_KEY = {it.key: it for it in ITEMS}

PL_ITEMS = ("q1a", "q1b", "q1c", "q1d", "q1e", "q1f")
SF_ITEMS = ("q3", "q5", "q7", "q9")
SF_DIVISORS = {"q3": 4, "q5": 6, "q7": 6, "q9": 4}
SB_ITEMS = ("q4", "q6", "q8")
SE_ITEMS = ("q10", "q11")
QL_ITEMS = ("q12", "q13", "q14")
SL_ITEMS = ("q15a", "q15b", "q15c", "q15d")

# "At least half of the domain's items" (ceil(n/2)), by analogy with the official KCCQ-12 sheet
# (PL 2/3, SF 2/4, QL 1/2, SL 2/3). ASSUMPTION, not from the licensed KCCQ-23 document.
_HALF = {
    "physical_limitation": 3,  # of 6
    "symptom_stability": 1,    # of 1
    "symptom_frequency": 2,    # of 4
    "symptom_burden": 2,       # of 3
    "self_efficacy": 1,        # of 2
    "quality_of_life": 2,      # of 3
    "social_limitation": 2,    # of 4
    "total_symptom": 1,        # of 2 domains
    "clinical_summary": 1,     # of 2 domains
    "overall_summary": 1,      # of 4 domains
}

_SPECIAL_MISSING_Q1_Q15 = {**{k: {6: None} for k in PL_ITEMS}, **{k: {6: None} for k in SL_ITEMS}}

RULES = {
    "kccq23-public-2024": RuleSet(
        name="kccq23-public-2024",
        version="kccq/kccq23-public-2024",
        official=False,
        description=(
            "Public domain map and transforms [S11]; ASSUMED missing-data rules: code 6 on q1a-f "
            "('limited for other reasons') and q15a-d ('does not apply') = missing (by analogy with "
            "the official KCCQ-12 sheet); q2 code 6 ('no symptoms') scored as 3 (= 'not changed', "
            "stability 50); q4/q6/q8 code 6 ('no swelling/fatigue/shortness of breath') scored as 5 "
            "(= 'not at all bothersome', burden 100); minimum answered items = at least half of the "
            "domain's items (PL 3/6, SF 2/4, SB 2/3, SE 1/2, QL 2/3, SL 2/4, stability 1/1); "
            "summaries = mean of the available component scores (>=1)."
        ),
        params={
            "recode": {**_SPECIAL_MISSING_Q1_Q15, "q2": {6: 3}, "q4": {6: 5}, "q6": {6: 5}, "q8": {6: 5}},
            "min_items": _HALF,
        },
    ),
    "kccq23-special-missing-2024": RuleSet(
        name="kccq23-special-missing-2024",
        version="kccq/kccq23-special-missing-2024",
        official=False,
        description=(
            "Sensitivity rule set: as kccq23-public-2024 but EVERY special code (q1a-f, q2, q4, q6, "
            "q8, q15a-d code 6) is scored as missing."
        ),
        params={
            "recode": {**_SPECIAL_MISSING_Q1_Q15, "q2": {6: None}, "q4": {6: None}, "q6": {6: None},
                       "q8": {6: None}},
            "min_items": _HALF,
        },
    ),
}

_DOMAINS = ("physical_limitation", "symptom_stability", "symptom_frequency", "symptom_burden",
            "self_efficacy", "quality_of_life", "social_limitation")

SCORES = (
    ScoreSpec("physical_limitation", "Physical Limitation", 0.0, 100.0, True, PL_ITEMS),
    ScoreSpec("symptom_stability", "Symptom Stability", 0.0, 100.0, True, ("q2",)),
    ScoreSpec("symptom_frequency", "Symptom Frequency", 0.0, 100.0, True, SF_ITEMS),
    ScoreSpec("symptom_burden", "Symptom Burden (severity)", 0.0, 100.0, True, SB_ITEMS),
    ScoreSpec("total_symptom", "Total Symptom Score", 0.0, 100.0, True,
              ("symptom_frequency", "symptom_burden")),
    ScoreSpec("self_efficacy", "Self-Efficacy", 0.0, 100.0, True, SE_ITEMS),
    ScoreSpec("quality_of_life", "Quality of Life", 0.0, 100.0, True, QL_ITEMS),
    ScoreSpec("social_limitation", "Social Limitation", 0.0, 100.0, True, SL_ITEMS),
    ScoreSpec("clinical_summary", "Clinical Summary Score", 0.0, 100.0, True,
              ("physical_limitation", "total_symptom")),
    ScoreSpec("overall_summary", "Overall Summary Score", 0.0, 100.0, True,
              ("physical_limitation", "total_symptom", "quality_of_life", "social_limitation")),
)


def _tables(recode: Mapping[str, Mapping[int, int | None]]) -> dict[str, np.ndarray]:
    """code -> 0..100 item score under a rule set's special-code recoding (NaN = missing)."""
    out = {}
    for it in ITEMS:
        divisor = SF_DIVISORS.get(it.key, 4)
        rec = recode.get(it.key, {})
        values: dict[int, float | None] = {}
        for c in range(it.low, it.high + 1):
            r = rec.get(c, c)
            if r is None or not (1 <= r <= divisor + 1):
                values[c] = None
            else:
                values[c] = 100.0 * (r - 1) / divisor
        out[it.key] = lut(it, values)
    return out


_TABLE_CACHE: dict[str, dict[str, np.ndarray]] = {name: _tables(rs.params["recode"])
                                                  for name, rs in RULES.items()}


def compute(idx: Mapping[str, np.ndarray | None], n: int, rules: RuleSet) -> dict[str, np.ndarray]:
    tables = _TABLE_CACHE.get(rules.name)
    if tables is None:  # a rule set built outside this module
        tables = _tables(rules.params["recode"])
    m = rules.params["min_items"]

    def dom(name: str, keys: tuple[str, ...]) -> np.ndarray:
        return mean_min([take(idx[k], tables[k], n) for k in keys], m[name], n)

    out = {
        "physical_limitation": dom("physical_limitation", PL_ITEMS),
        "symptom_stability": dom("symptom_stability", ("q2",)),
        "symptom_frequency": dom("symptom_frequency", SF_ITEMS),
        "symptom_burden": dom("symptom_burden", SB_ITEMS),
        "self_efficacy": dom("self_efficacy", SE_ITEMS),
        "quality_of_life": dom("quality_of_life", QL_ITEMS),
        "social_limitation": dom("social_limitation", SL_ITEMS),
    }
    out["total_symptom"] = mean_min([out["symptom_frequency"], out["symptom_burden"]],
                                    m["total_symptom"], n)
    out["clinical_summary"] = mean_min([out["physical_limitation"], out["total_symptom"]],
                                       m["clinical_summary"], n)
    out["overall_summary"] = mean_min(
        [out["physical_limitation"], out["total_symptom"], out["quality_of_life"], out["social_limitation"]],
        m["overall_summary"], n)
    return {s.name: out[s.name] for s in SCORES}


METHODS_NOTE = (
    "The 23-item KCCQ was scored with the publicly documented domain structure and 0-100 "
    "transforms (Green et al. JACC 2000; LOINC 71941-9; public implementation of the domain map): "
    "Physical Limitation (items 1a-f), Symptom Stability (2), Symptom Frequency (3, 5, 7, 9; each "
    "rescaled with its own divisor), Symptom Burden (4, 6, 8), Total Symptom = mean(Frequency, "
    "Burden), Self-Efficacy (10, 11), Quality of Life (12-14), Social Limitation (15a-d), Clinical "
    "Summary = mean(Physical Limitation, Total Symptom), Overall Summary = mean(Physical "
    "Limitation, Total Symptom, Quality of Life, Social Limitation). GAP: the official minimum "
    "number of answered items per domain and the scoring of the special answers are given only in "
    "the licensed CV Outcomes scoring instructions, which were not available; they were therefore "
    "ASSUMED (rule set kccq23-public-2024): 'limited for other reasons' (items 1a-f) and 'does not "
    "apply' (15a-d) are missing; 'no symptoms' on item 2 is scored as 'not changed' and 'no "
    "swelling/fatigue/shortness of breath' on items 4, 6, 8 as 'not at all bothersome'; a domain "
    "needs at least half of its items answered (by analogy with the official KCCQ-12 rules; an "
    "earlier unverified suggestion of >=1 item for the three-item Symptom Burden and Quality of "
    "Life domains was not adopted); summaries use the available component scores. A sensitivity "
    "rule set (kccq23-special-missing-2024) treats every special answer as missing. These rules "
    "must be confirmed against the licensed scoring document before the primary analysis. "
    "Higher scores = better health status."
)

SPEC = InstrumentSpec(
    name=NAME,
    title="Kansas City Cardiomyopathy Questionnaire, original 23-item version (KCCQ)",
    items=ITEMS,
    scores=SCORES,
    default_rules="kccq23-public-2024",
    rule_sets=RULES,
    references=(
        "Green CP, Porter CB, Bresnahan DR, Spertus JA. JACC 2000;35:1245-55.",
        "LOINC 71941-9 KCCQ panel.",
        "Watanabe-Fujinuma E et al. HQLO 2020;18:236 (Table 6).",
        "CV Outcomes licensed KCCQ scoring instructions (NOT available: see methods note).",
    ),
    methods_note=METHODS_NOTE,
    compute=compute,
)
