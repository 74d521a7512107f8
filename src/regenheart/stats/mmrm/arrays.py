"""The MMRM on arrays: the fast path for many fits of one design (simulation studies).

``fit_mmrm`` turns a data frame and a formula into a design matrix, then fits; a simulation that
refits the same design thousands of times only needs the fit. :func:`fit_contrast` takes the
responses as a subjects x visits array (NaN = missing) and the fixed-effects design as a
subjects x visits x p array, runs the same REML estimation (:func:`fit.estimate_covariance`, the
same optimizer and starting values) and the same small-sample inference (:class:`dof.Inference`),
and returns one contrast. Given the design matrix ``fit_mmrm`` builds, the numbers are those of
``fit_mmrm`` (tests compare them).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special

from ._errors import MMRMError, MMRMWarning
from .covariance import Structure, make_structure
from .dof import METHODS, Inference
from .fit import estimate_covariance
from .likelihood import Likelihood


@functools.lru_cache(maxsize=64)
def _structure(name: str, n_times: int) -> Structure:
    """The covariance structure, built once per (name, T): a simulation fits the same one many times
    (a structure holds only constants of T)."""
    return make_structure(name, n_times)


@dataclass(frozen=True)
class ContrastFit:
    """One contrast l'beta of an MMRM fit: estimate, SE, df, two-sided p and the (1 - alpha) CI."""

    estimate: float
    std_error: float
    df: float
    p_value: float
    lower: float
    upper: float
    converged: bool
    warnings: tuple[str, ...] = ()


def fit_contrast(y: np.ndarray, X: np.ndarray, contrast: np.ndarray, *, structure: str = "us",
                 df: str = "kenward-roger", method: str = "reml", alpha: float = 0.05) -> ContrastFit:
    """Fit an MMRM to arrays and estimate one contrast of its fixed effects.

    Parameters
    ----------
    y:
        (n_subjects, n_visits) responses; NaN marks a missing visit (missing at random).
    X:
        (n_subjects, n_visits, p) fixed-effects design of every subject and visit (rows of missing
        visits are ignored). Must have full column rank on the observed rows.
    contrast:
        (p,) weights l of the estimate l'beta.
    structure, df, method:
        As in :func:`fit_mmrm` (covariance structure, ``kenward-roger`` / ``satterthwaite`` /
        ``residual`` df, ``reml`` or ``ml``).
    """
    y = np.asarray(y, float)
    X = np.asarray(X, float)
    if y.ndim != 2 or X.ndim != 3 or X.shape[:2] != y.shape:
        raise MMRMError(f"y must be (subjects, visits) and X (subjects, visits, p); got {y.shape} and {X.shape}")
    l = np.asarray(contrast, float)
    if l.shape != (X.shape[2],):
        raise MMRMError(f"the contrast has {l.shape} weights, the design {X.shape[2]} columns")
    dfm = METHODS.get(str(df).lower())
    if dfm is None:
        raise MMRMError(f"unknown df method {df!r}; use 'satterthwaite', 'kenward-roger' or 'residual'")
    lik = Likelihood.from_arrays(y, X, reml=method == "reml")
    # the zero rows of unobserved visits leave the rank of the observed rows unchanged
    if lik.n_obs == 0 or np.linalg.matrix_rank(lik.X2) < lik.p:
        raise MMRMError("the fixed-effects design is rank deficient on the observed rows")
    cov = _structure(structure, lik.T)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        theta, st, converged, _, _ = estimate_covariance(lik, cov, list(range(lik.T)))
        inference = Inference(lik, st, cov, theta, dfm)
        out = inference.single(l, st.beta)
    # special.stdtrit is scipy.stats.t.ppf without the distribution machinery (same value, 50x faster)
    t = special.stdtrit(out["df"], 1 - alpha / 2) if np.isfinite(out["df"]) else special.ndtri(1 - alpha / 2)
    half = t * out["std_error"]
    return ContrastFit(out["estimate"], float(out["std_error"]), float(out["df"]), float(out["p_value"]),
                       out["estimate"] - half, out["estimate"] + half, bool(converged),
                       tuple(str(w.message) for w in caught if issubclass(w.category, MMRMWarning)))
