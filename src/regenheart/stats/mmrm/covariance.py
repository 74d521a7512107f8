"""Covariance structures for the within-subject (visit x visit) covariance matrix Sigma.

Each structure has two parameterizations:

* ``theta`` (internal, unconstrained): used by the optimizer. Every theta gives a positive definite
  Sigma (log variances, Cholesky factors, tanh/sigmoid-mapped correlations, Durbin-Levinson partial
  autocorrelations for Toeplitz), so the optimizer never has to handle constraints.
* ``phi`` ("natural", the SAS parameterization): UN(i,j) covariances for ``us``, (CS, Residual) for
  ``cs``, variances and correlations for the heterogeneous structures, lag covariances for ``toep``.
  Kenward-Roger depends on the parameterization through its second-derivative term, so it is computed
  in phi, as SAS does; Satterthwaite is invariant at the optimum and uses phi too.

Definitions (T time points, t, s = 1..T, v = variance, rho = correlation), as in SAS / R mmrm:

======  ===============================================  =========================================
us      Sigma unrestricted (T(T+1)/2 parameters)         SAS TYPE=UN
cs      v * ((1 - rho) I + rho J)                        SAS TYPE=CS: CS = v rho, Residual = v(1-rho)
csh     sqrt(v_t v_s) * (1 if t == s else rho)           SAS TYPE=CSH
ar1     v * rho^|t-s|                                    SAS TYPE=AR(1)
ar1h    sqrt(v_t v_s) * rho^|t-s|                        SAS TYPE=ARH(1)
toep    sigma_|t-s| (lag covariances)                    SAS TYPE=TOEP
toeph   sqrt(v_t v_s) * rho_|t-s|, rho_0 = 1             SAS TYPE=TOEPH
======  ===============================================  =========================================

Derivatives are analytic: ``sigma_of_phi`` returns dSigma/dphi and d2Sigma/dphi2 in closed form, the
map theta -> phi carries exact first and second derivatives by forward-mode differentiation (a tiny
second-order "jet"), and ``us`` differentiates its Cholesky factorization directly.
"""

from __future__ import annotations

import numpy as np

from ._errors import MMRMError

__all__ = ["Structure", "make_structure"]


class _Jet:
    """A scalar with its gradient and Hessian w.r.t. the m internal parameters (forward mode)."""

    __slots__ = ("g", "h", "v")

    def __init__(self, v: float, g: np.ndarray, h: np.ndarray):
        self.v, self.g, self.h = v, g, h

    @classmethod
    def variable(cls, value: float, k: int, m: int) -> _Jet:
        g = np.zeros(m)
        g[k] = 1.0
        return cls(float(value), g, np.zeros((m, m)))

    @classmethod
    def const(cls, value: float, m: int) -> _Jet:
        return cls(float(value), np.zeros(m), np.zeros((m, m)))

    def __add__(self, o):
        if isinstance(o, _Jet):
            return _Jet(self.v + o.v, self.g + o.g, self.h + o.h)
        return _Jet(self.v + o, self.g, self.h)

    __radd__ = __add__

    def __neg__(self):
        return _Jet(-self.v, -self.g, -self.h)

    def __sub__(self, o):
        return self + (-o)

    def __rsub__(self, o):
        return (-self) + o

    def __mul__(self, o):
        if isinstance(o, _Jet):
            gg = np.outer(self.g, o.g)
            return _Jet(self.v * o.v, self.v * o.g + o.v * self.g, self.v * o.h + o.v * self.h + gg + gg.T)
        return _Jet(self.v * o, self.g * o, self.h * o)

    __rmul__ = __mul__

    def _apply(self, f0: float, f1: float, f2: float) -> _Jet:
        return _Jet(f0, f1 * self.g, f1 * self.h + f2 * np.outer(self.g, self.g))

    def exp(self) -> _Jet:
        e = np.exp(self.v)
        return self._apply(e, e, e)

    def tanh(self) -> _Jet:
        t = np.tanh(self.v)
        return self._apply(t, 1 - t * t, -2 * t * (1 - t * t))

    def sigmoid(self) -> _Jet:
        s = 0.5 * (1.0 + np.tanh(0.5 * self.v))  # overflow-free logistic
        return self._apply(s, s * (1 - s), s * (1 - s) * (1 - 2 * s))


