"""Data preparation and the fixed-effects design matrix (R ``model.matrix`` conventions).

* Factors: pandas Categorical columns keep their category order; other string/object/bool columns
  use their sorted unique values. The first level is the reference (treatment contrasts).
* A factor in a term gets contrast coding (indicators of levels 2..k) when the term without that
  factor is also in the model (the intercept counts as the empty term), and full indicator coding
  otherwise - R's rule, so ``~ 0 + ARMCD`` gives both arm means and ``~ ARMCD:AVISIT`` without main
  effects is coded like R.
* Column names follow R: ``(Intercept)``, ``RACEBlack or African American``,
  ``ARMCDTRT:AVISITVIS2``, ``FEV1_BL`` (numeric), ``ARMCDTRT:FEV1_BL``.
* Every column is a product of level indicators and numeric variables; this description
  (``Column``) is kept so LS means and type 3 hypotheses can be built analytically.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._errors import MMRMError, MMRMWarning
from .formula import ParsedFormula


@dataclass(frozen=True)
class Column:
    """One design column: product of indicators 1{factor == level} and numeric variables."""

    name: str
    term: tuple[str, ...]  # () for the intercept
    levels: tuple[tuple[str, int], ...]  # (factor, level index)
    numerics: tuple[str, ...]


@dataclass
class Design:
    """Prepared data and design for one model."""

    formula: ParsedFormula
    factor_levels: dict[str, list]  # factor -> ordered level values (only levels present)
    numeric_vars: list[str]
    numeric_means: dict[str, float]
    columns: list[Column]  # all columns, including aliased ones
    aliased: np.ndarray  # bool per column in ``columns``
    X: np.ndarray  # (n_obs, p) non-aliased columns only
    y: np.ndarray  # (n_obs,)
    subject_codes: np.ndarray  # (n_obs,) 0..n_subjects-1
    visit_codes: np.ndarray  # (n_obs,) 0..T-1
    subjects: list  # subject id per code
    visits: list  # visit level per code
    n_dropped_response: int = 0
    n_dropped_covariates: int = 0
    excluded_subjects: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_subjects_sas: int = 0  # subjects with a row of complete covariates, response missing or not
    X_aliased: np.ndarray | None = None  # (n_obs, n_aliased) aliased columns, for estimability checks

    @property
    def kept_columns(self) -> list[Column]:
        return [c for c, a in zip(self.columns, self.aliased) if not a]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.kept_columns]

    @property
    def all_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _warn(msg: str, notes: list[str]) -> None:
    notes.append(msg)
    warnings.warn(msg, MMRMWarning, stacklevel=4)


def _is_factor(series: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def _levels(series: pd.Series) -> list:
    """Level order: categorical order, else sorted unique values (no missing)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return list(series.cat.categories)
    values = pd.unique(series.dropna())
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _fmt(level) -> str:
    return str(level)


def _coding_full(term: tuple[str, ...], present: set[frozenset[str]], var: str) -> bool:
    """R's rule: full indicator coding for ``var`` unless term minus var is in the model."""
    return frozenset(term) - {var} not in present


def build_columns(formula: ParsedFormula, factor_levels: dict[str, list], numeric_vars: list[str]) -> list[Column]:
    """Design columns in R's order (terms in formula order, first factor varying fastest)."""
    columns: list[Column] = []
    present = {frozenset(t) for t in formula.terms}
    if formula.intercept:
        present.add(frozenset())
        columns.append(Column("(Intercept)", (), (), ()))
    for term in formula.terms:
        choices: list[list[tuple[str | None, int | None, str]]] = []
        for var in term:
            if var in numeric_vars:
                choices.append([(None, None, var)])
            else:
                levels = factor_levels[var]
                idx = range(len(levels)) if _coding_full(term, present, var) else range(1, len(levels))
                choices.append([(var, k, f"{var}{_fmt(levels[k])}") for k in idx])
        # first variable varies fastest, as in R
        for combo in itertools.product(*reversed(choices)):
            combo = tuple(reversed(combo))
            name = ":".join(c[2] for c in combo)
            lv = tuple((c[0], c[1]) for c in combo if c[0] is not None)
            nums = tuple(c[2] for c in combo if c[0] is None)
            columns.append(Column(name, term, lv, nums))
    return columns


def column_matrix(
    columns: list[Column], codes: dict[str, np.ndarray], numbers: dict[str, np.ndarray], n: int
) -> np.ndarray:
    """Evaluate the design columns on rows given factor codes and numeric values."""
    X = np.ones((n, len(columns)))
    for j, col in enumerate(columns):
        for f, k in col.levels:
            X[:, j] *= codes[f] == k
        for v in col.numerics:
            X[:, j] *= numbers[v]
    return X


