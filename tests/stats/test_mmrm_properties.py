"""Hand-checked cases and properties of the MMRM engine.

Tolerances (stated per test): exact identities (paired t-test, sample covariance, Hotelling T^2,
OLS) hold to rounding, so 1e-8 relative; comparisons with statsmodels' iterative MixedLM fit are
limited by *its* optimizer (1e-6 on the log-likelihood, 1e-4 on parameters).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats as ss
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_mmrm_sas import load_fev

from regenheart.stats.mmrm import MMRMWarning, fit_ancova, fit_mmrm

# expected data warnings (e.g. fev_data's 3 subjects without FEV1) are tested in test_mmrm_errors.py
pytestmark = pytest.mark.filterwarnings("ignore::regenheart.stats.mmrm.MMRMWarning")


def balanced(n=25, T=4, seed=5, shift=(10, 11, 12, 12.5)):
    rng = np.random.default_rng(seed)
    S = np.array([[4, 2, 1, 1], [2, 5, 2, 1], [1, 2, 6, 3], [1, 1, 3, 7.0]])[:T, :T]
    Y = rng.normal(size=(n, T)) @ np.linalg.cholesky(S).T + np.asarray(shift[:T])
    d = pd.DataFrame(
        {
            "ID": np.repeat([f"s{i}" for i in range(n)], T),
            "VIS": pd.Categorical(np.tile([f"V{t}" for t in range(T)], n), [f"V{t}" for t in range(T)]),
            "y": Y.reshape(-1),
        }
    )
    return d, Y


def simulate(n=60, T=4, seed=1, p_miss=0.15):
    """Two-arm trial with a baseline covariate, AR-ish covariance and random missingness."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    S = 8.0 * 0.6 ** np.abs(np.subtract.outer(t, t)) + np.diag(np.linspace(1, 4, T))
    arm = rng.integers(0, 2, n)
    base = rng.normal(50, 5, n)
    Y = (
        0.3 * base[:, None]
        + 1.5 * t[None]
        + 2.0 * arm[:, None] * t[None] / T
        + rng.normal(size=(n, T)) @ np.linalg.cholesky(S).T
    )
    Y[rng.random((n, T)) < p_miss] = np.nan
    d = pd.DataFrame(
        {
            "USUBJID": np.repeat([f"P{i:03d}" for i in range(n)], T),
            "AVISIT": pd.Categorical(np.tile([f"W{k}" for k in t], n), [f"W{k}" for k in t]),
            "ARM": pd.Categorical(np.repeat(np.where(arm == 1, "TRT", "PBO"), T), ["PBO", "TRT"]),
            "BASE": np.repeat(base, T),
            "Y": Y.reshape(-1),
        }
    )
    return d


# ---------------------------------------------------------------------------------------------
# exact identities


def test_two_visits_equals_paired_t_test():
    d, Y = balanced(T=2)
    fit = fit_mmrm(d, "y ~ VIS + us(VIS | ID)")
    row = fit.coef("VISV1")
    diff = Y[:, 1] - Y[:, 0]
    ref = ss.ttest_rel(Y[:, 1], Y[:, 0])
    assert row["estimate"] == pytest.approx(diff.mean(), rel=1e-10)
    assert row["std_error"] == pytest.approx(diff.std(ddof=1) / np.sqrt(len(diff)), rel=1e-8)
    assert row["df"] == pytest.approx(len(diff) - 1, rel=1e-8)
    assert row["t_value"] == pytest.approx(ref.statistic, rel=1e-8)
    assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-7)
    kr = fit_mmrm(d, "y ~ VIS + us(VIS | ID)", df="kenward-roger").coef("VISV1")
    assert kr["std_error"] == pytest.approx(row["std_error"], rel=1e-8)  # no KR inflation here
    assert kr["df"] == pytest.approx(len(diff) - 1, rel=1e-8)


def test_unstructured_reml_equals_sample_covariance():
    d, Y = balanced()
    fit = fit_mmrm(d, "y ~ VIS + us(VIS | ID)")
    np.testing.assert_allclose(fit.covariance.to_numpy(), np.cov(Y.T), rtol=1e-9, atol=1e-12)
    # ML divides by n instead of n - 1
    ml = fit_mmrm(d, "y ~ VIS + us(VIS | ID)", method="ml")
    n = Y.shape[0]
    np.testing.assert_allclose(ml.covariance.to_numpy(), np.cov(Y.T) * (n - 1) / n, rtol=1e-9)
    # the REML log-likelihood in closed form: multivariate normal with known mean structure
    S = np.cov(Y.T)
    T, p = Y.shape[1], Y.shape[1]
    N = n * T
    ll = -0.5 * (
        (N - p) * np.log(2 * np.pi)
        + n * np.linalg.slogdet(S)[1]
        + np.linalg.slogdet(n * np.linalg.inv(S))[1]
        + (n - 1) * T
    )
    assert fit.loglik == pytest.approx(ll, rel=1e-12)


