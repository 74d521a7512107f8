"""Multiple imputation and delta-adjusted sensitivity analyses for missing outcome data.

Used for the sensitivity analyses of the month-6 change in LVEF: impute the missing values under
missing at random (MAR) with a Bayesian normal linear regression, shift the imputed values by
``delta`` (delta adjustment, a pattern-mixture model for missing not at random), analyse each
completed dataset and combine with Rubin's rules; the tipping point is the smallest shift that
makes the result non-significant.

Pure functions: inputs are pandas DataFrames, outputs plain dicts / DataFrames / dataclasses; all
randomness comes from ``numpy.random.Generator`` objects seeded from the caller's ``seed``.

References
----------
Rubin DB (1987). Multiple Imputation for Nonresponse in Surveys. Wiley. (Combining rules, ch. 3;
Bayesian normal linear regression imputation, section 5.3 / p. 167.)
Barnard J, Rubin DB (1999). Small-sample degrees of freedom with multiple imputation.
Biometrika 86:948-955.
van Buuren S (2018). Flexible Imputation of Missing Data, 2nd ed., section 3.2 (Algorithm 3.1,
the ``norm`` method of R package mice) and section 3.9 / 9.2 (delta adjustment).
Ratitch B, O'Kelly M, Tosiello R (2013). Missing data in clinical trials: from clinical
assumptions to statistical analysis using pattern mixture models. Pharm Stat 12:337-347
(delta adjustment and tipping-point analysis).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg, stats

__all__ = [
    "Analysis",
    "TippingPointResult",
    "delta_adjusted_analysis",
    "impute_normal_regression",
    "mean_analysis",
    "rubin_combine",
    "tipping_point",
]

#: An analysis of one completed dataset: ``analysis(data, target) -> (estimate, variance, df)``,
#: where ``variance`` is the squared standard error of ``estimate`` and ``df`` the complete-data
#: degrees of freedom (``None`` for a large-sample analysis).
Analysis = Callable[[pd.DataFrame, str], tuple[float, float, "float | None"]]

NAN = float("nan")


# --------------------------------------------------------------------------------------------
# Rubin's rules
# --------------------------------------------------------------------------------------------


def rubin_combine(
    estimates: Sequence[float],
    variances: Sequence[float],
    df_complete: float | None = None,
    *,
    conf: float = 0.95,
    null_value: float = 0.0,
) -> dict[str, Any]:
    """Combine ``m >= 2`` completed-data estimates of a scalar by Rubin's rules.

    With estimates ``Q_i`` and their variances ``U_i`` (squared standard errors), ``i = 1..m``:

    * pooled estimate ``Qbar = mean(Q_i)``;
    * within-imputation variance ``W = mean(U_i)``; between-imputation variance
      ``B = sum((Q_i - Qbar)^2) / (m - 1)``;
    * total variance ``T = W + (1 + 1/m) B``, ``se = sqrt(T)`` (Rubin 1987, eq. 3.1.2-3.1.5);
    * relative increase in variance ``riv = (1 + 1/m) B / W`` (0 when ``B = 0``; ``inf`` when
      ``W = 0 < B``); ``lambda = (1 + 1/m) B / T`` (proportion of the variance due to missingness);
    * degrees of freedom: Rubin's (1987, eq. 3.1.6) large-sample ``nu_m = (m - 1) / lambda^2``
      (``= (m-1)(1 + 1/riv)^2``, infinite when ``B = 0``) when ``df_complete`` is ``None`` or
      infinite; otherwise Barnard & Rubin (1999)
      ``nu = 1 / (1/nu_m + 1/nu_obs)`` with ``nu_obs = (nu_com + 1)/(nu_com + 3) * nu_com * (1 - lambda)``
      and ``nu_com = df_complete``. Note that at ``B = 0`` the Barnard-Rubin value is
      ``nu_com (nu_com + 1)/(nu_com + 3)``, a little below ``nu_com``: that is the published
      formula, and what SAS PROC MIANALYZE (``EDF=``), R mice and R rbmi report;
    * fraction of missing information ``fmi = (riv + 2/(nu_m + 3)) / (riv + 1)`` with Rubin's
      large-sample ``nu_m`` (Rubin 1987 eq. 3.1.10; SAS PROC MIANALYZE's definition. R mice
      uses the Barnard-Rubin df here instead);
    * ``t_statistic = (Qbar - null_value) / se``, two-sided ``p_value`` and the ``conf`` interval
      ``Qbar +/- t(1 - alpha/2; df) se`` from Student's t with ``df`` (normal if ``df`` is infinite).
      With ``T = 0`` the t statistic and p are NaN and the interval is ``(Qbar, Qbar)``.

    Returns a dict with keys ``m, estimate, within_variance, between_variance, total_variance,
    se, riv, lambda, fmi, df, df_method, df_complete, conf, lower, upper, t_statistic, p_value,
    null_value``.

    References: Rubin DB (1987), Multiple Imputation for Nonresponse in Surveys, ch. 3;
    Barnard J, Rubin DB (1999), Biometrika 86:948-955.
    """
    q = np.asarray(estimates, dtype=float).ravel()
    u = np.asarray(variances, dtype=float).ravel()
    if q.size != u.size:
        raise ValueError(f"estimates and variances differ in length: {q.size} vs {u.size}")
    m = int(q.size)
    if m < 2:
        raise ValueError(f"Rubin's rules need at least 2 imputations, got {m}")
    if not np.all(np.isfinite(q)):
        raise ValueError("estimates must be finite")
    if not np.all(np.isfinite(u)) or np.any(u < 0):
        raise ValueError("variances must be finite and non-negative")
    conf = float(conf)
    if not 0.0 < conf < 1.0:
        raise ValueError(f"conf must be strictly between 0 and 1, got {conf}")
    if df_complete is not None:
        df_complete = float(df_complete)
        if not df_complete > 0:
            raise ValueError(f"df_complete must be positive, got {df_complete}")
        if math.isinf(df_complete):
            df_complete = None

    qbar = float(np.mean(q))
    w = float(np.mean(u))
    b = float(np.var(q, ddof=1))
    inflation = (1.0 + 1.0 / m) * b
    t_var = w + inflation
    se = math.sqrt(t_var)

    if b == 0.0:
        riv, lam = 0.0, 0.0
    else:
        riv = inflation / w if w > 0 else math.inf
        lam = inflation / t_var
    nu_m = (m - 1) / lam**2 if lam > 0 else math.inf  # Rubin (1987) large-sample df
    fmi = 1.0 if math.isinf(riv) else (riv + 2.0 / (nu_m + 3.0)) / (riv + 1.0)

    if df_complete is None:
        df, df_method = nu_m, "Rubin (1987) large-sample"
    else:
        nu_com = df_complete
        nu_obs = (nu_com + 1.0) / (nu_com + 3.0) * nu_com * (1.0 - lam)
        if math.isinf(nu_m):
            df = nu_obs
        elif nu_obs == 0.0:
            df = 0.0
        else:
            df = 1.0 / (1.0 / nu_m + 1.0 / nu_obs)
        df_method = "Barnard-Rubin (1999)"

    alpha = 1.0 - conf
    if se > 0.0 and df > 0.0:
        dist = stats.norm if math.isinf(df) else stats.t(df)
        t_stat = (qbar - null_value) / se
        p_value = float(2.0 * dist.sf(abs(t_stat)))
        half = float(dist.ppf(1.0 - alpha / 2.0)) * se
    elif se == 0.0:
        t_stat, p_value, half = NAN, NAN, 0.0
    else:  # df = 0: no information left (all variance from missingness)
        t_stat, p_value, half = (qbar - null_value) / se, NAN, math.inf

    return {
        "m": m,
        "estimate": qbar,
        "within_variance": w,
        "between_variance": b,
        "total_variance": t_var,
        "se": se,
        "riv": riv,
        "lambda": lam,
        "fmi": fmi,
        "df": float(df),
        "df_method": df_method,
        "df_complete": df_complete,
        "conf": conf,
        "lower": qbar - half,
        "upper": qbar + half,
        "t_statistic": float(t_stat),
        "p_value": p_value,
        "null_value": float(null_value),
    }


# --------------------------------------------------------------------------------------------
# Bayesian normal linear regression imputation
# --------------------------------------------------------------------------------------------


def _check_frame(data: pd.DataFrame, target: str, predictors: Sequence[str]) -> list[str]:
    if not isinstance(data, pd.DataFrame):
        raise TypeError("data must be a pandas DataFrame")
    preds = list(predictors)
    if target not in data.columns:
        raise KeyError(f"target column {target!r} is not in data")
    if target in preds:
        raise ValueError(f"target {target!r} is also listed as a predictor")
    if len(set(preds)) != len(preds):
        raise ValueError(f"predictors contain duplicates: {preds!r}")
    for col in [target, *preds]:
        if col not in data.columns:
            raise KeyError(f"predictor column {col!r} is not in data")
        if not pd.api.types.is_numeric_dtype(data[col]) or pd.api.types.is_bool_dtype(data[col]):
            raise TypeError(f"column {col!r} must be numeric, got dtype {data[col].dtype}")
    for col in preds:
        n_na = int(data[col].isna().sum())
        if n_na:
            raise ValueError(
                f"predictor column {col!r} has {n_na} missing value(s); predictors must be complete"
            )
        if not np.all(np.isfinite(data[col].to_numpy(dtype=float))):
            raise ValueError(f"predictor column {col!r} has non-finite values")
    y = data[target].to_numpy(dtype=float, na_value=np.nan)
    if np.isinf(y).any():
        raise ValueError(f"target column {target!r} has infinite values")
    return preds


def _design(data: pd.DataFrame, predictors: list[str]) -> np.ndarray:
    cols = [np.ones(len(data))] + [data[c].to_numpy(dtype=float) for c in predictors]
    return np.column_stack(cols)


def _draw_imputations(
    data: pd.DataFrame, target: str, predictors: list[str], m: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Missing-row mask and an ``(m, n_missing)`` array of imputed values (Rubin 1987 p. 167)."""
    y = data[target].to_numpy(dtype=float, na_value=np.nan)
    miss = np.isnan(y)
    n_mis = int(miss.sum())
    if n_mis == 0:
        return miss, np.empty((m, 0))
    x = _design(data, predictors)
    x_obs, y_obs, x_mis = x[~miss], y[~miss], x[miss]
    n_obs, k = x_obs.shape
    if n_obs - k < 1:
        raise ValueError(
            f"{n_obs} complete case(s) cannot fit a regression with {k} coefficient(s) "
            "(need at least k + 1)"
        )
    qmat, rmat = np.linalg.qr(x_obs)  # x_obs = Q R; (X'X)^-1 = R^-1 R^-T
    diag = np.abs(np.diag(rmat))
    if diag.min() <= 1e-10 * max(diag.max(), 1.0):
        raise ValueError("predictors are collinear among the complete cases")
    beta_hat = linalg.solve_triangular(rmat, qmat.T @ y_obs)
    resid = y_obs - x_obs @ beta_hat
    ssr = float(resid @ resid)
    df = n_obs - k

    children = np.random.SeedSequence(seed).spawn(m)
    draws = np.empty((m, n_mis))
    for i, child in enumerate(children):
        rng = np.random.default_rng(child)
        # sigma^2 | y ~ scaled inverse chi-square: SSR / chi2(n_obs - k)
        sigma = math.sqrt(ssr / rng.chisquare(df))
        # beta | sigma, y ~ N(beta_hat, sigma^2 (X'X)^-1); R^-1 z has covariance (X'X)^-1
        beta = beta_hat + sigma * linalg.solve_triangular(rmat, rng.standard_normal(k))
        draws[i] = x_mis @ beta + sigma * rng.standard_normal(n_mis)
    return miss, draws


