"""Descriptive statistics and simple paired tests for the RegenHeart analysis.

Pure functions: no I/O, no global state. Inputs are numpy arrays, pandas Series or plain sequences;
missing values (``NaN``, ``None``, ``pd.NA``) are dropped (pairwise for paired functions). Infinite
values are refused as data errors. Results are frozen dataclasses whose ``to_dict()`` gives plain
Python ``int``/``float``/``str``/``bool`` values (``NaN`` stays ``NaN`` unless ``nan_as_none=True``),
so they serialize to JSON.

Conventions (chosen to match SAS and R, which an independent programmer would use to double-check):

* Quartiles and medians: SAS default percentile definition 5 (``PCTLDEF=5`` in PROC UNIVARIATE,
  ``QNTLDEF=5`` in PROC MEANS), "empirical distribution function with averaging", which is
  Hyndman & Fan (1996) type 2. Alternative ``"r7"`` = Hyndman & Fan type 7 (R's default, numpy's
  ``"linear"``).
* Binomial confidence intervals: Clopper & Pearson (1934) exact interval from beta quantiles.
* Wilcoxon signed-rank test: the convention of R's ``wilcox.test(paired = TRUE)`` with its defaults
  (zeros dropped as in Wilcoxon 1945; exact null distribution when fewer than 50 non-zero
  differences and no ties and no zeros, otherwise normal approximation with tie-corrected variance
  and continuity correction). See :func:`wilcoxon_signed_rank`.
* Sign test: exact two-sided binomial test with p = 1/2 on the non-zero differences.

References
----------
Clopper CJ, Pearson ES (1934). The use of confidence or fiducial limits illustrated in the case of
the binomial. Biometrika 26:404-413.
Hyndman RJ, Fan Y (1996). Sample quantiles in statistical packages. Am Stat 50:361-365.
SAS Institute. Base SAS Procedures Guide: PROC UNIVARIATE, "Calculating Percentiles" (PCTLDEF=5).
Wilcoxon F (1945). Individual comparisons by ranking methods. Biometrics Bulletin 1:80-83.
Hollander M, Wolfe DA (1973/1999). Nonparametric Statistical Methods, section 3.1 (signed-rank
test, normal approximation with ties).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "BinomialSummary",
    "GeometricMeanRatioResult",
    "MeanCI",
    "OrdinalChangeResult",
    "PairedChangeResult",
    "Summary",
    "WilcoxonResult",
    "binomial_summary",
    "clopper_pearson",
    "geometric_mean_ratio",
    "mean_ci",
    "ordinal_change",
    "paired_change",
    "quantile",
    "shift_table",
    "sign_test",
    "summarize",
    "wilcoxon_signed_rank",
]

QuantileMethod = Literal["sas5", "r7"]
WilcoxonMethod = Literal["auto", "exact", "normal"]

NAN = float("nan")

#: Differences are rounded to this many decimals before zeros and ties are detected in the
#: signed-rank test, so that floating-point representation error does not split ties
#: (e.g. ``45.3 - 40.1`` and ``55.2 - 50.0`` differ in the 15th digit). Measurements in this
#: trial carry at most 2 decimals, so 9 decimals never merges genuinely different values.
TIE_DECIMALS = 9

#: Below this many non-zero differences (and with no ties/zeros) the signed-rank test is exact,
#: as in R's ``wilcox.test`` (``exact <- n < 50``).
WILCOXON_EXACT_MAX_N = 49


# --------------------------------------------------------------------------------------------
# result records
# --------------------------------------------------------------------------------------------


def _plain(value: Any, nan_as_none: bool) -> Any:
    """Convert numpy scalars and nested containers to plain Python values."""
    if isinstance(value, dict):
        return {k: _plain(v, nan_as_none) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, nan_as_none) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if nan_as_none and math.isnan(f):
            return None
        return f
    return value


class _Record:
    """Mixin: JSON-friendly export of a (possibly nested) result dataclass."""

    def to_dict(self, nan_as_none: bool = False) -> dict[str, Any]:
        """Return the result as a dict of plain Python values (nested results become dicts).

        ``nan_as_none=True`` replaces ``NaN`` by ``None`` (strict JSON has no ``NaN``).
        """
        return _plain(dataclasses.asdict(self), nan_as_none)  # type: ignore[call-overload]


@dataclasses.dataclass(frozen=True)
class Summary(_Record):
    """Univariate summary: counts, mean, SD (n-1 divisor), median, quartiles, range."""

    n: int
    n_missing: int
    mean: float
    sd: float
    median: float
    q1: float
    q3: float
    min: float
    max: float
    quantile_method: str


@dataclasses.dataclass(frozen=True)
class MeanCI(_Record):
    """Mean with its t-based confidence interval."""

    n: int
    mean: float
    sd: float
    se: float
    df: float
    conf: float
    lower: float
    upper: float


@dataclasses.dataclass(frozen=True)
class BinomialSummary(_Record):
    """Proportion of events with its exact (Clopper-Pearson) confidence interval."""

    n_events: int
    n_total: int
    proportion: float
    percent: float
    lower: float
    upper: float
    conf: float
    method: str


@dataclasses.dataclass(frozen=True)
class WilcoxonResult(_Record):
    """Wilcoxon signed-rank test on paired differences (R ``wilcox.test`` convention)."""

    n: int
    n_nonzero: int
    n_zero: int
    has_ties: bool
    statistic: float  # V = sum of the ranks of the positive differences (as R reports it)
    z: float  # continuity-corrected normal deviate (NaN for the exact method)
    p_value: float
    method: str


@dataclasses.dataclass(frozen=True)
class PairedChangeResult(_Record):
    """Change from baseline for subjects with both values."""

    n: int
    n_excluded: int
    conf: float
    baseline: Summary
    follow_up: Summary
    change: Summary
    mean_change: float
    se_change: float
    lower: float
    upper: float
    t_statistic: float
    df: float
    p_value_t: float
    wilcoxon_statistic: float
    p_value_wilcoxon: float
    wilcoxon_method: str
    n_zero_changes: int


@dataclasses.dataclass(frozen=True)
class GeometricMeanRatioResult(_Record):
    """Ratio of geometric means follow-up / baseline from a paired t analysis on the log scale."""

    n: int
    n_excluded: int
    conf: float
    geometric_mean_baseline: float
    geometric_mean_follow_up: float
    gmr: float
    lower: float
    upper: float
    percent_change: float
    percent_change_lower: float
    percent_change_upper: float
    t_statistic: float
    df: float
    p_value: float


@dataclasses.dataclass(frozen=True)
class OrdinalChangeResult(_Record):
    """Shift in an ordinal class (e.g. NYHA I-IV coded 1-4) between two visits."""

    n: int
    n_excluded: int
    lower_is_better: bool
    n_improved: int
    n_unchanged: int
    n_worsened: int
    proportion_improved: float
    percent_improved: float
    improved_lower: float
    improved_upper: float
    conf: float
    ci_method: str
    sign_test_n: int
    sign_test_p: float
    wilcoxon_statistic: float
    wilcoxon_z: float
    wilcoxon_p: float
    wilcoxon_method: str


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------


def _as_float_array(values: Any, name: str) -> np.ndarray:
    """1-D float array with NaN for missing; refuses non-numeric and infinite values."""
    if isinstance(values, pd.DataFrame):
        raise TypeError(f"{name} must be one-dimensional, got a DataFrame")
    if np.ndim(values) == 0:
        raise TypeError(f"{name} must be a sequence of numbers, got a scalar")
    if np.ndim(values) > 1:
        raise TypeError(f"{name} must be one-dimensional, got {np.ndim(values)} dimensions")
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        arr = values.astype(float)  # fast path; NaN already marks missing
    else:
        series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
        if series.dtype == bool or (isinstance(values, np.ndarray) and values.dtype.kind == "b"):
            raise TypeError(f"{name} must be numeric, got booleans")
        try:
            arr = series.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be numeric: {exc}") from exc
    bad = np.isinf(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} contains an infinite value {arr[i]} at position {i}")
    return arr


def _check_conf(conf: float) -> float:
    conf = float(conf)
    if not 0.0 < conf < 1.0:
        raise ValueError(f"conf must be strictly between 0 and 1, got {conf}")
    return conf


def _pairs(baseline: Any, follow_up: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Pairwise-complete baseline and follow-up values, and the number of pairs excluded."""
    b = _as_float_array(baseline, "baseline")
    f = _as_float_array(follow_up, "follow_up")
    if b.shape != f.shape:
        raise ValueError(f"baseline and follow_up differ in length: {b.size} vs {f.size}")
    keep = ~(np.isnan(b) | np.isnan(f))
    return b[keep], f[keep], int((~keep).sum())