def find_aliased(X: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Columns that are (numerically) linear combinations of earlier columns, like R's lm().

    With a QR decomposition without pivoting, |R_jj| is the length of the part of column j that is
    orthogonal to all earlier columns; scaled columns make the tolerance relative.
    """
    if X.shape[1] == 0:
        return np.zeros(0, bool)
    norms = np.linalg.norm(X, axis=0)
    aliased = norms <= 1e-12 * max(1.0, norms.max())
    scaled = X / np.where(aliased, 1.0, norms)
    scaled[:, aliased] = 0.0
    # Fast path for tall designs: the Cholesky factor of the scaled Gram matrix equals R up to
    # signs; it is accurate to ~1e-8 absolute, so it can only *clear* columns (all |R_jj| well
    # above the tolerance). Anything doubtful is decided by the QR of X itself.
    if not aliased.any():
        try:
            Rg = np.linalg.cholesky(scaled.T @ scaled)
            if np.diag(Rg).min() > 1e-4:
                return aliased
        except np.linalg.LinAlgError:
            pass
    r = np.zeros(X.shape[1])
    diag = np.abs(np.diag(np.linalg.qr(scaled, mode="r")))
    r[: len(diag)] = diag  # fewer rows than columns: the trailing columns are aliased
    return aliased | (r < tol)


def prepare(data: pd.DataFrame, formula: ParsedFormula, *, single_visit: bool = False) -> Design:
    """Check and clean the data, code factors and build the design matrix.

    ``single_visit`` is used by ANCOVA: every row is its own subject with one time point.
    """
    if not isinstance(data, pd.DataFrame):
        raise MMRMError("data must be a pandas DataFrame")
    notes: list[str] = []
    needed = [formula.response, *formula.variables]
    if not single_visit:
        needed += [formula.visit, formula.subject]
    missing_cols = [c for c in dict.fromkeys(needed) if c not in data.columns]
    if missing_cols:
        raise MMRMError(f"column(s) not in the data: {', '.join(map(repr, missing_cols))}")

    df = data.loc[:, list(dict.fromkeys(needed))].copy()
    if single_visit:
        df["__subject__"] = np.arange(len(df))
        df["__visit__"] = pd.Categorical(["all"] * len(df))
        subject_var, visit_var = "__subject__", "__visit__"
    else:
        subject_var, visit_var = formula.subject, formula.visit

    resp = df[formula.response]
    if not pd.api.types.is_numeric_dtype(resp) or pd.api.types.is_bool_dtype(resp):
        raise MMRMError(f"the response {formula.response!r} must be numeric")
    all_subjects = pd.unique(df[subject_var].dropna())

    # SAS counts a subject in its Dimensions table (and so in BIC) when it has a row with complete
    # classification variables, even if the response is missing at every visit.
    covs = [c for c in df.columns if c != formula.response]
    n_subjects_sas = int(df.loc[~df[covs].isna().any(axis=1).to_numpy(), subject_var].nunique())
    miss_resp = resp.isna().to_numpy()
    n_dropped_response = int(miss_resp.sum())
    df = df.loc[~miss_resp]
    others = [c for c in df.columns if c != formula.response]
    miss_cov = df[others].isna().any(axis=1).to_numpy()
    n_dropped_cov = int(miss_cov.sum())
    if n_dropped_cov:
        which = [c for c in others if df[c].isna().any()]
        _warn(
            f"{n_dropped_cov} row(s) with a non-missing response were dropped because of missing "
            f"values in {', '.join(which)}",
            notes,
        )
    df = df.loc[~miss_cov]
    if len(df) == 0:
        raise MMRMError("no rows left after dropping rows with missing values")
    if not np.all(np.isfinite(df[formula.response].to_numpy(float))):
        raise MMRMError(f"the response {formula.response!r} has infinite values")

    used_subjects = set(pd.unique(df[subject_var]))
    excluded = [s for s in all_subjects if s not in used_subjects]
    if excluded and not single_visit:
        shown = ", ".join(map(str, excluded[:5])) + (" ..." if len(excluded) > 5 else "")
        _warn(
            f"{len(excluded)} subject(s) have no usable observation (response or covariates missing "
            f"at every visit) and are excluded: {shown}",
            notes,
        )

    # factor levels and numeric variables
    factor_levels: dict[str, list] = {}
    numeric_vars: list[str] = []
    codes: dict[str, np.ndarray] = {}
    numbers: dict[str, np.ndarray] = {}
    for var in formula.variables:
        s = df[var]
        if _is_factor(s):
            full = _levels(data[var])
            used = set(pd.unique(s))
            levels = [lv for lv in full if lv in used]
            empty = [lv for lv in full if lv not in used]
            if empty:
                ref_note = (
                    " (the reference level is now " + repr(levels[0]) + ")" if levels and full[0] in empty else ""
                )
                _warn(
                    f"factor {var!r}: level(s) {', '.join(map(repr, empty))} have no usable observation "
                    f"and were removed{ref_note}",
                    notes,
                )
            if len(levels) < 2:
                raise MMRMError(f"factor {var!r} has fewer than two levels with data ({levels!r})")
            factor_levels[var] = levels
            codes[var] = pd.Index(levels).get_indexer(s.astype(object)).astype(np.int64)
        else:
            values = s.to_numpy(float)
            if not np.all(np.isfinite(values)):
                raise MMRMError(f"numeric covariate {var!r} has infinite values")
            numeric_vars.append(var)
            numbers[var] = values

    # visits (time points of the covariance structure)
    vs = df[visit_var]
    if single_visit:
        visits = ["all"]
    else:
        full = _levels(data[visit_var])
        used = set(pd.unique(vs))
        visits = [lv for lv in full if lv in used]
        empty = [lv for lv in full if lv not in used]
        if empty and visit_var not in factor_levels:
            _warn(f"visit level(s) {', '.join(map(repr, empty))} have no usable observation and were removed", notes)
    visit_codes = pd.Index(visits).get_indexer(vs.astype(object)).astype(np.int64)
    subj_codes, subjects = pd.factorize(df[subject_var], sort=True)
    subjects = list(subjects)

    key = subj_codes.astype(np.int64) * len(visits) + visit_codes
    counts = np.bincount(key, minlength=len(subjects) * len(visits))
    if counts.max(initial=0) > 1:
        bad = int(np.argmax(counts))
        raise MMRMError(
            f"subject {subjects[bad // len(visits)]!r} has more than one row at visit "
            f"{visits[bad % len(visits)]!r}; each subject may have one observation per visit"
        )

    columns = build_columns(formula, factor_levels, numeric_vars)
    if not columns:
        raise MMRMError("the model has no fixed effects (add an intercept or a term)")
    Xfull = column_matrix(columns, codes, numbers, len(df))
    aliased = find_aliased(Xfull)
    if aliased.any():
        names = [c.name for c, a in zip(columns, aliased) if a]
        _warn(
            "the design is rank deficient: coefficient(s) "
            + ", ".join(map(repr, names))
            + " are aliased with earlier columns (e.g. an empty factor combination) and are not estimable;"
            " they are reported as NaN",
            notes,
        )
    X = Xfull[:, ~aliased]
    if X.shape[1] >= len(df):
        raise MMRMError(f"{X.shape[1]} fixed effects but only {len(df)} observations")

    return Design(
        formula=formula,
        factor_levels=factor_levels,
        numeric_vars=numeric_vars,
        numeric_means={v: float(numbers[v].mean()) for v in numeric_vars},
        columns=columns,
        aliased=aliased,
        X=X,
        y=df[formula.response].to_numpy(float),
        subject_codes=subj_codes.astype(np.int64),
        visit_codes=visit_codes,
        subjects=subjects,
        visits=visits,
        n_dropped_response=n_dropped_response,
        n_dropped_covariates=n_dropped_cov,
        excluded_subjects=list(excluded),
        notes=notes,
        X_aliased=Xfull[:, aliased],
        n_subjects_sas=n_subjects_sas,
    )


def average_row(
    design: Design,
    weights: dict[str, np.ndarray],
    numeric_values: dict[str, float],
    derivative: tuple[str, ...] = (),
) -> np.ndarray:
    """A linear combination of design rows over the grid of all factor levels, in closed form.

    ``weights[f]`` is a weight vector over the levels of factor f (factors not given get equal
    weights 1/k). Because the grid weight is a product over factors and each column is a product of
    level indicators, the weighted average of a column is the product over factors of
    (weight of the column's level) for factors in the column, times the total weight of the other
    factors. Numeric variables take ``numeric_values``; for ``derivative`` variables the
    column's partial derivative is used instead (the type 3 hypothesis for a covariate term).
    Returns a row over *all* columns (aliased ones included).
    """
    out = np.empty(len(design.columns))
    totals = {}
    full_w = {}
    for f, levels in design.factor_levels.items():
        w = weights.get(f)
        w = np.full(len(levels), 1.0 / len(levels)) if w is None else np.asarray(w, float)
        full_w[f] = w
        totals[f] = w.sum()
    for j, col in enumerate(design.columns):
        val = 1.0
        in_col = {f for f, _ in col.levels}
        for f, k in col.levels:
            val *= full_w[f][k]
        for f in design.factor_levels:
            if f not in in_col:
                val *= totals[f]
        if set(derivative) - set(col.numerics):
            val = 0.0
        for v in col.numerics:
            if v not in derivative:
                val *= numeric_values[v]
        out[j] = val
    return out
