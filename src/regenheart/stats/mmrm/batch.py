"""Many MMRM fits of one design at once: the simulation's fast path.

A design simulation fits the same model (unstructured covariance, REML, Kenward-Roger df) to hundreds
of simulated trials of the same size. :func:`fit_contrast` fits one at a time, and at a few dozen
subjects its cost is the overhead of several hundred small numpy calls, not arithmetic.
:func:`fit_contrasts` runs the very same algorithm for a stack of trials in lockstep, each numpy call
working on all of them: the same starting values (:func:`fit._moment_covariance`,
``Unstructured.theta_start``), the same damped Newton iterations on the unit-scale problem with the
same steps, step cap, line search, stopping rule and final polishing step (:class:`fit._Optimizer`),
the same likelihood, derivatives (:mod:`likelihood`) and Kenward-Roger inference (:mod:`dof`).
Subjects are grouped by missingness pattern with a one-hot matrix over all 2^T patterns instead of
being sorted, so every trial has the same array shapes.

Only the ordinary path is taken here. A trial that leaves it (rank-deficient design, a visit without
variance, a covariance that is not positive definite, a Newton run that stops without converging and
would go on to the quasi-Newton fallback, a singular information matrix that makes the df rely on a
pseudo-inverse) is marked and left to :func:`fit_contrast`, which fits it alone with every fallback
and warning. The estimates agree with :func:`fit_contrast`'s to rounding (about 1e-13 relative; the
tests compare them).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .fit import (
    ARMIJO,
    DECREMENT_CONVERGED,
    EIGEN_FLOOR,
    MAX_ITERATIONS,
    MAX_STEP,
    MIN_STEP_FRACTION,
    POLISH_TOLERANCE,
)
from .likelihood import LOG2PI


class _Unstructured:
    """us over T visits for a stack of trials: theta is the row-wise lower triangle of the Cholesky
    factor with log diagonal (as ``covariance.Unstructured``)."""

    def __init__(self, T: int):
        self.T = T
        self.rows, self.cols = np.tril_indices(T)
        self.m = len(self.rows)
        self.diag = self.rows == self.cols
        self.diag_k = np.flatnonzero(self.diag)
        self.same_col = (self.cols[:, None] == self.cols[None, :]).astype(float)
        # dSigma/dphi for phi = the lower triangle of Sigma (SAS's UN(i,j)): constant
        dphi = np.zeros((self.m, T, T))
        dphi[np.arange(self.m), self.rows, self.cols] = 1.0
        dphi[np.arange(self.m), self.cols, self.rows] = 1.0
        self.dS_phi = dphi

    def chol(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        L = np.zeros((len(theta), self.T, self.T))
        vals = np.where(self.diag, np.exp(np.minimum(np.maximum(theta, -300.0), 300.0)), theta)
        L[:, self.rows, self.cols] = vals
        return L, vals

    def sigma(self, theta: np.ndarray) -> np.ndarray:
        L, _ = self.chol(theta)
        return L @ L.transpose(0, 2, 1)

    def chain_terms(self, theta: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """dSigma/dtheta (B, m, T, T) and sum_ab G_ab d2Sigma_ab/dtheta_k dtheta_l (B, m, m)."""
        B, T, m = len(theta), self.T, self.m
        L, vals = self.chol(theta)
        e = np.where(self.diag, vals, 1.0)
        EL = np.zeros((B, m, T, T))
        EL[:, np.arange(m), self.rows] = L[:, :, self.cols].transpose(0, 2, 1) * e[:, :, None]
        dS = EL + EL.transpose(0, 1, 3, 2)
        A = G[:, self.rows[:, None], self.rows[None, :]] * self.same_col * (e[:, :, None] * e[:, None, :])
        second = A + A.transpose(0, 2, 1)
        idx = self.diag_k
        second[:, idx, idx] += (dS[:, idx].reshape(B, len(idx), T * T) @ G.reshape(B, T * T, 1))[:, :, 0]
        return dS, second

    def theta_start(self, S: np.ndarray) -> np.ndarray:
        S = np.where(np.isfinite(S), S, 0.0)
        S = 0.5 * (S + S.transpose(0, 2, 1))
        w, V = np.linalg.eigh(S)
        top = np.maximum(w.max(axis=1), 1e-8)
        S = (V * np.maximum(w, 1e-3 * top[:, None])[:, None, :]) @ V.transpose(0, 2, 1)
        L = np.linalg.cholesky(S)
        vals = L[:, self.rows, self.cols]
        return np.where(self.diag, np.log(np.where(self.diag, vals, 1.0)), vals)

    def rescale(self, theta: np.ndarray, factor: np.ndarray) -> np.ndarray:
        return np.where(self.diag, theta + 0.5 * np.log(factor)[:, None], theta * np.sqrt(factor)[:, None])


def _cholesky(A: np.ndarray) -> np.ndarray:
    """Cholesky factors of a stack; NaN for the matrices that are not positive definite."""
    try:
        return np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        out = np.full(A.shape, np.nan)
        for i in np.ndindex(A.shape[:-2]):
            try:
                out[i] = np.linalg.cholesky(A[i])
            except np.linalg.LinAlgError:
                pass
        return out


class _Stack:
    """The likelihood of B trials of n subjects x T visits (missing visits: zero rows)."""

    def __init__(self, y: np.ndarray, X: np.ndarray, reml: bool):
        B, n, T = y.shape
        p = X.shape[3]
        self.B, self.n, self.T, self.p, self.reml = B, n, T, p, reml
        self.mask = np.isfinite(y)
        self.X = np.where(self.mask[..., None], X, 0.0)
        self.y = np.where(self.mask, y, 0.0)
        self.n_obs = self.mask.sum(axis=(1, 2))
        n_patterns = 1 << T
        code = self.mask.astype(np.int64) @ (np.int64(1) << np.arange(T, dtype=np.int64))  # (B, n)
        self.code = code
        self.onehot = (code[:, :, None] == np.arange(n_patterns)).astype(float)  # (B, n, G)
        self.onehot_t = np.ascontiguousarray(self.onehot.transpose(0, 2, 1))
        self.counts = self.onehot.sum(axis=1)  # (B, G)
        patterns = ((np.arange(n_patterns)[:, None] >> np.arange(T)) & 1).astype(bool)
        self.pmask = patterns[:, :, None] & patterns[:, None, :]  # (G, T, T)
        self.eye = np.eye(T)
        self.scale = np.ones(B)
        self.Xy = np.concatenate([self.X, self.y[..., None]], axis=3)

    def scaled(self, factor: np.ndarray) -> None:
        """Work on y / factor (per trial), as the optimizer does."""
        self.scale = factor
        self.Xy = np.concatenate([self.X, (self.y / factor[:, None, None])[..., None]], axis=3)

    def moment_covariance(self, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """fit._moment_covariance of the trials with ok True; second value: trials whose start is usable."""
        p = self.p
        Xy2 = self.Xy.reshape(self.B, -1, p + 1)
        XyXy = Xy2.transpose(0, 2, 1) @ Xy2
        XtX = np.where(ok[:, None, None], XyXy[:, :p, :p], np.eye(p))  # rank-deficient trials are not fitted
        beta = np.linalg.solve(XtX, XyXy[:, :p, p:])[:, :, 0]
        r = (self.y - (self.X @ beta[:, None, :, None])[..., 0]) * self.mask
        m = self.mask.astype(float)
        n_pair = m.transpose(0, 2, 1) @ m
        with np.errstate(invalid="ignore", divide="ignore"):
            S = (r.transpose(0, 2, 1) @ r) / n_pair
        S[n_pair == 0] = np.nan
        scale = self.n_obs / np.maximum(self.n_obs - p, 1) if self.reml else np.ones(self.B)
        S = S * scale[:, None, None]
        d = np.diagonal(S, axis1=1, axis2=2)
        tiny = 1e-12 * np.maximum(1.0, np.abs(self.y).max(axis=(1, 2)) ** 2)
        good = np.all(np.isfinite(d) & (d > tiny[:, None]), axis=1)
        return S, ok & good

    def evaluate(self, Sigma: np.ndarray, idx: np.ndarray) -> dict:
        """The state at Sigma (len(idx), T, T) of trials idx; f = inf where not positive definite."""
        p = self.p
        pad = np.where(self.pmask, Sigma[:, None], self.eye)
        L = _cholesky(pad)
        logdet = 2.0 * np.log(np.diagonal(L, axis1=2, axis2=3)).sum(axis=2)
        bad = ~np.isfinite(logdet).all(axis=1)
        if bad.any():
            pad[bad] = self.eye
        W = np.linalg.inv(pad) * self.pmask
        code = self.code[idx]
        Wsub = W[np.arange(len(idx))[:, None], code]  # (b, n, T, T)
        WXy = Wsub @ self.Xy[idx]
        rows = self.n * self.T
        Xy2 = self.Xy[idx].reshape(len(idx), rows, p + 1)
        M = Xy2.transpose(0, 2, 1) @ WXy.reshape(len(idx), rows, p + 1)
        XtWX = M[:, :p, :p]
        XtWX = 0.5 * (XtWX + XtWX.transpose(0, 2, 1))
        XtWy = M[:, p, :p]
        ytWy = M[:, p, p]
        Lx = _cholesky(XtWX)
        bad |= ~np.isfinite(Lx).all(axis=(1, 2))
        Lx[bad] = np.eye(p)
        Li = np.linalg.inv(Lx)
        C = Li.transpose(0, 2, 1) @ Li
        beta = (C @ XtWy[:, :, None])[:, :, 0]
        rwr = ytWy - np.einsum("bi,bi->b", beta, XtWy)
        logdet_xwx = 2.0 * np.log(np.diagonal(Lx, axis1=1, axis2=2)).sum(axis=1)
        ld = np.einsum("bg,bg->b", self.counts[idx], np.where(np.isfinite(logdet), logdet, 0.0))
        n_obs = self.n_obs[idx]
        if self.reml:
            f = (n_obs - p) * LOG2PI + ld + logdet_xwx + rwr
        else:
            f = n_obs * LOG2PI + ld + rwr
        f = np.where(bad | ~np.isfinite(f), np.inf, f)
        U = WXy[..., :p]
        rho = WXy[..., p] - (U @ beta[:, None, :, None])[..., 0]
        return {"f": f, "W": W, "U": np.ascontiguousarray(U), "C": C, "beta": beta, "rho": rho}

    def derivatives(self, st: dict, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gradient (b, T, T), observed Hessian (b, T, T, T, T) w.r.t. Sigma and K (b, T, T, p, p)."""
        b, n, T, p = len(idx), self.n, self.T, self.p
        U, C, W, rho = st["U"], st["C"], st["W"], st["rho"]
        U2 = U.reshape(b, n, T * p)
        K = (U2.transpose(0, 2, 1) @ U2).reshape(b, T, p, T, p).transpose(0, 1, 3, 2, 4)
        onehot_t, counts = self.onehot_t[idx], self.counts[idx]
        Mi = (U @ C[:, None]) @ U.transpose(0, 1, 3, 2)  # U_i C U_i' (b, n, T, T)
        Mg = (onehot_t @ Mi.reshape(b, n, T * T)).reshape(b, -1, T, T)
        Ri = rho[:, :, :, None] * rho[:, :, None, :]
        Rg = (onehot_t @ Ri.reshape(b, n, T * T)).reshape(b, -1, T, T)
        A = Rg + Mg if self.reml else Rg
        G = np.einsum("bg,bgxy->bxy", counts, W) - A.sum(axis=1)
        G = 0.5 * (G + G.transpose(0, 2, 1))
        Bg = A - (0.5 * counts)[:, :, None, None] * W
        h = (rho.transpose(0, 2, 1).reshape(b, T, n) @ U.reshape(b, n, T * p)).reshape(b, T, T, p)
        S = np.einsum("xgbc,xgad->xabcd", W, Bg) - np.einsum("xabp,xdcp->xabcd", h @ C[:, None], h)
        H = S + S.transpose(0, 3, 4, 1, 2)
        if self.reml:
            Z = np.einsum("xpq,xabqr->xabpr", C, K)
            Z2 = Z.reshape(b, T * T, p * p)
            Z2t = Z.transpose(0, 1, 2, 4, 3).reshape(b, T * T, p * p)
            H -= (Z2 @ Z2t.transpose(0, 2, 1)).reshape(b, T, T, T, T)
        return G, H, K