def _durbin_levinson(psi: list) -> list:
    """Autocorrelations rho_1..rho_K of a stationary process from its partial autocorrelations.

    Any psi in (-1, 1)^K gives a positive definite Toeplitz correlation matrix, which is why the
    Toeplitz structures are parameterized this way. Works on floats and on _Jet objects.
    """
    rho: list = []
    phi: list = []  # phi_{k-1, j}, j = 1..k-1
    for k, p in enumerate(psi, start=1):
        if k == 1:
            r = p
            new_phi = [p]
        else:
            s1 = 0.0
            s2 = 0.0
            for j in range(1, k):
                s1 = phi[j - 1] * rho[k - j - 1] + s1
                s2 = phi[j - 1] * rho[j - 1] + s2
            r = s1 + p * (1.0 - s2)
            new_phi = [phi[j - 1] - p * phi[k - j - 1] for j in range(1, k)] + [p]
        rho.append(r)
        phi = new_phi
    return rho


def _pacf_from_acf(rho: np.ndarray) -> np.ndarray:
    """Inverse of _durbin_levinson (used for starting values); clips to keep |psi| < 0.9."""
    psi = []
    phi: list[float] = []
    acf: list[float] = []
    for k in range(1, len(rho) + 1):
        num = rho[k - 1] - sum(phi[j - 1] * acf[k - j - 1] for j in range(1, k))
        den = 1.0 - sum(phi[j - 1] * acf[j - 1] for j in range(1, k))
        p = float(np.clip(num / den if den > 1e-8 else 0.0, -0.9, 0.9))
        psi.append(p)
        # recompute the autocorrelation implied by the clipped value so the recursion stays valid
        acf = [float(x) for x in _durbin_levinson(psi)]
        phi = [phi[j - 1] - p * phi[k - j - 1] for j in range(1, k)] + [p]
    return np.array(psi)


# ---------------------------------------------------------------------------------------------
# correlation matrices R(r) with derivatives (q parameters)


def _corr_cs(T: int, rho: float):
    R = np.full((T, T), rho) + (1 - rho) * np.eye(T)
    dR = (np.ones((T, T)) - np.eye(T))[None]
    return R, dR, np.zeros((1, 1, T, T))


def _corr_ar1(T: int, rho: float):
    lag = np.abs(np.subtract.outer(np.arange(T), np.arange(T))).astype(float)
    R = rho**lag
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.where(lag >= 1, lag * rho ** np.maximum(lag - 1, 0), 0.0)
        d2 = np.where(lag >= 2, lag * (lag - 1) * rho ** np.maximum(lag - 2, 0), 0.0)
    return R, d1[None], d2[None, None]


def _corr_toep(T: int, rhos: np.ndarray):
    lag = np.abs(np.subtract.outer(np.arange(T), np.arange(T)))
    full = np.concatenate([[1.0], rhos])
    R = full[lag]
    dR = np.stack([(lag == k).astype(float) for k in range(1, T)]) if T > 1 else np.zeros((0, T, T))
    return R, dR, np.zeros((T - 1, T - 1, T, T))


def _homogeneous(v: float, R, dR, d2R, order: int):
    """Sigma = v R(r); parameters (v, r_1..r_q)."""
    T = R.shape[0]
    S = v * R
    if order == 0:
        return S, None, None
    q = dR.shape[0]
    dS = np.concatenate([R[None], v * dR])
    if order == 1:
        return S, dS, None
    d2S = np.zeros((q + 1, q + 1, T, T))
    d2S[0, 1:] = dR
    d2S[1:, 0] = dR
    d2S[1:, 1:] = v * d2R
    return S, dS, d2S


def _heterogeneous(v: np.ndarray, R, dR, d2R, order: int):
    """Sigma_ts = sqrt(v_t v_s) R_ts(r); parameters (v_1..v_T, r_1..r_q)."""
    T = R.shape[0]
    sd = np.sqrt(v)
    A = np.outer(sd, sd)
    S = A * R
    if order == 0:
        return S, None, None
    eye = np.eye(T)
    c = eye[:, :, None] + eye[:, None, :]  # c[k, t, s] = [t == k] + [s == k]
    dA = A[None] * c / (2 * v[:, None, None])
    dS = np.concatenate([dA * R[None], A[None] * dR])
    if order == 1:
        return S, dS, None
    q = dR.shape[0]
    m = T + q
    d2A = A[None, None] * c[:, None] * c[None, :] / (4 * np.multiply.outer(v, v)[:, :, None, None])
    d2A[np.arange(T), np.arange(T)] -= A[None] * c / (2 * v[:, None, None] ** 2)
    d2S = np.zeros((m, m, T, T))
    d2S[:T, :T] = d2A * R
    mixed = dA[:, None] * dR[None]  # (T, q, T, T)
    d2S[:T, T:] = mixed
    d2S[T:, :T] = mixed.transpose(1, 0, 2, 3)
    d2S[T:, T:] = A * d2R
    return S, dS, d2S


