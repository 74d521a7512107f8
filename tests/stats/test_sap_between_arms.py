"""Between-arm analyses of a randomized protocol version, each number against an independent reference:

- Newcombe (1998) Stat Med 17:873, Table II, method 10: the eight worked examples (4 decimals).
- Wilson score limits against statsmodels ``proportion_confint(method="wilson")``.
- The exact unconditional risk-difference interval by its defining property: coverage of at least
  the nominal level for every (p1, p2), computed exactly over all outcomes.
- Wilcoxon-Mann-Whitney against R's documented example and a hand normal approximation with ties.
- The MMRM treatment difference run from a plan against SAS PROC MIXED on fev_data
  (/work/shared/oracles/mmrm_sas_reference.md, model 1) and, on complete data with a saturated
  visit model, against statsmodels OLS per visit (ANCOVA).
- A whole two-arm SAP run on synthetic ADSL/ADEFF/ADPSE: allocation by stratum, flow and baseline
  by arm counted by hand, risk difference = Newcombe of the counts, NYHA Mann-Whitney = scipy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
import yaml
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from regenheart.derive.adam import AnalysisDatasets
from regenheart.protocol import load_protocol, parse_protocol
from regenheart.stats import analysis, sap
from regenheart.stats.two_sample import exact_unconditional_ci, mann_whitney, newcombe_ci, risk_difference, wilson_ci

ORACLES = Path(__file__).resolve().parents[2].parent / "shared" / "oracles"  # conftest.SHARED / "oracles"

NEWCOMBE_1998_METHOD_10 = [  # (x1, n1, x2, n2) -> (lower, upper), Table II
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize("counts, expected", NEWCOMBE_1998_METHOD_10)
def test_newcombe_method_10_worked_examples(counts, expected):
    lower, upper = newcombe_ci(*counts)
    assert lower == pytest.approx(expected[0], abs=5e-5)
    assert upper == pytest.approx(expected[1], abs=5e-5)


@pytest.mark.parametrize("x, n", [(0, 10), (3, 10), (10, 10), (56, 70), (1, 29)])
def test_wilson_limits_match_statsmodels(x, n):
    lower, upper = proportion_confint(x, n, alpha=0.05, method="wilson")
    assert wilson_ci(x, n) == pytest.approx((lower, upper), abs=1e-12)


def test_exact_unconditional_interval_has_at_least_nominal_coverage():
    """Exact coverage P(L <= p1 - p2 <= U) summed over all 7 x 7 outcomes of two arms of 6."""
    n1 = n2 = 6
    limits = {(a, b): exact_unconditional_ci(a, n1, b, n2, grid=401, tol=1e-6)
              for a in range(n1 + 1) for b in range(n2 + 1)}
    worst = 1.0
    for p1 in np.linspace(0.02, 0.98, 9):
        for p2 in np.linspace(0.02, 0.98, 9):
            coverage = sum(stats.binom.pmf(a, n1, p1) * stats.binom.pmf(b, n2, p2)
                           for (a, b), (lo, hi) in limits.items() if lo - 1e-9 <= p1 - p2 <= hi + 1e-9)
            worst = min(worst, coverage)
    assert worst >= 0.95 - 1e-3  # nominal up to the nuisance-grid resolution
    newcombe = newcombe_ci(2, 6, 1, 6)
    exact = limits[(2, 1)]
    assert exact[0] <= 2 / 6 - 1 / 6 <= exact[1]
    assert exact[1] - exact[0] >= newcombe[1] - newcombe[0]  # exact intervals are the conservative ones


def test_risk_difference_record():
    rd = risk_difference(3, 30, 8, 30, methods=["newcombe"])
    assert rd.estimate == pytest.approx(-5 / 30, abs=1e-15)
    assert (rd.newcombe_lower, rd.newcombe_upper) == newcombe_ci(3, 30, 8, 30)
    assert rd.exact_lower is None
    with pytest.raises(ValueError, match="unknown"):
        risk_difference(1, 2, 1, 2, methods=["wald"])


def test_mann_whitney_r_documentation_example():
    """R ?wilcox.test: x (patients) vs y (controls): W = 35; one-sided p 0.1272, so two-sided 0.2544."""
    x = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
    y = [1.15, 0.88, 0.90, 0.74, 1.21]
    res = mann_whitney(x, y)
    assert res.u_statistic == 35.0 and res.method == "exact"
    assert res.p_value == pytest.approx(0.2544, abs=5e-5)
    assert res.p_value == pytest.approx(stats.mannwhitneyu(x, y, method="exact").pvalue, rel=1e-12)


def test_mann_whitney_with_ties_is_the_corrected_normal_approximation():
    x = np.array([-1, -1, 0, -2, 0, -1, 0, -1], float)  # NYHA-like class changes, many ties
    y = np.array([0, 0, 1, -1, 0, 0, 1, 0, -1], float)
    res = mann_whitney(x, y)
    n1, n2 = len(x), len(y)
    ranks = stats.rankdata(np.concatenate([x, y]))
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    _, counts = np.unique(np.concatenate([x, y]), return_counts=True)
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - (counts**3 - counts).sum() / (n * (n - 1))))
    z = (abs(u - n1 * n2 / 2) - 0.5) / sigma
    assert res.u_statistic == u
    assert res.p_value == pytest.approx(2 * stats.norm.sf(z), rel=1e-12)
    assert "continuity" in res.method


# ------------------------------------------------------------------ MMRM treatment difference from a plan
FEV_PROTOCOL = """
schema_version: 1
study: {nct_id: null, acronym: FEV, brief_title: fev_data of the mmrm package, sites: [{code: "01", name: One}]}
protocol_versions:
  - version: "1"
    date: 2020-01-01
    design: randomized
    allocation: randomized 1:1
    planned_enrollment: 200
    arms:
      - {code: PBO, label: Placebo, description: Placebo, receives_cells: false}
      - {code: TRT, label: Treatment, description: Treatment, receives_cells: true}
    randomization: {method: permuted_blocks, ratio: {PBO: 1, TRT: 1}, block_sizes: [2], slots_per_stratum: 200,
                    unblinded_roles: [statistician]}
    summary: The SAS reference of the R mmrm package.