def _check_m_seed(m: int, seed: int) -> None:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def impute_normal_regression(
    data: pd.DataFrame, target: str, predictors: Sequence[str], m: int, seed: int
) -> list[pd.DataFrame]:
    """Multiply impute a continuous ``target`` by Bayesian normal linear regression.

    Method (Rubin 1987, p. 167; van Buuren 2018, Algorithm 3.1, mice's ``norm``; no ridge term):
    fit ``target ~ 1 + predictors`` by least squares on the rows where ``target`` is observed
    (``n_obs`` rows, ``k`` coefficients, residual sum of squares ``SSR``); then independently for
    each imputation ``i = 1..m``:

    1. draw ``sigma^2 = SSR / g`` with ``g ~ chi-square(n_obs - k)`` (scaled inverse chi-square
       posterior of the residual variance under the flat prior);
    2. draw ``beta ~ N(beta_hat, sigma^2 (X'X)^-1)``;
    3. impute each missing ``target`` as ``x' beta + sigma * z`` with ``z ~ N(0, 1)``.

    ``predictors`` may be empty (intercept only) and must have no missing values (``ValueError``
    naming the column otherwise). Randomness: ``numpy.random.SeedSequence(seed).spawn(m)``, one
    ``Generator`` per imputation, so results are reproducible for a given seed and imputation
    ``i`` does not depend on ``m``. Returns ``m`` copies of ``data`` with the missing ``target``
    values filled in; other columns and observed values are untouched, and when nothing is missing
    the copies equal ``data``.

    References: Rubin DB (1987), Multiple Imputation for Nonresponse in Surveys, Wiley;
    van Buuren S (2018), Flexible Imputation of Missing Data, 2nd ed., section 3.2.
    """
    preds = _check_frame(data, target, predictors)
    _check_m_seed(m, seed)
    miss, draws = _draw_imputations(data, target, preds, int(m), int(seed))
    return [_complete(data, target, miss, draws[i]) for i in range(int(m))]


