"""Fitting: starting values, the Newton optimizer and the public ``fit_mmrm`` / ``fit_ancova``."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ._errors import MMRMError, MMRMWarning
from .covariance import Structure, make_structure
from .design import Design, prepare
from .dof import METHODS, Inference
from .formula import parse_formula
from .likelihood import Likelihood, State, crossprod
from .result import MMRMResult


def _moment_covariance(lik: Likelihood, visits: list | None = None) -> np.ndarray:
    """Pairwise-complete covariance of OLS residuals (starting values for Sigma)."""
    X, y, mask = lik.X2, lik.y.reshape(-1), lik.mask.reshape(-1)
    p = lik.p
    XyXy = crossprod(lik.Xy2, lik.Xy2)  # [X'X, X'y]: rows of unobserved visits are zero in X and y
    try:  # normal equations are plenty for starting values (X has full column rank here)
        beta = np.linalg.solve(XyXy[:p, :p], XyXy[:p, p])
    except np.linalg.LinAlgError:
        beta, *_ = np.linalg.lstsq(X[mask], y[mask], rcond=None)
    r = ((y - X @ beta) * mask).reshape(lik.n_sub, lik.T)
    m = lik.mask.astype(float)
    n_pair = crossprod(m, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        S = crossprod(r, r) / n_pair
    S[n_pair == 0] = np.nan
    # REML-like correction of the variances so the single-visit (OLS) case starts at its optimum
    scale = lik.n_obs / max(lik.n_obs - lik.p, 1) if lik.reml else 1.0
    S = S * scale
    d = np.diag(S)
    tiny = 1e-12 * max(1.0, float(np.max(np.abs(y))) ** 2)  # y is 0 at unobserved visits
    bad = [k for k, v in enumerate(d) if not np.isfinite(v) or v <= tiny]
    if bad:
        names = ", ".join(repr(visits[k]) for k in bad) if visits is not None else str(bad)
        raise MMRMError(
            f"the residual variance is zero or undefined at visit(s) {names}: the fixed effects fit "
            "those observations exactly (too few observations at the visit?)"
        )
    return S


# The damped Newton iteration's settings, shared with the lockstep fits of mmrm/batch.py (same algorithm).
MAX_ITERATIONS = 100
DECREMENT_CONVERGED = 1e-10  # stop when the Newton decrement (-2 logL units) is below this
MAX_STEP = 5.0  # largest change of any parameter per step (keeps exp() and tanh() parameters in range)
ARMIJO = 1e-4  # sufficient decrease of the line search
MIN_STEP_FRACTION = 1e-10  # the line search gives up below this fraction of the Newton step
EIGEN_FLOOR = 1e-12  # |eigenvalues| of the Hessian below this share of the largest are raised to it
POLISH_TOLERANCE = 1e-12  # the last full step is taken unless f rises by more than this (relative)


class _Optimizer:
    """Damped Newton on theta with analytic gradient and Hessian.

    Negative curvature directions are flipped (|eigenvalue|) so every step is a descent step; a
    backtracking (Armijo) line search and a cap on the step length make it robust far from the
    optimum, and it converges quadratically near it. Deterministic.
    """

    def __init__(self, lik: Likelihood, structure: Structure):
        self.lik, self.structure = lik, structure
        self.n_eval = 0

    def value(self, theta: np.ndarray) -> tuple[float, State | None]:
        self.n_eval += 1
        if not np.all(np.isfinite(theta)):
            return np.inf, None
        S = self.structure.sigma_of_theta(theta, 0)[0]
        if not np.all(np.isfinite(S)):
            return np.inf, None
        st = self.lik.evaluate(S)
        if st is None or not np.isfinite(st.f):
            return np.inf, None
        return st.f, st

    def derivatives(self, theta: np.ndarray, st: State):
        G = self.lik.grad_sigma(st)
        H = self.lik.hess_sigma(st)
        dS, second = self.structure.chain_terms(theta, G)
        return self.lik.to_params(G, H, dS, None, second)

    def gradient(self, theta: np.ndarray, st: State) -> np.ndarray:
        _, dS, _ = self.structure.sigma_of_theta(theta, 1)
        return self.lik.to_params(self.lik.grad_sigma(st), None, dS, None)[0]

    def run(self, theta0: np.ndarray, maxit: int = MAX_ITERATIONS):
        """Newton iterations from theta0; returns theta, f, state, converged, iterations, message."""
        theta = np.asarray(theta0, float)
        f, st = self.value(theta)
        if st is None:
            raise MMRMError("the starting covariance matrix is not positive definite or X'V^-1X is singular")
        converged = False
        message = "maximum number of iterations reached"
        it = 0
        for it in range(1, maxit + 1):
            g, H = self.derivatives(theta, st)
            w, V = np.linalg.eigh(H)
            floor = max(np.abs(w).max(), 1.0) * EIGEN_FLOOR
            wm = np.maximum(np.abs(w), floor)
            step = -(V @ ((V.T @ g) / wm))
            dec = float(-(g @ step))  # Newton decrement^2, in -2 logL units
            pd = bool(np.all(w > 0))
            if dec < DECREMENT_CONVERGED:
                # a last full Newton step polishes the estimate (quadratic convergence); f itself
                # cannot resolve such decreases, so it is accepted unless f clearly increases
                if pd:
                    fn, stn = self.value(theta + step)
                    if stn is not None and fn <= f + POLISH_TOLERANCE * max(1.0, abs(f)):
                        theta, f, st = theta + step, fn, stn
                converged = pd
                message = "converged" if pd else "stationary point with an indefinite Hessian"
                break
            big = np.abs(step).max()
            if big > MAX_STEP:
                step *= MAX_STEP / big
                dec = float(-(g @ step))
            t = 1.0
            accepted = False
            while t > MIN_STEP_FRACTION:
                fn, stn = self.value(theta + t * step)
                if stn is not None and fn <= f - ARMIJO * t * dec:
                    accepted = True
                    break
                t *= 0.5
            if not accepted:
                if pd and dec < 1e-8 * max(1.0, abs(f)):
                    # the predicted decrease is below the rounding error of f: at the optimum
                    converged, message = True, "converged (objective at rounding level)"
                else:
                    message = "line search failed"
                break
            theta, f, st = theta + t * step, fn, stn
        return theta, f, st, converged, it, message

    def quasi_newton(self, theta0: np.ndarray) -> np.ndarray:
        """L-BFGS with the analytic gradient: the fallback when Newton stalls."""
        from scipy.optimize import minimize

        def fg(theta):
            f, st = self.value(theta)
            if st is None:
                return 1e300, np.zeros_like(theta)
            return f, self.gradient(theta, st)

        res = minimize(fg, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-9})
        return res.x


def _fit(design: Design, structure_name: str, method: str, df: str) -> MMRMResult:
    reml = method == "reml"
    lik = Likelihood(design, reml=reml)
    structure = make_structure(structure_name, lik.T)
    _check_visits(design, lik, structure, reml)
    theta, st, converged, n_iter, message = estimate_covariance(lik, structure, design.visits)
    if not converged:
        warnings.warn(
            f"the optimizer did not converge ({message}, {n_iter} iterations); results are unreliable",
            MMRMWarning,
            stacklevel=3,
        )
        design.notes.append(f"optimizer did not converge: {message}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inference = Inference(lik, st, structure, theta, df)
    for w in caught:  # re-issue to the caller and keep MMRM notes for the summary
        if issubclass(w.category, MMRMWarning):
            design.notes.append(str(w.message))
        warnings.warn(w.message, w.category, stacklevel=3)
    return MMRMResult(
        design=design,
        likelihood=lik,
        state=st,
        structure=structure,
        theta=theta,
        inference=inference,
        method=method,
        df_method=df,
        converged=converged,
        n_iterations=n_iter,
        optimizer_message=message,
    )


def estimate_covariance(lik: Likelihood, structure: Structure, visits: list | None = None):
    """(RE)ML estimate of the covariance parameters: theta, the state at the optimum, converged,
    iterations and the optimizer's message. Shared by ``fit_mmrm`` and the array fast path."""
    S0 = _moment_covariance(lik, visits)
    # The optimizer works on y / s with s the residual SD, so its tolerances and step limits do not
    # depend on the units of the response; the estimate is then mapped back to the data scale.
    scale2 = float(np.mean(np.diag(S0)))
    opt = _Optimizer(lik.with_response_scaled(np.sqrt(scale2)), structure)
    theta_s, f_s, _, converged, n_iter, message = opt.run(structure.theta_start(S0 / scale2))
    if not converged:
        # deterministic fallback: L-BFGS from the best point, then Newton again to finish
        retry = opt.run(opt.quasi_newton(theta_s))
        if retry[3] or retry[1] < f_s:
            theta_s, f_s, _, converged, it2, message = retry
            n_iter += it2
    theta = structure.rescale_theta(theta_s, scale2)
    st = lik.evaluate(structure.sigma_of_theta(theta, 0)[0])
    if st is None:  # pragma: no cover - rescaling a valid Sigma cannot fail
        raise MMRMError("internal error: the fitted covariance matrix is not positive definite")
    return theta, st, converged, n_iter, message