# --------------------------------------------------------------------------------------------
# binomial
# --------------------------------------------------------------------------------------------


def _check_count(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer count, got a boolean")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    raise TypeError(f"{name} must be an integer count, got {value!r}")


def clopper_pearson(x: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson 1934) two-sided confidence interval for a binomial proportion.

    Method: the limits are beta quantiles,
    ``lower = Beta(alpha/2; x, n - x + 1)`` and ``upper = Beta(1 - alpha/2; x + 1, n - x)``
    with ``alpha = 1 - conf``; by definition ``lower = 0`` when ``x = 0`` and ``upper = 1`` when
    ``x = n``. Equivalently the limits solve ``P(X >= x | lower) = alpha/2`` and
    ``P(X <= x | upper) = alpha/2`` for ``X ~ Binomial(n, p)``. This is SAS PROC FREQ's
    ``BINOMIAL(EXACT)`` interval and R's ``binom.test`` interval.
    ``n = 0`` carries no information and gives ``(0, 1)``.

    Reference: Clopper CJ, Pearson ES (1934), Biometrika 26:404-413.
    """
    x = _check_count(x, "x")
    n = _check_count(n, "n")
    conf = _check_conf(conf)
    if n < 0 or x < 0 or x > n:
        raise ValueError(f"need 0 <= x <= n, got x={x}, n={n}")
    alpha = 1.0 - conf
    lower = 0.0 if x == 0 else float(stats.beta.ppf(alpha / 2.0, x, n - x + 1))
    upper = 1.0 if x == n else float(stats.beta.ppf(1.0 - alpha / 2.0, x + 1, n - x))
    return lower, upper


def binomial_summary(x: int, n: int, conf: float = 0.95) -> BinomialSummary:
    """Number and proportion of events with the exact Clopper-Pearson confidence interval.

    ``proportion = x / n`` (NaN when ``n = 0``), ``percent = 100 * proportion``; ``lower`` and
    ``upper`` are proportions from :func:`clopper_pearson`.

    Reference: Clopper CJ, Pearson ES (1934), Biometrika 26:404-413.
    """
    lower, upper = clopper_pearson(x, n, conf)
    x, n = int(x), int(n)
    proportion = x / n if n > 0 else NAN
    return BinomialSummary(
        n_events=x,
        n_total=n,
        proportion=proportion,
        percent=100.0 * proportion,
        lower=lower,
        upper=upper,
        conf=float(conf),
        method="Clopper-Pearson exact",
    )


def sign_test(n_positive: int, n_negative: int) -> float:
    """Exact two-sided sign test: p-value of ``n_positive`` successes in ``n_positive + n_negative``
    Binomial(., 1/2) trials (ties/zeros must already be excluded).

    Method: ``p = min(1, 2 * min(P(X <= k), P(X >= k)))`` with ``X ~ Binomial(N, 1/2)``; because
    the null distribution is symmetric this equals the "minimum likelihood" two-sided p-value of
    R's ``binom.test`` and scipy's ``binomtest``. Returns NaN when ``N = 0``.

    Reference: Dixon WJ, Mood AM (1946). The statistical sign test. JASA 41:557-566.
    """
    k = _check_count(n_positive, "n_positive")
    n_neg = _check_count(n_negative, "n_negative")
    if k < 0 or n_neg < 0:
        raise ValueError("counts must be non-negative")
    total = k + n_neg
    if total == 0:
        return NAN
    tail = min(stats.binom.cdf(k, total, 0.5), stats.binom.sf(k - 1, total, 0.5))
    return float(min(1.0, 2.0 * tail))


# --------------------------------------------------------------------------------------------
# quantiles and summaries
# --------------------------------------------------------------------------------------------

# relative tolerance used to decide whether n * p is an integer in SAS definition 5
_SAS_FUZZ = 1e-9


def _quantile_sorted(x: np.ndarray, p: float, method: str) -> float:
    n = x.size
    if n == 0:
        return NAN
    if method == "r7":
        return float(np.quantile(x, p, method="linear"))
    if method != "sas5":
        raise ValueError(f"quantile_method must be 'sas5' or 'r7', got {method!r}")
    # SAS PCTLDEF=5: n*p = j + g; y = (x[j] + x[j+1]) / 2 if g = 0 else x[j+1]  (1-based x)
    np_ = n * p
    j = math.floor(np_)
    g = np_ - j
    if g > 1.0 - _SAS_FUZZ * max(1.0, np_):  # n*p just below an integer by rounding error
        j, g = j + 1, 0.0
    elif g < _SAS_FUZZ * max(1.0, np_):
        g = 0.0

    def at(i: int) -> float:  # 1-based, clipped so that p = 0 gives min and p = 1 gives max
        return float(x[min(max(i, 1), n) - 1])

    if g == 0.0:
        return (at(j) + at(j + 1)) / 2.0
    return at(j + 1)


def quantile(values: Any, p: float, method: QuantileMethod = "sas5") -> float:
    """Sample quantile of the non-missing values.

    Methods (Hyndman & Fan 1996 numbering):

    * ``"sas5"`` (default) - SAS percentile definition 5 = H&F type 2, "empirical distribution
      function with averaging": with ``n * p = j + g`` (``j`` integer part), the quantile is
      ``(x(j) + x(j+1)) / 2`` when ``g = 0`` and ``x(j+1)`` when ``g > 0`` (order statistics,
      1-based). ``g`` is treated as 0 when within ``1e-9 * n * p`` of an integer, so that binary
      floating-point error in ``n * p`` (e.g. ``10 * 0.3``) does not change the definition.
      Same as numpy's ``method="averaged_inverted_cdf"``.
    * ``"r7"`` - H&F type 7, linear interpolation ``x(1 + (n-1)p)``: R's and numpy's default.

    Returns NaN when there are no non-missing values.

    References: Hyndman RJ, Fan Y (1996), Am Stat 50:361-365; SAS PROC UNIVARIATE documentation,
    "Calculating Percentiles".
    """
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    arr = _as_float_array(values, "values")
    arr = np.sort(arr[~np.isnan(arr)])
    return _quantile_sorted(arr, p, method)


def summarize(values: Any, quantile_method: QuantileMethod = "sas5") -> Summary:
    """Descriptive summary of a continuous variable (missing values dropped).

    ``n`` (non-missing), ``n_missing``, ``mean``, ``sd`` (divisor ``n - 1``, NaN when ``n < 2``),
    ``median``, ``q1``, ``q3`` (by ``quantile_method``, see :func:`quantile`; default SAS
    definition 5 so that numbers match SAS PROC MEANS/UNIVARIATE defaults), ``min``, ``max``.
    All statistics are NaN when ``n = 0``.

    Reference: Hyndman RJ, Fan Y (1996), Am Stat 50:361-365 (quantile definitions).
    """
    if quantile_method not in ("sas5", "r7"):
        raise ValueError(f"quantile_method must be 'sas5' or 'r7', got {quantile_method!r}")
    arr = _as_float_array(values, "values")
    missing = np.isnan(arr)
    x = np.sort(arr[~missing])
    n = int(x.size)
    if n == 0:
        return Summary(0, int(missing.sum()), NAN, NAN, NAN, NAN, NAN, NAN, NAN, quantile_method)
    return Summary(
        n=n,
        n_missing=int(missing.sum()),
        mean=float(np.mean(x)),
        sd=float(np.std(x, ddof=1)) if n >= 2 else NAN,
        median=_quantile_sorted(x, 0.5, quantile_method),
        q1=_quantile_sorted(x, 0.25, quantile_method),
        q3=_quantile_sorted(x, 0.75, quantile_method),
        min=float(x[0]),
        max=float(x[-1]),
        quantile_method=quantile_method,
    )


def _mean_ci_array(x: np.ndarray, conf: float) -> MeanCI:
    n = int(x.size)
    if n == 0:
        return MeanCI(0, NAN, NAN, NAN, NAN, conf, NAN, NAN)
    mean = float(np.mean(x))
    if n < 2:
        return MeanCI(n, mean, NAN, NAN, NAN, conf, NAN, NAN)
    sd = float(np.std(x, ddof=1))
    se = sd / math.sqrt(n)
    df = float(n - 1)
    half = float(stats.t.ppf(0.5 + conf / 2.0, df)) * se
    return MeanCI(n, mean, sd, se, df, conf, mean - half, mean + half)


def mean_ci(values: Any, conf: float = 0.95) -> MeanCI:
    """Mean and its two-sided t-based confidence interval (missing values dropped).

    Method: ``mean +/- t(1 - alpha/2; n - 1) * sd / sqrt(n)`` with ``sd`` on divisor ``n - 1``
    (Student 1908). ``n < 2`` gives NaN for sd, se, df and the limits (mean is still reported when
    ``n = 1``).

    Reference: Student (1908). The probable error of a mean. Biometrika 6:1-25.
    """
    conf = _check_conf(conf)
    arr = _as_float_array(values, "values")
    return _mean_ci_array(arr[~np.isnan(arr)], conf)


def _one_sample_t(ci: MeanCI, null: float = 0.0) -> tuple[float, float]:
    """t statistic and two-sided p for H0: mean = null; NaN when undefined (n < 2 or sd = 0)."""
    if ci.n < 2 or not ci.se > 0.0:
        return NAN, NAN
    t = (ci.mean - null) / ci.se
    return t, float(2.0 * stats.t.sf(abs(t), ci.df))


# --------------------------------------------------------------------------------------------
# Wilcoxon signed-rank
# --------------------------------------------------------------------------------------------


def _signed_rank_null_counts(n: int) -> np.ndarray:
    """counts[s] = number of subsets of {1..n} whose sum is s (exact null of V, times 2**n)."""
    total = n * (n + 1) // 2
    counts = np.zeros(total + 1)  # float64: exact while counts < 2**53 (n <= 52), relative 1e-16 beyond
    counts[0] = 1
    for k in range(1, n + 1):
        counts[k:] = counts[k:] + counts[:-k]
    return counts


def wilcoxon_signed_rank(
    differences: Any,
    method: WilcoxonMethod = "auto",
    correction: bool = True,
) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of H0: the differences are symmetric about 0.

    Convention = R's ``wilcox.test(x, y, paired = TRUE)`` with its defaults:

    * missing differences are dropped; differences are rounded to :data:`TIE_DECIMALS` decimals
      (guards against floating-point error) and zero differences are then **dropped**
      (Wilcoxon's 1945 method, scipy ``zero_method="wilcox"``);
    * absolute non-zero differences are ranked with average ranks for ties; the statistic is
      ``V`` = sum of the ranks of the positive differences;
    * ``method="auto"``: the **exact** null distribution when there are fewer than 50 non-zero
      differences and neither ties nor zeros, otherwise the **normal approximation**;
    * exact p-value: ``min(1, 2 * min(P(V <= v), P(V >= v)))``;
    * normal approximation: ``E V = n(n+1)/4``,
      ``Var V = n(n+1)(2n+1)/24 - sum(t^3 - t)/48`` over tie groups of size ``t``,
      ``z = (v - E V - 0.5 * sign(v - E V)) / sqrt(Var V)`` (continuity correction, dropped when
      ``correction=False``), ``p = 2 * P(Z >= |z|)``.

    ``method="exact"`` refuses data with ties or zeros (the exact table does not apply);
    ``method="normal"`` forces the approximation. With no non-zero differences the test is
    undefined: statistic 0 and p NaN.

    Note this differs from scipy's ``wilcoxon(method="auto")``, which switches to a permutation
    test for tied data with ``n <= 13``; scipy's ``method="exact"`` / ``"asymptotic"`` give the same
    numbers as the two branches here.

    References: Wilcoxon F (1945), Biometrics Bulletin 1:80-83; Hollander M, Wolfe DA,
    Nonparametric Statistical Methods, section 3.1; R documentation ``?wilcox.test``.
    """
    if method not in ("auto", "exact", "normal"):
        raise ValueError(f"method must be 'auto', 'exact' or 'normal', got {method!r}")
    d = _as_float_array(differences, "differences")
    d = np.round(d[~np.isnan(d)], TIE_DECIMALS)
    n_all = int(d.size)
    nonzero = d[d != 0.0]
    n = int(nonzero.size)
    n_zero = n_all - n
    if n == 0:
        return WilcoxonResult(n_all, 0, n_zero, False, 0.0, NAN, NAN, "undefined (no non-zero differences)")
    absd = np.abs(nonzero)
    ranks = stats.rankdata(absd, method="average")
    _, tie_sizes = np.unique(absd, return_counts=True)
    has_ties = bool((tie_sizes > 1).any())
    v = float(ranks[nonzero > 0].sum())

    use_exact = method == "exact" or (
        method == "auto" and n <= WILCOXON_EXACT_MAX_N and not has_ties and n_zero == 0
    )
    if use_exact:
        if has_ties or n_zero > 0:
            raise ValueError("the exact signed-rank distribution does not apply with ties or zeros")
        counts = _signed_rank_null_counts(n)
        total = 2.0**n
        iv = round(v)
        p_le = counts[: iv + 1].sum() / total
        p_ge = counts[iv:].sum() / total
        p = min(1.0, 2.0 * min(p_le, p_ge))
        return WilcoxonResult(n_all, n, n_zero, has_ties, v, NAN, float(p), "exact")

    mean_v = n * (n + 1) / 4.0
    var_v = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(tie_sizes**3 - tie_sizes)) / 48.0
    dev = v - mean_v
    if correction:
        dev -= 0.5 * np.sign(dev)
    z = float(dev / math.sqrt(var_v))
    p = float(2.0 * stats.norm.sf(abs(z)))
    label = "normal approximation, tie-corrected" + (", continuity-corrected" if correction else "")
    return WilcoxonResult(n_all, n, n_zero, has_ties, v, z, p, label)


