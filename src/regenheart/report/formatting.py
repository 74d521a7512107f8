"""Number formatting for the study report: one set of rules, used by every table and caption.

Rules (stated in the report's methods section as well):

* Missing values (``None``, ``NaN``, infinities) are shown as an en dash.
* Means, SDs, medians, quartiles and confidence limits use the parameter's decimals
  (:func:`decimals_for`): 1 for most parameters, 0 for NT-proBNP, 2 for NYHA class and CT wall
  thickness, 3 for relative wall thickness.
* Ratios (geometric mean ratio, MMRM back-transformed ratio) use 2 decimals.
* Percentages use 1 decimal. p-values are shown as ``<0.001`` or with 3 decimals.
* Negative numbers use the ASCII hyphen-minus so values can be copied into other software.

Formatting only: nothing here computes a statistic.
"""

from __future__ import annotations

import math
from typing import Any

DASH = "\u2013"  # en dash: missing or not applicable

#: Decimals for means/SDs/medians/CIs of a parameter; anything not listed uses DEFAULT_DECIMALS.
PARAMETER_DECIMALS: dict[str, int] = {
    "NTPROBNP": 0,
    "NYHA": 2,
    "CTIVS": 2,
    "CTLVPW": 2,
    "RWT": 3,
}
DEFAULT_DECIMALS = 1
RATIO_DECIMALS = 2
PERCENT_DECIMALS = 1


def decimals_for(paramcd: str | None) -> int:
    return PARAMETER_DECIMALS.get(paramcd or "", DEFAULT_DECIMALS)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def num(value: Any, decimals: int = DEFAULT_DECIMALS) -> str:
    """A number with fixed decimals; missing -> en dash. ``-0.0`` is shown as ``0.0``."""
    if is_missing(value):
        return DASH
    text = f"{float(value):.{decimals}f}"
    if text.startswith("-") and float(text) == 0.0:
        text = text[1:]
    return text


def integer(value: Any) -> str:
    if is_missing(value):
        return DASH
    return str(int(value))


def pct(value: Any) -> str:
    """A percentage (already on the 0-100 scale), 1 decimal, no % sign."""
    return num(value, PERCENT_DECIMALS)


def n_pct(n: Any, percent: Any) -> str:
    """``n (p.p)``; a missing percentage (e.g. denominator 0) gives just ``n``."""
    if is_missing(n):
        return DASH
    if is_missing(percent):
        return integer(n)
    return f"{integer(n)} ({pct(percent)})"


def pvalue(value: Any) -> str:
    if is_missing(value):
        return DASH
    value = float(value)
    if value < 0.001:
        return "<0.001"
    return f"{value:.3f}"


def mean_sd(mean: Any, sd: Any, decimals: int) -> str:
    if is_missing(mean):
        return DASH
    return f"{num(mean, decimals)} ({num(sd, decimals)})"


def median_iqr(median: Any, q1: Any, q3: Any, decimals: int) -> str:
    if is_missing(median):
        return DASH
    return f"{num(median, decimals)} ({num(q1, decimals)}, {num(q3, decimals)})"


def ci(lower: Any, upper: Any, decimals: int) -> str:
    """``(lower, upper)``; missing -> en dash."""
    if is_missing(lower) or is_missing(upper):
        return DASH
    return f"({num(lower, decimals)}, {num(upper, decimals)})"


def estimate_ci(estimate: Any, lower: Any, upper: Any, decimals: int) -> str:
    if is_missing(estimate):
        return DASH
    bounds = ci(lower, upper, decimals)
    return num(estimate, decimals) if bounds == DASH else f"{num(estimate, decimals)} {bounds}"


def summary_mean_sd(summary: dict[str, Any] | None, decimals: int) -> str:
    if not summary:
        return DASH
    return mean_sd(summary.get("mean"), summary.get("sd"), decimals)


def summary_median_iqr(summary: dict[str, Any] | None, decimals: int) -> str:
    if not summary:
        return DASH
    return median_iqr(summary.get("median"), summary.get("q1"), summary.get("q3"), decimals)


def summary_range(summary: dict[str, Any] | None, decimals: int) -> str:
    if not summary or is_missing(summary.get("min")):
        return DASH
    return f"{num(summary.get('min'), decimals)}, {num(summary.get('max'), decimals)}"


def text(value: Any) -> str:
    """Plain text of a listing cell; missing -> en dash."""
    if is_missing(value) or value == "":
        return DASH
    return str(value)
