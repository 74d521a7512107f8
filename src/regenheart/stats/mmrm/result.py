"""The fitted-model object: coefficients, covariance, LS means, contrasts, type 3 tests, summary."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ._errors import MMRMError, MMRMWarning
from .covariance import Structure
from .design import Design, average_row
from .dof import Inference
from .likelihood import Likelihood, State

_STAT_COLUMNS = ["estimate", "std_error", "df", "lower", "upper", "t_value", "p_value"]


def _as_list(x) -> list[str]:
    """Factor names from a string ("ARMCD", "AVISIT:ARMCD", "AVISIT*ARMCD") or a list."""
    if x is None:
        return []
    if isinstance(x, str):
        return [part.strip() for part in x.replace("*", ":").split(":") if part.strip()]
    return list(x)


class MMRMResult:
    """A fitted MMRM (or ANCOVA).

    Conventions
    -----------
    * Coefficient names follow R's ``model.matrix``: ``"(Intercept)"``,
      ``"RACEBlack or African American"``, ``"SEXFemale"``, ``"ARMCDTRT"``, ``"AVISITVIS2"``,
      ``"ARMCDTRT:AVISITVIS2"``, numeric covariates by their column name. ``coef(name)`` also
      accepts ``"ARMCD[TRT]"``, ``"ARMCD[T.TRT]"``, ``"ARMCD TRT"``, ``"ARMCD=TRT"``, the bare level
      (``"TRT"``, ``"TRT:VIS2"``) when unambiguous, and is case-insensitive.
    * ``loglik`` is the maximized REML (or ML) log-likelihood including the 2 pi constant, so
      ``-2 * loglik`` is SAS's "-2 Res Log Likelihood". Information criteria follow SAS: with REML,
      AIC = -2 logLik + 2 k and BIC = -2 logLik + k log(n), k = number of covariance
      parameters (with ML, k also counts the fixed effects) and n = ``n_subjects_bic``, the subjects
      of SAS's Dimensions table: those with at least one row of complete covariates, including
      subjects whose response is missing at every visit (so fev_data gives n = 200 and SAS's BIC
      3439.4, while ``n_subjects`` = 197 subjects contribute data).
    * ``pairwise`` estimates are ``level - earlier level`` (e.g. TRT - PBO) and carry SAS-style
      columns ``ARMCD`` (minuend) and ``_ARMCD`` (subtrahend) plus a ``contrast`` label.
    """

    def __init__(
        self,
        *,
        design: Design,
        likelihood: Likelihood,
        state: State,
        structure: Structure,
        theta: np.ndarray,
        inference: Inference,
        method: str,
        df_method: str,
        converged: bool,
        n_iterations: int,
        optimizer_message: str,
    ):
        self._design = design
        self._lik = likelihood
        self._st = state
        self._inf = inference
        self.structure = structure.name
        self._structure = structure
        self.theta = np.asarray(theta)
        self.method = method
        self.df_method = df_method
        self.converged = bool(converged)
        self.n_iterations = int(n_iterations)
        self.optimizer_message = optimizer_message
        self.formula = design.formula
        self.n_subjects = int(likelihood.n_sub)
        self.n_observations = int(likelihood.n_obs)
        self.n_dropped_response = design.n_dropped_response
        self.n_dropped_covariates = design.n_dropped_covariates
        self.excluded_subjects = list(design.excluded_subjects)
        self.notes = list(design.notes)
        self.neg2loglik = float(state.f)
        self.loglik = -0.5 * self.neg2loglik
        k = structure.n_theta + (0 if method == "reml" else likelihood.p)
        self.n_parameters = k
        self.aic = self.neg2loglik + 2 * k
        # SAS's BIC uses the subjects of its Dimensions table, which include subjects whose response
        # is missing at every visit (fev_data: 200, not the 197 with data); AIC does not depend on it.
        self.n_subjects_bic = max(int(design.n_subjects_sas), self.n_subjects)
        self.bic = self.neg2loglik + k * np.log(self.n_subjects_bic)
        self._beta_full = np.full(len(design.columns), np.nan)
        self._beta_full[~design.aliased] = state.beta
        self._alias_map = self._build_aliases()
        self._coef_cache: pd.DataFrame | None = None

    # ------------------------------------------------------------------ basic tables
    @property
    def visits(self) -> list:
        return list(self._design.visits)

    @property
    def beta(self) -> np.ndarray:
        """Estimated fixed effects (non-aliased columns, in ``coefficients`` order without NaN rows)."""
        return self._st.beta.copy()

    @property
    def covariance(self) -> pd.DataFrame:
        """Estimated within-subject covariance matrix Sigma (visits x visits)."""
        S = self._st.Sigma
        return pd.DataFrame(S, index=self.visits, columns=self.visits)

    @property
    def correlation(self) -> pd.DataFrame:
        S = self._st.Sigma
        sd = np.sqrt(np.diag(S))
        return pd.DataFrame(S / np.outer(sd, sd), index=self.visits, columns=self.visits)

    @property
    def covariance_parameters(self) -> pd.Series:
        """Covariance parameters in the SAS parameterization (e.g. UN(1,1), UN(2,1), ...)."""
        return pd.Series(self._inf.phi, index=self._structure.natural_names(), name="estimate")

    @property
    def covariance_parameters_vcov(self) -> pd.DataFrame:
        """Asymptotic covariance of the covariance parameters (inverse observed information)."""
        names = self._structure.natural_names()
        return pd.DataFrame(self._inf.A, index=names, columns=names)

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance of the fixed-effect estimates (Kenward-Roger: the adjusted Phi_A)."""
        names = self._design.names
        return pd.DataFrame(self._inf.vcov, index=names, columns=names)

    @property
    def coefficients(self) -> pd.DataFrame:
        """Fixed effects: estimate, std_error, df, t_value, p_value (aliased terms are NaN)."""
        if self._coef_cache is None:
            rows = []
            p = self._lik.p
            k = 0
            for col, al in zip(self._design.columns, self._design.aliased):
                if al:
                    rows.append({c: np.nan for c in ["estimate", "std_error", "df", "t_value", "p_value"]})
                    continue
                e = np.zeros(p)
                e[k] = 1.0
                k += 1
                rows.append(self._inf.single(e, self._st.beta))
            self._coef_cache = pd.DataFrame(
                rows,
                index=pd.Index(self._design.all_names, name="term"),
                columns=["estimate", "std_error", "df", "t_value", "p_value"],
            )
        return self._coef_cache.copy()

    # ------------------------------------------------------------------ name lookups
    def _build_aliases(self) -> dict[str, str]:
        cands: dict[str, set[str]] = {}
        levels = self._design.factor_levels
        for col in self._design.columns:
            parts: list[list[str]] = []
            lv = dict(col.levels)
            for var in col.term:
                if var in lv:
                    s = str(levels[var][lv[var]])
                    parts.append([f"{var}{s}", f"{var}[{s}]", f"{var}[T.{s}]", f"{var} {s}", f"{var}={s}", s])
                else:
                    parts.append([var])
            if not parts:
                names = ["(Intercept)", "Intercept"]
            else:
                names = [":".join(c) for c in itertools.product(*parts)]
                names += ["*".join(c) for c in itertools.product(*parts)] if len(parts) > 1 else []
            for nm in names:
                cands.setdefault(nm, set()).add(col.name)
                cands.setdefault(nm.lower(), set()).add(col.name)
        return {k: next(iter(v)) for k, v in cands.items() if len(v) == 1}

    def term_name(self, name: str) -> str:
        """Canonical (R-style) coefficient name for any accepted spelling."""
        if name in self._design.all_names:
            return name
        for key in (name, name.strip(), name.strip().lower()):
            if key in self._alias_map:
                return self._alias_map[key]
        raise KeyError(f"no coefficient {name!r}; coefficients are {self._design.all_names}")

    def coef(self, name: str) -> pd.Series:
        """One row of ``coefficients``, looked up by any accepted spelling of the term."""
        return self.coefficients.loc[self.term_name(name)]

    # ------------------------------------------------------------------ linear functions
    def _kept(self, l_full: np.ndarray) -> np.ndarray | None:
        """Restrict a row over all columns to the non-aliased ones; None if not estimable."""
        d = self._design
        if d.aliased.any():
            N = self._null_basis()
            scale = max(np.abs(l_full).max(), 1e-300)
            if np.abs(l_full @ N).max() > 1e-8 * scale:
                return None
        return l_full[~d.aliased]

    def _null_basis(self) -> np.ndarray:
        if not hasattr(self, "_N"):
            d = self._design
            # aliased columns are combinations of the kept ones on the data: X_al = X_kept B
            Xk = d.X
            Xal = self._aliased_columns_data()
            B, *_ = np.linalg.lstsq(Xk, Xal, rcond=None)
            N = np.zeros((len(d.columns), Xal.shape[1]))
            N[~d.aliased] = -B
            N[np.flatnonzero(d.aliased), np.arange(Xal.shape[1])] = 1.0
            self._N = N
        return self._N

    def _aliased_columns_data(self) -> np.ndarray:
        d = self._design
        return d.X_aliased if d.X_aliased is not None else np.zeros((d.X.shape[0], 0))

    def _full_row(self, weights: Mapping[str, np.ndarray], values: Mapping[str, float], derivative=()) -> np.ndarray:
        return average_row(self._design, dict(weights), dict(values), tuple(derivative))

    def _check_factors(self, names: Sequence[str]) -> None:
        for f in names:
            if f not in self._design.factor_levels:
                raise MMRMError(
                    f"{f!r} is not a factor of the fixed effects (factors: {list(self._design.factor_levels)})"
                )

    def _stat_row(self, l: np.ndarray | None, alpha: float) -> dict:
        if l is None:
            return {c: np.nan for c in _STAT_COLUMNS}
        r = self._inf.single(l, self._st.beta)
        q = stats.t.ppf(1 - alpha / 2, r["df"]) if np.isfinite(r["df"]) else stats.norm.ppf(1 - alpha / 2)
        r["lower"] = r["estimate"] - q * r["std_error"]
        r["upper"] = r["estimate"] + q * r["std_error"]
        return r

    def _cells(self, factors: list[str]) -> list[tuple]:
        lv = self._design.factor_levels
        return list(itertools.product(*[range(len(lv[f])) for f in factors]))

    def _cell_row(self, factors: list[str], cell: tuple) -> np.ndarray:
        lv = self._design.factor_levels
        w = {}
        for f, k in zip(factors, cell):
            e = np.zeros(len(lv[f]))
            e[k] = 1.0
            w[f] = e
        return self._full_row(w, self._design.numeric_means)

    def lsmeans(
        self, specs: str | Sequence[str], by: str | Sequence[str] | None = None, *, alpha: float = 0.05
    ) -> pd.DataFrame:
        """Least-squares (estimated marginal) means.

        Factors not in ``specs``/``by`` are weighted equally and numeric covariates are set to their
        mean over the observations used in the fit (SAS LSMEANS / emmeans). Returns one row per
        cell with the factor columns then estimate, std_error, df, lower, upper, t_value, p_value.
        """
        specs_l, by_l = _as_list(specs), _as_list(by)
        factors = by_l + [f for f in specs_l if f not in by_l]
        self._check_factors(factors)
        lv = self._design.factor_levels
        rows = []
        n_bad = 0
        for cell in self._cells(factors):
            l = self._kept(self._cell_row(factors, cell))
            n_bad += l is None
            r = {f: lv[f][k] for f, k in zip(factors, cell)}
            r.update(self._stat_row(l, alpha))
            rows.append(r)
        if n_bad:
            warnings.warn(f"{n_bad} LS mean(s) are not estimable (empty cells) and are NaN", MMRMWarning, stacklevel=2)
        return pd.DataFrame(rows, columns=factors + _STAT_COLUMNS)

    def pairwise(
        self, specs: str | Sequence[str], by: str | Sequence[str] | None = None, *, alpha: float = 0.05
    ) -> pd.DataFrame:
        """Pairwise differences of LS means within each level of ``by``.

        For cells ordered as in ``lsmeans`` (first level first), each pair gives
        ``later - earlier`` (e.g. ``TRT - PBO``). Columns: the ``by`` factors, ``contrast`` (label),
        the minuend levels under the factor names and the subtrahend levels under ``_<factor>``
        (as SAS's Diffs table), then estimate, std_error, df, lower, upper, t_value, p_value.
        """
        specs_l, by_l = _as_list(specs), _as_list(by)
        specs_l = [f for f in specs_l if f not in by_l]
        self._check_factors(by_l + specs_l)
        lv = self._design.factor_levels
        rows = []
        for bcell in self._cells(by_l) if by_l else [()]:
            cells = self._cells(specs_l)
            full = {c: self._cell_row(by_l + specs_l, tuple(bcell) + c) for c in cells}
            for i, j in itertools.combinations(range(len(cells)), 2):
                ci, cj = cells[i], cells[j]
                # a difference can be estimable even when the two means are not; otherwise NaN
                l = self._kept(full[cj] - full[ci])
                lab_j = " ".join(str(lv[f][k]) for f, k in zip(specs_l, cj))
                lab_i = " ".join(str(lv[f][k]) for f, k in zip(specs_l, ci))
                r = {f: lv[f][k] for f, k in zip(by_l, bcell)}
                r["contrast"] = f"{lab_j} - {lab_i}"
                for f, k in zip(specs_l, cj):
                    r[f] = lv[f][k]
                for f, k in zip(specs_l, ci):
                    r[f"_{f}"] = lv[f][k]
                r.update(self._stat_row(l, alpha))
                rows.append(r)
        cols = by_l + ["contrast"] + specs_l + [f"_{f}" for f in specs_l] + _STAT_COLUMNS
        return pd.DataFrame(rows, columns=cols)

    def _contrast_matrix(self, L) -> np.ndarray:
        d = self._design
        p_full, p = len(d.columns), self._lik.p
        if isinstance(L, Mapping):
            L = [L]
        if isinstance(L, (list, tuple)) and L and isinstance(L[0], Mapping):
            rows = []
            for m in L:
                r = np.zeros(p_full)
                for name, v in m.items():
                    r[d.all_names.index(self.term_name(name))] += float(v)
                rows.append(r)
            M = np.array(rows)
        else:
            M = np.atleast_2d(np.asarray(L, float))
        if M.shape[1] == p_full:
            kept = [self._kept(r) for r in M]
            if any(k is None for k in kept):
                raise MMRMError("the contrast involves aliased (non-estimable) coefficients")
            M = np.array(kept)
        elif M.shape[1] != p:
            raise MMRMError(f"contrast has {M.shape[1]} columns; the model has {p_full} coefficients")
        return M

    def contrast(self, L, *, alpha: float = 0.05) -> pd.Series:
        """Test of a linear function L beta.

        ``L`` is a vector over the coefficients (in ``coefficients`` order), a 2-D array (one row
        per hypothesis row), a dict ``{term: weight}`` (any accepted term spelling) or a list of
        such dicts. A single row returns estimate, std_error, df, lower, upper, t_value, p_value
        (and f_value = t^2); several rows return num_df, den_df, f_value, p_value (joint F test).
        """
        M = self._contrast_matrix(L)
        if M.shape[0] == 1:
            r = self._stat_row(M[0], alpha)
            r["f_value"] = r["t_value"] ** 2
            return pd.Series(r)[_STAT_COLUMNS + ["f_value"]]
        return pd.Series(self._inf.ftest(M, self._st.beta))

    def type3(self) -> pd.DataFrame:
        """SAS type 3 tests of the fixed-effect terms (F, numerator/denominator df, p).

        The hypothesis for a term sets its interaction contrasts of cell means to zero, averaging
        over the levels of the other factors with equal weights and evaluating numeric covariates at
        0 (SAS's type 3 estimable functions). Denominator df and F follow the chosen df method.
        """
        d = self._design
        lv = d.factor_levels
        zeros = {v: 0.0 for v in d.numeric_vars}
        out = []
        for term in d.formula.terms:
            facs = [v for v in term if v in lv]
            nums = tuple(v for v in term if v not in lv)
            blocks = []
            for f in facs:
                k = len(lv[f])
                Cm = np.zeros((k - 1, k))
                Cm[:, 0] = -1.0
                Cm[np.arange(k - 1), np.arange(1, k)] = 1.0
                blocks.append(Cm)
            rows = []
            for combo in itertools.product(*[range(b.shape[0]) for b in blocks]) if blocks else [()]:
                w = {f: blocks[i][combo[i]] for i, f in enumerate(facs)}
                rows.append(self._full_row(w, zeros, nums))
            label = ":".join(term)
            L = self._estimable_part(np.array(rows), label)
            if L is None:
                out.append({"term": label, "num_df": 0, "den_df": np.nan, "f_value": np.nan, "p_value": np.nan})
                continue
            r = self._inf.ftest(L, self._st.beta)
            out.append({"term": label, **r})
        return pd.DataFrame(out, columns=["term", "num_df", "den_df", "f_value", "p_value"]).set_index("term")

    def _estimable_part(self, L_full: np.ndarray, label: str) -> np.ndarray | None:
        """Rows of the hypothesis restricted to the non-aliased columns.

        With empty cells (aliased columns) only combinations a'L with a'L N = 0 are estimable (N a
        basis of the null space of X); the test then covers that estimable part, with fewer
        numerator df, and a warning says so. None if nothing is estimable.
        """
        d = self._design
        if not d.aliased.any():
            return L_full[:, ~d.aliased]
        LN = L_full @ self._null_basis()
        scale = max(np.abs(L_full).max(), 1e-300)
        if np.abs(LN).max() <= 1e-8 * scale:
            return L_full[:, ~d.aliased]
        U, sv, _ = np.linalg.svd(LN, full_matrices=True)
        rank = int((sv > 1e-8 * scale).sum())
        A = U[:, rank:]
        full_rank = np.linalg.matrix_rank(L_full)
        if A.shape[1] == 0 or np.abs(A.T @ L_full).max() <= 1e-8 * scale:
            warnings.warn(
                f"type 3 test of {label!r} is not estimable (empty cells); reported as NaN",
                MMRMWarning,
                stacklevel=3,
            )
            return None
        Le = A.T @ L_full
        q = np.linalg.matrix_rank(Le)
        warnings.warn(
            f"type 3 test of {label!r} is restricted to its estimable part because of empty cells "
            f"({q} of {full_rank} numerator df)",
            MMRMWarning,
            stacklevel=3,
        )
        return Le[:, ~d.aliased]

    # ------------------------------------------------------------------ text
    def summary(self) -> str:
        """A text report of the fit (model, data counts, fit statistics, covariance, tests)."""
        d = self._design
        f = d.formula
        lines = []
        crit = "REML" if self.method == "reml" else "ML"
        lines.append(f"MMRM fit by {crit}; covariance structure {self.structure} (SAS TYPE={self._structure.sas})")
        lines.append(f"Response: {f.response}; visits: {', '.join(map(str, self.visits))}")
        lines.append(f"Degrees of freedom: {self.df_method}")
        lines.append(
            f"Subjects used: {self.n_subjects}; observations used: {self.n_observations}; "
            f"rows dropped for a missing response: {self.n_dropped_response}; "
            f"for missing covariates: {self.n_dropped_covariates}; "
            f"subjects without usable data: {len(self.excluded_subjects)}"
        )
        lines.append(
            f"Convergence: {'yes' if self.converged else 'NO'} ({self.optimizer_message}, {self.n_iterations} iterations)"
        )
        lines.append("")
        lines.append(f"-2 {'Res ' if self.method == 'reml' else ''}Log Likelihood  {self.neg2loglik:.4f}")
        lines.append(f"AIC (smaller is better)    {self.aic:.4f}")
        lines.append(f"BIC (smaller is better)    {self.bic:.4f}")
        lines.append(f"Covariance parameters: {self.n_parameters - (0 if self.method == 'reml' else self._lik.p)}")
        lines.append("")
        lines.append("Covariance matrix:")
        lines.append(self.covariance.to_string(float_format=lambda x: f"{x:.4f}"))
        lines.append("")
        lines.append("Fixed effects:")
        lines.append(self.coefficients.to_string(float_format=lambda x: f"{x:.5g}"))
        lines.append("")
        lines.append("Type 3 tests:")
        lines.append(self.type3().to_string(float_format=lambda x: f"{x:.5g}"))
        if self.notes:
            lines.append("")
            lines.append("Notes:")
            lines.extend(f"- {n}" for n in self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<MMRMResult {self.formula.response} ~ ... {self.structure}, {self.method}, df={self.df_method}, "
            f"-2logL={self.neg2loglik:.4f}, n_subjects={self.n_subjects}, converged={self.converged}>"
        )
