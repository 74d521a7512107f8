"""SAP numbers against independent references: scipy (exact binomial CI, paired t, Wilcoxon),
statsmodels OLS (the MMRM with complete data and visit-specific baseline slopes reduces to
per-visit OLS), and hand arithmetic for counts and the geometric mean ratio."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from regenheart.derive.adam import AnalysisDatasets
from regenheart.protocol import load_protocol
from regenheart.stats import analysis, sap

PROTOCOL = load_protocol()
VISITS = [("M1", "Month 1", 30), ("M3", "Month 3", 90), ("M6", "Month 6", 180)]


def make_data(n: int = 12, seed: int = 3, drop_m6: int = 0) -> AnalysisDatasets:
    rng = np.random.default_rng(seed)
    ids = [f"01-{i:03d}" for i in range(1, n + 1)]
    adsl = pd.DataFrame({
        "SUBJID": ids, "USUBJID": [f"X-{i}" for i in ids], "SAFFL": "Y", "EFFFL": "Y", "ENRLFL": "Y",
        "ELIGFL": "Y", "IEFAIL": "", "EOSSTT": "COMPLETED", "DCSREAS": None, "DCSREASP": None, "DTHFL": "",
        "DTHDT": None, "AGE": rng.integers(30, 70, n), "SEX": "M", "BMIBL": 27.0, "HFETIOL": "IDCM", "ICDFL": "N",
    })
    rows = []
    for i, s in enumerate(ids):
        for paramcd, base, shift, sd in (("LVEF", 25.0, (1.0, 4.0, 6.0), 3.0),
                                         ("NTPROBNP", 2000.0, (0.9, 0.8, 0.7), 0.2),
                                         ("NYHA", 3.0, None, None)):
            b = base + (rng.normal(0, 5) if paramcd == "LVEF" else 0)
            if paramcd == "NTPROBNP":
                b = base * math.exp(rng.normal(0, 0.5))
            rows.append({"SUBJID": s, "USUBJID": f"X-{s}", "PARAMCD": paramcd, "AVISIT": "Baseline", "AVISITN": 0,
                         "AVAL": b, "BASE": b, "CHG": np.nan, "ABLFL": "Y", "ANL01FL": "Y"})
            for t, (_code, label, day) in enumerate(VISITS):
                if label == "Month 6" and i < drop_m6:
                    continue
                if paramcd == "LVEF":
                    v = b + shift[t] + 0.3 * (b - 25) + rng.normal(0, sd)
                elif paramcd == "NTPROBNP":
                    v = b * shift[t] * math.exp(rng.normal(0, sd))
                else:
                    v = float(rng.choice([2.0, 3.0, 3.0, 4.0]))
                rows.append({"SUBJID": s, "USUBJID": f"X-{s}", "PARAMCD": paramcd, "AVISIT": label, "AVISITN": day,
                             "AVAL": v, "BASE": b, "CHG": v - b, "ABLFL": "", "ANL01FL": "Y"})
    adeff = pd.DataFrame(rows)
    adae = pd.DataFrame({
        "SUBJID": [ids[0], ids[0], ids[1], ids[2]], "AESEQ": [1, 2, 1, 1],
        "AETERM": ["Fever", "Rash", "HF worsening", "Death"], "AECAT": ["FEVER", "ALLERGIC", "HF_WORSENING", "DEATH"],
        "AECATDC": ["Fever", "Allergic", "Worsening heart failure", "Death"], "ASTDT": None, "PDAY": [1, 2, 40, 120],
        "AETOXGR": [1, 2, 3, 5], "AESER": ["N", "N", "Y", "Y"], "SAECRIT": ["", "", "hospitalization", "death"],
        "AREL": ["PROBABLE", "POSSIBLE", "NOT", "UNLIKELY"], "ARELPR": ["NOT", "NOT", "NOT", "NOT"],
        "AEOUT": ["RECOVERED", "RECOVERED", "RECOVERED", "FATAL"], "TRTEMFL": "Y",
        "PERIFL": ["Y", "Y", "", ""], "PRIMFL": ["Y", "Y", "", ""],
    })
    adpse = pd.DataFrame({"USUBJID": ["X", "X"], "SUBJID": [ids[0], ids[0]], "SOURCE": "Adverse event log",
                          "PSECOMP": ["Fever", "Allergic"], "PDAY": [1, 2], "DETAIL": ["", ""]})
    return AnalysisDatasets(adsl, adeff, adae, adpse)


def test_primary_endpoint_matches_scipy_exact_ci():
    data = make_data()
    result = sap.primary_endpoint(PROTOCOL, data)
    ci = stats.binomtest(1, 12).proportion_ci(0.95, method="exact")
    assert (result["n_events"], result["n_total"]) == (1, 12)  # one subject with two events
    assert result["lower"] == pytest.approx(ci.low, abs=1e-10)
    assert result["upper"] == pytest.approx(ci.high, abs=1e-10)


def test_adverse_event_counts_by_hand():
    out = sap.adverse_event_tables(PROTOCOL, make_data())
    overview = out["overview"]
    assert overview["Any adverse event"] == {"subjects": 3, "percent": 25.0, "events": 4}
    assert overview["Any serious adverse event"]["subjects"] == 2
    assert overview["Any event related to the cell product"]["subjects"] == 1  # PROBABLE + POSSIBLE, same subject
    assert overview["Fatal adverse event"]["subjects"] == 1
    assert [g["subjects"] for g in out["by_max_grade"]] == [0, 1, 1, 0, 1]


def test_paired_efficacy_matches_scipy():
    data = make_data(drop_m6=2)
    block = next(b for b in sap.efficacy_tables(PROTOCOL, data) if b["paramcd"] == "LVEF")
    m6 = data.adeff[(data.adeff["PARAMCD"] == "LVEF") & (data.adeff["AVISIT"] == "Month 6")]
    entry = block["visits"][2]
    assert entry["n"] == 10
    t = stats.ttest_rel(m6["AVAL"], m6["BASE"])
    assert entry["p_value_t"] == pytest.approx(t.pvalue, rel=1e-9)
    assert entry["mean_change"] == pytest.approx(m6["CHG"].mean(), abs=1e-12)
    half = stats.t.ppf(0.975, 9) * m6["CHG"].std(ddof=1) / math.sqrt(10)
    assert entry["lower"] == pytest.approx(m6["CHG"].mean() - half, abs=1e-10)
    w = stats.wilcoxon(m6["AVAL"], m6["BASE"], method="exact")  # no ties, n < 50: exact, as R
    assert entry["p_value_wilcoxon"] == pytest.approx(w.pvalue, rel=1e-9)


def test_ntprobnp_geometric_mean_ratio_by_hand():
    data = make_data()
    block = next(b for b in sap.efficacy_tables(PROTOCOL, data) if b["paramcd"] == "NTPROBNP")
    m3 = data.adeff[(data.adeff["PARAMCD"] == "NTPROBNP") & (data.adeff["AVISIT"] == "Month 3")]
    logs = np.log(m3["AVAL"].to_numpy()) - np.log(m3["BASE"].to_numpy())
    assert block["visits"][1]["gmr"]["gmr"] == pytest.approx(math.exp(logs.mean()), rel=1e-12)


def test_nyha_shift_table_counts():
    data = make_data()
    out = sap.shift_tables(PROTOCOL, data)["NYHA"]
    m1 = data.adeff[(data.adeff["PARAMCD"] == "NYHA") & (data.adeff["AVISIT"] == "Month 1")]
    counts = np.array(out["M1"]["shift"]["counts"])
    assert counts.sum() == 12 and counts[2].sum() == 12  # everyone class III at baseline
    assert counts[2, 1] == (m1["AVAL"] == 2).sum()
    assert out["M1"]["change"]["n_improved"] == (m1["AVAL"] == 2).sum()


def test_mmrm_with_complete_data_equals_per_visit_ols():
    """With complete data, visit-specific intercepts and baseline slopes and an unstructured
    covariance, GLS equals OLS visit by visit (seemingly unrelated regressions with identical
    regressors), so each LS mean and its SE equal the per-visit OLS prediction at the mean baseline."""
    data = make_data(n=20, seed=11)
    out = sap.mmrm_analyses(PROTOCOL, data)["results"]["LVEF"]
    assert "error" not in out, out
    rows = data.adeff[(data.adeff["PARAMCD"] == "LVEF") & (data.adeff["AVISITN"] > 0)]
    for entry, (_, label, _) in zip(out["lsmeans"], VISITS):
        frame = rows[rows["AVISIT"] == label]
        fit = smf.ols("CHG ~ BASE", frame).fit()
        pred = fit.get_prediction(pd.DataFrame({"BASE": [rows["BASE"].mean()]}))
        assert entry["estimate"] == pytest.approx(pred.predicted_mean[0], abs=1e-6)
        assert entry["std_error"] == pytest.approx(pred.se_mean[0], rel=1e-4)


def test_randomized_protocol_gives_treatment_difference():
    """Protocol 1.0 (randomized 1:1): the same code fits arm x visit and reports MSC - CTRL per visit.
    With complete data the difference equals the per-visit OLS arm coefficient of
    CHG ~ BASE + ARMCD (the ANCOVA), estimate and SE."""
    doc = PROTOCOL.model_dump()
    doc["active_protocol_version"] = "1.0"
    from regenheart.protocol import parse_protocol
    randomized = parse_protocol(doc)
    data = make_data(n=24, seed=5)
    arms = {s: ("CTRL" if i % 2 else "MSC") for i, s in enumerate(data.adsl["SUBJID"])}
    data.adsl["ARMCD"] = data.adsl["SUBJID"].map(arms)
    effect = data.adeff["SUBJID"].map(arms).eq("MSC") * 2.0
    lvef = data.adeff["PARAMCD"].eq("LVEF") & data.adeff["AVISITN"].gt(0)
    data.adeff.loc[lvef, "AVAL"] += effect[lvef]
    data.adeff.loc[lvef, "CHG"] += effect[lvef]
    out = sap.mmrm_analyses(randomized, data)
    assert out["model"] == "CHG ~ BASE + ARMCD*AVISIT + BASE:AVISIT + us(AVISIT | USUBJID)"
    assert out["model"] == randomized.analysis_plan.between_arms.mmrm.formula
    diffs = out["results"]["LVEF"]["differences"]
    assert [d["visit"] for d in diffs] == ["Month 1", "Month 3", "Month 6"]
    rows = data.adeff[lvef]
    for d in diffs:
        frame = rows[rows["AVISIT"] == d["visit"]].assign(ARMCD=lambda f: f["SUBJID"].map(arms))
        fit = smf.ols("CHG ~ BASE + C(ARMCD, Treatment('CTRL'))", frame).fit()
        term = "C(ARMCD, Treatment('CTRL'))[T.MSC]"
        assert d["contrast"] == "MSC - CTRL"
        assert d["estimate"] == pytest.approx(fit.params[term], abs=1e-6)
        assert d["std_error"] == pytest.approx(fit.bse[term], rel=1e-4)


def test_kccq_responders_by_hand():
    """Changes of 4, 5, 12 and 25 points: >= 5 (small) 3 of 4, >= 10 (moderate) 2, >= 20 (large) 1."""
    data = make_data(n=4)
    rows = []
    for s, chg in zip(data.adsl["SUBJID"], (4.0, 5.0, 12.0, 25.0)):
        rows.append({"SUBJID": s, "PARAMCD": "KCCQOS", "AVISIT": "Month 1", "AVISITN": 30, "AVAL": 50 + chg,
                     "BASE": 50.0, "CHG": chg, "ABLFL": "", "ANL01FL": "Y"})
    data = AnalysisDatasets(data.adsl, pd.concat([data.adeff, pd.DataFrame(rows)], ignore_index=True),
                            data.adae, data.adpse)
    m1 = {r["level"]: r for r in sap.responder_analyses(PROTOCOL, data) if r["paramcd"] == "KCCQOS"
          and r["visit"] == "M1"}
    assert [(m1[k]["threshold"], m1[k]["n_events"], m1[k]["n_total"]) for k in ("small", "moderate", "large")] == [
        (5.0, 3, 4), (10.0, 2, 4), (20.0, 1, 4)]
    assert m1["small"]["upper"] == pytest.approx(stats.binomtest(3, 4).proportion_ci(method="exact").high)


def _plan_with(endpoint: dict) -> object:
    """RegenHeart's plan with one extra endpoint entry (a plan is data: tests write their own)."""
    from regenheart.protocol.sap import SapPlan

    doc = PROTOCOL.analysis_plan.model_dump()
    doc["endpoints"] = [e for e in doc["endpoints"] if e["paramcd"] != endpoint["paramcd"]] + [endpoint]
    return SapPlan.model_validate(doc)