active_protocol_version: "1"
codelists: {ae_category: [{code: X, decode: Unused}]}
forms:
  lung: {label: Lung function, fields: [{name: fev1, label: FEV1, type: float, unit: L}]}
visits:
  - {code: BL, label: Baseline, day: -1, window: [-10, -1], baseline: true, forms: [lung]}
  - {code: VIS1, label: VIS1, day: 30, window: [20, 40], forms: [lung]}
  - {code: VIS2, label: VIS2, day: 60, window: [50, 70], forms: [lung]}
  - {code: VIS3, label: VIS3, day: 90, window: [80, 100], forms: [lung]}
  - {code: VIS4, label: VIS4, day: 120, window: [110, 130], forms: [lung]}
endpoints:
  primary: {code: NONE, label: None, window_days: [0, 1], definition: n/a, ae_categories: [X], min_ctcae_grade: 3,
            timi_after_max: 2, fever_threshold_c: 38}
  secondary:
    visits: [VIS1, VIS2, VIS3, VIS4]
    parameters: [{paramcd: FEV1, label: FEV1, unit: L, source: lung.fev1, direction: higher_better}]
  exploratory:
    visits: [VIS4]
    parameters: [{paramcd: FEV1X, label: FEV1 copy, unit: L, source: lung.fev1, direction: higher_better}]
sap:
  populations: [{name: efficacy, label: All randomized, flag: EFFFL, definition: Every randomized subject.}]
  flow: {population: efficacy}
  adverse_events_population: null
  mmrm: {response: AVAL, terms: [RACE, SEX, AVISIT], covariance: us, method: REML, df: satterthwaite}
  endpoints:
    - {paramcd: FEV1, group: secondary, visits: [VIS1, VIS2, VIS3, VIS4], analyses: [mmrm]}
  between_arms:
    reference_arm: PBO
    mmrm: {response: AVAL, terms: [RACE, SEX, "ARMCD*AVISIT"], covariance: us, method: REML, df: satterthwaite}
