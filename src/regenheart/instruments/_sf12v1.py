"""SF-12 version 1 PCS-12 / MCS-12 (Ware, Kosinski & Keller 1995/1996; 1990 US norms).

Coefficients: Ware JE, Kosinski M, Keller SD. A 12-Item Short-Form Health Survey. Med Care
1996;34(3):220-233, and "SF-12: How to Score the SF-12 Physical and Mental Health Summary Scales"
(The Health Institute, New England Medical Center, 1995). The 70 indicator weights and both
constants below are the ones tabulated in shared/reference/instruments.md section 3.2, where
they were cross-checked in independent public implementations (lbscorer R port of the
Apolone/Mosconi SAS code; awell-score; Hanmer sf12v1.sas "checked against 2001 MEPS").
SF-12 is a registered trademark of the Medical Outcomes Trust; the item wording is copyrighted
and not shipped here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._kernel import lut, take
from ._spec import InstrumentSpec, ItemSpec, RuleSet, ScoreSpec

NAME = "sf12v1"

ITEMS = (
    ItemSpec("gh1", "general health rating", 1, 5),
    ItemSpec("pf02", "limitation in moderate activities", 1, 3),
    ItemSpec("pf04", "limitation climbing several flights of stairs", 1, 3),
    ItemSpec("rp2", "accomplished less because of physical health (yes/no)", 1, 2),
    ItemSpec("rp3", "limited in kind of work because of physical health (yes/no)", 1, 2),
    ItemSpec("re2", "accomplished less because of emotional problems (yes/no)", 1, 2),
    ItemSpec("re3", "less careful work because of emotional problems (yes/no)", 1, 2),
    ItemSpec("bp2", "pain interference with normal work", 1, 5),
    ItemSpec("mh3", "time feeling calm (mental health)", 1, 6),
    ItemSpec("vt2", "time having energy (vitality)", 1, 6),
    ItemSpec("mh4", "time feeling low in mood (mental health)", 1, 6),
    ItemSpec("sf2", "time health interfered with social activities", 1, 5),
)
_BY_KEY = {it.key: it for it in ITEMS}

PCS_CONSTANT = 56.57706
MCS_CONSTANT = 60.75781

# Indicator weights (PCS, MCS) keyed by item and RAW code as printed on the form (1 = first
# option). The reverse-coded items (RGH1 = 6 - GH1, RBP2 = 6 - BP2, RMH3 = 7 - MH3,
# RVT2 = 7 - VT2) are expressed on the raw code here, e.g. indicator GH1_1 (RGH1 = 1) is raw 5.
# The reference (best) category has no indicator (weight 0). Source: Ware et al. 1995/1996 as
# tabulated in shared/reference/instruments.md section 3.2.
WEIGHTS: dict[str, dict[int, tuple[float, float]]] = {
    "pf02": {1: (-7.23216, 3.93115), 2: (-3.45555, 1.86840), 3: (0.0, 0.0)},
    "pf04": {1: (-6.24397, 2.68282), 2: (-2.73557, 1.43103), 3: (0.0, 0.0)},
    "rp2": {1: (-4.61617, 1.44060), 2: (0.0, 0.0)},
    "rp3": {1: (-5.51747, 1.66968), 2: (0.0, 0.0)},
    # BP2_k: RBP2 = 6 - raw = k
    "bp2": {5: (-11.25544, 1.48619), 4: (-8.38063, 1.76691), 3: (-6.50522, 1.49384),
            2: (-3.80130, 0.90384), 1: (0.0, 0.0)},
    # GH1_k: RGH1 = 6 - raw = k
    "gh1": {5: (-8.37399, -1.71175), 4: (-5.56461, -0.16891), 3: (-3.02396, 0.03482),
            2: (-1.31872, -0.06064), 1: (0.0, 0.0)},
    # VT2_k: RVT2 = 7 - raw = k
    "vt2": {6: (-2.44706, -6.02409), 5: (-2.02168, -4.88962), 4: (-1.61850, -3.29805),
            3: (-1.14387, -1.65178), 2: (-0.42251, -0.92057), 1: (0.0, 0.0)},
    "sf2": {1: (-0.33682, -6.29724), 2: (-0.94342, -8.26066), 3: (-0.18043, -5.63286),
            4: (0.11038, -3.13896), 5: (0.0, 0.0)},
    "re2": {1: (3.04365, -6.82672), 2: (0.0, 0.0)},
    "re3": {1: (2.32091, -5.69921), 2: (0.0, 0.0)},
    # MH3_k: RMH3 = 7 - raw = k
    "mh3": {6: (3.46638, -10.19085), 5: (2.90426, -7.92717), 4: (2.37241, -6.31121),
            3: (1.36689, -4.09842), 2: (0.66514, -1.94949), 1: (0.0, 0.0)},
    "mh4": {1: (4.61446, -16.15395), 2: (3.41593, -10.77911), 3: (2.34247, -8.09914),
            4: (1.28044, -4.59055), 5: (0.41188, -1.95934), 6: (0.0, 0.0)},
}

_PCS_T = {k: lut(_BY_KEY[k], {c: w[0] for c, w in tab.items()}) for k, tab in WEIGHTS.items()}
_MCS_T = {k: lut(_BY_KEY[k], {c: w[1] for c, w in tab.items()}) for k, tab in WEIGHTS.items()}

PCS_RANGE = (PCS_CONSTANT + sum(min(w[0] for w in t.values()) for t in WEIGHTS.values()),
             PCS_CONSTANT + sum(max(w[0] for w in t.values()) for t in WEIGHTS.values()))
MCS_RANGE = (MCS_CONSTANT + sum(min(w[1] for w in t.values()) for t in WEIGHTS.values()),
             MCS_CONSTANT + sum(max(w[1] for w in t.values()) for t in WEIGHTS.values()))

RULES = {
    "sf12v1-ware-us1990": RuleSet(
        name="sf12v1-ware-us1990",
        version="sf12v1/ware-1995-us1990",
        official=True,
        description=(
            "Ware, Kosinski & Keller 1995/1996 PCS-12/MCS-12 with 1990 US norms (35 indicator weights "
            "per summary + constants 56.57706 / 60.75781). Any missing item -> PCS and MCS missing "
            "(no QualityMetric Missing Data Estimation)."
        ),
    )
}

SCORES = (
    ScoreSpec("pcs", "Physical Component Summary (PCS-12, 1990 US norms)", *PCS_RANGE, True,
              tuple(it.key for it in ITEMS), unit="norm-based T-score (mean 50, SD 10)"),
    ScoreSpec("mcs", "Mental Component Summary (MCS-12, 1990 US norms)", *MCS_RANGE, True,
              tuple(it.key for it in ITEMS), unit="norm-based T-score (mean 50, SD 10)"),
)


def compute(idx: Mapping[str, np.ndarray | None], n: int, rules: RuleSet) -> dict[str, np.ndarray]:
    pcs = np.full(n, PCS_CONSTANT)
    mcs = np.full(n, MCS_CONSTANT)
    for it in ITEMS:  # 12 vector operations; NaN (unanswered) propagates to both summaries
        pcs += take(idx[it.key], _PCS_T[it.key], n)
        mcs += take(idx[it.key], _MCS_T[it.key], n)
    return {"pcs": pcs, "mcs": mcs}


METHODS_NOTE = (
    "SF-12 (version 1) physical and mental component summaries (PCS-12, MCS-12) were computed "
    "with the published algorithm of Ware, Kosinski & Keller (Med Care 1996; How to Score the "
    "SF-12, 1995) using 1990 US general-population norms (mean 50, SD 10): 35 indicator weights "
    "per summary plus constants 56.57706 (PCS) and 60.75781 (MCS). If any of the 12 items is "
    "missing, PCS and MCS are missing (the proprietary QualityMetric Missing Data Estimation was "
    "not applied). Higher scores = better health. Scoring version sf12v1/ware-1995-us1990."
)

SPEC = InstrumentSpec(
    name=NAME,
    title="SF-12 Health Survey version 1 (1990 US norms)",
    items=ITEMS,
    scores=SCORES,
    default_rules="sf12v1-ware-us1990",
    rule_sets=RULES,
    references=(
        "Ware J Jr, Kosinski M, Keller SD. Med Care 1996;34(3):220-233.",
        ("Ware JE, Kosinski M, Keller SD. SF-12: How to Score the SF-12 Physical and Mental Health "
         "Summary Scales. The Health Institute, New England Medical Center, 1995."),
    ),
    methods_note=METHODS_NOTE,
    compute=compute,
)