def test_binary_proportion_with_exact_ci():
    """NYHA class II or better read as a binary 'event' (value 2): n/N and the Clopper-Pearson CI per visit."""
    data = make_data(n=15, seed=8)
    plan = _plan_with({"paramcd": "NYHA", "group": "secondary", "visits": ["M1", "M3"],
                       "analyses": [{"type": "proportion", "event": 2}]})
    out = sap.proportion_analyses(PROTOCOL, data, plan)
    assert [r["visit"] for r in out] == ["M1", "M3"]
    for r in out:
        rows = data.adeff[(data.adeff["PARAMCD"] == "NYHA") & (data.adeff["AVISIT"] == r["label"])]
        k, n = int((rows["AVAL"] == 2).sum()), len(rows)
        ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
        assert (r["n_events"], r["n_total"]) == (k, n)
        assert (r["lower"], r["upper"]) == pytest.approx((ci.low, ci.high), abs=1e-10)
    assert "proportions" in analysis.run_sap(PROTOCOL, data, plan=plan, with_mmrm=False)


def test_responders_of_a_lower_is_better_parameter_count_decreases():
    """NT-proBNP (lower is better) with a 500 pg/mL threshold: responders have change <= -500."""
    data = make_data(n=12, seed=4)
    plan = _plan_with({"paramcd": "NTPROBNP", "group": "secondary", "visits": ["M6"],
                       "analyses": ["paired_change", {"type": "responder", "thresholds": [
                           {"level": "drop500", "change": 500, "source": "test threshold"}]}]})
    out = [r for r in sap.responder_analyses(PROTOCOL, data, plan) if r["paramcd"] == "NTPROBNP"]
    rows = data.adeff[(data.adeff["PARAMCD"] == "NTPROBNP") & (data.adeff["AVISIT"] == "Month 6")]
    assert out[0]["n_events"] == int((rows["CHG"] <= -500).sum()) and out[0]["n_total"] == len(rows)
    assert out[0]["source"] == "test threshold"


def test_population_whose_flag_is_not_derived_is_reported_empty():
    from regenheart.protocol.sap import SapPlan

    doc = PROTOCOL.analysis_plan.model_dump()
    doc["populations"].append({"name": "per_protocol", "label": "Per protocol", "flag": "PPROTFL",
                               "definition": "No major protocol deviation."})
    out = analysis.plan_summary(PROTOCOL, SapPlan.model_validate(doc), make_data())
    pp = next(p for p in out["populations"] if p["name"] == "per_protocol")
    assert (pp["n"], pp["flag_derived"]) == (0, False)
    assert next(p for p in out["populations"] if p["name"] == "safety")["n"] == 12