def _clip_corr(S: np.ndarray) -> np.ndarray:
    sd = np.sqrt(np.maximum(np.diag(S), 1e-12))
    return S / np.outer(sd, sd)


def _mean_lag_corr(S: np.ndarray, lag: int) -> float:
    R = _clip_corr(S)
    vals = np.diagonal(R, offset=lag)
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if vals.size else 0.0


class Structure:
    """Base class: a covariance structure over T time points."""

    name = ""
    sas = ""

    def __init__(self, n_times: int):
        self.T = int(n_times)
        if self.T < 1:
            raise MMRMError("the covariance structure needs at least one time point")

    # -- to be provided by subclasses -------------------------------------------------------
    n_theta: int

    def natural_names(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def sigma_of_phi(self, phi: np.ndarray, order: int = 2):  # pragma: no cover - abstract
        raise NotImplementedError

    def _phi_jets(self, th: list[_Jet]) -> list[_Jet]:  # pragma: no cover - abstract
        raise NotImplementedError

    def theta_start(self, S: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- generic machinery ------------------------------------------------------------------
    def phi_of_theta(self, theta: np.ndarray):
        """phi, J[i, k] = dphi_i/dtheta_k, H[i, k, l] = d2phi_i/dtheta_k dtheta_l."""
        m = len(theta)
        jets = self._phi_jets([_Jet.variable(t, k, m) for k, t in enumerate(theta)])
        phi = np.array([j.v for j in jets])
        J = np.array([j.g for j in jets]).reshape(len(jets), m)
        H = np.array([j.h for j in jets]).reshape(len(jets), m, m)
        return phi, J, H

    def sigma_of_theta(self, theta: np.ndarray, order: int = 2):
        """Sigma(theta) and, for order >= 1 / 2, dSigma/dtheta (m,T,T) and d2Sigma (m,m,T,T)."""
        phi, J, H = self.phi_of_theta(np.asarray(theta, float))
        S, dSp, d2Sp = self.sigma_of_phi(phi, order)
        if order == 0:
            return S, None, None
        dS = np.einsum("ik,iab->kab", J, dSp)
        if order == 1:
            return S, dS, None
        d2S = np.einsum("ik,jl,ijab->klab", J, J, d2Sp) + np.einsum("ikl,iab->klab", H, dSp)
        return S, dS, d2S

    def phi_from_theta(self, theta: np.ndarray) -> np.ndarray:
        return self.phi_of_theta(np.asarray(theta, float))[0]

    def chain_terms(self, theta: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """dSigma/dtheta (m, T, T) and sum_ab G_ab d2Sigma_ab/dtheta_k dtheta_l (m, m): what the chain
        rule needs from the structure for the Hessian w.r.t. theta, given G = d(-2l)/dSigma (T, T)."""
        _, dS, d2S = self.sigma_of_theta(theta, 2)
        return dS, np.einsum("ab,klab->kl", G, d2S)

    #: indices of theta entries that are log variances (all other entries are scale-free)
    log_variances: tuple[int, ...] = (0,)

    def rescale_theta(self, theta: np.ndarray, factor: float) -> np.ndarray:
        """theta of the same structure with Sigma multiplied by ``factor``."""
        out = np.array(theta, float)
        out[list(self.log_variances)] += np.log(factor)
        return out

    @property
    def linear(self) -> bool:
        """True when Sigma is linear in phi (second derivatives vanish; KR's R term is zero)."""
        return False


class Unstructured(Structure):
    """us: theta is the row-wise lower triangle of the Cholesky factor L with log diagonal."""

    name, sas = "us", "UN"

    def __init__(self, n_times: int):
        super().__init__(n_times)
        self.rows, self.cols = np.tril_indices(self.T)
        self.n_theta = len(self.rows)
        self.diag = self.rows == self.cols
        # Index arrays of the derivatives, fixed by T (sigma_of_theta runs a few times per iteration).
        # dL/dtheta_k has one nonzero entry, e_k at (row_k, col_k); so (dL_k L')[a, c] = e_k L[c, col_k]
        # in row a = row_k, and sum_b dL_k[a, b] dL_l[c, b] = e_k e_l at (row_k, row_l) when col_k = col_l.
        self._k = np.arange(self.n_theta)
        self._diag_k = np.flatnonzero(self.diag)
        same_col = self.cols[:, None] == self.cols[None, :]
        pair_k, pair_l = np.nonzero(same_col)
        self._pairs = (pair_k, pair_l, self.rows[pair_k], self.rows[pair_l])
        self._same_col = same_col.astype(float)

    @property
    def linear(self) -> bool:
        return True

    def natural_names(self) -> list[str]:
        return [f"UN({i + 1},{j + 1})" for i, j in zip(self.rows, self.cols)]

    def _chol(self, theta):
        L = np.zeros((self.T, self.T))
        # np.minimum/np.maximum: np.clip's value without its Python wrapper (this runs every evaluation)
        vals = np.where(self.diag, np.exp(np.minimum(np.maximum(theta, -300.0), 300.0)), theta)
        L[self.rows, self.cols] = vals
        return L, vals

    def _first_derivatives(self, L, vals):
        """e, the nonzero entry of each dL/dtheta_k, and dSigma/dtheta (m, T, T) from L and its entries."""
        e = np.where(self.diag, vals, 1.0)
        EL = np.zeros((self.n_theta, self.T, self.T))  # dL/dtheta_k L'
        EL[self._k, self.rows] = L[:, self.cols].T * e[:, None]
        return e, EL + EL.transpose(0, 2, 1)

    def sigma_of_theta(self, theta, order=2):
        theta = np.asarray(theta, float)
        L, vals = self._chol(theta)
        S = L @ L.T
        if order == 0:
            return S, None, None
        m, T = self.n_theta, self.T
        e, dS = self._first_derivatives(L, vals)
        if order == 1:
            return S, dS, None
        pair_k, pair_l, row_k, row_l = self._pairs
        EE = np.zeros((m, m, T, T))  # dL_k dL_l'
        EE[pair_k, pair_l, row_k, row_l] = e[pair_k] * e[pair_l]
        d2S = EE + EE.transpose(1, 0, 2, 3)
        idx = self._diag_k
        d2S[idx, idx] += dS[idx]  # d2L/dtheta_k^2 = L_kk e_k e_k' for a log-diagonal entry
        return S, dS, d2S

    def chain_terms(self, theta, G):
        # sum_ac G_ac (dL_k dL_l')_ac = e_k e_l G[row_k, row_l] when col_k = col_l (see __init__), so
        # d2Sigma (m x m x T x T) need not be formed; a log-diagonal entry adds sum_ab G_ab dSigma_k,ab
        L, vals = self._chol(np.asarray(theta, float))
        e, dS = self._first_derivatives(L, vals)
        T = self.T
        A = G[self.rows[:, None], self.rows[None, :]] * self._same_col * np.outer(e, e)
        second = A + A.T
        idx = self._diag_k
        second[idx, idx] += dS[idx].reshape(len(idx), T * T) @ G.reshape(-1)
        return dS, second

    def phi_of_theta(self, theta):
        S, dS, d2S = self.sigma_of_theta(theta, 2)
        return (
            S[self.rows, self.cols],
            dS[:, self.rows, self.cols].T,
            d2S[:, :, self.rows, self.cols].transpose(2, 0, 1),
        )

    def phi_from_theta(self, theta):
        S = self.sigma_of_theta(theta, 0)[0]
        return S[self.rows, self.cols]

    def rescale_theta(self, theta, factor):
        # L -> sqrt(factor) L: log-diagonal entries shift, off-diagonal entries scale
        theta = np.asarray(theta, float)
        return np.where(self.diag, theta + 0.5 * np.log(factor), theta * np.sqrt(factor))

    def sigma_of_phi(self, phi, order=2):
        T, m = self.T, self.n_theta
        S = np.zeros((T, T))
        S[self.rows, self.cols] = phi
        S[self.cols, self.rows] = phi
        if order == 0:
            return S, None, None
        dS = np.zeros((m, T, T))
        dS[np.arange(m), self.rows, self.cols] = 1.0
        dS[np.arange(m), self.cols, self.rows] = 1.0
        return S, dS, (np.zeros((m, m, T, T)) if order >= 2 else None)

    def theta_start(self, S):
        S = np.where(np.isfinite(S), S, 0.0)
        S = 0.5 * (S + S.T)
        w, V = np.linalg.eigh(S)
        top = max(w.max(), 1e-8)
        S = (V * np.maximum(w, 1e-3 * top)) @ V.T
        L = np.linalg.cholesky(S)
        vals = L[self.rows, self.cols]
        return np.where(self.diag, np.log(np.where(self.diag, vals, 1.0)), vals)


def _cs_lower(T: int) -> float:
    return -1.0 / (T - 1) if T > 1 else -1.0


class CompoundSymmetry(Structure):
    """cs: phi = (CS covariance, Residual variance) as SAS.

    theta = (log sigma2, log(sigma2 + T * CS)): the logs of the two eigenvalues of the CS matrix, so
    any theta is positive definite and the likelihood stays well conditioned even when the
    correlation is close to 1 or to its lower bound -1/(T-1).
    """

    name, sas = "cs", "CS"
    n_theta = 2

    @property
    def linear(self) -> bool:
        return True

    def natural_names(self):
        return ["CS", "Residual"]

    def _phi_jets(self, th):
        within = th[0].exp()
        between = th[1].exp()
        return [(between - within) * (1.0 / self.T), within]

    def sigma_of_phi(self, phi, order=2):
        T = self.T
        J, I = np.ones((T, T)), np.eye(T)
        S = phi[0] * J + phi[1] * I
        if order == 0:
            return S, None, None
        return S, np.stack([J, I]), (np.zeros((2, 2, T, T)) if order >= 2 else None)

    def theta_start(self, S):
        T = self.T
        v = float(np.nanmean(np.diag(S)))
        off = S[~np.eye(T, dtype=bool)]
        c = float(np.nanmean(off)) if off.size and np.isfinite(off).any() else 0.0
        within = max(v - c, 1e-3 * v)  # eigenvalue of multiplicity T-1
        between = max(v + (T - 1) * c, 1e-3 * v)  # eigenvalue along the vector of ones
        return np.array([np.log(within), np.log(between)])

    def rescale_theta(self, theta, factor):
        return np.asarray(theta, float) + np.log(factor)


class HeteroCompoundSymmetry(Structure):
    """csh: phi = (Var(1)..Var(T), CSH rho)."""

    name, sas = "csh", "CSH"

    def __init__(self, n_times):
        super().__init__(n_times)
        self.log_variances = tuple(range(self.T))
        self.n_theta = self.T + 1

    def natural_names(self):
        return [f"Var({t + 1})" for t in range(self.T)] + ["CSH"]

    def _phi_jets(self, th):
        a = _cs_lower(self.T)
        return [t.exp() for t in th[: self.T]] + [th[self.T].sigmoid() * (1 - a) + a]

    def sigma_of_phi(self, phi, order=2):
        return _heterogeneous(phi[: self.T], *_corr_cs(self.T, phi[self.T]), order)

    def theta_start(self, S):
        a = _cs_lower(self.T)
        rho = float(
            np.clip(np.nanmean([_mean_lag_corr(S, k) for k in range(1, self.T)] or [0.0]), a + 0.05 * (1 - a), 0.9)
        )
        u = (rho - a) / (1 - a)
        return np.concatenate([np.log(np.diag(S)), [np.log(u / (1 - u))]])


class AR1(Structure):
    """ar1: phi = (Residual variance, AR(1) rho); theta = (log v, atanh rho)."""

    name, sas = "ar1", "AR(1)"
    n_theta = 2

    def natural_names(self):
        return ["Residual", "AR(1)"]

    def _phi_jets(self, th):
        return [th[0].exp(), th[1].tanh()]

    def sigma_of_phi(self, phi, order=2):
        return _homogeneous(phi[0], *_corr_ar1(self.T, phi[1]), order)

    def theta_start(self, S):
        rho = float(np.clip(_mean_lag_corr(S, 1) if self.T > 1 else 0.0, -0.9, 0.9))
        return np.array([np.log(np.nanmean(np.diag(S))), np.arctanh(rho)])


class HeteroAR1(Structure):
    """ar1h: phi = (Var(1)..Var(T), ARH(1) rho)."""

    name, sas = "ar1h", "ARH(1)"

    def __init__(self, n_times):
        super().__init__(n_times)
        self.log_variances = tuple(range(self.T))
        self.n_theta = self.T + 1

    def natural_names(self):
        return [f"Var({t + 1})" for t in range(self.T)] + ["ARH(1)"]

    def _phi_jets(self, th):
        return [t.exp() for t in th[: self.T]] + [th[self.T].tanh()]

    def sigma_of_phi(self, phi, order=2):
        return _heterogeneous(phi[: self.T], *_corr_ar1(self.T, phi[self.T]), order)

    def theta_start(self, S):
        rho = float(np.clip(_mean_lag_corr(S, 1) if self.T > 1 else 0.0, -0.9, 0.9))
        return np.concatenate([np.log(np.diag(S)), [np.arctanh(rho)]])


class Toeplitz(Structure):
    """toep: phi = (Residual = lag-0 variance, TOEP(2)..TOEP(T) = lag 1..T-1 covariances).

    theta = (log v, atanh of the partial autocorrelations), mapped by Durbin-Levinson.
    """

    name, sas = "toep", "TOEP"

    def __init__(self, n_times):
        super().__init__(n_times)
        self.n_theta = self.T

    @property
    def linear(self) -> bool:
        return True

    def natural_names(self):
        return ["Residual"] + [f"TOEP({k + 1})" for k in range(1, self.T)]

    def _phi_jets(self, th):
        v = th[0].exp()
        rho = _durbin_levinson([t.tanh() for t in th[1:]])
        return [v] + [v * r for r in rho]

    def sigma_of_phi(self, phi, order=2):
        T = self.T
        lag = np.abs(np.subtract.outer(np.arange(T), np.arange(T)))
        S = np.asarray(phi)[lag]
        if order == 0:
            return S, None, None
        dS = np.stack([(lag == k).astype(float) for k in range(T)])
        return S, dS, (np.zeros((T, T, T, T)) if order >= 2 else None)

    def theta_start(self, S):
        v = float(np.nanmean(np.diag(S)))
        rho = np.array([_mean_lag_corr(S, k) for k in range(1, self.T)])
        return np.concatenate([[np.log(v)], np.arctanh(_pacf_from_acf(rho))])


class HeteroToeplitz(Structure):
    """toeph: phi = (Var(1)..Var(T), TOEPH(1)..TOEPH(T-1) lag correlations)."""

    name, sas = "toeph", "TOEPH"

    def __init__(self, n_times):
        super().__init__(n_times)
        self.log_variances = tuple(range(self.T))
        self.n_theta = 2 * self.T - 1

    def natural_names(self):
        return [f"Var({t + 1})" for t in range(self.T)] + [f"TOEPH({k})" for k in range(1, self.T)]

    def _phi_jets(self, th):
        T = self.T
        return [t.exp() for t in th[:T]] + _durbin_levinson([t.tanh() for t in th[T:]])

    def sigma_of_phi(self, phi, order=2):
        T = self.T
        return _heterogeneous(np.asarray(phi[:T]), *_corr_toep(T, np.asarray(phi[T:])), order)

    def theta_start(self, S):
        rho = np.array([_mean_lag_corr(S, k) for k in range(1, self.T)])
        return np.concatenate([np.log(np.diag(S)), np.arctanh(_pacf_from_acf(rho))])


_STRUCTURES = {
    cls.name: cls
    for cls in (Unstructured, CompoundSymmetry, HeteroCompoundSymmetry, AR1, HeteroAR1, Toeplitz, HeteroToeplitz)
}


def make_structure(name: str, n_times: int) -> Structure:
    """Instantiate the covariance structure ``name`` (us, cs, csh, ar1, ar1h, toep, toeph) over T times."""
    try:
        cls = _STRUCTURES[name]
    except KeyError:
        raise MMRMError(f"unknown covariance structure {name!r}; use one of {sorted(_STRUCTURES)}") from None
    if n_times < 2 and cls is not Unstructured:
        raise MMRMError(
            f"covariance structure {name!r} needs at least two time points (got {n_times}); "
            "with a single visit use 'us'"
        )
    return cls(n_times)
