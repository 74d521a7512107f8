"""Published interpretation thresholds: clinically important differences and descriptive bands.

Only values with a source in shared/reference/instruments.md are tabulated; where the reference
records NOT FOUND, the table says so (``NOT_FOUND``) and :func:`responder` refuses to invent a
threshold. Source tags in brackets ([S6] ...) refer to section 14 of that reference.

Responder convention (state it in the SAP): an improvement responder has a change of AT LEAST the
threshold in the better direction (``change >= threshold`` for higher-is-better scores); a
deterioration responder has a change of at least the threshold in the worse direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "CLINICALLY_IMPORTANT_DIFFERENCES",
    "KCCQ_BANDS",
    "MLHFQ_TOTAL_BANDS",
    "NOT_FOUND",
    "ImportantDifference",
    "NotFoundEntry",
    "ThresholdNotFoundError",
    "band",
    "classify_change",
    "responder",
    "thresholds",
]

Level = Literal["small", "moderate", "large"]
LEVELS: tuple[str, ...] = ("small", "moderate", "large")


@dataclass(frozen=True)
class ImportantDifference:
    """A published clinically important within-patient change of one score (points of the score)."""

    instrument: str
    score: str
    level: str
    threshold: float
    higher_is_better: bool
    source: str


@dataclass(frozen=True)
class NotFoundEntry:
    """A score for which no sourced clinically important difference was found (do not invent one)."""

    instrument: str
    score: str
    note: str


class ThresholdNotFoundError(LookupError):
    """No sourced threshold exists for the requested instrument/score/level."""


_KCCQ_SRC = {
    "small": "5 points: CV Outcomes 'KCCQ Interpretability' (small clinical change -5.4/+5.7 vs +1.3 for "
             "no change) [S6]; anchor-based MCID ~3.9 (95% CI 2.7-5.4) for OSS and CSS, 5 points "
             "'represents an important clinical change' [S12]; 5/10/20 small/moderate/large [S13][S8]",
    "moderate": "10 points: 5-, 10-, 20-point mean differences for small/moderate/large change [S13] "
                "(JACC HF 2022;10:531-539), discussed in Spertus et al. JACC 2020 [S8]",
    "large": "20 points: 5-, 10-, 20-point mean differences for small/moderate/large change [S13] "
             "(JACC HF 2022;10:531-539), discussed in Spertus et al. JACC 2020 [S8]",
}
_KCCQ12_NOTE = ("; applied to KCCQ-12 because it has 'comparable ... interpretation of clinically "
                "important differences' to the full KCCQ (Spertus & Jones 2015) [S2]")

CLINICALLY_IMPORTANT_DIFFERENCES: tuple[ImportantDifference, ...] = tuple(
    ImportantDifference(instr, sc, lvl, thr, True,
                        _KCCQ_SRC[lvl] + (_KCCQ12_NOTE if instr == "kccq12" else ""))
    for instr, sc in (("kccq", "overall_summary"), ("kccq", "clinical_summary"), ("kccq12", "summary"))
    for lvl, thr in (("small", 5.0), ("moderate", 10.0), ("large", 20.0))
)

NOT_FOUND: tuple[NotFoundEntry, ...] = (
    NotFoundEntry("mlhfq", "total",
                  "NOT FOUND: no single sourced MCID. Gonzalez-Saenz de Tejada et al. HQLO 2019 [S34] "
                  "report MCID 3.59-19.14 across domains and methods (MDC 7.27-16.96); the commonly quoted "
                  "5-point MCID was not verified in a primary source."),
    NotFoundEntry("mlhfq", "physical",
                  "NOT FOUND: see mlhfq total (range 3.59-19.14 across methods [S34])."),
    NotFoundEntry("mlhfq", "emotional",
                  "NOT FOUND: see mlhfq total (range 3.59-19.14 across methods [S34])."),
    NotFoundEntry("sixmwt", "distance_m",
                  "NOT FOUND: no heart-failure-specific MCID for the 6-minute walk distance in the sources "
                  "read."),
    NotFoundEntry("sf12v1", "pcs",
                  "NOT FOUND: no heart-failure-specific MCID for PCS-12 in a primary source."),
    NotFoundEntry("sf12v1", "mcs",
                  "NOT FOUND: no heart-failure-specific MCID for MCS-12 in a primary source."),
    NotFoundEntry("sf12v2", "pcs", "NOT FOUND: no heart-failure-specific MCID for PCS in a primary source."),
    NotFoundEntry("sf12v2", "mcs", "NOT FOUND: no heart-failure-specific MCID for MCS in a primary source."),
)

#: Bands are (lower bound, lower bound inclusive?, label).
#: Cross-sectional KCCQ bands: 0-24 very poor to poor, 25-49 poor to fair,
#: 50-74 fair to good, 75-100 good to excellent. Secondary summary [S14b], matching the JACC 2020
#: review bands [S8] (full text not read). Joseph et al. used 0-25/26-50/51-75/76-100 [S14].
KCCQ_BANDS: tuple[tuple[float, bool, str], ...] = (
    (0.0, True, "very poor to poor"), (25.0, True, "poor to fair"), (50.0, True, "fair to good"),
    (75.0, True, "good to excellent"),
)
#: MLHFQ total bands quoted by LOINC 71938-5 from one study (PMID 19965089) [S31]: < 26 good,
#: 26-45 moderate, > 45 poor quality of life.
MLHFQ_TOTAL_BANDS: tuple[tuple[float, bool, str], ...] = (
    (0.0, True, "good"), (26.0, True, "moderate"), (45.0, False, "poor"),
)


def thresholds(instrument: str, score: str) -> dict[str, ImportantDifference]:
    """Sourced thresholds of ``instrument``/``score`` keyed by level ("small", "moderate", "large").

    Raises :class:`ThresholdNotFoundError` (with the NOT FOUND note) when none is sourced.
    """
    out = {d.level: d for d in CLINICALLY_IMPORTANT_DIFFERENCES
           if d.instrument == instrument and d.score == score}
    if out:
        return out
    for nf in NOT_FOUND:
        if nf.instrument == instrument and nf.score == score:
            raise ThresholdNotFoundError(f"{instrument}.{score}: {nf.note}")
    raise ThresholdNotFoundError(f"{instrument}.{score}: no clinically important difference tabulated")


def responder(instrument: str, score: str, change, *, level: str = "small",
              direction: Literal["improvement", "deterioration"] = "improvement"):
    """Responder indicator for a within-patient change (follow-up minus baseline, in score points).

    Returns ``bool`` for a scalar ``change`` and a numpy bool array otherwise. A missing change
    (NaN/None) is NOT a responder (False): handle missing data explicitly in the analysis.
    Example: ``responder("kccq", "overall_summary", 7.5)`` -> True (>= 5 points, small).
    """
    if direction not in ("improvement", "deterioration"):
        raise ValueError(f"direction must be 'improvement' or 'deterioration', got {direction!r}")
    table = thresholds(instrument, score)
    if level not in table:
        raise ThresholdNotFoundError(f"{instrument}.{score}: no sourced threshold for level {level!r}")
    d = table[level]
    ch = np.asarray(change if change is not None else np.nan, dtype=np.float64)
    sign = 1.0 if d.higher_is_better == (direction == "improvement") else -1.0
    with np.errstate(invalid="ignore"):
        res = sign * ch >= d.threshold
    return bool(res) if res.ndim == 0 else res


def classify_change(instrument: str, score: str, change):
    """Label a change as "large/moderate/small improvement", "no important change" or
    "small/moderate/large deterioration" (None for missing). Scalar in, str out; array in, object array out.
    """
    table = thresholds(instrument, score)
    ch = np.asarray(change if change is not None else np.nan, dtype=np.float64)
    hib = next(iter(table.values())).higher_is_better
    better = ch if hib else -ch
    out = np.full(ch.shape, "no important change", dtype=object)
    with np.errstate(invalid="ignore"):
        for lvl in LEVELS:  # ascending thresholds: larger levels overwrite smaller ones
            if lvl in table:
                out[better >= table[lvl].threshold] = f"{lvl} improvement"
                out[better <= -table[lvl].threshold] = f"{lvl} deterioration"
    out[np.isnan(ch)] = None
    return out.item() if out.ndim == 0 else out


def band(instrument: str, score: str, value):
    """Descriptive cross-sectional band of a score (KCCQ summaries; MLHFQ total). None for missing."""
    if instrument in ("kccq", "kccq12"):
        bands = KCCQ_BANDS
    elif instrument == "mlhfq" and score == "total":
        bands = MLHFQ_TOTAL_BANDS
    else:
        raise ThresholdNotFoundError(f"{instrument}.{score}: no sourced descriptive bands")
    v = np.asarray(value if value is not None else np.nan, dtype=np.float64)
    out = np.full(v.shape, None, dtype=object)
    with np.errstate(invalid="ignore"):
        for lo, inclusive, label in bands:
            out[(v >= lo) if inclusive else (v > lo)] = label
    out[np.isnan(v)] = None
    return out.item() if out.ndim == 0 else out
