"""Internals of the MMRM engine checked against brute force.

* covariance-structure derivatives against finite differences;
* gradient and Hessian of the REML/ML objective against finite differences;
* the pattern-grouped, vectorized likelihood, Satterthwaite and Kenward-Roger computations against
  a dense n x n implementation of the textbook formulas (Kenward & Roger 1997), for a structure that
  is non-linear in its parameters (ar1h, so the R_ij term matters) and a multi-row hypothesis.
Tolerances: finite differences 1e-6 relative (step 1e-5 / 1e-6); dense vs grouped 1e-8 relative.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from test_mmrm_properties import simulate
from test_mmrm_sas import load_fev

from regenheart.stats.mmrm import fit_mmrm
from regenheart.stats.mmrm.covariance import make_structure

pytestmark = pytest.mark.filterwarnings("ignore::regenheart.stats.mmrm.MMRMWarning")
STRUCTURES = ["us", "cs", "csh", "ar1", "ar1h", "toep", "toeph"]


@pytest.mark.parametrize("name", STRUCTURES)
@pytest.mark.parametrize("T", [2, 3, 5])
def test_structure_derivatives(name, T):
    s = make_structure(name, T)
    rng = np.random.default_rng(T)
    th = rng.normal(size=s.n_theta) * 0.5
    S, dS, d2S = s.sigma_of_theta(th, 2)
    assert np.linalg.eigvalsh(S).min() > 0  # any theta gives a positive definite Sigma
    eps = 1e-6
    E = np.eye(len(th))
    num1 = np.array(
        [(s.sigma_of_theta(th + eps * e, 0)[0] - s.sigma_of_theta(th - eps * e, 0)[0]) / (2 * eps) for e in E]
    )
    num2 = np.array(
        [(s.sigma_of_theta(th + eps * e, 1)[1] - s.sigma_of_theta(th - eps * e, 1)[1]) / (2 * eps) for e in E]
    )
    np.testing.assert_allclose(dS, num1, atol=1e-7 * max(1, np.abs(dS).max()))
    np.testing.assert_allclose(d2S, num2, atol=1e-7 * max(1, np.abs(d2S).max()))
    phi = s.phi_from_theta(th)
    Sp, _, d2Sp = s.sigma_of_phi(phi, 2)
    np.testing.assert_allclose(Sp, S, rtol=1e-12, atol=1e-14)
    Ep = np.eye(len(phi))
    nump = np.array(
        [(s.sigma_of_phi(phi + eps * e, 1)[1] - s.sigma_of_phi(phi - eps * e, 1)[1]) / (2 * eps) for e in Ep]
    )
    np.testing.assert_allclose(d2Sp, nump, atol=1e-7 * max(1, np.abs(d2Sp).max()))
    assert len(s.natural_names()) == len(phi)
    # starting values reproduce a structure-conforming covariance matrix
    np.testing.assert_allclose(s.sigma_of_theta(s.theta_start(S), 0)[0], S, rtol=1e-9)


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("structure", ["us", "ar1h", "toeph"])
def test_gradient_and_hessian(method, structure):
    d = simulate(n=50, seed=21)
    fit = fit_mmrm(d, f"Y ~ BASE + ARM*AVISIT + {structure}(AVISIT | USUBJID)", method=method)
    lik, s = fit._lik, fit._structure
    th = fit.theta + np.random.default_rng(0).normal(size=len(fit.theta)) * 0.1  # away from the optimum

    def f(t):
        return lik.evaluate(s.sigma_of_theta(t, 0)[0]).f

    st = lik.evaluate(s.sigma_of_theta(th, 0)[0])
    _, dS, d2S = s.sigma_of_theta(th, 2)
    g, H = lik.to_params(lik.grad_sigma(st), lik.hess_sigma(st), dS, d2S)
    # the objective is ~1e3 with ~1e-12 relative rounding, so its differences need a larger step
    E = np.eye(len(th))
    gn = np.array([(f(th + 1e-4 * e) - f(th - 1e-4 * e)) / 2e-4 for e in E])
    np.testing.assert_allclose(g, gn, rtol=1e-5, atol=1e-5)
    eps = 1e-5

    def grad(t):
        st_ = lik.evaluate(s.sigma_of_theta(t, 0)[0])
        return lik.to_params(lik.grad_sigma(st_), None, s.sigma_of_theta(t, 1)[1], None)[0]

    Hn = np.array([(grad(th + eps * e) - grad(th - eps * e)) / (2 * eps) for e in E])
    np.testing.assert_allclose(H, Hn, rtol=1e-5, atol=1e-5 * np.abs(H).max())
    # at the optimum the gradient vanishes
    st0 = fit._st
    g0, _ = lik.to_params(lik.grad_sigma(st0), None, s.sigma_of_theta(fit.theta, 1)[1], None)
    assert np.abs(g0).max() < 1e-6


def _dense_reference(fit, L):
    """Textbook formulas on dense n x n matrices (natural parameterization)."""
    des, s = fit._design, fit._structure
    X, y = des.X, des.y
    sub, vis = des.subject_codes, des.visit_codes
    same = sub[:, None] == sub[None, :]
    phi = s.phi_from_theta(fit.theta)
    S, dS, d2S = s.sigma_of_phi(phi, 2)
    dense = lambda M: np.where(same, M[vis[:, None], vis[None, :]], 0.0)
    V = dense(S)
    W = np.linalg.inv(V)
    C = np.linalg.inv(X.T @ W @ X)
    beta = C @ X.T @ W @ y
    P = W - W @ X @ C @ X.T @ W
    r = y - X @ beta
    n, p = X.shape
    m2ll = (n - p) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.linalg.slogdet(X.T @ W @ X)[1] + r @ W @ r
    m = len(phi)
    Vk = [dense(dS[k]) for k in range(m)]
    Vkl = [[dense(d2S[k, l]) for l in range(m)] for k in range(m)]
    Py = P @ y
    PV = [P @ Vk[k] for k in range(m)]
    H = np.empty((m, m))
    for k in range(m):
        for l in range(m):
            H[k, l] = (
                np.sum(P * Vkl[k][l]) - np.sum(PV[k] * PV[l].T) + 2 * Py @ Vk[k] @ (PV[l] @ Py) - Py @ Vkl[k][l] @ Py
            )
    A = 2 * np.linalg.inv(H)
    WX = W @ X
    # Satterthwaite for the first row of L
    l0 = L[0]
    g = np.array([l0 @ C @ WX.T @ Vk[k] @ WX @ C @ l0 for k in range(m)])
    sat_df = 2 * (l0 @ C @ l0) ** 2 / (g @ A @ g)
    # Kenward-Roger
    B = [Vk[k] @ WX for k in range(m)]
    Pk = [-WX.T @ B[k] for k in range(m)]
    inner = np.zeros((p, p))
    for k in range(m):
        for l in range(m):
            Q = B[k].T @ W @ B[l]
            R = WX.T @ Vkl[k][l] @ WX
            inner += A[k, l] * (Q - Pk[k] @ C @ Pk[l] - 0.25 * R)
    PhiA = C + 2 * C @ inner @ C
    q = L.shape[0]
    Theta = L.T @ np.linalg.inv(L @ C @ L.T) @ L
    tr = np.array([np.trace(Theta @ C @ Pk[k] @ C) for k in range(m)])
    A1 = tr @ A @ tr
    A2 = sum(A[k, l] * np.trace(Theta @ C @ Pk[k] @ C @ Theta @ C @ Pk[l] @ C) for k in range(m) for l in range(m))
    Bq = (A1 + 6 * A2) / (2 * q)
    gg = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    c1, c2, c3 = gg / (3 * q + 2 * (1 - gg)), (q - gg) / (3 * q + 2 * (1 - gg)), (q + 2 - gg) / (3 * q + 2 * (1 - gg))
    Es = 1 / (1 - A2 / q)
    Vs = 2 / q * (1 + c1 * Bq) / ((1 - c2 * Bq) ** 2 * (1 - c3 * Bq))
    rho = Vs / (2 * Es**2)
    mdf = 4 + (q + 2) / (q * rho - 1)
    lam = mdf / (Es * (mdf - 2))
    est = L @ beta
    F = lam * est @ np.linalg.solve(L @ PhiA @ L.T, est) / q
    return {
        "m2ll": m2ll,
        "beta": beta,
        "C": C,
        "sat_df": sat_df,
        "PhiA": PhiA,
        "kr_m": mdf,
        "kr_F": F,
        "kr_p": stats.f.sf(F, q, mdf),
    }


@pytest.mark.parametrize("structure", ["ar1h", "us"])
def test_grouped_engine_equals_dense_formulas(structure):
    fev = load_fev()
    formula = f"FEV1 ~ ARMCD*AVISIT + {structure}(AVISIT | USUBJID)"
    fit = fit_mmrm(fev, formula, df="kenward-roger")
    names = list(fit.coefficients.index)
    L = np.zeros((3, len(names)))
    for i, v in enumerate(["VIS2", "VIS3", "VIS4"]):
        L[i, names.index(f"ARMCDTRT:AVISIT{v}")] = 1.0
    ref = _dense_reference(fit, L)
    assert fit.neg2loglik == pytest.approx(ref["m2ll"], rel=1e-11)
    np.testing.assert_allclose(fit.beta, ref["beta"], rtol=1e-9)
    np.testing.assert_allclose(fit.vcov.to_numpy(), ref["PhiA"], rtol=1e-8)
    kr = fit.contrast(L)
    assert kr["num_df"] == 3
    assert kr["den_df"] == pytest.approx(ref["kr_m"], rel=1e-8)
    assert kr["f_value"] == pytest.approx(ref["kr_F"], rel=1e-8)
    assert kr["p_value"] == pytest.approx(ref["kr_p"], rel=1e-7)
    t3 = fit.type3().loc["ARMCD:AVISIT"]
    assert t3["f_value"] == pytest.approx(ref["kr_F"], rel=1e-8)
    sat = fit_mmrm(fev, formula, df="satterthwaite")
    assert sat.contrast(L[0])["df"] == pytest.approx(ref["sat_df"], rel=1e-8)
    np.testing.assert_allclose(sat.vcov.to_numpy(), ref["C"], rtol=1e-9)
