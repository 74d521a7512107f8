"""Degrees of freedom and adjusted covariance for inference on the fixed effects.

* ``residual``: n_obs - rank(X) (SAS DDFM=RESIDUAL).
* ``satterthwaite`` (Satterthwaite 1946; SAS DDFM=SATTERTHWAITE; the lmerTest approach, Kuznetsova,
  Brockhoff & Christensen 2017): for a contrast l, df = 2 (l'C l)^2 / (g' A g) with
  g_k = l' dC/dphi_k l and A = the asymptotic covariance of the covariance parameters,
  A = 2 H^-1 with H the *observed* Hessian of -2 l_REML at the optimum (as SAS does). For a
  multi-row L the F test uses the spectral decomposition L C L' = P D P': each eigen-direction is a
  single-df contrast with df nu_m, E = sum nu_m / (nu_m - 2) and df = 2E / (E - q).
* ``kenward-roger`` (Kenward & Roger 1997, Biometrics 53:983-997): the small-sample adjusted
  covariance Phi_A = C + 2 C [sum_ij W_ij (Q_ij - P_i C P_j - R_ij / 4)] C and the scaled F with
  denominator df m and scale lambda, W = the covariance of the covariance parameters
  (inverse observed information, SAS's default). Computed in the natural (SAS) parameterization, where Sigma is linear for
  us/cs/toep (R_ij = 0, so kr and kr(linear) coincide there).

Here C = (X' W X)^-1, Q_k = X' W V_k W X (so dC/dphi_k = C Q_k C), P_k = -Q_k.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import special, stats

from ._errors import MMRMWarning
from .covariance import Structure
from .likelihood import Likelihood, State, crossprod, einsum

METHODS = {
    "satterthwaite": "satterthwaite",
    "satterth": "satterthwaite",
    "sat": "satterthwaite",
    "kenward-roger": "kenward-roger",
    "kenward_roger": "kenward-roger",
    "kenwardroger": "kenward-roger",
    "kr": "kenward-roger",
    "residual": "residual",
    "resid": "residual",
}


def _sym_inv(M: np.ndarray, what: str) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix, warning (pseudo-inverse) if it is not.

    The matrix is first scaled to unit diagonal (Jacobi scaling), so parameters on very different
    scales (a variance of 1e6 next to a correlation) do not look singular.
    """
    M = 0.5 * (M + M.T)
    d = np.sqrt(np.abs(np.diag(M)))
    d = np.where(d > 0, d, 1.0)
    Ms = M / np.outer(d, d)
    w, V = np.linalg.eigh(Ms)
    tol = max(abs(w).max(), 1e-300) * 1e-13  # below this the Hessian is singular to rounding
    if w.min() <= tol:
        warnings.warn(
            f"the {what} is not positive definite at the optimum (smallest scaled eigenvalue {w.min():.3g}); "
            "a covariance parameter is at or near a boundary or not identifiable, and the "
            "degrees of freedom rely on a pseudo-inverse",
            MMRMWarning,
            stacklevel=3,
        )
        keep = w > tol
        inv = (V[:, keep] / w[keep]) @ V[:, keep].T
    else:
        inv = (V / w) @ V.T
    return inv / np.outer(d, d)


