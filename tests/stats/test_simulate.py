"""Design simulation: the array MMRM equals fit_mmrm; the randomized analysis keeps its type I error
and CI coverage within Monte Carlo error; the single-arm estimate is biased by exactly the
background improvement; the simulated power matches the analytic two-sample power; same seed, same
simulation; impossible scenarios are refused; outputs are written and well formed."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from lxml import etree
from scipy import integrate, stats

from regenheart.protocol import load_protocol
from regenheart.stats.mmrm import fit_mmrm
from regenheart.stats.mmrm.arrays import fit_contrast
from regenheart.stats.simulate import (
    SimulationError,
    _design_arrays,
    _simulate_chunk,
    design_cost_summary,
    run_simulation,
    simulate_lvef,
    trial_designs,
    write_outputs,
)
from regenheart.synth import model as synth_model
from regenheart.synth.model import DEFAULT_LVEF_MODEL


@pytest.fixture(scope="module")
def protocol():
    return load_protocol()


def _frame(base, change, cell):
    rows = []
    for i in range(len(base)):
        for k, visit in enumerate(("M1", "M3", "M6")):
            if np.isfinite(change[i, k]):
                rows.append({"USUBJID": f"S{i:03d}", "AVISIT": visit, "BASE": base[i], "CHG": change[i, k],
                             "ARMCD": "MSC" if cell[i] else "CTRL"})
    df = pd.DataFrame(rows)
    df["AVISIT"] = pd.Categorical(df["AVISIT"], ["M1", "M3", "M6"])
    df["ARMCD"] = pd.Categorical(df["ARMCD"], ["CTRL", "MSC"])
    return df


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_array_fit_equals_the_sap_model_through_fit_mmrm(protocol, seed):
    rng = np.random.default_rng(seed)
    v1, v2 = trial_designs(protocol, ["v1", "v2"])
    cell = np.arange(60) < 30
    base, change = simulate_lvef(DEFAULT_LVEF_MODEL, cell, 0.2, rng)
    X, l = _design_arrays(base, change, cell)
    fast = fit_contrast(change, X, l)
    assert v1.model == protocol.analysis_plan.between_arms.mmrm.formula  # the SAP's own model
    ref = fit_mmrm(_frame(base, change, cell), v1.model, df=v1.df)
    m6 = ref.pairwise("ARMCD", by="AVISIT").iloc[-1]
    for name in ("estimate", "std_error", "df", "p_value", "lower", "upper"):
        assert getattr(fast, name) == pytest.approx(m6[name], rel=1e-7, abs=1e-9), name
    one = np.ones(30, bool)
    base, change = simulate_lvef(DEFAULT_LVEF_MODEL, one, 0.2, rng)
    X, l = _design_arrays(base, change, None)
    fast = fit_contrast(change, X, l)
    assert v2.model == protocol.analysis_plan.mmrm.formula
    lsm = fit_mmrm(_frame(base, change, one).drop(columns="ARMCD"), v2.model, df=v2.df).lsmeans("AVISIT")
    m6 = lsm.iloc[-1]
    for name in ("estimate", "std_error", "df", "p_value", "lower", "upper"):
        assert getattr(fast, name) == pytest.approx(m6[name], rel=1e-7, abs=1e-9), name


def test_baseline_and_change_follow_the_stated_model():
    """Against hand-derived moments: E[max(X, 12) | X < 35] for X ~ N(25, 6), and the mean change
    background + cell effect (E[response] = 1), each within 4 Monte Carlo SEs."""
    m = DEFAULT_LVEF_MODEL
    rng = np.random.default_rng(5)
    n = 200_000
    cell = np.arange(n) < n // 2
    base, change = simulate_lvef(m, cell, 0.0, rng)
    dens = stats.norm(m.baseline_mean, m.baseline_sd)
    upper = dens.cdf(m.inclusion_max)
    expected = (m.baseline_min * dens.cdf(m.baseline_min)
                + integrate.quad(lambda x: x * dens.pdf(x), m.baseline_min, m.inclusion_max)[0]) / upper
    assert base.max() < m.inclusion_max and base.min() >= m.baseline_min
    assert base.mean() == pytest.approx(expected, abs=4 * base.std() / math.sqrt(n))
    for k in range(3):
        for arm, mean in ((cell, m.background[k] + m.cell_effect[k]), (~cell, m.background[k])):
            x = change[arm, k]
            assert x.mean() == pytest.approx(mean, abs=4 * x.std() / math.sqrt(len(x)) + 0.02)  # clipping at 8
    # the cohort's treated change is the model's background + cell effect (one source of numbers)
    from regenheart.synth.cohort import LVEF_CHANGE
    assert LVEF_CHANGE == (1.0, 4.0, 5.5) == m.treated_change
    assert synth_model.BACKGROUND_SHARE[-1] == pytest.approx(2.0 / 5.5)


def test_dropout_is_monotone_and_at_the_stated_rate():
    rng = np.random.default_rng(9)
    _, change = simulate_lvef(DEFAULT_LVEF_MODEL, np.ones(100_000, bool), 0.3, rng)
    missing = np.isnan(change)
    assert np.all(missing[:, 0] <= missing[:, 1]) and np.all(missing[:, 1] <= missing[:, 2])  # monotone
    assert missing[:, 2].mean() == pytest.approx(0.3, abs=0.006)
    assert missing[:, 0].mean() == pytest.approx(0.1, abs=0.004)  # a third of dropouts leave before M1


@pytest.fixture(scope="module")
def null_and_effect_runs(protocol):
    """2,000 randomized trials without a cell effect and 1,000 with the model's, 600 single-arm trials."""
    rct = run_simulation(protocol, ["v1"], n_sim=2000, cell_effects=[0.0], seed=11, workers=2)
    rct_effect = run_simulation(protocol, ["v1"], n_sim=1000, cell_effects=[3.5], seed=12, workers=2)
    single = run_simulation(protocol, ["v2"], n_sim=600, cell_effects=[0.0, 3.5], seed=13, workers=2)
    return rct.rows[0], rct_effect.rows[0], single.rows


