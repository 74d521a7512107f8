"""Two-sample statistics for between-arm comparisons: risk difference with the Newcombe hybrid score
interval and the exact unconditional interval, and the Wilcoxon-Mann-Whitney two-sample test.

Pure functions of counts or arrays; results are small frozen records with ``to_dict``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["MannWhitneyResult", "RiskDifference", "exact_unconditional_ci", "mann_whitney", "newcombe_ci",
           "risk_difference", "wilson_ci"]


def _check(x: int, n: int) -> tuple[int, int]:
    if int(x) != x or int(n) != n or n < 0 or not 0 <= x <= n:
        raise ValueError(f"need integers 0 <= x <= n, got x={x}, n={n}")
    return int(x), int(n)


def _z(conf: float) -> float:
    if not 0.0 < conf < 1.0:
        raise ValueError(f"conf must be strictly between 0 and 1, got {conf}")
    return float(stats.norm.ppf(1.0 - (1.0 - conf) / 2.0))


def wilson_ci(x: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Wilson (1927) score interval for a binomial proportion, without continuity correction
    (Newcombe 1998 method 3). ``n = 0`` gives ``(0, 1)``."""
    x, n = _check(x, n)
    if n == 0:
        return 0.0, 1.0
    z = _z(conf)
    p = x / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denom = 1 + z * z / n
    lower = 0.0 if x == 0 else (centre - half) / denom
    upper = 1.0 if x == n else (centre + half) / denom
    return lower, upper


def newcombe_ci(x1: int, n1: int, x2: int, n2: int, conf: float = 0.95) -> tuple[float, float]:
    """Newcombe (1998) hybrid score interval for ``p1 - p2`` (method 10): the Wilson limits
    ``(l_i, u_i)`` of each proportion combined as
    ``d - sqrt((p1 - l1)^2 + (u2 - p2)^2)`` to ``d + sqrt((u1 - p1)^2 + (p2 - l2)^2)``.

    Reference: Newcombe RG (1998), Stat Med 17:873-890, method 10 (worked example 56/70 vs 48/80:
    0.0524 to 0.3339).
    """
    x1, n1 = _check(x1, n1)
    x2, n2 = _check(x2, n2)
    if n1 == 0 or n2 == 0:
        raise ValueError("each arm needs at least one subject for a risk difference")
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_ci(x1, n1, conf)
    l2, u2 = wilson_ci(x2, n2, conf)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def _tail_max(pmf1: Any, pmf2: Any, delta: float, nuisance: np.ndarray, mask: np.ndarray) -> float:
    """max over the nuisance p2 of P(outcomes in ``mask`` | p1 = p2 + delta, p2)."""
    p2 = nuisance[(nuisance + delta >= 0.0) & (nuisance + delta <= 1.0)]
    if p2.size == 0:
        return 0.0
    a = pmf1(p2 + delta)   # (grid, n1 + 1)
    b = pmf2(p2)           # (grid, n2 + 1)
    prob = np.einsum("gi,ij,gj->g", a, mask.astype(float), b)
    return float(prob.max())


