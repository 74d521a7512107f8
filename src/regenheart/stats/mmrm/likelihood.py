"""The (restricted) log-likelihood of the MMRM, its gradient and Hessian w.r.t. Sigma.

Model: subject i has responses y_i at its observed visits, y_i = X_i beta + e_i, e_i ~ N(0, Sigma_i),
Sigma_i the rows/columns of the T x T matrix Sigma for those visits; V = blockdiag(Sigma_i).

With W = V^-1, C = (X' W X)^-1, beta_hat = C X' W y, r = y - X beta_hat and P = W - W X C X' W:

    -2 l_REML = (n - p) log(2 pi) + log|V| + log|X' W X| + r' W r        (SAS's "-2 Res Log Likelihood")
    -2 l_ML   =  n      log(2 pi) + log|V|                + r' W r

beta is profiled out (generalized least squares), so only Sigma is optimized.

Derivatives are taken w.r.t. the T*T entries of Sigma treated as independent (S_ab = e_a e_b'); a
covariance structure then contracts them with dSigma/dtheta (chain rule). With that convention

    d(-2l)/dSigma_ab          = tr(P S_ab) - y'P S_ab P y           (ML: tr(W S_ab) - ...)
    d2(-2l)/dSigma_ab dSigma_cd = -tr(P S_cd P S_ab) + y'P S_ab P S_cd P y + y'P S_cd P S_ab P y

and its expectation is tr(P S_cd P S_ab). All the traces reduce to sums over *missingness patterns*
(subjects observed at the same visits share Sigma_i^-1) and to cross-products of the per-subject
arrays U_i = W_i X_i (stacked, zero-padded to T visits); everything is vectorized over subjects
(batched einsum / one BLAS product), so the cost per evaluation is linear in the number of subjects
and there is no Python loop over subjects.
"""

from __future__ import annotations

import math

import numpy as np

from .design import Design

LOG2PI = float(np.log(2 * np.pi))


# Below this many multiply-adds a direct (unoptimized) contraction beats numpy's path search,
# which otherwise costs more than the arithmetic for small models (a 60-subject, 3-visit fit).
_DIRECT_EINSUM_MAX_OPS = 200_000


def einsum(subscripts: str, *operands: np.ndarray) -> np.ndarray:
    """``np.einsum(subscripts, *operands, optimize=True)``, contracting small tensors directly.

    The value is the same up to floating-point summation order; only the route differs: the greedy
    path search (``optimize=True``) pays off for large tensors (many visits or parameters) and is
    skipped when the whole naive loop over all indices is smaller than ``_DIRECT_EINSUM_MAX_OPS``.
    """
    key = (subscripts, *(np.shape(op) for op in operands))
    direct = _EINSUM_DIRECT.get(key)
    if direct is None:
        sizes: dict[str, int] = {}
        for letters, shape in zip(subscripts.split("->")[0].split(","), key[1:]):
            sizes.update(zip(letters, shape))
        if len(_EINSUM_DIRECT) > 10_000:  # bounded in a long-lived process fitting many shapes
            _EINSUM_DIRECT.clear()
        direct = _EINSUM_DIRECT[key] = math.prod(sizes.values()) <= _DIRECT_EINSUM_MAX_OPS
    if direct:
        return np.einsum(subscripts, *operands)
    return np.einsum(subscripts, *operands, optimize=True)


# The route chosen per (subscripts, operand shapes): a fit calls the same few contractions many times.
_EINSUM_DIRECT: dict[tuple, bool] = {}


# Up to this many multiply-adds a BLAS product runs on one thread (OpenBLAS splits a GEMM only above
# 65536 x GEMM_MULTITHREAD_THRESHOLD = 262144 of them) and is about 4x faster than einsum's loop.
_SINGLE_THREAD_GEMM_MAX = 65_536