"""

# SAS PROC MIXED, lsmeans AVISIT*ARMCD / pdiff cl: TRT - PBO (estimate, SE, df, p, lower, upper)
SAS_DIFFERENCES = {
    "VIS1": ("3.7745", "1.0741", 146, 0.0006, "1.6517", "5.8974"),
    "VIS2": ("3.7322", "0.8588", 145, None, "2.0348", "5.4296"),
    "VIS3": ("3.0806", "0.6896", 131, None, "1.7164", "4.4448"),
    "VIS4": ("4.3985", "1.6805", 133, 0.0099, "1.0746", "7.7225"),
}
SAS_LSMEANS = {("VIS1", "PBO"): "33.3318", ("VIS1", "TRT"): "37.1063", ("VIS4", "PBO"): "48.3855",
               ("VIS4", "TRT"): "52.7841"}


def _tol(printed: str) -> float:
    """Half a unit of the last printed digit plus 3e-4 (the mmrm package's tolerance against SAS)."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return 0.5 * 10.0**-decimals + 3e-4


def test_plan_mmrm_treatment_difference_matches_sas():
    protocol = parse_protocol(yaml.safe_load(FEV_PROTOCOL), "fev.yaml")
    fev = pd.read_csv(ORACLES / "fev_data.csv")
    subjects = fev.drop_duplicates("USUBJID")
    adsl = pd.DataFrame({"SUBJID": subjects["USUBJID"], "USUBJID": subjects["USUBJID"], "EFFFL": "Y",
                         "ARMCD": subjects["ARMCD"], "RACE": subjects["RACE"], "SEX": subjects["SEX"]})
    adeff = pd.DataFrame({"SUBJID": fev["USUBJID"], "USUBJID": fev["USUBJID"], "PARAMCD": "FEV1",
                          "AVISIT": fev["AVISIT"], "AVAL": fev["FEV1"], "BASE": 0.0, "ANL01FL": "Y"})
    data = AnalysisDatasets(adsl, adeff, pd.DataFrame(), pd.DataFrame())
    out = sap.mmrm_analyses(protocol, data)
    assert out["model"] == "AVAL ~ RACE + SEX + ARMCD*AVISIT + us(AVISIT | USUBJID)"
    assert out["df"] == "Satterthwaite" and out["arms"] == ["PBO", "TRT"]
    result = out["results"]["FEV1"]
    assert result["n_subjects"] == 197 and result["n_observations"] == 537
    for d in result["differences"]:
        est, se, df, p, lo, hi = SAS_DIFFERENCES[d["visit"]]
        assert d["contrast"] == "TRT - PBO"
        assert d["estimate"] == pytest.approx(float(est), abs=_tol(est))
        assert d["std_error"] == pytest.approx(float(se), abs=_tol(se))
        assert d["df"] == pytest.approx(df, abs=0.6)
        assert d["lower"] == pytest.approx(float(lo), abs=_tol(lo))
        assert d["upper"] == pytest.approx(float(hi), abs=_tol(hi))
        if p is not None:
            assert d["p_value"] == pytest.approx(p, abs=5e-5)
        else:
            assert d["p_value"] < 0.0001
    lsmeans = {(e["visit"], e["arm"]): e["estimate"] for e in result["lsmeans"]}
    for key, printed in SAS_LSMEANS.items():
        assert lsmeans[key] == pytest.approx(float(printed), abs=_tol(printed))


# ------------------------------------------------------------------ a whole two-arm SAP run
VISITS = [("M1", "Month 1", 30), ("M3", "Month 3", 90), ("M6", "Month 6", 180)]


def randomized_protocol():
    doc = load_protocol().model_dump()
    doc["active_protocol_version"] = "1.0"
    return parse_protocol(doc)


def two_arm_data(n: int = 24, seed: int = 7) -> AnalysisDatasets:
    """Synthetic ADSL/ADEFF/ADAE/ADPSE of a 1:1 trial: MSC improves LVEF by 3 points more than CTRL."""
    rng = np.random.default_rng(seed)
    ids = [f"01-{i:03d}" for i in range(1, n + 1)]
    arm = ["MSC" if i % 2 == 0 else "CTRL" for i in range(n)]
    stratum = ["LVEF<=25" if i % 3 == 0 else "LVEF>25" for i in range(n)]
    adsl = pd.DataFrame({
        "SUBJID": ids, "USUBJID": [f"X-{s}" for s in ids], "ARMCD": arm, "STRATUM": stratum,
        "SAFFL": "Y", "EFFFL": "Y", "ENRLFL": "Y", "SCRNFL": "Y", "ELIGFL": "Y", "IEFAIL": "",
        "EOSSTT": ["DISCONTINUED" if i in (3, 8) else "COMPLETED" for i in range(n)],
        "DCSREAS": ["WITHDRAWAL" if i in (3, 8) else None for i in range(n)], "DCSREASP": None, "DTHFL": "",
        "DTHDT": None, "AGE": rng.integers(30, 70, n), "SEX": rng.choice(["M", "F"], n), "BMIBL": 27.0,
        "HFETIOL": "IDCM", "ICDFL": "N",
    })
    rows = []
    for i, s in enumerate(ids):
        b = 25.0 + rng.normal(0, 4)
        rows.append({"SUBJID": s, "USUBJID": f"X-{s}", "PARAMCD": "LVEF", "AVISIT": "Baseline", "AVISITN": 0,
                     "AVAL": b, "BASE": b, "CHG": np.nan, "ABLFL": "Y", "ANL01FL": "Y"})
        nyha_b = float(rng.choice([3.0, 4.0]))
        rows.append({"SUBJID": s, "USUBJID": f"X-{s}", "PARAMCD": "NYHA", "AVISIT": "Baseline", "AVISITN": 0,
                     "AVAL": nyha_b, "BASE": nyha_b, "CHG": np.nan, "ABLFL": "Y", "ANL01FL": "Y"})
        for t, (_code, label, day) in enumerate(VISITS):
            v = b + (1 + t) * (1.5 if arm[i] == "MSC" else 0.5) + 0.2 * (b - 25) + rng.normal(0, 2)
            rows.append({"SUBJID": s, "USUBJID": f"X-{s}", "PARAMCD": "LVEF", "AVISIT": label, "AVISITN": day,
                         "AVAL": v, "BASE": b, "CHG": v - b, "ABLFL": "", "ANL01FL": "Y"})
            c = float(np.clip(nyha_b - rng.choice([0, 1, 1, 2] if arm[i] == "MSC" else [0, 0, 1, -1]), 1, 4))
            rows.append({"SUBJID": s, "USUBJID": f"X-{s}", "PARAMCD": "NYHA", "AVISIT": label, "AVISITN": day,
                         "AVAL": c, "BASE": nyha_b, "CHG": c - nyha_b, "ABLFL": "", "ANL01FL": "Y"})
    adeff = pd.DataFrame(rows)
    adeff["PDAY"] = adeff["AVISITN"].where(adeff["AVISITN"] > 0, -14)
    adae = pd.DataFrame(columns=["SUBJID", "AESEQ", "AETERM", "AECAT", "AECATDC", "ASTDT", "PDAY", "AETOXGR",
                                 "AESER", "SAECRIT", "AREL", "ARELPR", "AEOUT", "TRTEMFL", "PERIFL", "PRIMFL"])
    events = [ids[0], ids[0], ids[1], ids[3], ids[5], ids[7], ids[9]]  # MSC: 01-001 (twice); CTRL: five
    adpse = pd.DataFrame({"USUBJID": "X", "SUBJID": events, "SOURCE": "Adverse event log",
                          "PSECOMP": "Fever", "PDAY": 1, "DETAIL": ""})
    return AnalysisDatasets(adsl, adeff, adae, adpse)


@pytest.fixture(scope="module")
def two_arm_results():
    protocol = randomized_protocol()
    data = two_arm_data()
    return protocol, data, analysis.run_sap(protocol, data)


def test_randomized_version_runs_between_arm_analyses(two_arm_results):
    _, data, results = two_arm_results
    between = results["between_arms"]
    assert results["plan"]["randomized"] is True
    assert between["reference_arm"] == "CTRL" and [a["code"] for a in between["arms"]] == ["CTRL", "MSC"]
    allocation = between["allocation"]
    assert allocation["by_arm"] == {"CTRL": 12, "MSC": 12} and allocation["total"] == 24
    by_stratum = {r["stratum"]: r for r in allocation["by_stratum"]}
    adsl = data.adsl
    for stratum, row in by_stratum.items():
        for arm in ("CTRL", "MSC"):
            assert row[arm] == int(((adsl["STRATUM"] == stratum) & (adsl["ARMCD"] == arm)).sum())
    flow = between["flow"]
    assert flow["MSC"]["discontinued"] == {"WITHDRAWAL": 1} and flow["CTRL"]["discontinued"] == {"WITHDRAWAL": 1}
    assert flow["MSC"]["assessed"] == {"Month 1": 12, "Month 3": 12, "Month 6": 12}
    lvef = next(b for b in between["efficacy"]["MSC"] if b["paramcd"] == "LVEF")
    m6 = data.adeff[(data.adeff["PARAMCD"] == "LVEF") & (data.adeff["AVISIT"] == "Month 6")
                    & data.adeff["SUBJID"].isin(adsl.loc[adsl["ARMCD"] == "MSC", "SUBJID"])]
    assert lvef["visits"][2]["n"] == 12
    assert lvef["visits"][2]["mean_change"] == pytest.approx(m6["CHG"].mean(), rel=1e-12)
    assert lvef["visits"][2]["p_value_t"] == pytest.approx(stats.ttest_1samp(m6["CHG"], 0).pvalue, rel=1e-9)
    age = {arm: next(r for r in between["baseline"][arm] if r["variable"] == "Age") for arm in ("CTRL", "MSC")}
    assert age["MSC"]["mean"] == pytest.approx(adsl.loc[adsl["ARMCD"] == "MSC", "AGE"].mean(), rel=1e-12)


def test_primary_risk_difference_between_arms(two_arm_results):
    _, _, results = two_arm_results
    primary = results["between_arms"]["primary"]
    assert primary["by_arm"]["MSC"]["n_events"] == 1 and primary["by_arm"]["CTRL"]["n_events"] == 5
    rd = primary["risk_differences"][0]
    assert rd["contrast"] == "MSC - CTRL" and rd["estimate"] == pytest.approx(1 / 12 - 5 / 12, abs=1e-15)
    assert (rd["newcombe_lower"], rd["newcombe_upper"]) == pytest.approx(newcombe_ci(1, 12, 5, 12), abs=1e-15)
    assert rd["exact_lower"] <= rd["estimate"] <= rd["exact_upper"]


def test_nyha_by_arm_mann_whitney_matches_scipy(two_arm_results):
    _, data, results = two_arm_results
    m6 = results["between_arms"]["ordinal"]["NYHA"]["M6"]
    rows = data.adeff[(data.adeff["PARAMCD"] == "NYHA") & (data.adeff["AVISIT"] == "Month 6")]
    arm = rows["SUBJID"].map(data.adsl.set_index("SUBJID")["ARMCD"])
    x, y = rows.loc[arm == "MSC", "CHG"], rows.loc[arm == "CTRL", "CHG"]
    test = m6["tests"][0]
    expected = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True)
    assert test["u_statistic"] == expected.statistic
    assert test["p_value"] == pytest.approx(expected.pvalue, rel=1e-12)
    counts = np.array(m6["shift_by_arm"]["MSC"]["shift"]["counts"])
    assert counts.sum() == 12