class Inference:
    """Df machinery at the optimum; ``vcov`` is C (residual/Satterthwaite) or Phi_A (KR)."""

    def __init__(self, lik: Likelihood, st: State, structure: Structure, theta: np.ndarray, method: str):
        self.method = method
        self.lik, self.st = lik, st
        self.C = st.C
        self.p = st.C.shape[0]
        self.df_resid = lik.df_resid
        phi = structure.phi_from_theta(theta)
        self.phi = phi
        _, dS, d2S = structure.sigma_of_phi(phi, 2)
        self.dS, self.d2S = dS, d2S
        # Sigma linear in phi (us, cs, toep): d2S is zero, so its terms are skipped (adding zeros)
        self._curved = bool(d2S.any())
        G = lik.grad_sigma(st)
        H = lik.hess_sigma(st)
        _, Hphi = lik.to_params(G, H, dS, d2S if self._curved else None)
        self.hessian_phi = Hphi  # observed Hessian of -2 l w.r.t. phi
        self.A = 2.0 * _sym_inv(Hphi, "Hessian of the log-likelihood w.r.t. the covariance parameters")
        K = lik.K(st)
        self.Q = einsum("kab,abpq->kpq", dS, K)
        self._dC: np.ndarray | None = None
        self.vcov = self.C
        if method == "kenward-roger":
            self._kenward_roger()

    # ------------------------------------------------------------------ Kenward-Roger
    def _kenward_roger(self) -> None:
        lik, st, C = self.lik, self.st, self.C
        dS, d2S = self.dS, self.d2S
        # W = covariance of the covariance parameters = inverse *observed* information, as SAS
        # (its default for DDFM=KR); the expected information gives visibly different SEs.
        Wkr = self.A
        self.W_kr = Wkr
        P = -self.Q
        # sum_ij W_ij Q_ij with Q_ij = X'W V_i W V_j W X: per pattern N_g = sum_ij W_ij V_i W_g V_j
        E = np.einsum("kl,lcd->kcd", Wkr, dS)
        N = einsum("kab,gbc,kcd->gad", dS, st.W, E)
        NU = einsum("nts,nsp->ntp", N[lik.pidx], st.U)
        Qbar = crossprod(st.U.reshape(-1, self.p), NU.reshape(-1, self.p))
        # sum_kl W_kl P_k C P_l as one (p, m p) @ (m p, p) product
        m, p = P.shape[0], self.p
        PC = np.matmul(P, C)
        WP = (Wkr @ P.reshape(m, p * p)).reshape(m, p, p)
        PCP = PC.transpose(1, 0, 2).reshape(p, m * p) @ WP.reshape(m * p, p)
        inner = Qbar - PCP
        if self._curved:
            inner = inner - 0.25 * einsum("kl,klab,abpq->pq", Wkr, d2S, lik.K(st))
        inner = 0.5 * (inner + inner.T)
        self.vcov = C + 2.0 * C @ inner @ C
        self.P_kr = P

    def _kr_df(self, L: np.ndarray) -> tuple[float, float]:
        """KR denominator df m and scale lambda for the hypothesis L beta = 0 (rank(L) = q rows)."""
        C, W, P = self.C, self.W_kr, self.P_kr
        q = L.shape[0]
        Theta = L.T @ np.linalg.solve(L @ C @ L.T, L)
        F = np.matmul(np.matmul(Theta @ C, P), C)  # Theta C P_k C, (m, p, p)
        tr = np.einsum("kpp->k", F)
        A1 = float(tr @ W @ tr)
        if q == 1:  # A2 enters only the scale and df of a multi-row F test
            return (2.0 / A1 if A1 > 0 else np.inf), 1.0
        A2 = float(einsum("kl,kpq,lqp->", W, F, F))
        B = (A1 + 6 * A2) / (2 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        den = 3 * q + 2 * (1 - g)
        c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
        Vstar = (2.0 / q) * (1 + c1 * B) / ((1 - c2 * B) ** 2 * (1 - c3 * B))
        Estar = 1.0 / (1 - A2 / q)
        rho = Vstar / (2 * Estar**2)
        mdf = 4 + (q + 2) / (q * rho - 1)
        lam = mdf / (Estar * (mdf - 2))
        return mdf, lam

    # ------------------------------------------------------------------ public helpers
    @property
    def dC(self) -> np.ndarray:
        """dC/dphi_k = C Q_k C (m, p, p), computed when first needed (Satterthwaite)."""
        if self._dC is None:
            self._dC = einsum("pq,kqr,rs->kps", self.C, self.Q, self.C)
        return self._dC

    def satterthwaite_df(self, l: np.ndarray) -> float:
        v = float(l @ self.C @ l)
        g = np.einsum("p,kpq,q->k", l, self.dC, l)
        den = float(g @ self.A @ g)
        return 2.0 * v * v / den if den > 0 else np.inf

    def single(self, l: np.ndarray, beta: np.ndarray) -> dict:
        """Estimate, SE, df, t and p for one contrast l'beta."""
        est = float(l @ beta)
        var = float(l @ self.vcov @ l)
        se = np.sqrt(max(var, 0.0))
        if self.method == "residual":
            df = float(self.df_resid)
        elif self.method == "satterthwaite":
            df = self.satterthwaite_df(l)
        else:
            df = self._kr_df(l[None, :])[0]
        t = est / se if se > 0 else np.nan
        p = 2 * special.stdtr(df, -abs(t)) if np.isfinite(t) else np.nan  # = 2 t.sf(|t|, df), without its overhead
        return {"estimate": est, "std_error": se, "df": df, "t_value": t, "p_value": float(p)}

    def ftest(self, L: np.ndarray, beta: np.ndarray) -> dict:
        """F test of L beta = 0 (rows of L may be linearly dependent; the rank is used)."""
        L = np.atleast_2d(np.asarray(L, float))
        # reduce L to a basis of its row space (rank computed on L C L', as SAS does)
        M = L @ self.C @ L.T
        w, V = np.linalg.eigh(0.5 * (M + M.T))
        keep = w > max(w.max(), 0) * 1e-10
        if not keep.any():
            return {"num_df": 0, "den_df": np.nan, "f_value": np.nan, "p_value": np.nan}
        Lr = V[:, keep].T @ L  # eigen-directions of L C L'
        q = Lr.shape[0]
        est = Lr @ beta
        if self.method == "satterthwaite":
            d = w[keep]
            t2 = est**2 / d
            F = float(t2.sum() / q)
            nus = np.array([self.satterthwaite_df(r) for r in Lr])
            if q == 1:
                ddf = float(nus[0])
            elif np.any(nus <= 2):
                ddf = 2.0
            else:
                Esum = float(np.sum(nus / (nus - 2)))
                ddf = 2 * Esum / (Esum - q)
        else:
            VL = Lr @ self.vcov @ Lr.T
            F = float(est @ np.linalg.solve(VL, est) / q)
            if self.method == "residual":
                ddf = float(self.df_resid)
            else:
                ddf, lam = self._kr_df(Lr)
                F = F * lam
        p = float(stats.f.sf(F, q, ddf)) if np.isfinite(F) else np.nan
        return {"num_df": int(q), "den_df": float(ddf), "f_value": F, "p_value": p}