def _complete(data: pd.DataFrame, target: str, miss: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    out = data.copy()
    if miss.any():
        col = out[target].to_numpy(dtype=float, na_value=np.nan, copy=True)
        col[miss] = values
        out[target] = col
    return out


# --------------------------------------------------------------------------------------------
# delta adjustment and tipping point
# --------------------------------------------------------------------------------------------


def mean_analysis(data: pd.DataFrame, target: str) -> tuple[float, float, float]:
    """Default completed-data analysis: mean of ``target`` with its variance and df.

    Returns ``(mean, sd^2 / n, n - 1)``: the one-sample t analysis (for a change-from-baseline
    variable, the mean change and the squared standard error of the paired t-test).

    Reference: Student (1908). The probable error of a mean. Biometrika 6:1-25.
    """
    return _mean_of(data[target].to_numpy(dtype=float, na_value=np.nan), target)


def _mean_of(y: np.ndarray, target: str) -> tuple[float, float, float]:
    """:func:`mean_analysis` of the values ``y`` of ``target``."""
    if np.isnan(y).any():
        raise ValueError(f"target {target!r} still has missing values")
    n = y.size
    if n < 2:
        raise ValueError("the mean analysis needs at least 2 observations")
    return float(np.mean(y)), float(np.var(y, ddof=1) / n), float(n - 1)


class _DeltaEvaluator:
    """Imputes once, then analyses and pools for any delta using the same imputations."""

    def __init__(self, data, target, predictors, m, seed, analysis):
        self.preds = _check_frame(data, target, predictors)
        _check_m_seed(m, seed)
        self.data, self.target, self.m = data, target, int(m)
        self.analysis = analysis if analysis is not None else mean_analysis
        self.miss, self.draws = _draw_imputations(data, target, self.preds, self.m, int(seed))
        self.n_missing = int(self.miss.sum())
        self.n_total = len(data)
        # The default analysis works on the target column itself (read once): no copy of the frame per imputation
        self.observed = data[target].to_numpy(dtype=float, na_value=np.nan, copy=True) \
            if self.analysis is mean_analysis else None

    def __call__(self, delta: float, conf: float, null_value: float) -> dict[str, Any]:
        delta = float(delta)
        if not math.isfinite(delta):
            raise ValueError(f"delta must be finite, got {delta}")
        estimates, variances, dfs = [], [], set()
        for i in range(self.m):
            if self.observed is not None:  # the default analysis on the completed column: the same numbers
                column = self.observed.copy()
                column[self.miss] = self.draws[i] + delta
                est, var, df = _mean_of(column, self.target)
            else:
                completed = _complete(self.data, self.target, self.miss, self.draws[i] + delta)
                est, var, df = self.analysis(completed, self.target)
            estimates.append(est)
            variances.append(var)
            dfs.add(None if df is None else float(df))
        if len(dfs) != 1:
            raise ValueError(f"the analysis returned different complete-data df across imputations: {dfs}")
        pooled = rubin_combine(estimates, variances, dfs.pop(), conf=conf, null_value=null_value)
        pooled["delta"] = delta
        return pooled


_TABLE_COLUMNS = [
    "delta", "estimate", "se", "lower", "upper", "p_value", "df", "m",
    "riv", "fmi", "within_variance", "between_variance", "n_missing", "n_total",
]


def _table(rows: list[dict[str, Any]], n_missing: int, n_total: int) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["n_missing"] = n_missing
    frame["n_total"] = n_total
    return frame[_TABLE_COLUMNS].reset_index(drop=True)


def delta_adjusted_analysis(
    data: pd.DataFrame,
    target: str,
    predictors: Sequence[str],
    deltas: Sequence[float],
    m: int,
    seed: int,
    analysis: Analysis | None = None,
    *,
    conf: float = 0.95,
    null_value: float = 0.0,
) -> pd.DataFrame:
    """Delta-adjusted (pattern-mixture) multiple-imputation sensitivity analysis.

    The missing ``target`` values are imputed once under MAR with
    :func:`impute_normal_regression` (``m`` imputations from ``seed``); for each ``delta`` the
    same imputed values are shifted by ``+delta`` (observed values unchanged: the missing subjects
    are assumed to differ from comparable observed subjects by ``delta`` on average), each completed
    dataset is analysed by ``analysis`` (default :func:`mean_analysis`: mean of ``target``,
    variance ``sd^2/n``, df ``n - 1``) and the results are combined by :func:`rubin_combine`
    (Barnard-Rubin df when the analysis returns a complete-data df).

    Because every delta reuses the same imputations, with the default analysis the pooled estimate
    is exactly linear: ``estimate(delta) = estimate(0) + delta * n_missing / n_total``.

    Returns one row per delta with columns ``delta, estimate, se, lower, upper, p_value, df, m``
    followed by ``riv, fmi, within_variance, between_variance, n_missing, n_total``.

    References: van Buuren S (2018), FIMD section 3.9.1; Ratitch B et al. (2013), Pharm Stat
    12:337-347; Rubin DB (1987); Barnard J, Rubin DB (1999).
    """
    evaluator = _DeltaEvaluator(data, target, predictors, m, seed, analysis)
    rows = [evaluator(d, conf, null_value) for d in deltas]
    if not rows:
        raise ValueError("deltas must not be empty")
    return _table(rows, evaluator.n_missing, evaluator.n_total)


@dataclasses.dataclass(frozen=True)
class TippingPointResult:
    """Outcome of :func:`tipping_point`."""

    tipping_delta: float  # NaN when not found
    found: bool
    significant_under_mar: bool  # p < alpha at delta = 0
    direction: int  # sign of the deltas searched (-1: shifts downwards erode a positive effect)
    alpha: float
    estimate_at_tipping: float
    p_value_at_tipping: float
    criterion: str
    grid: pd.DataFrame  # delta-adjusted results on the grid (and refinement points)

    def to_dict(self, nan_as_none: bool = False) -> dict[str, Any]:
        """Plain-Python view; the grid becomes a list of row dicts."""
        def fix(v: Any) -> Any:
            if isinstance(v, (np.integer,)):
                return int(v)
            if isinstance(v, (float, np.floating)):
                f = float(v)
                return None if (nan_as_none and math.isnan(f)) else f
            return v

        out = {f.name: fix(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "grid"}
        out["grid"] = [{k: fix(v) for k, v in row.items()} for row in self.grid.to_dict("records")]
        return out


def tipping_point(
    data: pd.DataFrame,
    target: str,
    predictors: Sequence[str],
    m: int,
    seed: int,
    *,
    grid: Sequence[float] | None = None,
    alpha: float = 0.05,
    null_value: float = 0.0,
    analysis: Analysis | None = None,
    tol: float = 1e-6,
    max_iter: int = 200,
) -> TippingPointResult:
    """Tipping-point analysis: the smallest delta shift that removes statistical significance.

    The delta-adjusted analysis (:func:`delta_adjusted_analysis`, same imputations for every
    delta) is evaluated with ``conf = 1 - alpha``, so "the pooled CI includes ``null_value``" and
    "``p >= alpha``" are the same criterion. The search moves in the direction that erodes the
    effect: ``direction = -1`` (deltas <= 0) when the MAR estimate is above ``null_value``, else
    ``+1`` (this assumes, as for the default mean analysis, that the estimate increases with delta).

    1. If ``p >= alpha`` already at ``delta = 0`` the result is not significant under MAR:
       ``tipping_delta = 0``, ``found = True``, ``significant_under_mar = False``.
    2. The grid (default: 41 equally spaced points from 0 to
       ``2 |estimate(0) - null_value| / fraction_missing`` in the eroding direction; a user grid is
       restricted to the eroding side and 0 is added) is scanned in order of increasing ``|delta|``
       for the first point with ``p >= alpha``.
    3. The bracket between that point and the previous one is refined by bisection (same
       imputations, so the search is deterministic) until it is narrower than ``tol``; the
       reported ``tipping_delta`` is the end of the final bracket where ``p >= alpha``.

    ``found = False`` (``tipping_delta`` NaN) when no grid point reaches ``p >= alpha``, e.g. when
    nothing is missing. The returned ``grid`` table holds every evaluated delta, sorted by delta.

    References: Ratitch B, O'Kelly M, Tosiello R (2013), Pharm Stat 12:337-347; van Buuren S (2018),
    FIMD section 9.2.
    """
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    evaluator = _DeltaEvaluator(data, target, predictors, m, seed, analysis)
    conf = 1.0 - alpha
    cache: dict[float, dict[str, Any]] = {}

    def evaluate(delta: float) -> dict[str, Any]:
        delta = float(delta) + 0.0  # normalises -0.0
        if delta not in cache:
            cache[delta] = evaluator(delta, conf, null_value)
        return cache[delta]

    def not_significant(res: dict[str, Any]) -> bool:
        # NaN p (zero variance) counts as significant only if the estimate differs from the null
        p = res["p_value"]
        return bool(p >= alpha) if not math.isnan(p) else res["estimate"] == null_value

    base = evaluate(0.0)
    direction = -1 if base["estimate"] > null_value else 1
    criterion = f"p >= {alpha:g} (the {100 * conf:g}% CI includes {null_value:g})"

    def result(tip: float, found: bool, significant: bool) -> TippingPointResult:
        rows = [cache[k] for k in sorted(cache)]
        at = cache.get(tip) if found else None
        return TippingPointResult(
            tipping_delta=tip if found else NAN,
            found=found,
            significant_under_mar=significant,
            direction=direction,
            alpha=alpha,
            estimate_at_tipping=at["estimate"] if at else NAN,
            p_value_at_tipping=at["p_value"] if at else NAN,
            criterion=criterion,
            grid=_table(rows, evaluator.n_missing, evaluator.n_total),
        )

    if not_significant(base):
        return result(0.0, True, False)

    if grid is None:
        frac = evaluator.n_missing / evaluator.n_total
        if frac == 0.0:
            return result(NAN, False, True)
        span = 2.0 * abs(base["estimate"] - null_value) / frac
        points = list(direction * np.linspace(0.0, span, 41))
    else:
        points = [float(g) for g in grid if float(g) * direction >= 0.0] + [0.0]
    points = sorted({float(p) + 0.0 for p in points}, key=abs)

    lo, hi = 0.0, None
    for point in points:
        if not_significant(evaluate(point)):
            hi = point
            break
        lo = point
    if hi is None:
        return result(NAN, False, True)

    for _ in range(max_iter):
        if abs(hi - lo) <= tol:
            break
        mid = (lo + hi) / 2.0
        if not_significant(evaluate(mid)):
            hi = mid
        else:
            lo = mid
    return result(hi, True, True)