def test_mmrm_difference_with_complete_data_equals_per_visit_ancova(two_arm_results):
    """Complete data, visit-specific intercepts, baseline slopes and arm effects, unstructured
    covariance: GLS reduces to OLS per visit, so each LS-mean difference is the ANCOVA arm effect."""
    _, data, results = two_arm_results
    assert results["mmrm"]["model"] == "CHG ~ BASE + ARMCD*AVISIT + BASE:AVISIT + us(AVISIT | USUBJID)"
    diffs = results["mmrm"]["results"]["LVEF"]["differences"]
    rows = data.adeff[(data.adeff["PARAMCD"] == "LVEF") & (data.adeff["AVISITN"] > 0)]
    rows = rows.assign(ARMCD=rows["SUBJID"].map(data.adsl.set_index("SUBJID")["ARMCD"]))
    for d in diffs:
        fit = smf.ols("CHG ~ BASE + C(ARMCD, Treatment('CTRL'))", rows[rows["AVISIT"] == d["visit"]]).fit()
        term = "C(ARMCD, Treatment('CTRL'))[T.MSC]"
        assert d["estimate"] == pytest.approx(fit.params[term], abs=1e-6)
        assert d["std_error"] == pytest.approx(fit.bse[term], rel=1e-4)


def test_single_arm_version_has_no_between_arm_results():
    protocol = load_protocol()
    data = two_arm_data()
    assert sap.is_randomized(protocol) is False
    assert "between_arms" not in analysis.run_sap(protocol, data, with_mmrm=False)