def test_randomized_type_one_error_and_coverage_within_monte_carlo_error(null_and_effect_runs):
    null, effect, _ = null_and_effect_runs
    assert null.n_failed == 0 and effect.n_failed == 0
    mcse = math.sqrt(0.05 * 0.95 / 2000)  # 0.0049
    assert abs(null.power - 0.05) <= 3 * mcse
    assert abs(null.bias) <= 3 * null.bias_mcse
    assert abs(effect.coverage - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / 1000)
    assert abs(effect.bias) <= 3 * effect.bias_mcse
    # simulated MMRM power against statsmodels' two-sample t-test power at the same effect and SD
    # (the MMRM also uses M1/M3 of dropouts and KR df, hence the extra 0.03)
    assert abs(effect.power - effect.analytic_power) <= 3 * effect.power_mcse + 0.03
    # sample size for 80%: hand formula n = 2 (z_0.975 + z_0.8)^2 / d^2 + z_0.975^2 / 4 (Guenther 1981's
    # t correction of the normal approximation), divided by 1 - dropout
    m = DEFAULT_LVEF_MODEL
    sd = math.sqrt(((m.background[-1] + 3.5) ** 2 * 0.36 + 9 + m.background[-1] ** 2 * 0.36 + 9) / 2)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    hand = (2 * z**2 / (3.5 / sd) ** 2 + stats.norm.ppf(0.975) ** 2 / 4) / 0.9
    assert effect.analytic_n_per_arm_80 == pytest.approx(hand, rel=0.01)


def test_single_arm_bias_is_the_background_improvement(null_and_effect_runs):
    _, _, single = null_and_effect_runs
    background = DEFAULT_LVEF_MODEL.background[-1]
    for row in single:
        assert row.n_failed == 0
        assert abs(row.bias - background) <= 3 * row.bias_mcse + 0.02  # clipping at 8 points
    null = next(r for r in single if r.cell_effect == 0.0)
    assert null.power > 0.5  # it "finds" an effect of cells that do nothing
    assert null.coverage < 0.5