def crossprod(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A' B for tall A, B (rows = subjects or observations), without multi-threaded BLAS.

    These reductions have a huge inner dimension and a small result; multi-threaded OpenBLAS runs
    them no faster, and on a machine whose CPUs are busy with other work its threads wait for each
    other (a 20 ms product was seen to take seconds). numpy's own einsum loop is single-threaded,
    vectorized and predictable; a product small enough for BLAS to keep on one thread (a fit of a
    few dozen subjects) goes to BLAS.
    """
    if A.shape[0] * A.shape[1] * B.shape[1] <= _SINGLE_THREAD_GEMM_MAX:
        return A.T @ B
    return np.einsum("ni,nj->ij", A, B)


class State:
    """Everything computed at one Sigma (cached intermediate results for derivatives)."""

    __slots__ = (
        "C",
        "Sigma",
        "U",
        "W",
        "Wsub",
        "XtWX",
        "_cache",
        "beta",
        "f",
        "logdet",
        "logdet_xwx",
        "rho",
        "rwr",
    )


class Likelihood:
    """REML or ML objective (-2 log-likelihood) of an MMRM with an arbitrary Sigma."""

    def __init__(self, design: Design, reml: bool = True):
        T = len(design.visits)
        n_sub = len(design.subjects)
        p = design.X.shape[1]
        mask = np.zeros((n_sub, T), bool)
        mask[design.subject_codes, design.visit_codes] = True
        X = np.zeros((n_sub, T, p))
        y = np.zeros((n_sub, T))
        X[design.subject_codes, design.visit_codes] = design.X
        y[design.subject_codes, design.visit_codes] = design.y
        self._setup(mask, X, y, reml)

    @classmethod
    def from_arrays(cls, y: np.ndarray, X: np.ndarray, reml: bool = True) -> Likelihood:
        """The likelihood of responses on a subjects x visits grid: ``y`` (n, T) with NaN where missing,
        ``X`` (n, T, p) (rows of missing visits ignored). Subjects without any response are left out."""
        mask = np.isfinite(y)
        with_data = mask.any(axis=1)
        if not with_data.all():
            y, X, mask = y[with_data], X[with_data], mask[with_data]
        new = object.__new__(cls)
        new._setup(mask, np.where(mask[:, :, None], X, 0.0), np.where(mask, y, 0.0), reml)
        return new

    def _setup(self, mask: np.ndarray, X: np.ndarray, y: np.ndarray, reml: bool) -> None:
        """Group subjects by missingness pattern; ``X``, ``y`` are zero where ``mask`` is False."""
        self.reml = reml
        n_sub, T = mask.shape
        p = X.shape[2]
        self.T, self.p, self.n_obs = T, p, int(mask.sum())
        if T <= 62:  # encode each subject's set of visits as an integer (fast unique)
            codes = mask.astype(np.int64) @ (np.int64(1) << np.arange(T, dtype=np.int64))
            ucodes, pidx = np.unique(codes, return_inverse=True)
            patterns = ((ucodes[:, None] >> np.arange(T)) & 1).astype(bool)
        else:
            patterns, pidx = np.unique(mask, axis=0, return_inverse=True)
        pidx = pidx.reshape(-1)
        order = np.argsort(pidx, kind="stable")  # subjects grouped by pattern
        self.subject_order = order
        self.pidx = pidx[order]
        self.patterns = patterns  # (G, T) bool
        self.counts = np.bincount(self.pidx, minlength=len(patterns))
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self.n_sub = n_sub
        self.X, self.y = X[order], y[order]
        self.X2 = self.X.reshape(n_sub * T, p)
        self._join_response()
        self.counts_f = self.counts.astype(float)
        self.mask = mask[order]
        self.pmask = patterns[:, :, None] & patterns[:, None, :]  # (G, T, T)
        self.eye = np.eye(T)
        self.df_resid = self.n_obs - p

    def with_response_scaled(self, factor: float) -> Likelihood:
        """The same model for y / factor (the optimizer works on a unit-scale problem)."""
        new = object.__new__(Likelihood)
        new.__dict__.update(self.__dict__)
        new.y = self.y / factor
        new._join_response()
        return new

    def _join_response(self) -> None:
        """[X | y] per subject and visit (n, T, p + 1): one product W_i [X_i | y_i] and one cross-product
        give X'WX, X'Wy and y'Wy together."""
        self.Xy = np.concatenate([self.X, self.y[:, :, None]], axis=2)
        self.Xy2 = self.Xy.reshape(-1, self.p + 1)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, Sigma: np.ndarray) -> State | None:
        """Profile beta out at Sigma; None if Sigma (or X'WX) is not positive definite."""
        p = self.p
        pad = np.where(self.pmask, Sigma[None], self.eye[None])
        try:
            L = np.linalg.cholesky(pad)
        except np.linalg.LinAlgError:
            return None
        logdet = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
        W = np.linalg.inv(pad) * self.pmask  # zero rows/columns at unobserved visits
        Wsub = W[self.pidx]
        WXy = np.matmul(Wsub, self.Xy)  # batched (n, T, T) @ (n, T, p + 1): W_i [X_i | y_i]
        M = crossprod(self.Xy2, WXy.reshape(-1, p + 1))  # [X | y]' W [X | y]
        U, Wy = WXy[:, :, :p], WXy[:, :, p]
        XtWX = M[:p, :p]
        XtWX = 0.5 * (XtWX + XtWX.T)
        XtWy = M[p, :p].copy()  # sum over rows of y (W X): the products of X'Wy's definition
        ytWy = float(M[p, p])
        try:
            Lx = np.linalg.cholesky(XtWX)
        except np.linalg.LinAlgError:
            return None
        Li = np.linalg.inv(Lx)
        C = Li.T @ Li
        beta = C @ XtWy
        rwr = ytWy - float(beta @ XtWy)
        logdet_xwx = 2.0 * float(np.log(np.diag(Lx)).sum())
        ld = float(self.counts @ logdet)
        if self.reml:
            f = (self.n_obs - p) * LOG2PI + ld + logdet_xwx + rwr
        else:
            f = self.n_obs * LOG2PI + ld + rwr
        st = State()
        st.Sigma, st.W, st.Wsub, st.logdet, st.U, st.C, st.beta = Sigma, W, Wsub, logdet, U, C, beta
        st.rho = Wy - np.einsum("ntp,p->nt", U, beta)  # W_i (y_i - X_i beta)
        st.XtWX, st.f, st.logdet_xwx, st.rwr = XtWX, f, logdet_xwx, rwr
        st._cache = {}
        return st

    # ------------------------------------------------------------------ helpers
    def _group_stats(self, st: State):
        """Per-pattern sums and the cross-product tensor, in one pass over the pattern groups.

        K[a, b] = sum_i U_i[a]' U_i[b] (T, T, p, p), so X' W S_ab W X = K[a, b];
        M_g = sum_{i in g} U_i C U_i' and R_g = sum_{i in g} rho_i rho_i' (G, T, T).
        Each group is a contiguous block of subjects, so a group's sum is one ``np.add.reduceat`` slice.
        """
        if "K" not in st._cache:
            T, p = self.T, self.p
            U = st.U
            U2 = st._cache["U2"] = U.reshape(self.n_sub, T * p)
            K = crossprod(U2, U2)
            # per subject U_i C U_i' and rho_i rho_i' (batched), summed over each pattern's block:
            # a fixed number of numpy calls whatever the number of patterns
            Mi = np.matmul(np.matmul(U, st.C), U.transpose(0, 2, 1))
            Mg = np.add.reduceat(Mi, self.starts, axis=0)
            Rg = np.add.reduceat(st.rho[:, :, None] * st.rho[:, None, :], self.starts, axis=0)
            st._cache["K"] = K.reshape(T, p, T, p).transpose(0, 2, 1, 3)
            st._cache["Mg"] = Mg
            st._cache["Rg"] = Rg
        return st._cache["K"], st._cache["Mg"], st._cache["Rg"]

    def K(self, st: State) -> np.ndarray:
        """K[a, b] = sum_i U_i[a]' U_i[b] (T, T, p, p): X' W S_ab W X = K[a, b]."""
        return self._group_stats(st)[0]

    # ------------------------------------------------------------------ derivatives w.r.t. Sigma
    def grad_sigma(self, st: State) -> np.ndarray:
        """d(-2l)/dSigma_ab (T, T), symmetric."""
        _, Mg, Rg = self._group_stats(st)
        G = np.einsum("g,gab->ab", self.counts_f, st.W) - Rg.sum(axis=0)
        if self.reml:
            G -= Mg.sum(axis=0)
        return 0.5 * (G + G.T)

    def _trace_tensor(self, st: State) -> np.ndarray:
        """E[a, b, c, d] = tr(P S_cd P S_ab) (ML: tr(W S_cd W S_ab)); the expected Hessian of -2l."""
        if "E" in st._cache:
            return st._cache["E"]
        E = einsum("g,gbc,gda->abcd", self.counts_f, st.W, st.W)
        if self.reml:
            Mg = self._group_stats(st)[1]
            t2 = einsum("gbc,gda->abcd", st.W, Mg)
            E -= t2 + t2.transpose(2, 3, 0, 1)  # sum_g M_g[b,c] W_g[d,a] = t2[c,d,a,b]
            E += self._trace_products(st)
        st._cache["E"] = E
        return E

    def expected_hess_sigma(self, st: State) -> np.ndarray:
        """Expected Hessian of -2l w.r.t. Sigma entries (T, T, T, T)."""
        return self._trace_tensor(st)

    def hess_sigma(self, st: State) -> np.ndarray:
        """Observed Hessian of -2l w.r.t. Sigma entries, H[a, b, c, d] (T, T, T, T).

        H = -E + Q + Q^(T) with E the trace tensor and Q[a,b,c,d] = sum_g W_g[b,c] R_g[a,d] -
        (h C h')[a,b,c,d]; X^(T)[a,b,c,d] = X[c,d,a,b]. E's pattern terms have the same form (W_g, M_g
        and R_g are symmetric), so they are gathered in one contraction with B_g = R_g + M_g - n_g W_g / 2
        (ML: without M_g); only tr(C K_cd C K_ab) (REML) stays apart.
        """
        T, p = self.T, self.p
        _, Mg, Rg = self._group_stats(st)
        B = Rg + Mg if self.reml else Rg.copy()
        B -= (0.5 * self.counts_f)[:, None, None] * st.W
        h = crossprod(st.rho, st._cache["U2"]).reshape(T, T, p)  # h[a, b] = sum_i rho_i[a] U_i[b]
        S = einsum("gbc,gad->abcd", st.W, B) - einsum("abp,dcp->abcd", h @ st.C, h)
        H = S + S.transpose(2, 3, 0, 1)
        if self.reml:
            H -= self._trace_products(st)
        return H

    def _trace_products(self, st: State) -> np.ndarray:
        """tr(C K_cd C K_ab) (T, T, T, T): the REML term of the trace tensor from the fixed effects."""
        T, p = self.T, self.p
        Z = einsum("pq,abqr->abpr", st.C, self.K(st))
        Z2 = Z.reshape(T * T, p * p)
        Z2t = Z.transpose(0, 1, 3, 2).reshape(T * T, p * p)
        return (Z2 @ Z2t.T).reshape(T, T, T, T)

    # ------------------------------------------------------------------ chain rule to parameters
    @staticmethod
    def to_params(G: np.ndarray, H: np.ndarray | None, dS: np.ndarray, d2S: np.ndarray | None,
                  second: np.ndarray | None = None):
        """Gradient and Hessian w.r.t. parameters from those w.r.t. Sigma entries.

        ``second``: sum_ab G_ab d2S[k, l, a, b] when the structure contracted it itself (then d2S is None).
        """
        m, T = dS.shape[0], dS.shape[1]
        D = dS.reshape(m, T * T)
        g = D @ G.reshape(-1)
        if H is None:
            return g, None
        Hp = D @ H.reshape(T * T, T * T) @ D.T
        if d2S is not None:
            Hp = Hp + np.einsum("ab,klab->kl", G, d2S)
        elif second is not None:
            Hp = Hp + second
        return g, 0.5 * (Hp + Hp.T)