def _check_visits(design: Design, lik: Likelihood, structure: Structure, reml: bool) -> None:
    """Warn about visits and visit pairs that carry too little information."""
    per_visit = lik.mask.sum(axis=0)
    for k, n in enumerate(per_visit):
        if n < 2 and lik.T > 1:
            msg = f"visit {design.visits[k]!r} has only {n} observation(s): its variance is (nearly) not estimable"
            design.notes.append(msg)
            warnings.warn(msg, MMRMWarning, stacklevel=4)
    if structure.name in ("us",):
        m = lik.mask.astype(int)
        pairs = m.T @ m
        never = [
            (design.visits[a], design.visits[b]) for a in range(lik.T) for b in range(a + 1, lik.T) if pairs[a, b] == 0
        ]
        if never:
            msg = (
                "unstructured covariance: visit pair(s) "
                + ", ".join(f"{a!r}-{b!r}" for a, b in never[:5])
                + " are never observed in the same subject, so their covariance is not identifiable"
            )
            design.notes.append(msg)
            warnings.warn(msg, MMRMWarning, stacklevel=4)


def _normalize(df: str, method: str) -> tuple[str, str]:
    key = str(df).strip().lower()
    if key not in METHODS:
        raise MMRMError(f"unknown df method {df!r}; use 'satterthwaite', 'kenward-roger' or 'residual'")
    m = str(method).strip().lower()
    if m not in ("reml", "ml"):
        raise MMRMError(f"unknown method {method!r}; use 'reml' or 'ml'")
    return METHODS[key], m