def test_kenward_roger_reproduces_hotelling_t2():
    """KR's scaled F is exact for Hotelling's T^2 (Kenward & Roger 1997, section 5)."""
    d, Y = balanced()
    n, T = Y.shape
    q = T - 1
    D = Y[:, 1:] - Y[:, [0]]
    m = D.mean(0)
    T2 = n * m @ np.linalg.solve(np.cov(D.T), m)
    F = (n - q) / (q * (n - 1)) * T2
    t3 = fit_mmrm(d, "y ~ VIS + us(VIS | ID)", df="kenward-roger").type3().loc["VIS"]
    assert t3["num_df"] == q
    assert t3["f_value"] == pytest.approx(F, rel=1e-8)
    assert t3["den_df"] == pytest.approx(n - q, rel=1e-6)
    assert t3["p_value"] == pytest.approx(ss.f.sf(F, q, n - q), rel=1e-6)


def test_ancova_matches_ols():
    import statsmodels.formula.api as smf

    fev = load_fev()
    v4 = fev[fev["AVISIT"] == "VIS4"].copy()
    fit = fit_ancova(v4, "FEV1 ~ FEV1_BL + ARMCD + RACE")
    ols = smf.ols("FEV1 ~ FEV1_BL + ARMCD + RACE", v4).fit()
    names = {
        "Intercept": "(Intercept)",
        "FEV1_BL": "FEV1_BL",
        "ARMCD[T.TRT]": "ARMCDTRT",
        "RACE[T.Black or African American]": "RACEBlack or African American",
        "RACE[T.White]": "RACEWhite",
    }
    co = fit.coefficients
    for sm, ours in names.items():
        assert co.loc[ours, "estimate"] == pytest.approx(ols.params[sm], rel=1e-8)
        assert co.loc[ours, "std_error"] == pytest.approx(ols.bse[sm], rel=1e-7)
        assert co.loc[ours, "df"] == ols.df_resid
        assert co.loc[ours, "p_value"] == pytest.approx(ols.pvalues[sm], rel=1e-6)
        # ANCOVA resolves term spellings the same way as the MMRM
        assert fit.coef(sm.replace("Intercept", "(Intercept)"))["estimate"] == co.loc[ours, "estimate"]
    assert fit.n_observations == int(ols.nobs)
    assert fit.covariance.iloc[0, 0] == pytest.approx(ols.scale, rel=1e-8)
    # no interaction: type 3 = type 2 = statsmodels anova_lm(typ=2)
    from statsmodels.stats.anova import anova_lm

    a2 = anova_lm(ols, typ=2)
    t3 = fit.type3()
    for term in ["FEV1_BL", "ARMCD", "RACE"]:
        assert t3.loc[term, "f_value"] == pytest.approx(a2.loc[term, "F"], rel=1e-7)
        assert t3.loc[term, "p_value"] == pytest.approx(a2.loc[term, "PR(>F)"], rel=1e-6)
    # LS means: RACE weighted equally, FEV1_BL at its mean
    lsm = fit.lsmeans("ARMCD")
    b = ols.params
    race_avg = (b["RACE[T.Black or African American]"] + b["RACE[T.White]"]) / 3
    pbo = b["Intercept"] + b["FEV1_BL"] * v4.dropna(subset=["FEV1", "FEV1_BL"])["FEV1_BL"].mean() + race_avg
    assert lsm.loc[lsm["ARMCD"] == "PBO", "estimate"].iloc[0] == pytest.approx(pbo, rel=1e-9)
    pw = fit.pairwise("ARMCD").iloc[0]
    assert pw["estimate"] == pytest.approx(b["ARMCD[T.TRT]"], rel=1e-9)
    assert pw["std_error"] == pytest.approx(ols.bse["ARMCD[T.TRT]"], rel=1e-7)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_cs_equals_statsmodels_random_intercept(method):
    """CS with a positive covariance is a random-intercept model (statsmodels MixedLM)."""
    import statsmodels.formula.api as smf

    d = simulate(n=80, seed=3)
    d["Y"] = d["Y"] + np.repeat(np.random.default_rng(9).normal(0, 3, 80), 4)  # strong intercept
    dd = d.dropna(subset=["Y"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = smf.mixedlm("Y ~ BASE + ARM*AVISIT", dd, groups=dd["USUBJID"]).fit(reml=method == "reml", method="bfgs")
    fit = fit_mmrm(d, "Y ~ BASE + ARM*AVISIT + cs(AVISIT | USUBJID)", method=method)
    assert fit.converged
    # statsmodels' log-likelihood uses the same conventions (2 pi constant; REML log|X'V^-1X|)
    assert fit.loglik == pytest.approx(sm.llf, abs=1e-6)
    for name, value in sm.fe_params.items():  # patsy names such as ARM[T.TRT]:AVISIT[T.W1]
        assert fit.coef(name.replace("Intercept", "(Intercept)"))["estimate"] == pytest.approx(
            value, rel=1e-4, abs=1e-5
        )
    cp = fit.covariance_parameters
    assert cp["CS"] == pytest.approx(sm.cov_re.iloc[0, 0], rel=1e-4)
    assert cp["Residual"] == pytest.approx(sm.scale, rel=1e-4)


# ---------------------------------------------------------------------------------------------
# invariances


def _same(a, b, rtol=1e-8):
    pd.testing.assert_frame_equal(a.coefficients, b.coefficients, rtol=rtol, atol=1e-10)
    np.testing.assert_allclose(a.covariance.to_numpy(), b.covariance.to_numpy(), rtol=rtol)
    assert a.neg2loglik == pytest.approx(b.neg2loglik, rel=1e-12)
    pd.testing.assert_frame_equal(a.type3(), b.type3(), rtol=rtol)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invariant_to_row_order_and_subject_labels(seed):
    d = simulate(seed=seed)
    f = "Y ~ BASE + ARM*AVISIT + us(AVISIT | USUBJID)"
    ref = fit_mmrm(d, f)
    rng = np.random.default_rng(100 + seed)
    shuffled = d.iloc[rng.permutation(len(d))].reset_index(drop=True)
    # Another row order is another summation order, so the REML optimizer stops at a point equal within its
    # convergence tolerance, not to the last bit (seen: 1.1e-8 relative in one estimate under load): 1e-6.
    _same(ref, fit_mmrm(shuffled, f), rtol=1e-6)
    ids = d["USUBJID"].unique()
    relabel = dict(zip(ids, rng.permutation(len(ids)) * 7 + 1000))  # integer ids in another order
    renamed = d.assign(USUBJID=d["USUBJID"].map(relabel))
    _same(ref, fit_mmrm(renamed, f), rtol=1e-6)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    structure=st.sampled_from(["cs", "ar1", "csh", "toep", "us"]),
)
def test_property_permutation_invariance(seed, structure):
    d = simulate(n=40, T=3, seed=seed, p_miss=0.2)
    f = f"Y ~ ARM + AVISIT + {structure}(AVISIT | USUBJID)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MMRMWarning)
        a = fit_mmrm(d, f)
        perm = np.random.default_rng(seed).permutation(len(d))
        b = fit_mmrm(d.iloc[perm], f)
    assert a.converged and b.converged
    _same(a, b, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# parameterization and model algebra


def test_no_intercept_is_a_reparameterization():
    d = simulate(seed=4)
    a = fit_mmrm(d, "Y ~ ARM*AVISIT + us(AVISIT | USUBJID)")
    b = fit_mmrm(d, "Y ~ 0 + ARM:AVISIT + us(AVISIT | USUBJID)")
    c = fit_mmrm(d, "Y ~ ARM:AVISIT - 1 + us(AVISIT | USUBJID)")
    assert b.neg2loglik == pytest.approx(a.neg2loglik, rel=1e-12)
    assert list(b.coefficients.index)[:2] == ["ARMPBO:AVISITW0", "ARMTRT:AVISITW0"]
    pd.testing.assert_frame_equal(b.coefficients, c.coefficients)
    # cell-means coefficients are the LS means of the full-rank model
    lsm = a.lsmeans(["AVISIT", "ARM"])
    for _, r in lsm.iterrows():
        coef = b.coef(f"ARM{r['ARM']}:AVISIT{r['AVISIT']}")
        assert coef["estimate"] == pytest.approx(r["estimate"], rel=1e-9)
        assert coef["std_error"] == pytest.approx(r["std_error"], rel=1e-7)
        assert coef["df"] == pytest.approx(r["df"], rel=1e-6)


def test_numeric_covariate_lsmeans_at_mean_and_type3_at_zero():
    d = simulate(seed=6)
    fit = fit_mmrm(d, "Y ~ BASE*ARM + AVISIT + us(AVISIT | USUBJID)")
    used = d.dropna(subset=["Y"])
    b = fit.coefficients["estimate"]
    lsm = fit.lsmeans("ARM")
    visit_avg = (b["AVISITW1"] + b["AVISITW2"] + b["AVISITW3"]) / 4
    trt = b["(Intercept)"] + b["ARMTRT"] + (b["BASE"] + b["BASE:ARMTRT"]) * used["BASE"].mean() + visit_avg
    assert lsm.loc[lsm["ARM"] == "TRT", "estimate"].iloc[0] == pytest.approx(trt, rel=1e-10)
    # SAS type 3 for ARM in a model with BASE*ARM tests the arm difference at BASE = 0
    t3 = fit.type3()
    c = fit.contrast({"ARMTRT": 1})
    assert t3.loc["ARM", "f_value"] == pytest.approx(c["t_value"] ** 2, rel=1e-9)
    # ... and the BASE main effect is the average slope over arms
    c2 = fit.contrast({"BASE": 1, "BASE:ARMTRT": 0.5})
    assert t3.loc["BASE", "f_value"] == pytest.approx(c2["t_value"] ** 2, rel=1e-9)


def test_contrast_forms_and_multirow():
    fev = load_fev()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MMRMWarning)
        fit = fit_mmrm(fev, "FEV1 ~ RACE + SEX + ARMCD*AVISIT + us(AVISIT | USUBJID)")
    names = list(fit.coefficients.index)
    vec = np.zeros(len(names))
    vec[names.index("ARMCDTRT")] = 1
    a = fit.contrast(vec)
    b = fit.contrast({"ARMCDTRT": 1})
    pd.testing.assert_series_equal(a, b)
    assert a["estimate"] == pytest.approx(fit.coef("ARMCDTRT")["estimate"])
    # the two RACE coefficients jointly = type 3 RACE (no interaction with RACE)
    joint = fit.contrast([{"RACEBlack or African American": 1}, {"RACEWhite": 1}])
    t3 = fit.type3().loc["RACE"]
    assert joint["num_df"] == 2
    assert joint["f_value"] == pytest.approx(t3["f_value"], rel=1e-9)
    assert joint["den_df"] == pytest.approx(t3["den_df"], rel=1e-9)
    # linearly dependent rows are reduced to the rank
    dep = fit.contrast([{"RACEWhite": 1}, {"RACEWhite": 2}])
    assert dep["num_df"] == 1
    assert dep["f_value"] == pytest.approx(fit.coef("RACEWhite")["t_value"] ** 2, rel=1e-9)


def test_residual_df():
    d = simulate(seed=7)
    fit = fit_mmrm(d, "Y ~ ARM*AVISIT + us(AVISIT | USUBJID)", df="residual")
    assert (fit.coefficients["df"] == fit.n_observations - 8).all()
    assert (fit.type3()["den_df"] == fit.n_observations - 8).all()


@pytest.mark.parametrize("structure", ["us", "cs", "csh", "ar1", "ar1h", "toep", "toeph"])
def test_all_structures_converge_on_fev(structure):
    fev = load_fev()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MMRMWarning)
        fit = fit_mmrm(fev, f"FEV1 ~ RACE + SEX + ARMCD*AVISIT + {structure}(AVISIT | USUBJID)")
        kr = fit_mmrm(fev, f"FEV1 ~ RACE + SEX + ARMCD*AVISIT + {structure}(AVISIT | USUBJID)", df="kr")
    assert fit.converged and kr.converged
    assert np.all(np.linalg.eigvalsh(fit.covariance.to_numpy()) > 0)
    # Satterthwaite and the KR df of a single contrast coincide (both 2 / A1 with the observed
    # information); KR changes the SE: for structures linear in their parameters (R_ij = 0) the
    # adjustment Q - P C P is positive semi-definite, so the SE can only grow.
    np.testing.assert_allclose(kr.coefficients["df"], fit.coefficients["df"], rtol=1e-8)
    if structure in ("us", "cs", "toep"):
        assert np.all(kr.coefficients["std_error"] >= fit.coefficients["std_error"] * (1 - 1e-12))
    # nested structures: us fits at least as well as the others
    us = fit_mmrm(fev, "FEV1 ~ RACE + SEX + ARMCD*AVISIT + us(AVISIT | USUBJID)") if structure != "us" else fit
    assert us.neg2loglik <= fit.neg2loglik + 1e-6
