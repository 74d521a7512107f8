"""Tests of regenheart.stats.descriptive against independent references.

References used, with the tolerance stated at each assertion:

* closed forms and hand calculations written out in the comments (tolerance 1e-12 unless said);
* scipy.stats (ttest_rel, wilcoxon, binomtest, t) and statsmodels: tolerance 1e-6 or tighter;
* numbers printed by R 4.2.2 (binom.test, quantile, wilcox.test, t.test), copied with 15 significant
  digits; the R calls are shown next to each number. Tolerance 1e-9 for those (the printed digits
  allow it), 1e-4 for numbers taken from printed tables / textbooks with 4 digits.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from regenheart.stats import descriptive as d

FAST = settings(max_examples=60, deadline=None)


# ------------------------------------------------------------------------------------------
# Clopper-Pearson
# ------------------------------------------------------------------------------------------


def test_clopper_pearson_zero_events_closed_form():
    # x = 0: lower = 0 by definition; upper solves P(X = 0 | p) = (1 - p)^30 = 0.025,
    # i.e. p = 1 - 0.025^(1/30) = 0.115703308222028 (R: binom.test(0, 30)$conf.int).
    lower, upper = d.clopper_pearson(0, 30)
    assert lower == 0.0
    assert upper == pytest.approx(1 - 0.025 ** (1 / 30), abs=1e-12)
    assert upper == pytest.approx(0.115703308222028, abs=1e-9)


def test_clopper_pearson_one_event_closed_form_and_identity():
    # x = 1: lower solves P(X >= 1 | p) = 1 - (1 - p)^30 = 0.025 -> p = 1 - 0.975^(1/30);
    # upper solves P(X <= 1 | p) = (1-p)^30 + 30 p (1-p)^29 = 0.025 (beta-binomial identity).
    # R: binom.test(1, 30)$conf.int = 0.000843570926630479 0.172169455633413
    lower, upper = d.clopper_pearson(1, 30)
    assert lower == pytest.approx(1 - 0.975 ** (1 / 30), abs=1e-12)
    assert (1 - upper) ** 30 + 30 * upper * (1 - upper) ** 29 == pytest.approx(0.025, abs=1e-12)
    assert lower == pytest.approx(0.000843570926630479, abs=1e-9)
    assert upper == pytest.approx(0.172169455633413, abs=1e-9)
    # the commonly printed 4-digit values
    assert (round(lower, 6), round(upper, 4)) == (0.000844, 0.1722)


def test_clopper_pearson_five_of_thirty():
    # R: binom.test(5, 30)$conf.int = 0.0564216964680715 0.347211698834144
    # Defining identities: P(X >= 5 | lower) = 0.025 and P(X <= 5 | upper) = 0.025.
    lower, upper = d.clopper_pearson(5, 30)
    assert lower == pytest.approx(0.0564216964680715, abs=1e-9)
    assert upper == pytest.approx(0.347211698834144, abs=1e-9)
    assert stats.binom.sf(4, 30, lower) == pytest.approx(0.025, abs=1e-12)
    assert stats.binom.cdf(5, 30, upper) == pytest.approx(0.025, abs=1e-12)


def test_clopper_pearson_all_events():
    # x = n: upper = 1; lower = 0.025^(1/30) = 0.884296691777972 (R binom.test(30, 30)).
    lower, upper = d.clopper_pearson(30, 30)
    assert upper == 1.0
    assert lower == pytest.approx(0.025 ** (1 / 30), abs=1e-12)


@pytest.mark.parametrize("conf", [0.90, 0.95, 0.99])
def test_clopper_pearson_matches_scipy_and_statsmodels(conf):
    # tolerance 1e-6 vs scipy binomtest(...).proportion_ci("exact") and statsmodels "beta"
    for x in range(31):
        lower, upper = d.clopper_pearson(x, 30, conf)
        ref = stats.binomtest(x, 30).proportion_ci(confidence_level=conf, method="exact")
        assert (lower, upper) == pytest.approx((ref.low, ref.high), abs=1e-6)
        sm_low, sm_high = proportion_confint(x, 30, alpha=1 - conf, method="beta")
        assert (lower, upper) == pytest.approx((sm_low, sm_high), abs=1e-6)


@FAST
@given(n=st.integers(1, 200), data=st.data())
def test_clopper_pearson_symmetry_and_tail_identities(n, data):
    x = data.draw(st.integers(0, n))
    lower, upper = d.clopper_pearson(x, n)
    lo2, up2 = d.clopper_pearson(n - x, n)
    assert lower == pytest.approx(1 - up2, abs=1e-10)
    assert upper == pytest.approx(1 - lo2, abs=1e-10)
    assert 0 <= lower <= x / n <= upper <= 1
    if x > 0:
        assert stats.binom.sf(x - 1, n, lower) == pytest.approx(0.025, abs=1e-8)
    if x < n:
        assert stats.binom.cdf(x, n, upper) == pytest.approx(0.025, abs=1e-8)


def test_clopper_pearson_edge_and_invalid():
    assert d.clopper_pearson(0, 0) == (0.0, 1.0)
    assert d.clopper_pearson(np.int64(2), 10.0) == d.clopper_pearson(2, 10)
    with pytest.raises(ValueError):
        d.clopper_pearson(5, 4)
    with pytest.raises(ValueError):
        d.clopper_pearson(-1, 4)
    with pytest.raises(ValueError):
        d.clopper_pearson(1, 4, conf=1.0)
    with pytest.raises(TypeError):
        d.clopper_pearson(1.5, 4)


def test_binomial_summary():
    s = d.binomial_summary(5, 30)
    assert s.to_dict() == {
        "n_events": 5,
        "n_total": 30,
        "proportion": pytest.approx(1 / 6, abs=1e-15),
        "percent": pytest.approx(100 / 6, abs=1e-12),
        "lower": pytest.approx(0.0564216964680715, abs=1e-9),
        "upper": pytest.approx(0.347211698834144, abs=1e-9),
        "conf": 0.95,
        "method": "Clopper-Pearson exact",
    }
    empty = d.binomial_summary(0, 0)
    assert math.isnan(empty.proportion) and (empty.lower, empty.upper) == (0.0, 1.0)


# ------------------------------------------------------------------------------------------
# sign test
# ------------------------------------------------------------------------------------------


def test_sign_test_hand_and_r():
    # 4 of 5: P(X >= 4) = (5 + 1)/32 -> p = 12/32 = 0.375 (R binom.test(4, 5)$p.value)
    assert d.sign_test(4, 1) == pytest.approx(0.375, abs=1e-12)
    # 9 of 12: 2 * (C(12,9)+C(12,10)+C(12,11)+C(12,12)) / 4096 = 2 * 299/4096 = 0.14599609375
    assert d.sign_test(9, 3) == pytest.approx(0.14599609375, abs=1e-12)
    assert d.sign_test(3, 3) == 1.0
    assert math.isnan(d.sign_test(0, 0))


@pytest.mark.parametrize("total", [1, 2, 5, 12, 17, 30])
def test_sign_test_matches_scipy_binomtest(total):
    # tolerance 1e-10 vs scipy binomtest(k, N, 0.5), two-sided
    for k in range(total + 1):
        ref = stats.binomtest(k, total, 0.5).pvalue
        assert d.sign_test(k, total - k) == pytest.approx(ref, abs=1e-10)


# ------------------------------------------------------------------------------------------
# quantiles and summaries
# ------------------------------------------------------------------------------------------


def test_sas5_quartiles_hand_examples():
    # SAS definition 5: n p = j + g; g = 0 -> (x(j) + x(j+1))/2, g > 0 -> x(j+1).
    # 1..10: Q1: 2.5 -> x(3) = 3; median: 5 (g=0) -> (x5 + x6)/2 = 5.5; Q3: 7.5 -> x(8) = 8
    s = d.summarize(np.arange(1, 11))
    assert (s.q1, s.median, s.q3) == (3.0, 5.5, 8.0)
    # 1..9: Q1: 2.25 -> x(3) = 3; median: 4.5 -> x(5) = 5; Q3: 6.75 -> x(7) = 7
    s = d.summarize(list(range(1, 10)))
    assert (s.q1, s.median, s.q3) == (3.0, 5.0, 7.0)
    # 1..4: Q1: 1 (g=0) -> (x1 + x2)/2 = 1.5; median (x2+x3)/2 = 2.5; Q3: 3 -> (x3+x4)/2 = 3.5
    s = d.summarize([4, 2, 3, 1])
    assert (s.q1, s.median, s.q3) == (1.5, 2.5, 3.5)


def test_sas5_matches_r_type2_and_r7_matches_r_type7():
    x = [2.1, 7.4, 3.3, 9.9, 5.0, 1.2, 6.6, 8.8, 4.4, 3.3, 10.5]
    # R: quantile(x, c(.25,.5,.75), type=2) = 3.3 5 8.8 ; type=7 -> 3.3 5 8.1
    s = d.summarize(x)
    assert (s.q1, s.median, s.q3) == pytest.approx((3.3, 5.0, 8.8), abs=1e-12)
    s7 = d.summarize(x, quantile_method="r7")
    assert (s7.q1, s7.median, s7.q3) == pytest.approx((3.3, 5.0, 8.1), abs=1e-12)


def test_sas5_floating_point_fuzz():
    # 10 * 0.3 is 3.0000000000000004 in binary floating point, but SAS definition 5 with n p = 3
    # exactly gives (x3 + x4)/2 = 3.5 for 1..10; 10 * 0.35 = 3.5 -> x(4) = 4.
    assert d.quantile(np.arange(1, 11), 0.3) == 3.5
    assert d.quantile(np.arange(1, 11), 0.35) == 4.0
    assert d.quantile([5, 1, 3], 0.0) == 1.0
    assert d.quantile([5, 1, 3], 1.0) == 5.0
    with pytest.raises(ValueError):
        d.quantile([1, 2], 1.5)
    with pytest.raises(ValueError):
        d.quantile([1, 2], 0.5, method="r6")  # type: ignore[arg-type]


@FAST
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40),
    st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.9]),
)
def test_quantiles_match_numpy_definitions(values, p):
    # SAS 5 = Hyndman-Fan 2 = numpy "averaged_inverted_cdf"; r7 = numpy "linear" (tol 1e-9 rel)
    assert d.quantile(values, p) == pytest.approx(
        np.quantile(values, p, method="averaged_inverted_cdf"), rel=1e-9, abs=1e-9
    )
    assert d.quantile(values, p, "r7") == pytest.approx(np.quantile(values, p), rel=1e-9, abs=1e-9)


def test_summarize_moments_missing_and_small_n():
    values = pd.Series([3.5, None, 7.25, 1.0, np.nan, 4.0])
    s = d.summarize(values)
    x = np.array([3.5, 7.25, 1.0, 4.0])
    assert (s.n, s.n_missing) == (4, 2)
    assert s.mean == pytest.approx(x.mean(), abs=1e-12)
    assert s.sd == pytest.approx(x.std(ddof=1), abs=1e-12)
    assert (s.min, s.max) == (1.0, 7.25)
    one = d.summarize([2.0, pd.NA])
    assert (one.n, one.mean, one.median, one.q1, one.q3) == (1, 2.0, 2.0, 2.0, 2.0)
    assert math.isnan(one.sd)
    none = d.summarize([np.nan, None])
    assert none.n == 0 and none.n_missing == 2 and math.isnan(none.mean) and math.isnan(none.median)
    assert d.summarize([]).n == 0


def test_inputs_refused():
    with pytest.raises(ValueError, match="infinite"):
        d.summarize([1.0, np.inf])
    with pytest.raises(TypeError):
        d.summarize(["a", "b"])
    with pytest.raises(TypeError):
        d.summarize(3.0)
    with pytest.raises(TypeError, match="booleans"):
        d.summarize(np.array([True, False]))
    with pytest.raises(TypeError):
        d.summarize(np.ones((2, 2)))
    with pytest.raises(ValueError):
        d.summarize([1, 2], quantile_method="sas4")  # type: ignore[arg-type]


def test_results_are_json_serializable():
    res = d.paired_change([30, 35, np.nan, 28], [33, 41, 30, 27])
    text = json.dumps(res.to_dict(nan_as_none=True), allow_nan=False)
    back = json.loads(text)
    assert back["n"] == 3 and back["change"]["n"] == 3
    assert isinstance(back["baseline"]["mean"], float)
    small = d.paired_change([1.0], [2.0]).to_dict(nan_as_none=True)
    assert small["lower"] is None and small["t_statistic"] is None


# ------------------------------------------------------------------------------------------
# mean CI
# ------------------------------------------------------------------------------------------


def test_mean_ci_matches_scipy():
    x = np.array([4.1, 5.3, 2.2, 6.8, 5.0, 3.9, 4.4])
    r = d.mean_ci(x, conf=0.9)
    ref = stats.ttest_1samp(x, 0.0).confidence_interval(confidence_level=0.9)
    assert (r.lower, r.upper) == pytest.approx((ref.low, ref.high), abs=1e-10)
    assert r.se == pytest.approx(stats.sem(x), abs=1e-12)
    assert (r.n, r.df) == (7, 6.0)


def test_mean_ci_small_n():
    r = d.mean_ci([5.0, np.nan])
    assert r.n == 1 and r.mean == 5.0
    assert all(math.isnan(v) for v in (r.sd, r.se, r.df, r.lower, r.upper))
    assert d.mean_ci([]).n == 0 and math.isnan(d.mean_ci([]).mean)


# ------------------------------------------------------------------------------------------
# Wilcoxon signed-rank
# ------------------------------------------------------------------------------------------

# Hollander & Wolfe (1973) p. 29 depression data, used in R's ?wilcox.test example
HW_X = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
HW_Y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]


def test_wilcoxon_exact_published_example():
    # d = x - y = 0.952, -0.147, 1.022, 0.43, 0.62, 0.59, 0.49, -0.08, 0.01
    # ranks of |d|: 0.01->1, 0.08->2, 0.147->3, 0.43->4, 0.49->5, 0.59->6, 0.62->7, 0.952->8, 1.022->9
    # negative ranks 2 + 3 = 5, so V = 45 - 5 = 40 (R: V = 40).
    # P(V >= 40) = P(V- <= 5) = #subsets of {1..9} with sum <= 5 / 2^9
    #            = (1 + 1 + 1 + 2 + 2 + 3) / 512 = 10/512 = 0.01953 (R, alternative = "greater")
    # two-sided p = 20/512 = 0.0390625
    diffs = np.subtract(HW_X, HW_Y)
    w = d.wilcoxon_signed_rank(diffs)
    assert w.method == "exact"
    assert w.statistic == 40.0
    assert w.p_value == pytest.approx(20 / 512, abs=1e-12)
    ref = stats.wilcoxon(HW_X, HW_Y, method="exact")
    assert w.p_value == pytest.approx(ref.pvalue, abs=1e-10)


# An LVEF-like example with ties and zeros (R: wilcox.test(FU, BASE, paired = TRUE))
BASE = [30, 32, 28, 35, 25, 33, 29, 31, 27, 30, 26, 34, 40, 22]
FU = [35, 32, 33, 38, 30, 31, 34, 31, 30, 36, 33, 37, 39, 30]


def test_wilcoxon_ties_and_zeros_hand_and_r():
    # changes: 5 0 5 3 5 -2 5 0 3 6 7 3 -1 8 ; two zeros dropped -> n = 12
    # |d| sorted: 1(r1) 2(r2) 3,3,3 (r 3-5 -> 4) 5,5,5,5 (r 6-9 -> 7.5) 6(r10) 7(r11) 8(r12)
    # negatives: -1 (rank 1), -2 (rank 2) -> V- = 3, V = 78 - 3 = 75       (R: V = 75)
    # E V = 12*13/4 = 39; Var V = 12*13*25/24 - ((3^3-3) + (4^3-4))/48 = 162.5 - 1.75 = 160.75
    # z = (75 - 39 - 0.5)/sqrt(160.75) = 35.5/12.67872 = 2.79997 -> p = 0.00511078826814373 (R)
    # without continuity correction z = 36/12.67872 -> p = 0.00451980593351939 (R, correct=FALSE)
    diffs = np.subtract(FU, BASE)
    w = d.wilcoxon_signed_rank(diffs)
    assert (w.n, w.n_nonzero, w.n_zero, w.has_ties) == (14, 12, 2, True)
    assert w.statistic == 75.0
    assert w.z == pytest.approx(35.5 / math.sqrt(160.75), abs=1e-12)
    assert w.p_value == pytest.approx(0.00511078826814373, abs=1e-9)
    assert w.method.startswith("normal approximation")
    w_nc = d.wilcoxon_signed_rank(diffs, correction=False)
    assert w_nc.p_value == pytest.approx(0.00451980593351939, abs=1e-9)
    # scipy with zero_method="wilcox", method="asymptotic" gives the same numbers (tol 1e-10)
    for corr, ours in ((True, w), (False, w_nc)):
        ref = stats.wilcoxon(FU, BASE, zero_method="wilcox", correction=corr, method="asymptotic")
        assert ours.p_value == pytest.approx(ref.pvalue, abs=1e-10)


@FAST
@given(st.lists(st.integers(-6, 6), min_size=2, max_size=60))
def test_wilcoxon_normal_branch_matches_scipy_asymptotic(diffs):
    if not any(diffs):
        return
    w = d.wilcoxon_signed_rank(diffs, method="normal")
    ref = stats.wilcoxon(diffs, zero_method="wilcox", correction=True, method="asymptotic")
    assert w.p_value == pytest.approx(ref.pvalue, abs=1e-10)


@FAST
@given(st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=30, unique=True))
def test_wilcoxon_exact_branch_matches_scipy_exact(diffs):
    diffs = [x for x in diffs if round(abs(x), 9) != 0]
    rounded = np.abs(np.round(diffs, 9))
    if not diffs or len(set(rounded)) != len(rounded):
        return  # exact branch needs no ties and no zeros
    w = d.wilcoxon_signed_rank(diffs)
    assert w.method == "exact"
    ref = stats.wilcoxon(diffs, method="exact")
    assert w.p_value == pytest.approx(ref.pvalue, abs=1e-10)


def test_wilcoxon_switches_at_fifty_and_edge_cases():
    rng = np.random.default_rng(3)
    x49 = rng.normal(0.3, 1, 49)
    x50 = rng.normal(0.3, 1, 50)
    assert d.wilcoxon_signed_rank(x49).method == "exact"
    assert d.wilcoxon_signed_rank(x50).method.startswith("normal")
    allzero = d.wilcoxon_signed_rank([0.0, 0.0, np.nan])
    assert allzero.n_nonzero == 0 and math.isnan(allzero.p_value)
    with pytest.raises(ValueError, match="ties or zeros"):
        d.wilcoxon_signed_rank([1, 1, 2], method="exact")
    # single non-zero difference: V = 1, P(V >= 1) = P(V <= 1) = 1 -> p = 1
    assert d.wilcoxon_signed_rank([2.5]).p_value == 1.0


def test_wilcoxon_floating_point_ties_are_ties():
    # 45.3 - 40.1 = 5.199999999999996 and 55.2 - 50.0 = 5.200000000000003 in binary arithmetic, but
    # they are the same measured change (5.2): they must be a tie (so the normal approximation is used).
    diffs = [45.3 - 40.1, 55.2 - 50.0, 1.0, -0.5, 2.0]
    assert diffs[0] != diffs[1]
    w = d.wilcoxon_signed_rank(diffs)
    assert w.has_ties and w.method.startswith("normal")


# ------------------------------------------------------------------------------------------
# paired change
# ------------------------------------------------------------------------------------------


def test_paired_change_matches_r_and_scipy():
    # R: t.test(FU, BASE, paired = TRUE): t = 4.08013924172743, df = 13, p = 0.0013006760611135,
    #    95% CI 1.57958925562195 5.13469645866377, mean difference 3.35714285714286
    r = d.paired_change(BASE, FU)
    assert (r.n, r.n_excluded) == (14, 0)
    assert r.mean_change == pytest.approx(3.35714285714286, abs=1e-9)
    assert r.t_statistic == pytest.approx(4.08013924172743, abs=1e-9)
    assert r.df == 13.0
    assert r.p_value_t == pytest.approx(0.0013006760611135, abs=1e-9)
    assert (r.lower, r.upper) == pytest.approx((1.57958925562195, 5.13469645866377), abs=1e-9)
    ref = stats.ttest_rel(FU, BASE)
    assert r.t_statistic == pytest.approx(ref.statistic, abs=1e-10)
    assert r.p_value_t == pytest.approx(ref.pvalue, abs=1e-10)
    assert r.p_value_wilcoxon == pytest.approx(0.00511078826814373, abs=1e-9)
    assert r.wilcoxon_statistic == 75.0 and r.n_zero_changes == 2
    assert r.baseline.mean == pytest.approx(np.mean(BASE), abs=1e-12)
    # sorted FU: 30 30 30 31 31 32 33 33 34 35 36 37 38 39; 14 * 0.5 = 7 -> (x7 + x8)/2 = 33
    # 14 * 0.25 = 3.5 -> Q1 = x4 = 31; 14 * 0.75 = 10.5 -> Q3 = x11 = 36
    assert (r.follow_up.q1, r.follow_up.median, r.follow_up.q3) == (31.0, 33.0, 36.0)
    assert r.change.mean == pytest.approx(r.mean_change, abs=1e-12)


def test_paired_change_pairwise_missing():
    base = pd.Series([30.0, np.nan, 28.0, 35.0, 25.0, 33.0])
    fu = pd.Series([35.0, 31.0, np.nan, 38.0, 30.0, 31.0])
    r = d.paired_change(base, fu)
    assert (r.n, r.n_excluded) == (4, 2)
    ref = stats.ttest_rel([35, 38, 30, 31], [30, 35, 25, 33])
    assert r.p_value_t == pytest.approx(ref.pvalue, abs=1e-10)
    assert r.baseline.n == 4 and r.baseline.n_missing == 0
    with pytest.raises(ValueError, match="length"):
        d.paired_change([1, 2], [1, 2, 3])


def test_paired_change_small_n_is_graceful():
    zero = d.paired_change([np.nan, 1.0], [2.0, np.nan])
    assert zero.n == 0 and zero.n_excluded == 2
    assert all(math.isnan(v) for v in (zero.mean_change, zero.lower, zero.p_value_t, zero.p_value_wilcoxon))
    one = d.paired_change([1.0], [3.0])
    assert one.n == 1 and one.mean_change == 2.0
    assert all(math.isnan(v) for v in (one.se_change, one.lower, one.upper, one.t_statistic, one.p_value_t))
    const = d.paired_change([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])  # sd of changes = 0
    assert const.mean_change == 1.0 and const.lower == const.upper == 1.0
    assert math.isnan(const.t_statistic) and math.isnan(const.p_value_t)


# ------------------------------------------------------------------------------------------
# geometric mean ratio
# ------------------------------------------------------------------------------------------


def test_geometric_mean_ratio_matches_r():
    # R: g <- t.test(log(FU), log(BASE), paired = TRUE)
    #    exp(g$estimate) = 1.11907588015825; exp(g$conf.int) = 1.05222709184201 1.19017162289526
    #    g$statistic = 3.94595843640654; g$p.value = 0.00167426411065778
    r = d.geometric_mean_ratio(BASE, FU)
    assert r.gmr == pytest.approx(1.11907588015825, abs=1e-9)
    assert (r.lower, r.upper) == pytest.approx((1.05222709184201, 1.19017162289526), abs=1e-9)
    assert r.t_statistic == pytest.approx(3.94595843640654, abs=1e-9)
    assert r.p_value == pytest.approx(0.00167426411065778, abs=1e-9)
    assert r.percent_change == pytest.approx(100 * (r.gmr - 1), abs=1e-12)
    assert r.percent_change_lower == pytest.approx(100 * (r.lower - 1), abs=1e-12)
    # GMR = GM(follow-up) / GM(baseline) over the same pairs
    gm = lambda v: float(np.exp(np.mean(np.log(v))))
    assert r.geometric_mean_baseline == pytest.approx(gm(BASE), rel=1e-12)
    assert r.gmr == pytest.approx(gm(FU) / gm(BASE), rel=1e-12)
    ref = stats.ttest_rel(np.log(FU), np.log(BASE))
    assert r.p_value == pytest.approx(ref.pvalue, abs=1e-10)


def test_geometric_mean_ratio_hand_example():
    # base (1, 2, 4), follow-up (2, 4, 16): ratios 2, 2, 4, log ratios ln2 * (1, 1, 2).
    # mean log ratio = (4/3) ln2 -> GMR = 2^(4/3) = 2.5198421; GM base = 2, GM fu = 128^(1/3).
    # sd = ln2 * sd(1, 1, 2) = ln2 / sqrt(3); se = ln2 / 3; t = (4/3)/(1/3) = 4 with df = 2.
    # t(2) cdf: F(t) = 1/2 + t / (2 sqrt(2 + t^2)) -> p = 2 (1 - F(4)) = 1 - 4/sqrt(18) = 0.0571910
    # CI: 2^(4/3 -/+ t(0.975; 2)/3), t(0.975; 2) = 4.302653 (printed t table, 1e-4 below)
    r = d.geometric_mean_ratio([1, 2, 4], [2, 4, 16])
    assert r.geometric_mean_baseline == pytest.approx(2.0, abs=1e-12)
    assert r.geometric_mean_follow_up == pytest.approx(128 ** (1 / 3), abs=1e-12)
    assert r.gmr == pytest.approx(2 ** (4 / 3), abs=1e-12)
    assert r.percent_change == pytest.approx(100 * (2 ** (4 / 3) - 1), abs=1e-9)
    assert (r.t_statistic, r.df) == (pytest.approx(4.0, abs=1e-12), 2.0)
    assert r.p_value == pytest.approx(1 - 4 / math.sqrt(18), abs=1e-12)
    assert r.lower == pytest.approx(2 ** (4 / 3 - 4.302653 / 3), abs=1e-4)
    assert r.upper == pytest.approx(2 ** (4 / 3 + 4.302653 / 3), abs=1e-4)


def test_geometric_mean_ratio_refuses_non_positive():
    with pytest.raises(ValueError, match=r"baseline.*-3\.0"):
        d.geometric_mean_ratio([1.0, 2.0, -3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"follow_up.*0\.0.*'s2'"):
        d.geometric_mean_ratio(
            pd.Series([1.0, 2.0], index=["s1", "s2"]), pd.Series([1.0, 0.0], index=["s1", "s2"])
        )
    r = d.geometric_mean_ratio([1.0, np.nan, 2.0], [2.0, 5.0, np.nan])
    assert r.n == 1 and r.n_excluded == 2 and r.gmr == pytest.approx(2.0) and math.isnan(r.lower)


# ------------------------------------------------------------------------------------------
# shift table and ordinal change
# ------------------------------------------------------------------------------------------


def test_shift_table_counts():
    before = [3, 3, 2, 4, 3, 2, np.nan, 1.0]
    after = [2, 2, 2, 3, 1, 3, 1, None]
    t = d.shift_table(before, after, [1, 2, 3, 4])
    assert list(t.index) == [1, 2, 3, 4, "Missing"] and list(t.columns) == [1, 2, 3, 4, "Missing"]
    assert (t.index.name, t.columns.name) == ("before", "after")
    # hand tally: (3->2) x2, (2->2), (4->3), (3->1), (2->3), (missing->1), (1->missing)
    expected = {(3, 2): 2, (2, 2): 1, (4, 3): 1, (3, 1): 1, (2, 3): 1, ("Missing", 1): 1, (1, "Missing"): 1}
    for r in t.index:
        for c in t.columns:
            assert t.loc[r, c] == expected.get((r, c), 0), (r, c)
    assert int(t.to_numpy().sum()) == 8
    dropped = d.shift_table(before, after, [1, 2, 3, 4], include_missing=False)
    assert "Missing" not in dropped.index and int(dropped.to_numpy().sum()) == 6
    m = d.shift_table(before, after, [1, 2, 3, 4], margins=True)
    assert m.loc["Total", "Total"] == 8 and m.loc[3, "Total"] == 3 and m.loc["Total", 2] == 3


def test_shift_table_labels_and_errors():
    t = d.shift_table(pd.Series(["II", "III"]), pd.Series(["I", "III"]), ["I", "II", "III", "IV"])
    assert t.loc["II", "I"] == 1 and t.loc["III", "III"] == 1
    with pytest.raises(ValueError, match="'V'"):
        d.shift_table(["I", "V"], ["I", "I"], ["I", "II", "III", "IV"])
    with pytest.raises(ValueError, match="length"):
        d.shift_table([1], [1, 2], [1, 2])
    with pytest.raises(ValueError):
        d.shift_table([1], [1], [1, 1])


# NYHA class before and after (1 = I ... 4 = IV)
NYHA_BEFORE = [3, 3, 2, 4, 3, 2, 3, 3, 2, 3, 4, 2, 3, 3, 2, 3]
NYHA_AFTER = [2, 2, 2, 3, 1, 3, 2, 2, 2, 2, 2, 1, 3, 2, 2, 1]


def test_ordinal_change_hand_and_r():
    # after - before: -1 -1 0 -1 -2 +1 -1 -1 0 -1 -2 -1 0 -1 0 -2
    # improved 11, unchanged 4, worsened 1.
    # sign test: 1 of 12 changed subjects worsened: p = 2 (C(12,0) + C(12,1)) / 2^12 = 26/4096
    #   = 0.00634765625 (R: binom.test(11, 12)$p.value)
    # Wilcoxon: 12 non-zero; |d| = 1 (nine times, ranks 1-9 -> 5), 2 (three times, ranks 10-12 -> 11)
    #   V = rank of the one positive difference = 5; E V = 39;
    #   Var V = 162.5 - ((9^3 - 9) + (3^3 - 3))/48 = 162.5 - 15.5 = 147
    #   z = (5 - 39 + 0.5)/sqrt(147) = -2.763027; p = 0.00572669005916164
    #   (R: wilcox.test(AFTER, BEFORE, paired = TRUE, exact = FALSE): V = 5, same p)
    r = d.ordinal_change(NYHA_BEFORE, NYHA_AFTER)
    assert (r.n, r.n_improved, r.n_unchanged, r.n_worsened) == (16, 11, 4, 1)
    assert r.sign_test_n == 12
    assert r.sign_test_p == pytest.approx(26 / 4096, abs=1e-12)
    assert r.wilcoxon_statistic == 5.0
    assert r.wilcoxon_z == pytest.approx(-33.5 / math.sqrt(147), abs=1e-12)
    assert r.wilcoxon_p == pytest.approx(0.00572669005916164, abs=1e-9)
    assert r.percent_improved == pytest.approx(100 * 11 / 16, abs=1e-12)
    assert (r.improved_lower, r.improved_upper) == d.clopper_pearson(11, 16)
    ref = stats.binomtest(11, 12, 0.5).pvalue
    assert r.sign_test_p == pytest.approx(ref, abs=1e-10)


def test_ordinal_change_direction_missing_and_errors():
    r = d.ordinal_change(NYHA_BEFORE + [np.nan], NYHA_AFTER + [2], lower_is_better=False)
    assert r.n_excluded == 1 and (r.n_improved, r.n_worsened) == (1, 11)
    assert r.sign_test_p == pytest.approx(26 / 4096, abs=1e-12)
    with pytest.raises(ValueError, match="non-integer"):
        d.ordinal_change([1, 2.5], [1, 2])
    empty = d.ordinal_change([np.nan], [1])
    assert empty.n == 0 and math.isnan(empty.sign_test_p) and math.isnan(empty.percent_improved)
