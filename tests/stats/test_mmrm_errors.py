"""Formula parsing, data problems, warnings and errors of the MMRM engine."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from test_mmrm_properties import simulate

from regenheart.stats.mmrm import MMRMError, MMRMWarning, fit_ancova, fit_mmrm, parse_formula

F = "Y ~ ARM*AVISIT + us(AVISIT | USUBJID)"


def fit_quiet(data, formula=F, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MMRMWarning)
        return fit_mmrm(data, formula, **kw)


@pytest.fixture(scope="module")
def data():
    d = simulate(seed=11, p_miss=0.1)
    # make sure every subject has data so that no "excluded subject" warning interferes
    d.loc[d["AVISIT"] == "W0", "Y"] = d.loc[d["AVISIT"] == "W0", "Y"].fillna(15.0)
    return d


# ---------------------------------------------------------------------------------------------
# formula parser


def test_parse_formula_terms_and_order():
    p = parse_formula("FEV1 ~ RACE + SEX + ARMCD*AVISIT + us(AVISIT | USUBJID)")
    assert p.response == "FEV1"
    assert p.terms == (("RACE",), ("SEX",), ("ARMCD",), ("AVISIT",), ("ARMCD", "AVISIT"))
    assert p.intercept and (p.structure, p.visit, p.subject) == ("us", "AVISIT", "USUBJID")
    p = parse_formula("y ~ a*b*c + ar1(v|id)")
    assert p.terms == (("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c"))
    p = parse_formula("y ~ (a + b)*c - b:c + toeph(v|id)")
    assert p.terms == (("a",), ("b",), ("c",), ("a", "c"))
    assert not parse_formula("y ~ x - 1 + cs(v|id)").intercept
    assert not parse_formula("y ~ 0 + x").intercept
    assert parse_formula("y ~ `my var`:b").terms == (("my var", "b"),)
    assert parse_formula("y ~ b:a + a").terms == (("a",), ("b", "a"))  # R: variables by first appearance


@pytest.mark.parametrize(
    "formula,match",
    [
        ("y ~ log(x) + us(v|id)", "function call log"),
        ("y ~ x + foo(v|id)", "function call foo"),
        ("y ~ x + us(v)", "VISIT | SUBJECT"),
        ("y ~ x + us(v | g / id)", "group-specific"),
        ("y ~ x + us(v|id) + cs(v|id)", "more than one covariance"),
        ("y ~ y + us(v|id)", "response"),
        ("y ~ id + us(v|id)", "subject variable"),
        ("y x", "response ~ terms"),
        ("y ~ x +", "unexpected"),
        ("y ~ 2 + x", "numeric term"),
        ("y ~ x $ z", "cannot read"),
    ],
)
def test_parse_errors(formula, match):
    with pytest.raises(MMRMError, match=match):
        parse_formula(formula)


def test_mmrm_error_is_value_error():
    assert issubclass(MMRMError, ValueError)
    assert issubclass(MMRMWarning, UserWarning)


# ---------------------------------------------------------------------------------------------
# data problems that are errors


def test_duplicate_visit_is_an_error(data):
    with pytest.raises(MMRMError, match="more than one row at visit"):
        fit_quiet(pd.concat([data, data.iloc[[5]]]))


@pytest.mark.parametrize(
    "mutate,formula,match",
    [
        (lambda d: d, "Y ~ NOPE + us(AVISIT|USUBJID)", "not in the data: 'NOPE'"),
        (lambda d: d, "Y ~ ARM", "no covariance term"),
        (lambda d: d, "Y ~ ARM + ar1(AVISIT|USUBJID)", None),  # fine
        (lambda d: d.assign(Y=d["Y"].astype(str)), F, "must be numeric"),
        (lambda d: d.assign(Y=d["Y"].replace(d["Y"].iloc[0], np.inf)), F, "infinite"),
        (lambda d: d[d["ARM"] == "PBO"], F, "fewer than two levels"),
        (lambda d: d[d["AVISIT"] == "W0"], "Y ~ ARM + ar1(AVISIT|USUBJID)", "at least two time points"),
        (
            lambda d: d.iloc[:8],
            "Y ~ AVISIT*BASE + us(AVISIT|USUBJID)",
            "fixed effects but only|residual variance is zero",
        ),
    ],
)
def test_data_errors(data, mutate, formula, match):
    if match is None:
        fit_quiet(mutate(data), formula)
        return
    with pytest.raises(MMRMError, match=match):
        fit_quiet(mutate(data), formula)


def test_bad_options(data):
    with pytest.raises(MMRMError, match="unknown df method"):
        fit_mmrm(data, F, df="containment")
    with pytest.raises(MMRMError, match="unknown method"):
        fit_mmrm(data, F, method="mom")
    with pytest.raises(MMRMError, match="without a covariance term"):
        fit_ancova(data, F)
    with pytest.raises(MMRMError, match="DataFrame"):
        fit_mmrm(data.to_dict(), F)


def test_single_observation_visit_is_reported(data):
    d = data.copy()
    at3 = d.index[(d["AVISIT"] == "W3") & d["Y"].notna()]
    d.loc[at3[1:], "Y"] = np.nan
    with pytest.warns(MMRMWarning) as rec, pytest.raises(MMRMError, match="visit\\(s\\) 'W3'"):
        fit_mmrm(d, F)
    assert any("visit 'W3' has only 1 observation" in str(w.message) for w in rec)


# ---------------------------------------------------------------------------------------------
# data problems that are warnings (and counted)


def test_missing_covariates_are_dropped_and_counted(data):
    d = data.copy()
    rows = d.index[d["Y"].notna()][[3, 7]]
    d.loc[rows[0], "ARM"] = np.nan
    d.loc[rows[1], "BASE"] = np.nan
    with pytest.warns(MMRMWarning, match="2 row\\(s\\) with a non-missing response were dropped.*BASE, ARM"):
        fit = fit_mmrm(d, "Y ~ BASE + ARM*AVISIT + us(AVISIT | USUBJID)")
    assert fit.n_dropped_covariates == 2
    assert fit.n_dropped_response == int(data["Y"].isna().sum())
    assert fit.n_observations == int(data["Y"].notna().sum()) - 2
    assert "for missing covariates: 2" in fit.summary()


def test_subject_without_data_is_reported(data):
    d = data.copy()
    d.loc[d["USUBJID"] == "P004", "Y"] = np.nan
    with pytest.warns(MMRMWarning, match="1 subject\\(s\\) have no usable observation.*P004"):
        fit = fit_mmrm(d, F)
    assert fit.excluded_subjects == ["P004"]
    assert fit.n_subjects == d["USUBJID"].nunique() - 1
    assert fit.n_subjects_bic == d["USUBJID"].nunique()  # SAS counts it in BIC's n


def test_empty_factor_level_is_removed_with_warning(data):
    d = data.copy()
    d["ARM"] = d["ARM"].cat.add_categories(["HIGH"])
    with pytest.warns(MMRMWarning, match="factor 'ARM': level\\(s\\) 'HIGH' have no usable observation"):
        fit = fit_mmrm(d, F)
    ref = fit_quiet(data)
    assert fit.neg2loglik == pytest.approx(ref.neg2loglik, rel=1e-12)
    d["ARM"] = d["ARM"].cat.reorder_categories(["HIGH", "PBO", "TRT"])
    with pytest.warns(MMRMWarning, match="reference level is now 'PBO'"):
        fit_mmrm(d, F)


def test_empty_visit_level_is_removed(data):
    d = data.copy()
    d["AVISIT"] = d["AVISIT"].cat.add_categories(["W9"])
    with pytest.warns(MMRMWarning, match="'W9' have no usable observation"):
        fit = fit_mmrm(d, F)
    assert list(fit.covariance.index) == ["W0", "W1", "W2", "W3"]


def test_rank_deficient_design(data):
    d = data.copy()
    d.loc[(d["AVISIT"] == "W2") & (d["ARM"] == "TRT"), "Y"] = np.nan
    with pytest.warns(MMRMWarning, match="rank deficient.*'ARMTRT:AVISITW2'"):
        fit = fit_mmrm(d, F)
    co = fit.coefficients
    assert np.isnan(co.loc["ARMTRT:AVISITW2"]).all()
    assert co.drop("ARMTRT:AVISITW2").notna().all().all()
    with pytest.warns(MMRMWarning, match="1 LS mean"):
        lsm = fit.lsmeans("ARM", by="AVISIT")
    empty = (lsm["AVISIT"] == "W2") & (lsm["ARM"] == "TRT")
    assert lsm.loc[empty, "estimate"].isna().all()
    assert lsm.loc[~empty, "estimate"].notna().all()
    with pytest.warns(MMRMWarning):
        t3 = fit.type3()
    assert t3.loc["ARM:AVISIT", "num_df"] == 2  # only the estimable interaction contrasts
    assert t3.loc["ARM", "num_df"] == 0 and np.isnan(t3.loc["ARM", "f_value"])
    with pytest.raises(MMRMError, match="aliased"):
        fit.contrast(np.eye(len(co))[list(co.index).index("ARMTRT:AVISITW2")])


def test_never_jointly_observed_visits(data):
    d = data.copy()
    ids = d["USUBJID"].unique()
    first = d["USUBJID"].isin(ids[: len(ids) // 2])
    d.loc[first & (d["AVISIT"] == "W3"), "Y"] = np.nan
    d.loc[~first & (d["AVISIT"] == "W2"), "Y"] = np.nan
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fit = fit_mmrm(d, F)
    messages = " | ".join(str(w.message) for w in rec if issubclass(w.category, MMRMWarning))
    assert "'W2'-'W3' are never observed in the same subject" in messages
    assert not fit.converged
    assert "did not converge" in messages
    assert "Convergence: NO" in fit.summary()


def test_clean_fit_has_no_warnings(data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_mmrm(data, F)
        fit.type3()
        fit.lsmeans("ARM", by="AVISIT")
    assert fit.converged