def _to_params(G, H, dS, second):
    b, m, T = dS.shape[0], dS.shape[1], dS.shape[2]
    D = dS.reshape(b, m, T * T)
    g = (D @ G.reshape(b, T * T, 1))[:, :, 0]
    Hp = D @ H.reshape(b, T * T, T * T) @ D.transpose(0, 2, 1)
    if second is not None:
        Hp = Hp + second
    return g, 0.5 * (Hp + Hp.transpose(0, 2, 1))


def _take(st: dict, where: np.ndarray) -> dict:
    return {k: v[where] for k, v in st.items()}


def _put(st: dict, where: np.ndarray, new: dict, rows: np.ndarray) -> None:
    for k, v in new.items():
        st[k][where] = v[rows]


def _newton(stack: _Stack, us: _Unstructured, theta: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fit._Optimizer.run for every trial with ok True; returns theta and converged (False: leave the
    trial to the one-at-a-time fit, which then tries its quasi-Newton fallback)."""
    B = len(theta)
    converged = np.zeros(B, bool)
    active = ok.copy()
    all_idx = np.flatnonzero(ok)
    if not len(all_idx):
        return theta, converged
    st = stack.evaluate(us.sigma(theta[all_idx]), all_idx)
    state = {k: np.zeros((B, *v.shape[1:])) for k, v in st.items()}
    _put(state, all_idx, st, np.arange(len(all_idx)))
    active[all_idx[~np.isfinite(st["f"])]] = False
    for _ in range(MAX_ITERATIONS):
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        cur = _take(state, idx)
        G, H, _ = stack.derivatives(cur, idx)
        dS, second = us.chain_terms(theta[idx], G)
        g, Hp = _to_params(G, H, dS, second)
        w, V = np.linalg.eigh(Hp)
        floor = np.maximum(np.abs(w).max(axis=1), 1.0) * EIGEN_FLOOR
        wm = np.maximum(np.abs(w), floor[:, None])
        step = -(V @ ((V.transpose(0, 2, 1) @ g[:, :, None])[:, :, 0] / wm)[:, :, None])[:, :, 0]
        dec = -np.einsum("bi,bi->b", g, step)
        pd = np.all(w > 0, axis=1)
        f = cur["f"]
        polish = dec < DECREMENT_CONVERGED
        if polish.any():
            rows = np.flatnonzero(polish & pd)
            if len(rows):
                who = idx[rows]
                cand = theta[who] + step[rows]
                new = stack.evaluate(us.sigma(cand), who)
                take = np.isfinite(new["f"]) & (new["f"] <= f[rows] + POLISH_TOLERANCE * np.maximum(1.0, np.abs(f[rows])))
                theta[who[take]] = cand[take]
                _put(state, who[take], new, np.flatnonzero(take))
            converged[idx[polish]] = pd[polish]
            active[idx[polish]] = False
        search = np.flatnonzero(~polish)
        if not len(search):
            continue
        step, dec, f, pd, who = step[search], dec[search], f[search], pd[search], idx[search]
        big = np.abs(step).max(axis=1)
        capped = big > MAX_STEP
        if capped.any():
            step[capped] *= (MAX_STEP / big[capped])[:, None]
            dec[capped] = -np.einsum("bi,bi->b", g[search][capped], step[capped])
        t = 1.0
        open_ = np.ones(len(who), bool)
        while t > MIN_STEP_FRACTION and open_.any():
            rows = np.flatnonzero(open_)
            cand = theta[who[rows]] + t * step[rows]
            new = stack.evaluate(us.sigma(cand), who[rows])
            take = np.isfinite(new["f"]) & (new["f"] <= f[rows] - ARMIJO * t * dec[rows])
            theta[who[rows[take]]] = cand[take]
            _put(state, who[rows[take]], new, np.flatnonzero(take))
            open_[rows[take]] = False
            t *= 0.5
        if open_.any():  # line search failed: at the optimum (rounding level) or left to the fallback
            stop = np.flatnonzero(open_)
            at_optimum = pd[stop] & (dec[stop] < 1e-8 * np.maximum(1.0, np.abs(f[stop])))
            converged[who[stop]] = at_optimum
            active[who[stop]] = False
    return theta, converged


def _sym_inv(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dof._sym_inv for a stack; second value: False where the matrix is not positive definite
    (there the one-at-a-time fit warns and uses a pseudo-inverse)."""
    M = 0.5 * (M + M.transpose(0, 2, 1))
    d = np.sqrt(np.abs(np.diagonal(M, axis1=1, axis2=2)))
    d = np.where(d > 0, d, 1.0)
    dd = d[:, :, None] * d[:, None, :]
    w, V = np.linalg.eigh(M / dd)
    tol = np.maximum(np.abs(w).max(axis=1), 1e-300) * 1e-13
    good = w.min(axis=1) > tol
    w = np.where(good[:, None], w, 1.0)
    return ((V / w[:, None, :]) @ V.transpose(0, 2, 1)) / dd, good


def fit_contrasts(y: np.ndarray, X: np.ndarray, contrasts: np.ndarray, *, alpha: float = 0.05,
                  method: str = "reml") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fit the MMRM with unstructured covariance and Kenward-Roger df to a stack of trials.

    Parameters
    ----------
    y:
        (B, n, T) responses of B trials; NaN marks a missing visit.
    X:
        (B, n, T, p) fixed-effects designs (rows of missing visits ignored).
    contrasts:
        (B, p) the contrast l of each trial's estimate l'beta.

    Returns
    -------
    (fits, done)
        ``fits``: arrays of B values, ``estimate``, ``std_error``, ``df``, ``p_value`` (two-sided),
        ``lower`` and ``upper`` (the 1 - alpha CI), in the units of y; ``done``: False for the trials
        left to :func:`fit_contrast` (see the module docstring), whose values here are NaN.
    """
    y = np.asarray(y, float)
    X = np.asarray(X, float)
    B, n, T = y.shape
    p = X.shape[3]
    out = {k: np.full(B, np.nan) for k in ("estimate", "std_error", "df", "p_value", "lower", "upper")}
    if not B:
        return out, np.zeros(0, bool)
    stack = _Stack(y, X, reml=method == "reml")
    us = _Unstructured(T)
    ok = (stack.n_obs > 0) & (np.linalg.matrix_rank(stack.X.reshape(B, n * T, p)) == p)
    S0, ok = stack.moment_covariance(ok)
    S0 = np.where(ok[:, None, None], S0, np.eye(T))
    scale2 = np.mean(np.diagonal(S0, axis1=1, axis2=2), axis=1)
    stack.scaled(np.sqrt(scale2))
    theta_s, converged = _newton(stack, us, us.theta_start(S0 / scale2[:, None, None]), ok)
    ok &= converged
    idx = np.flatnonzero(ok)
    if not len(idx):
        return out, ok
    stack.scaled(np.ones(B))
    theta = us.rescale(theta_s[idx], scale2[idx])
    st = stack.evaluate(us.sigma(theta), idx)
    ok[idx[~np.isfinite(st["f"])]] = False
    _, H, K = stack.derivatives(st, idx)
    b = len(idx)
    m = us.m
    D = us.dS_phi.reshape(m, T * T)
    Hphi = D @ H.reshape(b, T * T, T * T) @ D.T
    Hphi = 0.5 * (Hphi + Hphi.transpose(0, 2, 1))
    A, pd = _sym_inv(Hphi)
    ok[idx[~pd]] = False
    Wkr = 2.0 * A
    C, W, U = st["C"], st["W"], st["U"]
    P = -np.einsum("kab,xabpq->xkpq", us.dS_phi, K)
    E = np.einsum("xkl,lcd->xkcd", Wkr, us.dS_phi)
    N = np.einsum("kab,xgbc,xkcd->xgad", us.dS_phi, W, E)
    NU = N[np.arange(b)[:, None], stack.code[idx]] @ U
    Qbar = U.reshape(b, -1, p).transpose(0, 2, 1) @ NU.reshape(b, -1, p)
    PC = P @ C[:, None]
    WP = (Wkr @ P.reshape(b, m, p * p)).reshape(b, m, p, p)
    PCP = PC.transpose(0, 2, 1, 3).reshape(b, p, m * p) @ WP.reshape(b, m * p, p)
    inner = Qbar - PCP
    inner = 0.5 * (inner + inner.transpose(0, 2, 1))
    vcov = C + 2.0 * C @ inner @ C
    l = contrasts[idx]
    est = np.einsum("bp,bp->b", l, st["beta"])
    var = np.einsum("bp,bpq,bq->b", l, vcov, l)
    se = np.sqrt(np.maximum(var, 0.0))
    lCl = np.einsum("bp,bpq,bq->b", l, C, l)
    Theta = l[:, :, None] * l[:, None, :] / lCl[:, None, None]
    F = ((Theta @ C)[:, None] @ P) @ C[:, None]
    tr = np.trace(F, axis1=2, axis2=3)
    A1 = np.einsum("bk,bkl,bl->b", tr, Wkr, tr)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(A1 > 0, 2.0 / A1, np.inf)
        t = np.where(se > 0, est / se, np.nan)
    p_value = np.where(np.isfinite(t), 2 * special.stdtr(df, -np.abs(t)), np.nan)
    q = np.where(np.isfinite(df), special.stdtrit(np.where(np.isfinite(df), df, 1.0), 1 - alpha / 2),
                 special.ndtri(1 - alpha / 2))
    half = q * se
    for k, v in (("estimate", est), ("std_error", se), ("df", df), ("p_value", p_value), ("lower", est - half),
                 ("upper", est + half)):
        out[k][idx] = v
    return out, ok