# --------------------------------------------------------------------------------------------
# paired analyses
# --------------------------------------------------------------------------------------------


def paired_change(
    baseline: Any,
    follow_up: Any,
    conf: float = 0.95,
    quantile_method: QuantileMethod = "sas5",
) -> PairedChangeResult:
    """Change from baseline (``follow_up - baseline``) for subjects with both values.

    Pairs with either value missing are excluded (``n_excluded``). Reports summaries of the
    baseline and follow-up values of the analysed pairs and of the changes; the mean change with
    its t-based CI (see :func:`mean_ci`); the paired t-test (``t = mean / (sd / sqrt(n))``,
    ``df = n - 1``, two-sided p; identical to scipy ``ttest_rel``); and the two-sided Wilcoxon
    signed-rank test on the changes with R's ``wilcox.test`` convention (see
    :func:`wilcoxon_signed_rank`: zeros dropped; exact if < 50 non-zero changes without ties or
    zeros, else normal approximation with tie and continuity correction).

    Never raises for small samples: with ``n < 2`` the SD, CI, t and p fields are NaN (``n = 0``:
    all statistics NaN). When all changes are equal (sd = 0) t and its p are NaN.

    References: Student (1908), Biometrika 6:1-25; Wilcoxon F (1945), Biometrics Bulletin 1:80-83.
    """
    conf = _check_conf(conf)
    b, f, n_excluded = _pairs(baseline, follow_up)
    change = f - b
    ci = _mean_ci_array(change, conf)
    t, p_t = _one_sample_t(ci)
    w = wilcoxon_signed_rank(change)
    return PairedChangeResult(
        n=int(change.size),
        n_excluded=n_excluded,
        conf=conf,
        baseline=summarize(b, quantile_method),
        follow_up=summarize(f, quantile_method),
        change=summarize(change, quantile_method),
        mean_change=ci.mean,
        se_change=ci.se,
        lower=ci.lower,
        upper=ci.upper,
        t_statistic=t,
        df=ci.df,
        p_value_t=p_t,
        wilcoxon_statistic=w.statistic if change.size else NAN,
        p_value_wilcoxon=w.p_value,
        wilcoxon_method=w.method,
        n_zero_changes=w.n_zero,
    )