def fit_mmrm(
    data: pd.DataFrame,
    formula: str,
    *,
    df: str = "satterthwaite",
    method: str = "reml",
) -> MMRMResult:
    """Fit a mixed model for repeated measures (MMRM), matching SAS PROC MIXED with a REPEATED statement.

    Parameters
    ----------
    data:
        One row per subject and visit. Rows with a missing response are dropped (missing at random);
        rows with missing covariates, visit or subject are dropped too and counted (with an
        ``MMRMWarning``).
    formula:
        R mmrm syntax, e.g. ``"FEV1 ~ RACE + SEX + ARMCD*AVISIT + us(AVISIT | USUBJID)"``. The
        covariance term is one of ``us`` (SAS UN), ``cs`` (CS), ``csh`` (CSH), ``ar1`` (AR(1)),
        ``ar1h`` (ARH(1)), ``toep`` (TOEP), ``toeph`` (TOEPH); its visit variable defines the time
        points, ordered like a pandas Categorical (other string columns sort, numbers sort
        numerically). Fixed effects: main effects, ``a:b``, ``a*b``, numeric covariates, ``- 1`` or
        ``0 +`` for no intercept. Treatment contrasts; the first level of a factor is the reference.
    df:
        ``"satterthwaite"`` (observed information, as SAS), ``"kenward-roger"`` (Kenward & Roger
        1997 adjusted covariance and scaled F) or ``"residual"`` (n_obs - rank(X)).
    method:
        ``"reml"`` (default) or ``"ml"``.

    Returns
    -------
    MMRMResult
        With ``coefficients`` (indexed by R-style names such as ``"ARMCDTRT:AVISITVIS2"``; use
        ``result.coef("ARMCD[TRT]:AVISIT[VIS2]")`` for other spellings), ``lsmeans``, ``pairwise``,
        ``contrast``, ``type3``, ``covariance``, ``loglik``, ``aic``, ``bic`` and ``summary()``.

    Raises
    ------
    MMRMError
        For an unusable specification or data (the message names the cause).
    """
    dfm, meth = _normalize(df, method)
    parsed = parse_formula(formula)
    if parsed.structure is None:
        raise MMRMError(
            f"formula {formula!r} has no covariance term such as us(AVISIT | USUBJID); "
            "for one row per subject use fit_ancova()"
        )
    design = prepare(data, parsed)
    return _fit(design, parsed.structure, meth, dfm)


def fit_ancova(data: pd.DataFrame, formula: str, *, df: str = "residual") -> MMRMResult:
    """Analysis of covariance at a single visit (one row per subject) by ordinary least squares.

    ``formula`` has no covariance term, e.g. ``"FEV1 ~ FEV1_BL + ARMCD + RACE"``. The result has the
    same interface as ``fit_mmrm`` (coefficients, lsmeans, pairwise, contrast, type3); the residual
    variance is the usual unbiased RSS / (n - p) (the REML estimate), so estimates, standard errors
    and tests are those of OLS. Rows with a missing response or covariate are dropped.
    """
    dfm, _ = _normalize(df, "reml")
    parsed = parse_formula(formula)
    if parsed.structure is not None:
        raise MMRMError("fit_ancova() takes a formula without a covariance term; use fit_mmrm() for repeated measures")
    design = prepare(data, parsed, single_visit=True)
    return _fit(design, "us", "reml", dfm)