def exact_unconditional_ci(x1: int, n1: int, x2: int, n2: int, conf: float = 0.95,
                           grid: int = 2001, tol: float = 1e-7) -> tuple[float, float]:
    """Exact unconditional interval for ``p1 - p2`` (Santner & Snell 1980): the tails of the
    observed difference of sample proportions are maximised over the nuisance parameter and each
    limit is where the maximised tail equals ``(1 - conf) / 2``; coverage is at least ``conf``
    for every (p1, p2) (up to the nuisance grid of ``grid`` points plus the observed proportions).

    Reference: Santner TJ, Snell MK (1980), JASA 75:386-394; Agresti A (2003) Stat Methods Med Res
    12:3-21 (review of exact intervals for the difference of proportions).
    """
    x1, n1 = _check(x1, n1)
    x2, n2 = _check(x2, n2)
    if n1 == 0 or n2 == 0:
        raise ValueError("each arm needs at least one subject for a risk difference")
    alpha = 1.0 - conf
    _z(conf)
    k1, k2 = np.arange(n1 + 1), np.arange(n2 + 1)
    diff = k1[:, None] / n1 - k2[None, :] / n2
    observed = x1 / n1 - x2 / n2
    eps = 1e-12
    upper_tail = diff >= observed - eps   # as extreme or more, towards larger differences
    lower_tail = diff <= observed + eps
    nuisance = np.unique(np.concatenate([np.linspace(0.0, 1.0, grid), [x2 / n2, x1 / n1]]))

    def pmf1(p: np.ndarray) -> np.ndarray:
        return stats.binom.pmf(k1[None, :], n1, np.clip(p, 0.0, 1.0)[:, None])

    def pmf2(p: np.ndarray) -> np.ndarray:
        return stats.binom.pmf(k2[None, :], n2, np.clip(p, 0.0, 1.0)[:, None])

    def solve(mask: np.ndarray, lo: float, hi: float, increasing: bool) -> float:
        """The delta in [lo, hi] where the maximised tail crosses alpha/2 (monotone in delta)."""
        for _ in range(200):
            if hi - lo <= tol:
                break
            mid = (lo + hi) / 2.0
            above = _tail_max(pmf1, pmf2, mid, nuisance, mask) > alpha / 2.0
            if above == increasing:
                hi = mid
            else:
                lo = mid
        return (lo + hi) / 2.0

    # Lower limit: smallest delta whose upper-tail probability exceeds alpha/2 (it grows with delta).
    lower = -1.0 if x1 == 0 and x2 == n2 else solve(upper_tail, -1.0, observed, increasing=True)
    upper = 1.0 if x1 == n1 and x2 == 0 else solve(lower_tail, observed, 1.0, increasing=False)
    return lower, upper


@dataclass(frozen=True)
class RiskDifference:
    """Risk difference ``p_treatment - p_reference`` with the requested confidence intervals."""

    n_events_treatment: int
    n_treatment: int
    n_events_reference: int
    n_reference: int
    estimate: float
    conf: float
    newcombe_lower: float | None
    newcombe_upper: float | None
    exact_lower: float | None
    exact_upper: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def risk_difference(x1: int, n1: int, x2: int, n2: int, conf: float = 0.95,
                    methods: tuple[str, ...] | list[str] = ("newcombe", "exact")) -> RiskDifference:
    """``x1/n1 - x2/n2`` with the Newcombe (method 10) and/or exact unconditional interval."""
    unknown = set(methods) - {"newcombe", "exact"}
    if unknown:
        raise ValueError(f"unknown risk-difference interval(s) {sorted(unknown)}; use 'newcombe' or 'exact'")
    nl, nu = newcombe_ci(x1, n1, x2, n2, conf) if "newcombe" in methods else (None, None)
    el, eu = exact_unconditional_ci(x1, n1, x2, n2, conf) if "exact" in methods else (None, None)
    return RiskDifference(int(x1), int(n1), int(x2), int(n2), x1 / n1 - x2 / n2, float(conf), nl, nu, el, eu)


@dataclass(frozen=True)
class MannWhitneyResult:
    """Wilcoxon-Mann-Whitney two-sample test of ``x`` (treatment) against ``y`` (reference)."""

    n_x: int
    n_y: int
    u_statistic: float | None
    p_value: float | None
    method: str
    median_x: float | None
    median_y: float | None

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def mann_whitney(x: Any, y: Any) -> MannWhitneyResult:
    """Two-sided Wilcoxon-Mann-Whitney test with the conventions of R's ``wilcox.test(x, y)``:
    exact null distribution when both samples have fewer than 50 values and there are no ties,
    otherwise the normal approximation with tie-corrected variance and continuity correction.
    ``u_statistic`` is U of ``x`` (R's W). Missing values are dropped; fewer than one value in a
    sample gives no test.

    Reference: Mann HB, Whitney DR (1947), Ann Math Stat 18:50-60; computed with
    :func:`scipy.stats.mannwhitneyu`.
    """
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    med_a = float(np.median(a)) if a.size else None
    med_b = float(np.median(b)) if b.size else None
    if a.size == 0 or b.size == 0:
        return MannWhitneyResult(int(a.size), int(b.size), None, None, "not estimable (an empty sample)", med_a, med_b)
    ties = np.unique(np.concatenate([a, b])).size < a.size + b.size
    if a.size < 50 and b.size < 50 and not ties:
        res = stats.mannwhitneyu(a, b, alternative="two-sided", method="exact")
        method = "exact"
    else:
        res = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=True)
        method = "normal approximation, tie-corrected, continuity correction"
    return MannWhitneyResult(int(a.size), int(b.size), float(res.statistic), float(res.pvalue), method, med_a, med_b)
