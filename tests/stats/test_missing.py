"""Tests of regenheart.stats.missing (Rubin's rules, normal-regression imputation, delta adjustment,
tipping point).

References, with the tolerance stated at each assertion:

* hand arithmetic written out in the comments (1e-12);
* R 4.2.2 with mice 3.15.0, ``pool.scalar(Q, U, n, k)``, copied with 15 significant digits (1e-9);
* statsmodels' own Rubin combination (``statsmodels.imputation.bayes_mi.MI._combine``) (1e-12);
* the exact posterior predictive distribution of the Bayesian normal linear model (Student t),
  checked by a Kolmogorov-Smirnov test on many draws.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from regenheart.stats import missing as ms

# ------------------------------------------------------------------------------------------
# Rubin's rules
# ------------------------------------------------------------------------------------------


def test_rubin_hand_example_with_barnard_rubin_df():
    # Q = (10, 12, 14), U = (4, 4, 4), m = 3, complete-data df 20.
    # Qbar = 12; W = 4; B = ((-2)^2 + 0 + 2^2) / 2 = 4; T = 4 + (1 + 1/3) 4 = 9.3333333
    # riv = (4/3 * 4)/4 = 4/3; lambda = (16/3)/(28/3) = 4/7
    # Rubin df: nu_m = (m - 1)/lambda^2 = 2 * 49/16 = 6.125
    # nu_obs = (20 + 1)/(20 + 3) * 20 * (1 - 4/7) = 21/23 * 20 * 3/7 = 1260/161 = 7.8260870
    # Barnard-Rubin: 1/(1/6.125 + 1/7.8260870) = 3.4359174
    # fmi (Rubin's nu_m) = (4/3 + 2/9.125)/(7/3) = 0.6653620
    # R: pool.scalar(Q = c(10,12,14), U = c(4,4,4), n = 21, k = 1):
    #    qbar 12, ubar 4, b 4, t 9.33333333333333, df 3.43591741332294, r 1.33333333333333
    r = ms.rubin_combine([10, 12, 14], [4, 4, 4], df_complete=20)
    assert r["m"] == 3
    assert r["estimate"] == pytest.approx(12.0, abs=1e-12)
    assert r["within_variance"] == pytest.approx(4.0, abs=1e-12)
    assert r["between_variance"] == pytest.approx(4.0, abs=1e-12)
    assert r["total_variance"] == pytest.approx(28 / 3, abs=1e-12)
    assert r["se"] == pytest.approx(math.sqrt(28 / 3), abs=1e-12)
    assert r["riv"] == pytest.approx(4 / 3, abs=1e-12)
    assert r["lambda"] == pytest.approx(4 / 7, abs=1e-12)
    nu_m, nu_obs = 6.125, 1260 / 161
    assert r["df"] == pytest.approx(1 / (1 / nu_m + 1 / nu_obs), abs=1e-12)
    assert r["df"] == pytest.approx(3.43591741332294, abs=1e-9)
    assert r["fmi"] == pytest.approx((4 / 3 + 2 / 9.125) / (7 / 3), abs=1e-12)
    assert r["fmi"] == pytest.approx(0.665362035225049, abs=1e-9)  # R mice with n = Inf
    # mice computes its fmi with the Barnard-Rubin df: (r + 2/(df + 3))/(r + 1) = 0.7046097175024
    assert (r["riv"] + 2 / (r["df"] + 3)) / (r["riv"] + 1) == pytest.approx(0.7046097175024, abs=1e-9)
    assert r["df_method"] == "Barnard-Rubin (1999)"
    # t = 12/sqrt(28/3) = 3.9279220; CI = 12 -/+ t(0.975; df) * se
    assert r["t_statistic"] == pytest.approx(12 / math.sqrt(28 / 3), abs=1e-12)
    q = stats.t.ppf(0.975, r["df"])
    assert (r["lower"], r["upper"]) == pytest.approx((12 - q * r["se"], 12 + q * r["se"]), abs=1e-10)
    assert r["p_value"] == pytest.approx(2 * stats.t.sf(r["t_statistic"], r["df"]), abs=1e-12)


def test_rubin_large_sample_df():
    # without df_complete: Rubin (1987) nu_m = 6.125 (R mice pool.scalar with n = Inf: df 6.125)
    r = ms.rubin_combine([10, 12, 14], [4, 4, 4])
    assert r["df"] == pytest.approx(6.125, abs=1e-12)
    assert r["df_method"] == "Rubin (1987) large-sample"
    assert ms.rubin_combine([10, 12, 14], [4, 4, 4], df_complete=math.inf)["df"] == pytest.approx(6.125)


def test_rubin_matches_r_mice_five_imputations():
    # R: pool.scalar(Q = c(5.31, 4.87, 5.92, 5.10, 4.66), U = c(1.21, 1.30, 1.18, 1.25, 1.33),
    #                n = 30, k = 1)
    #    qbar 5.172, ubar 1.254, b 0.23427, t 1.535124, df 18.7226185995124, r 0.224181818181818,
    #    fmi (with the BR df) 0.25833723772686
    q = [5.31, 4.87, 5.92, 5.10, 4.66]
    u = [1.21, 1.30, 1.18, 1.25, 1.33]
    r = ms.rubin_combine(q, u, df_complete=29)
    assert r["estimate"] == pytest.approx(5.172, abs=1e-12)
    assert r["within_variance"] == pytest.approx(1.254, abs=1e-12)
    assert r["between_variance"] == pytest.approx(0.23427, abs=1e-12)
    assert r["total_variance"] == pytest.approx(1.535124, abs=1e-12)
    assert r["df"] == pytest.approx(18.7226185995124, abs=1e-9)
    assert r["riv"] == pytest.approx(0.224181818181818, abs=1e-12)
    assert (r["riv"] + 2 / (r["df"] + 3)) / (r["riv"] + 1) == pytest.approx(0.25833723772686, abs=1e-9)


def test_rubin_matches_statsmodels_combination():
    # statsmodels' MI._combine applies the same rule (it does not use `self`); its "fmi" is our lambda
    bayes_mi = pytest.importorskip("statsmodels.imputation.bayes_mi")
    combine = getattr(bayes_mi.MI, "_combine", None)
    if combine is None:
        pytest.skip("statsmodels no longer exposes MI._combine")
    rng = np.random.default_rng(11)
    q = rng.normal(3, 0.4, 7)
    u = rng.uniform(0.5, 1.5, 7)
    params, cov, fmi = combine(None, [np.array([x]) for x in q], [np.array([[v]]) for v in u])
    r = ms.rubin_combine(q, u, df_complete=25)
    assert r["estimate"] == pytest.approx(params[0], abs=1e-12)
    assert r["total_variance"] == pytest.approx(cov[0, 0], abs=1e-12)
    assert r["lambda"] == pytest.approx(fmi[0], abs=1e-12)


def test_rubin_no_between_variance():
    # identical estimates: B = 0 -> riv = lambda = fmi = 0, T = W.
    # Rubin df is infinite (normal CI); Barnard-Rubin df = nu_com (nu_com + 1)/(nu_com + 3)
    # (= 29 * 30/32 = 27.1875 for nu_com = 29), as in SAS PROC MIANALYZE EDF=, mice and rbmi.
    r = ms.rubin_combine([2.0] * 5, [0.25] * 5, df_complete=29)
    assert (r["between_variance"], r["riv"], r["lambda"], r["fmi"]) == (0.0, 0.0, 0.0, 0.0)
    assert r["total_variance"] == pytest.approx(0.25, abs=1e-15)
    assert r["df"] == pytest.approx(29 * 30 / 32, abs=1e-12)
    big = ms.rubin_combine([2.0] * 5, [0.25] * 5)
    assert math.isinf(big["df"])
    assert big["lower"] == pytest.approx(2.0 - stats.norm.ppf(0.975) * 0.5, abs=1e-12)
    zero = ms.rubin_combine([2.0, 2.0], [0.0, 0.0])
    assert zero["lower"] == zero["upper"] == 2.0 and math.isnan(zero["p_value"])
    json.dumps({k: v for k, v in r.items()})  # plain Python values


def test_rubin_invalid_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        ms.rubin_combine([1.0], [1.0])
    with pytest.raises(ValueError, match="length"):
        ms.rubin_combine([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        ms.rubin_combine([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="finite"):
        ms.rubin_combine([1.0, np.nan], [1.0, 1.0])
    with pytest.raises(ValueError, match="df_complete"):
        ms.rubin_combine([1.0, 2.0], [1.0, 1.0], df_complete=0)


# ------------------------------------------------------------------------------------------
# data for the imputation tests
# ------------------------------------------------------------------------------------------


def make_trial(seed: int, n: int = 30, n_missing: int = 8, mean_change: float = 3.0) -> pd.DataFrame:
    """Baseline LVEF and month-6 change (correlated with baseline), n_missing changes MCAR."""
    rng = np.random.default_rng(seed)
    base = rng.normal(30.0, 5.0, n)
    change = mean_change - 0.3 * (base - 30.0) + rng.normal(0.0, 4.0, n)
    frame = pd.DataFrame({"subject": [f"S{i:02d}" for i in range(n)], "lvef_bl": base, "chg": change})
    if n_missing:
        frame.loc[rng.choice(n, n_missing, replace=False), "chg"] = np.nan
    return frame


# ------------------------------------------------------------------------------------------
# imputation
# ------------------------------------------------------------------------------------------


def test_imputation_reproducible_and_seed_dependent():
    data = make_trial(1)
    a = ms.impute_normal_regression(data, "chg", ["lvef_bl"], m=4, seed=123)
    b = ms.impute_normal_regression(data, "chg", ["lvef_bl"], m=4, seed=123)
    c = ms.impute_normal_regression(data, "chg", ["lvef_bl"], m=4, seed=124)
    assert len(a) == 4
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)
    miss = data["chg"].isna()
    assert not np.allclose(a[0].loc[miss, "chg"], c[0].loc[miss, "chg"])
    assert not np.allclose(a[0].loc[miss, "chg"], a[1].loc[miss, "chg"])  # imputations differ
    # imputation i does not depend on m
    first3 = ms.impute_normal_regression(data, "chg", ["lvef_bl"], m=3, seed=123)
    for x, y in zip(first3, a[:3]):
        pd.testing.assert_frame_equal(x, y)


def test_imputation_fills_only_missing_target_values():
    data = make_trial(2)
    miss = data["chg"].isna()
    original = data.copy()
    for completed in ms.impute_normal_regression(data, "chg", ["lvef_bl"], m=3, seed=5):
        assert completed["chg"].notna().all()
        pd.testing.assert_series_equal(completed.loc[~miss, "chg"], data.loc[~miss, "chg"])
        pd.testing.assert_frame_equal(completed.drop(columns="chg"), data.drop(columns="chg"))
    pd.testing.assert_frame_equal(data, original)  # input not modified
    intercept_only = ms.impute_normal_regression(data, "chg", [], m=2, seed=5)
    assert intercept_only[0]["chg"].notna().all()


def test_imputation_without_missing_returns_data_unchanged():
    data = make_trial(3, n_missing=0)
    out = ms.impute_normal_regression(data, "chg", ["lvef_bl"], m=3, seed=1)
    assert len(out) == 3
    for completed in out:
        pd.testing.assert_frame_equal(completed, data)
        assert completed is not data


def test_imputation_draws_follow_the_posterior_predictive_t():
    # Under the flat prior of Rubin's normal model, a missing y at covariate x0 has the posterior
    # predictive distribution  x0' beta_hat + s * sqrt(1 + x0' (X'X)^-1 x0) * t(n_obs - k),
    # s^2 = SSR / (n_obs - k). 3000 imputations of one missing value must follow it (KS test).
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, 13)
    y = 1.0 + 2.0 * x + rng.normal(0, 1.5, 13)
    y[0] = np.nan
    data = pd.DataFrame({"x": x, "y": y})
    design = np.column_stack([np.ones(12), x[1:]])
    beta_hat, ssr, *_ = np.linalg.lstsq(design, y[1:], rcond=None)
    dof = 12 - 2
    s2 = float(ssr[0]) / dof
    x0 = np.array([1.0, x[0]])
    scale = math.sqrt(s2 * (1 + x0 @ np.linalg.inv(design.T @ design) @ x0))
    draws = np.array([c.loc[0, "y"] for c in ms.impute_normal_regression(data, "y", ["x"], m=3000, seed=99)])
    ks = stats.kstest(draws, stats.t(dof, loc=float(x0 @ beta_hat), scale=scale).cdf)
    assert ks.pvalue > 0.01


def test_imputation_input_errors():
    data = make_trial(4)
    bad = data.copy()
    bad.loc[3, "lvef_bl"] = np.nan
    with pytest.raises(ValueError, match="'lvef_bl'"):
        ms.impute_normal_regression(bad, "chg", ["lvef_bl"], m=2, seed=1)
    with pytest.raises(KeyError, match="'nope'"):
        ms.impute_normal_regression(data, "chg", ["nope"], m=2, seed=1)
    with pytest.raises(TypeError, match="'subject'"):
        ms.impute_normal_regression(data, "chg", ["subject"], m=2, seed=1)
    with pytest.raises(ValueError, match="also listed"):
        ms.impute_normal_regression(data, "chg", ["chg"], m=2, seed=1)
    with pytest.raises(ValueError, match="m must"):
        ms.impute_normal_regression(data, "chg", ["lvef_bl"], m=0, seed=1)
    with pytest.raises(ValueError, match="seed"):
        ms.impute_normal_regression(data, "chg", ["lvef_bl"], m=2, seed=None)  # type: ignore[arg-type]
    collinear = data.assign(twice=2 * data["lvef_bl"])
    with pytest.raises(ValueError, match="collinear"):
        ms.impute_normal_regression(collinear, "chg", ["lvef_bl", "twice"], m=2, seed=1)
    tiny = data.copy()
    tiny.loc[2:, "chg"] = np.nan  # 2 complete cases, 2 coefficients
    with pytest.raises(ValueError, match="complete case"):
        ms.impute_normal_regression(tiny, "chg", ["lvef_bl"], m=2, seed=1)


# ------------------------------------------------------------------------------------------
# delta-adjusted analysis
# ------------------------------------------------------------------------------------------


def test_delta_zero_equals_rubin_on_the_imputed_datasets():
    data = make_trial(5)
    table = ms.delta_adjusted_analysis(data, "chg", ["lvef_bl"], [0.0], m=10, seed=2024)
    imputed = ms.impute_normal_regression(data, "chg", ["lvef_bl"], m=10, seed=2024)
    means = [c["chg"].mean() for c in imputed]
    variances = [c["chg"].var(ddof=1) / len(c) for c in imputed]
    ref = ms.rubin_combine(means, variances, df_complete=29)
    row = table.iloc[0]
    for key in ("estimate", "se", "lower", "upper", "p_value", "df"):
        assert row[key] == pytest.approx(ref[key], abs=1e-12), key
    assert list(table.columns[:8]) == ["delta", "estimate", "se", "lower", "upper", "p_value", "df", "m"]
    assert (row["m"], row["n_missing"], row["n_total"]) == (10, 8, 30)


def test_delta_adjusted_estimate_is_exactly_linear_in_delta():
    # Same imputations for every delta, +delta on the 8 imputed of 30 values:
    # estimate(delta) = estimate(0) + delta * 8/30 (exact up to rounding, 1e-10);
    # the between-imputation variance does not change (every imputation is shifted alike).
    data = make_trial(6)
    deltas = [0.0, -0.5, -1.0, -2.5, -7.0, 1.0, 3.3]
    table = ms.delta_adjusted_analysis(data, "chg", ["lvef_bl"], deltas, m=20, seed=77)
    est0 = table.loc[table["delta"] == 0.0, "estimate"].item()
    b0 = table.loc[table["delta"] == 0.0, "between_variance"].item()
    for _, row in table.iterrows():
        assert row["estimate"] == pytest.approx(est0 + row["delta"] * 8 / 30, abs=1e-10)
        assert row["between_variance"] == pytest.approx(b0, abs=1e-10)
    neg = table[table["delta"] <= 0].sort_values("delta")
    assert neg["estimate"].is_monotonic_increasing


def test_no_missing_data_gives_the_complete_case_t_analysis():
    # Nothing to impute: every completed dataset is the data, B = 0, so the pooled estimate and SE are
    # those of the one-sample t analysis of the change, whatever delta. The Barnard-Rubin df is then
    # 29 * 30/32 = 27.1875 (the published formula; SAS MIANALYZE and mice agree), not 29, so the CI
    # uses t(27.1875).
    data = make_trial(8, n_missing=0)
    change = data["chg"].to_numpy()
    table = ms.delta_adjusted_analysis(data, "chg", ["lvef_bl"], [0.0, -3.0], m=5, seed=1)
    ref = stats.ttest_1samp(change, 0.0)
    se = change.std(ddof=1) / math.sqrt(30)
    for _, row in table.iterrows():
        assert row["estimate"] == pytest.approx(change.mean(), abs=1e-12)
        assert row["se"] == pytest.approx(se, abs=1e-12)
        assert row["estimate"] / row["se"] == pytest.approx(ref.statistic, abs=1e-9)
        assert row["between_variance"] == 0.0 and row["fmi"] == 0.0
        assert row["df"] == pytest.approx(27.1875, abs=1e-12)
        q = stats.t.ppf(0.975, 27.1875)
        expected = (change.mean() - q * se, change.mean() + q * se)
        assert (row["lower"], row["upper"]) == pytest.approx(expected, abs=1e-10)


def test_custom_analysis_callable():
    # e.g. a large-sample analysis without complete-data df -> Rubin (1987) df
    def large_sample_mean(frame: pd.DataFrame, target: str) -> tuple[float, float, None]:
        y = frame[target].to_numpy()
        return float(np.mean(y)), float(np.var(y, ddof=1) / y.size), None

    data = make_trial(9)
    table = ms.delta_adjusted_analysis(
        data, "chg", ["lvef_bl"], [0.0, -1.0], m=5, seed=3, analysis=large_sample_mean
    )
    default = ms.delta_adjusted_analysis(data, "chg", ["lvef_bl"], [0.0, -1.0], m=5, seed=3)
    np.testing.assert_allclose(table["estimate"], default["estimate"], atol=1e-12)
    assert (table["df"] > default["df"]).all()  # large-sample df is not limited by n - 1


def test_mcar_simulation_mi_is_approximately_unbiased_and_covers():
    # 300 simulated trials (n = 30, 8 changes MCAR, true mean change 3): the MI estimate averages
    # to 3 within 4 Monte Carlo standard errors and the 95% CI covers 3 in 90-99% of trials
    # (fixed seeds: observed mean 3.08 with MC SE 0.053, coverage 95.7%).
    estimates, covered = [], 0
    for rep in range(300):
        data = make_trial(10_000 + rep)
        row = ms.delta_adjusted_analysis(data, "chg", ["lvef_bl"], [0.0], m=5, seed=rep).iloc[0]
        estimates.append(row["estimate"])
        covered += row["lower"] <= 3.0 <= row["upper"]
    estimates = np.array(estimates)
    mc_se = estimates.std(ddof=1) / math.sqrt(estimates.size)
    assert abs(estimates.mean() - 3.0) < 4 * mc_se
    assert 0.90 <= covered / 300 <= 0.99


def test_mar_simulation_mi_removes_complete_case_bias():
    # MAR: the higher the baseline LVEF, the more often the change is missing. The change falls
    # with baseline (slope -0.3), so the complete cases have larger changes than the missing ones
    # and their mean overestimates; MI conditioning on baseline does not.
    rng = np.random.default_rng(4242)
    mi, cc = [], []
    for rep in range(150):
        data = make_trial(20_000 + rep, n_missing=0)
        p_miss = 1 / (1 + np.exp(-(data["lvef_bl"] - 30.0) / 2.0)) * 0.6
        data.loc[rng.random(30) < p_miss, "chg"] = np.nan
        if data["chg"].notna().sum() < 5:
            continue
        cc.append(data["chg"].mean())
        table = ms.delta_adjusted_analysis(data, "chg", ["lvef_bl"], [0.0], m=5, seed=rep)
        mi.append(table["estimate"].item())
    mi_bias, cc_bias = np.mean(mi) - 3.0, np.mean(cc) - 3.0
    assert cc_bias > 0.4
    assert abs(mi_bias) < 4 * np.std(mi, ddof=1) / math.sqrt(len(mi))


# ------------------------------------------------------------------------------------------
# tipping point
# ------------------------------------------------------------------------------------------


def p_at(data: pd.DataFrame, delta: float, m: int = 20, seed: int = 31) -> float:
    return ms.delta_adjusted_analysis(data, "chg", ["lvef_bl"], [delta], m=m, seed=seed)["p_value"].item()


def test_tipping_point_found_where_p_crosses_alpha():
    data = make_trial(12)
    assert p_at(data, 0.0) < 0.05
    res = ms.tipping_point(data, "chg", ["lvef_bl"], m=20, seed=31, tol=1e-7)
    assert res.found and res.significant_under_mar and res.direction == -1
    tip = res.tipping_delta
    assert tip < 0
    assert res.p_value_at_tipping >= 0.05
    assert res.p_value_at_tipping == pytest.approx(0.05, abs=1e-4)
    assert p_at(data, tip + 1e-5) < 0.05  # just before the tipping point: still significant
    # an independent root finder on the public delta_adjusted_analysis finds the same delta
    root = optimize.brentq(lambda dlt: p_at(data, dlt) - 0.05, tip - 5.0, 0.0, xtol=1e-9)
    assert tip == pytest.approx(root, abs=1e-6)
    # the grid table holds every evaluated delta; the CI touches 0 at the tipping point
    at_tip = res.grid.loc[res.grid["delta"] == tip].iloc[0]
    assert at_tip["lower"] == pytest.approx(0.0, abs=1e-3) and at_tip["lower"] <= 0.0
    assert res.grid["delta"].is_monotonic_increasing
    # reproducible
    again = ms.tipping_point(data, "chg", ["lvef_bl"], m=20, seed=31, tol=1e-7)
    assert again.tipping_delta == tip
    json.dumps(res.to_dict(nan_as_none=True), allow_nan=False)


def test_tipping_point_user_grid_and_not_found():
    data = make_trial(12)
    full = ms.tipping_point(data, "chg", ["lvef_bl"], m=20, seed=31)
    short = ms.tipping_point(data, "chg", ["lvef_bl"], m=20, seed=31, grid=[-0.1, -0.2, 5.0])
    assert not short.found and math.isnan(short.tipping_delta)
    assert set(short.grid["delta"]) == {0.0, -0.1, -0.2}  # +5 is not on the eroding side
    user = ms.tipping_point(data, "chg", ["lvef_bl"], m=20, seed=31, grid=np.arange(0, -40, -1.0), tol=1e-6)
    assert user.found and user.tipping_delta == pytest.approx(full.tipping_delta, abs=2e-6)


def test_tipping_point_negative_effect_searches_upwards():
    data = make_trial(13, mean_change=-3.0)
    res = ms.tipping_point(data, "chg", ["lvef_bl"], m=10, seed=8)
    assert res.direction == 1 and res.found and res.tipping_delta > 0
    assert res.p_value_at_tipping == pytest.approx(0.05, abs=1e-4)


def test_tipping_point_degenerate_cases():
    # not significant under MAR already (p = 0.34): the tipping delta is 0
    weak = make_trial(14, mean_change=0.0)
    assert p_at(weak, 0.0, m=10, seed=8) >= 0.05
    res = ms.tipping_point(weak, "chg", ["lvef_bl"], m=10, seed=8)
    assert res.found and res.tipping_delta == 0.0 and not res.significant_under_mar
    assert len(res.grid) == 1
    # nothing missing: no delta can change the result
    complete = make_trial(15, n_missing=0, mean_change=5.0)
    res = ms.tipping_point(complete, "chg", ["lvef_bl"], m=5, seed=8)
    assert not res.found and res.significant_under_mar and math.isnan(res.tipping_delta)
    with pytest.raises(ValueError, match="alpha"):
        ms.tipping_point(complete, "chg", ["lvef_bl"], m=5, seed=8, alpha=1.5)