def _refuse_non_positive(values: Any, arr: np.ndarray, name: str) -> None:
    bad = ~np.isnan(arr) & (arr <= 0.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = f"position {i}"
        if isinstance(values, pd.Series):
            where += f", index label {values.index[i]!r}"
        raise ValueError(
            f"{name} contains the non-positive value {arr[i]!r} ({where}); "
            "geometric means need strictly positive values"
        )


def geometric_mean_ratio(baseline: Any, follow_up: Any, conf: float = 0.95) -> GeometricMeanRatioResult:
    """Geometric mean ratio follow-up / baseline from a paired t analysis on the log scale.

    For the pairs with both values: ``d = log(follow_up) - log(baseline)``;
    ``GMR = exp(mean d)`` (= geometric mean of follow-up / geometric mean of baseline over the same
    pairs); CI ``= exp(mean d +/- t(1 - alpha/2; n - 1) * sd(d) / sqrt(n))``; p from the paired
    t-test on the logs; ``percent_change = 100 * (GMR - 1)`` with limits transformed the same way.
    All values must be strictly positive: a value ``<= 0`` raises ``ValueError`` naming it (missing
    values are allowed and excluded pairwise). ``n < 2`` gives NaN CI/t/p.

    Reference: Kirkwood TBL (1979). Geometric means and measures of dispersion. Biometrics
    35:908-909; the t analysis on logs is the standard bioequivalence approach (FDA 2001 guidance,
    Statistical Approaches to Establishing Bioequivalence).
    """
    conf = _check_conf(conf)
    b_all = _as_float_array(baseline, "baseline")
    f_all = _as_float_array(follow_up, "follow_up")
    _refuse_non_positive(baseline, b_all, "baseline")
    _refuse_non_positive(follow_up, f_all, "follow_up")
    b, f, n_excluded = _pairs(b_all, f_all)
    n = int(b.size)
    log_b, log_f = np.log(b), np.log(f)
    ci = _mean_ci_array(log_f - log_b, conf)
    t, p = _one_sample_t(ci)
    gm_b = float(np.exp(np.mean(log_b))) if n else NAN
    gm_f = float(np.exp(np.mean(log_f))) if n else NAN
    gmr = math.exp(ci.mean) if n else NAN
    lower = math.exp(ci.lower) if not math.isnan(ci.lower) else NAN
    upper = math.exp(ci.upper) if not math.isnan(ci.upper) else NAN
    return GeometricMeanRatioResult(
        n=n,
        n_excluded=n_excluded,
        conf=conf,
        geometric_mean_baseline=gm_b,
        geometric_mean_follow_up=gm_f,
        gmr=gmr,
        lower=lower,
        upper=upper,
        percent_change=100.0 * (gmr - 1.0),
        percent_change_lower=100.0 * (lower - 1.0),
        percent_change_upper=100.0 * (upper - 1.0),
        t_statistic=t,
        df=ci.df,
        p_value=p,
    )


# --------------------------------------------------------------------------------------------
# categorical shifts
# --------------------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def shift_table(
    before: Any,
    after: Any,
    categories: Sequence[Hashable],
    *,
    include_missing: bool = True,
    missing_label: str = "Missing",
    margins: bool = False,
) -> pd.DataFrame:
    """Shift (transition) table of counts: rows = category before, columns = category after.

    Rows and columns follow the order of ``categories``; categories that never occur get zero
    counts. With ``include_missing=True`` a ``missing_label`` row and column count subjects whose
    value is missing at that visit; with ``include_missing=False`` subjects missing at either
    visit are left out. ``margins=True`` adds a ``"Total"`` row and column. A non-missing value
    that is not among ``categories`` raises ``ValueError`` naming it. Values are matched by
    equality, so 1 and 1.0 are the same category. Index name ``"before"``, columns name
    ``"after"``; counts are ``int64``.

    Method: a plain cross-tabulation of subjects by category at the two visits (the "shift table"
    of clinical study reports, ICH E3 section 12.4).
    """
    cats = list(categories)
    if not cats:
        raise ValueError("categories must not be empty")
    if len(set(cats)) != len(cats):
        raise ValueError(f"categories contain duplicates: {cats!r}")
    if include_missing and missing_label in cats:
        raise ValueError(f"missing_label {missing_label!r} is also a category")
    if margins and "Total" in cats:
        raise ValueError("'Total' is a category; cannot add margins")
    b = list(before.tolist() if hasattr(before, "tolist") else before)
    a = list(after.tolist() if hasattr(after, "tolist") else after)
    if len(b) != len(a):
        raise ValueError(f"before and after differ in length: {len(b)} vs {len(a)}")
    labels = cats + ([missing_label] if include_missing else [])
    position = {c: i for i, c in enumerate(cats)}
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)

    def locate(value: Any, name: str, i: int) -> int | None:
        if _is_missing(value):
            return len(cats) if include_missing else None
        try:
            return position[value]
        except (KeyError, TypeError):
            raise ValueError(f"{name} value {value!r} at position {i} is not one of {cats!r}") from None

    for i, (vb, va) in enumerate(zip(b, a)):
        rb, ca = locate(vb, "before", i), locate(va, "after", i)
        if rb is None or ca is None:
            continue
        counts[rb, ca] += 1
    table = pd.DataFrame(
        counts,
        index=pd.Index(labels, name="before", dtype=object),
        columns=pd.Index(labels, name="after", dtype=object),
    )
    if margins:
        table["Total"] = table.sum(axis=1)
        table.loc["Total"] = table.sum(axis=0)
    return table