def test_same_seed_same_simulation_whatever_the_workers(protocol):
    a = run_simulation(protocol, ["v1", "v2"], n_sim=30, cell_effects=[0, 2], seed=3, workers=1)
    b = run_simulation(protocol, ["v1", "v2"], n_sim=30, cell_effects=[0, 2], seed=3, workers=2)
    c = run_simulation(protocol, ["v1", "v2"], n_sim=30, cell_effects=[0, 2], seed=4, workers=1)
    assert a.rows == b.rows
    assert a.rows != c.rows


@pytest.mark.parametrize("kwargs,needle", [
    ({"dropout": 1.0}, "--dropout 1.0"),
    ({"dropout": -0.1}, "--dropout -0.1"),
    ({"n_sim": -5}, "--n-sim -5"),
    ({"n_sim": 0}, "--n-sim 0"),
    ({"designs": ["v3"]}, "unknown design 'v3'"),
    ({"cell_effects": [float("nan")]}, "must be finite"),
    ({"workers": 0}, "--workers 0"),
])
def test_impossible_scenarios_are_refused(protocol, kwargs, needle):
    with pytest.raises(SimulationError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        run_simulation(protocol, **{"n_sim": 5, **kwargs})


def test_outputs_table_json_and_figure(protocol, tmp_path):
    run = run_simulation(protocol, ["v1", "v2"], n_sim=20, cell_effects=[0, 3.5], seed=1)
    paths = write_outputs(run, tmp_path)
    assert [p.name for p in paths] == ["simulation.csv", "simulation.json", "simulation.png", "simulation.svg"]
    table = pd.read_csv(paths[0])
    assert len(table) == 4 and {"power", "power_mcse", "bias", "bias_mcse", "coverage", "coverage_mcse",
                                "ci_width", "ci_width_mcse", "analytic_power"} <= set(table.columns)
    assert (table["data"].str.startswith("SYNTHETIC")).all()
    doc = json.loads(paths[1].read_text())
    assert doc["synthetic"] is True and "SYNTHETIC" in doc["note"] and len(doc["results"]) == 4
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert etree.parse(str(paths[3])).getroot().tag.endswith("svg")


# ------------------------------------------------------------------ command line
@pytest.mark.parametrize("args,needle", [
    (["--dropout", "1"], "--dropout 1.0"),
    (["--n-sim", "-3"], "--n-sim -3"),
    (["--designs", "v1,v9"], "unknown design 'v9'"),
    (["--cell-effect", "two"], "--cell-effect 'two'"),
])
def test_cli_refuses_impossible_scenarios_and_writes_nothing(tmp_path, args, needle):
    from typer.testing import CliRunner

    from regenheart.cli.main import app

    out = tmp_path / "sim"
    result = CliRunner().invoke(app, ["simulate", "--out", str(out), "--n-sim", "5", *args])
    assert result.exit_code == 2
    assert needle in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_cli_simulate_writes_the_table_json_and_figure(tmp_path):
    from typer.testing import CliRunner

    from regenheart.cli.main import app

    out = tmp_path / "sim"
    result = CliRunner().invoke(app, ["simulate", "--out", str(out), "--n-sim", "10", "--cell-effect", "0,3.5",
                                      "--workers", "1", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["simulation.csv", "simulation.json", "simulation.png",
                                                      "simulation.svg"]
    again = run_simulation(load_protocol(), ["v1", "v2"], n_sim=10, cell_effects=[0, 3.5], seed=5)
    assert json.loads((out / "simulation.json").read_text())["results"] == json.loads(
        json.dumps([r.__dict__ for r in again.rows]))


# The unoptimised engine's output (recorded from commit 2077a02, before the array fast path was made
# cheaper): these pins guard that the speed-up of the simulation changed no number. Floats must agree
# within 1e-9 relative (a different floating-point summation order may move the last digits);
# counts and shares (power, coverage) must be equal.
PINNED_SUMMARY = {
    ("v1", 0.0): {"n_failed": 0, "power": 0.1, "mean_estimate": 0.07051666874633913,
                  "bias_mcse": 0.21775217233427463, "coverage": 0.9, "ci_width": 3.5595257241303115,
                  "ci_width_mcse": 0.08646288761593168, "empirical_se": 0.9738173191753743},
    ("v1", 2.0): {"n_failed": 0, "power": 0.45, "mean_estimate": 1.9731758888438022,
                  "bias_mcse": 0.22705458356726796, "coverage": 0.9, "ci_width": 4.056079858775751,
                  "ci_width_mcse": 0.12712083404783886, "empirical_se": 1.0154189669186358},
    ("v1", 3.5): {"n_failed": 0, "power": 0.9, "mean_estimate": 3.4700997979251094,
                  "bias_mcse": 0.2511254628160243, "coverage": 0.95, "ci_width": 4.256978184464427,
                  "ci_width_mcse": 0.07490272609912181, "empirical_se": 1.1230672114754523},
    ("v2", 0.0): {"n_failed": 0, "power": 0.95, "mean_estimate": 1.9717455217663247,
                  "bias_mcse": 0.10236612856946281, "coverage": 0.05, "ci_width": 2.4429787188737437,
                  "ci_width_mcse": 0.10292452655613842, "empirical_se": 0.4577952441496043},
    ("v2", 2.0): {"n_failed": 0, "power": 1.0, "mean_estimate": 3.840393199504323,
                  "bias_mcse": 0.1906503755597708, "coverage": 0.35, "ci_width": 3.146861010804197,
                  "ci_width_mcse": 0.09396617488079917, "empirical_se": 0.852614399375024},
    ("v2", 3.5): {"n_failed": 0, "power": 1.0, "mean_estimate": 5.544469757139579,
                  "bias_mcse": 0.15328712982153406, "coverage": 0.45, "ci_width": 3.5746155949316667,
                  "ci_width_mcse": 0.1212201027792463, "empirical_se": 0.6855208847135708},
}
# Single trials (estimate, lower, upper, p, ok) at dropout 0.2, seeds SeedSequence(7).spawn(3), the
# model's default cell effect: the per-fit numbers behind the means above.
PINNED_TRIALS = {
    "v1": [[2.551326396741941, -0.06287221248886965, 5.165525005972752, 0.055505710272353, 1.0],
           [4.727610800554228, 2.042921226261775, 7.41230037484668, 0.0010514800287405805, 1.0],
           [2.1239611114611114, 0.043857133614891186, 4.204065089307331, 0.04553257974502684, 1.0]],
    "v2": [[5.22857749340019, 3.356097614011021, 7.1010573727893584, 5.407857128486059e-06, 1.0],
           [7.700232435386223, 5.981856933792568, 9.418607936979878, 1.2041405045328003e-09, 1.0],
           [5.906453922245459, 4.2344450263815725, 7.578462818109345, 2.3701940854091512e-07, 1.0]],
}


def test_demo_simulation_summary_is_the_unoptimised_engines(protocol):
    """The demo's simulation (designs v1 and v2, cell effects 0, 2, 3.5, seed 20200301) at 20 trials
    gives the numbers the engine gave before it was optimised (PINNED_SUMMARY)."""
    run = run_simulation(protocol, ["v1", "v2"], n_sim=20, cell_effects=(0.0, 2.0, 3.5), seed=20200301)
    assert {(r.design, r.cell_effect) for r in run.rows} == set(PINNED_SUMMARY)
    for row in run.rows:
        for name, expected in PINNED_SUMMARY[(row.design, row.cell_effect)].items():
            assert getattr(row, name) == pytest.approx(expected, rel=1e-9, abs=1e-12), (row.design, name)
    summary = design_cost_summary(run)
    assert summary["randomized_at_effect"]["power"] == PINNED_SUMMARY[("v1", 3.5)]["power"]
    assert summary["single_arm_null"]["coverage"] == PINNED_SUMMARY[("v2", 0.0)]["coverage"]


@pytest.mark.parametrize("key", ["v1", "v2"])
def test_single_simulated_trials_are_the_unoptimised_engines(protocol, key):
    design = next(d for d in trial_designs(protocol, ["v1", "v2"]) if d.key == key)
    out = _simulate_chunk(design, DEFAULT_LVEF_MODEL, 0.2, np.random.SeedSequence(7).spawn(3))
    np.testing.assert_allclose(out, np.array(PINNED_TRIALS[key]), rtol=1e-9, atol=1e-15)