def test_report_lays_out_between_arm_tables(two_arm_results):
    from regenheart.report import build_report
    from regenheart.report import formatting as f
    from regenheart.store.snapshot import Snapshot

    protocol, data, results = two_arm_results
    empty = pd.DataFrame()
    snapshot = Snapshot("2026-01-01T00:00:00Z", {}, empty, empty, empty, empty, empty, empty, 0, "0" * 64)
    html = build_report(protocol, snapshot, data, results, synthetic=True)
    rd = results["between_arms"]["primary"]["risk_differences"][0]
    assert f.ci(100 * rd["newcombe_lower"], 100 * rd["newcombe_upper"], 1) in html
    assert f.ci(100 * rd["exact_lower"], 100 * rd["exact_upper"], 1) in html
    d = results["mmrm"]["results"]["LVEF"]["differences"][-1]
    assert f"MSC - CTRL: {f.estimate_ci(d['estimate'], d['lower'], d['upper'], 1)}" in html
    for anchor in ('id="flow-by-arm"', 'id="baseline-by-arm"', 'id="primary-by-arm"', 'id="efficacy-between-arms"',
                   'id="arms-nyha-m6"'):
        assert anchor in html
    assert "Stratum (STRATUM)" in html
    assert "Within-arm change from baseline" in html