def ordinal_change(
    before: Any,
    after: Any,
    *,
    lower_is_better: bool = True,
    conf: float = 0.95,
) -> OrdinalChangeResult:
    """Improvement in an ordinal class between two visits (e.g. NYHA I-IV coded 1-4).

    For subjects with both values (pairwise; ``n_excluded`` otherwise), the class difference is
    ``after - before``; with ``lower_is_better`` (NYHA) a difference ``<= -1`` is an improvement of
    at least one class, ``>= +1`` a worsening, ``0`` unchanged (reversed when
    ``lower_is_better=False``). Values must be integer class codes.

    Reported:

    * ``n_improved / n`` as proportion and percent with the exact Clopper-Pearson CI
      (:func:`clopper_pearson`; ``improved_lower``/``improved_upper`` are proportions);
    * **sign test** (primary): exact two-sided binomial test with p = 1/2 of ``n_improved`` among
      the ``n_improved + n_worsened`` subjects who changed (:func:`sign_test`);
    * **Wilcoxon signed-rank** test on the class differences (supportive): zeros dropped, average
      ranks, always the normal approximation with tie-corrected variance and continuity
      correction (class differences are heavily tied, so the exact table never applies) - R's
      ``wilcox.test(after, before, paired = TRUE, exact = FALSE)``. The statistic ``V`` is the rank
      sum of the positive differences ``after - before``.

    References: Dixon WJ, Mood AM (1946), JASA 41:557-566 (sign test); Wilcoxon F (1945);
    Clopper CJ, Pearson ES (1934).
    """
    conf = _check_conf(conf)
    b, a, n_excluded = _pairs(before, after)
    for name, arr in (("before", b), ("after", a)):
        not_int = arr != np.round(arr)
        if not_int.any():
            raise ValueError(f"{name} contains the non-integer class code {arr[not_int][0]!r}")
    diff = a - b
    if not lower_is_better:
        diff = -diff
    n = int(diff.size)
    n_improved = int((diff < 0).sum())
    n_worsened = int((diff > 0).sum())
    n_unchanged = n - n_improved - n_worsened
    lower, upper = clopper_pearson(n_improved, n, conf)
    proportion = n_improved / n if n else NAN
    w = wilcoxon_signed_rank(a - b, method="normal", correction=True)
    return OrdinalChangeResult(
        n=n,
        n_excluded=n_excluded,
        lower_is_better=bool(lower_is_better),
        n_improved=n_improved,
        n_unchanged=n_unchanged,
        n_worsened=n_worsened,
        proportion_improved=proportion,
        percent_improved=100.0 * proportion,
        improved_lower=lower,
        improved_upper=upper,
        conf=conf,
        ci_method="Clopper-Pearson exact",
        sign_test_n=n_improved + n_worsened,
        sign_test_p=sign_test(n_improved, n_worsened),
        wilcoxon_statistic=w.statistic if n else NAN,
        wilcoxon_z=w.z,
        wilcoxon_p=w.p_value,
        wilcoxon_method=w.method,
    )
