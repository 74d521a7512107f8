"""SF-12 version 2: PUBLIC APPROXIMATION by the Spritzer/Hays algorithm (NOT the official scoring).

Source: K. Spritzer, ``SF12V2-1.SAS`` (UCLA, R. D. Hays' programs and utilities), as documented
in N. H. Bruun's Stata ``sf12`` help (v0.12, 2021) [S25 in shared/reference/instruments.md
section 4.2]. The official QualityMetric/Optum norm-based scoring (1998 or later norms, with the
proprietary Missing Data Estimation) is NOT public and is NOT what this module computes. The
scale norms are of uncertain year (labelled "US 1990" in the Stata port) and the aggregation
weights are the SF-36 orthogonal factor weights. Item wording is copyrighted (Optum/QualityMetric).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._kernel import lut, take
from ._spec import InstrumentSpec, ItemSpec, RuleSet, ScoreSpec

NAME = "sf12v2"

ITEMS = (
    ItemSpec("i1", "general health rating", 1, 5),
    ItemSpec("i2a", "limitation in moderate activities", 1, 3),
    ItemSpec("i2b", "limitation climbing several flights of stairs", 1, 3),
    ItemSpec("i3a", "time accomplished less because of physical health", 1, 5),
    ItemSpec("i3b", "time limited in kind of work because of physical health", 1, 5),
    ItemSpec("i4a", "time accomplished less because of emotional problems", 1, 5),
    ItemSpec("i4b", "time did work less carefully because of emotional problems", 1, 5),
    ItemSpec("i5", "pain interference with normal work", 1, 5),
    ItemSpec("i6a", "time feeling calm (mental health)", 1, 5),
    ItemSpec("i6b", "time having energy (vitality)", 1, 5),
    ItemSpec("i6c", "time feeling low in mood (mental health)", 1, 5),
    ItemSpec("i7", "time health interfered with social activities", 1, 5),
)
_BY_KEY = {it.key: it for it in ITEMS}

# Item recodes [S25]: i1 {1:5.0, 2:4.4, 3:3.4, 4:2.0, 5:1.0}; i5, i6a, i6b reversed (6 - x);
# i6c and i7 NOT reversed (the SAS code does not reverse them; Stata help 2021).
_RECODE: dict[str, dict[int, float]] = {
    "i1": {1: 5.0, 2: 4.4, 3: 3.4, 4: 2.0, 5: 1.0},
    "i5": {c: 6.0 - c for c in range(1, 6)},
    "i6a": {c: 6.0 - c for c in range(1, 6)},
    "i6b": {c: 6.0 - c for c in range(1, 6)},
}
_T = {it.key: lut(it, _RECODE.get(it.key, {c: float(c) for c in it.codes})) for it in ITEMS}

# scale -> (items, raw minimum, raw span) for 100 * (raw - min) / span
SCALES: dict[str, tuple[tuple[str, ...], float, float]] = {
    "pf": (("i2a", "i2b"), 2.0, 4.0),
    "rp": (("i3a", "i3b"), 2.0, 8.0),
    "bp": (("i5",), 1.0, 4.0),
    "gh": (("i1",), 1.0, 4.0),
    "vt": (("i6b",), 1.0, 4.0),
    "sf": (("i7",), 1.0, 4.0),
    "re": (("i4a", "i4b"), 2.0, 8.0),
    "mh": (("i6a", "i6c"), 2.0, 8.0),
}
# US general population means and SDs "not age/gender based" [S25] (year uncertain).
NORMS: dict[str, tuple[float, float]] = {
    "pf": (81.18122, 29.10588),
    "rp": (80.52856, 27.13526),
    "bp": (81.74015, 24.53019),
    "gh": (72.19795, 23.19041),
    "vt": (55.59090, 24.84380),
    "sf": (83.73973, 24.75775),
    "re": (86.41051, 22.35543),
    "mh": (70.18217, 20.50597),
}
# Orthogonal aggregation weights [S25] (same as the SF-36 factor weights, N=2393 sample [S29]).
PHYS_WEIGHTS = {"pf": 0.42402, "rp": 0.35119, "bp": 0.31754, "gh": 0.24954,
                "vt": 0.02877, "sf": -0.00753, "re": -0.19206, "mh": -0.22069}
MENT_WEIGHTS = {"pf": -0.22999, "rp": -0.12329, "bp": -0.09731, "gh": -0.01571,
                "vt": 0.23534, "sf": 0.26876, "re": 0.43407, "mh": 0.48581}


def _z(scale: str, x0_100: float) -> float:
    mean, sd = NORMS[scale]
    return (x0_100 - mean) / sd


def _range(weights: Mapping[str, float]) -> tuple[float, float]:
    lo = hi = 0.0
    for s, w in weights.items():
        a, b = w * _z(s, 0.0), w * _z(s, 100.0)
        lo += min(a, b)
        hi += max(a, b)
    return 50.0 + 10.0 * lo, 50.0 + 10.0 * hi


_T_UNIT = "T-score (mean 50, SD 10; Spritzer/Hays approximation)"
SCORES = tuple(
    ScoreSpec(s, f"{s.upper()} scale T-score", 50.0 + 10.0 * _z(s, 0.0), 50.0 + 10.0 * _z(s, 100.0),
              True, SCALES[s][0], unit=_T_UNIT)
    for s in SCALES
) + (
    ScoreSpec("pcs", "Physical Component Summary (Spritzer/Hays approximation)", *_range(PHYS_WEIGHTS),
              True, tuple(SCALES), unit=_T_UNIT),
    ScoreSpec("mcs", "Mental Component Summary (Spritzer/Hays approximation)", *_range(MENT_WEIGHTS),
              True, tuple(SCALES), unit=_T_UNIT),
)

RULES = {
    "sf12v2-spritzer-hays": RuleSet(
        name="sf12v2-spritzer-hays",
        version="sf12v2/spritzer-hays-approx",
        official=False,
        description=(
            "PUBLIC APPROXIMATION (Spritzer/Hays SF12V2-1.SAS), not the official Optum/QualityMetric "
            "scoring: scale = 0-100 transform, z with fixed US population means/SDs, T = 50 + 10 z; "
            "PCS/MCS = 50 + 10 x orthogonal weighted sum of the 8 z-scores. A scale is missing if any "
            "of its items is missing; PCS/MCS are missing if any scale is missing."
        ),
    )
}


def compute(idx: Mapping[str, np.ndarray | None], n: int, rules: RuleSet) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    agg_p = np.zeros(n)
    agg_m = np.zeros(n)
    for s, (keys, lo, span) in SCALES.items():
        raw = take(idx[keys[0]], _T[keys[0]], n)
        for k in keys[1:]:
            raw = raw + take(idx[k], _T[k], n)  # NaN propagates: a scale needs all its items
        mean, sd = NORMS[s]
        z = (100.0 * (raw - lo) / span - mean) / sd
        out[s] = 50.0 + 10.0 * z
        agg_p += PHYS_WEIGHTS[s] * z
        agg_m += MENT_WEIGHTS[s] * z
    out["pcs"] = 50.0 + 10.0 * agg_p
    out["mcs"] = 50.0 + 10.0 * agg_m
    return out


METHODS_NOTE = (
    "SF-12 version 2 scores were computed with the PUBLIC APPROXIMATION of Spritzer/Hays "
    "(UCLA SAS program SF12V2-1.SAS), NOT with the official Optum/QualityMetric norm-based "
    "scoring, whose constants (1998 or later US norms) and Missing Data Estimation are proprietary "
    "and were not available. Eight scales (PF, RP, BP, GH, VT, SF, RE, MH) are transformed to "
    "0-100, standardized with fixed US general-population means and SDs (norm year not stated in "
    "the source) and expressed as T-scores (50 + 10 z); PCS and MCS are 50 + 10 x the orthogonally "
    "weighted sum of the eight z-scores (SF-36 factor weights). A scale is missing if any of its "
    "items is missing and PCS/MCS are missing if any scale is missing. Values may differ from "
    "officially scored SF-12v2 results; if the trial licenses the official scoring, it supersedes "
    "these values. Scoring version sf12v2/spritzer-hays-approx."
)

SPEC = InstrumentSpec(
    name=NAME,
    title="SF-12 Health Survey version 2 - Spritzer/Hays public approximation (not official scoring)",
    items=ITEMS,
    scores=SCORES,
    default_rules="sf12v2-spritzer-hays",
    rule_sets=RULES,
    references=(
        "Spritzer K. SF12V2-1.SAS (UCLA, Hays programs and utilities).",
        "Bruun NH. Stata sf12 help, v0.12 (2021).",
        ("Official alternative (not used): Ware JE et al. How to Score Version 2 of the SF-12 Health "
         "Survey. QualityMetric, 2002."),
    ),
    methods_note=METHODS_NOTE,
    compute=compute,
)
