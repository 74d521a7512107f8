"""Design simulation: what the change from a randomized to a single-arm design costs.

Many synthetic trials of each protocol version's design are drawn from the data-generating model of
the synthetic cohort (:mod:`regenheart.synth.model`: LVEF at baseline, M1, M3, M6; a background
improvement that every patient gets from optimized standard therapy and regression to the mean, plus
the cell effect in an arm that receives cells) and each is analysed with the SAP's MMRM
(:mod:`regenheart.stats.mmrm`, unstructured covariance, REML, Kenward-Roger df) on arrays:

* randomized design (e.g. protocol 1.0, 60 patients 1:1): change ~ baseline + arm x visit +
  baseline x visit; the cell effect's estimate is the arm difference at the last visit;
* single-arm design (e.g. protocol 2.0, 30 patients): change ~ baseline + visit + baseline x visit;
  its estimate of the cell effect is the LS mean change at the last visit (at the mean baseline),
  which also contains the background improvement: that is its bias.

For each design and scenario: power (share of trials rejecting "no change/no difference" at two-sided
5%), type I error (the same share when the cell effect is 0), bias, 95% CI coverage and CI width of the
cell-effect estimate, each with its Monte Carlo standard error (Morris, White & Crowther 2019,
Stat Med 38:2074-2102, table 6). Beside the simulated power of a randomized design: the analytic
power of the two-sample t-test (statsmodels ``TTestIndPower``) at the same effect, SD and completers.
Dropout is completely at random: a subject drops out with probability ``dropout`` after baseline,
M1 or M3 (equally likely) and misses every later visit. SYNTHETIC: not RegenHeart results.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regenheart.protocol.models import Protocol
from regenheart.stats.mmrm import MMRMError
from regenheart.stats.mmrm.arrays import fit_contrast
from regenheart.stats.mmrm.batch import fit_contrasts
from regenheart.stats.mmrm.dof import METHODS
from regenheart.synth.model import DEFAULT_LVEF_MODEL, LvefModel

SYNTHETIC_NOTE = ("SYNTHETIC: simulated trials from regenheart's synthetic data-generating model "
                  "(regenheart.synth.model); not RegenHeart results")
DEFAULT_CELL_EFFECTS = (0.0, 1.0, 2.0, DEFAULT_LVEF_MODEL.cell_effect[-1], 5.0)
ALPHA = 0.05


class SimulationError(ValueError):
    """An impossible simulation request (the message names the option, the value and the rule)."""


@dataclass(frozen=True)
class TrialDesign:
    """A protocol version's design as simulated: key (``v1``), version, arms, size and the SAP's MMRM."""

    key: str
    version: str
    randomized: bool
    n: int
    n_cell: int
    label: str
    model: str = ""                 # the SAP's MMRM formula the simulation fits
    covariance: str = "us"
    method: str = "reml"
    df: str = "kenward-roger"


# The MMRMs the array design implements: the SAP plan's terms must be these (checked, not assumed).
SINGLE_ARM_TERMS = ("BASE", "AVISIT", "BASE:AVISIT")


def _between_arm_terms(arm_column: str) -> tuple[str, ...]:
    return ("BASE", f"{arm_column}*AVISIT", "BASE:AVISIT")


def _plan_model(protocol: Protocol, randomized: bool, version: str):
    """The SAP's MMRM for a design, refused if the array design does not implement its terms."""
    plan = protocol.analysis_plan
    if randomized:
        if plan.between_arms is None:
            raise SimulationError(f"--designs: protocol {version} is randomized but the SAP has no between-arm plan")
        model, expected = plan.between_arms.mmrm, _between_arm_terms(plan.between_arms.arm_column)
    else:
        model, expected = plan.mmrm, SINGLE_ARM_TERMS
    if model is None or tuple(model.terms) != expected or model.response != "CHG":
        raise SimulationError(f"the simulation fits CHG ~ {' + '.join(expected)}; the SAP's model for protocol "
                              f"{version} is {model.formula if model else 'missing'}")
    return model


@dataclass(frozen=True)
class ScenarioResult:
    """Operating characteristics of one design in one scenario (M6 effects in LVEF points)."""

    design: str
    version: str
    n: int
    cell_effect: float
    background: float
    dropout: float
    n_sim: int
    n_failed: int
    power: float
    power_mcse: float
    mean_estimate: float
    bias: float
    bias_mcse: float
    coverage: float
    coverage_mcse: float
    ci_width: float
    ci_width_mcse: float
    empirical_se: float
    analytic_power: float | None = None
    analytic_n_per_arm_80: float | None = None  # t-test sample size per arm (randomized, before dropout)


@dataclass
class SimulationRun:
    """A whole simulation: settings, one row per design x scenario, and the time it took."""

    designs: list[TrialDesign]
    n_sim: int
    seed: int
    background: float
    dropout: float
    model: dict[str, Any]
    rows: list[ScenarioResult] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"note": SYNTHETIC_NOTE, "synthetic": True, "n_sim": self.n_sim, "seed": self.seed,
                "background_m6": self.background, "dropout": self.dropout, "alpha": ALPHA,
                "analysis": {d.key: {"model": d.model, "method": d.method.upper(), "df": d.df}
                             for d in self.designs},
                "model": self.model, "designs": [asdict(d) for d in self.designs],
                "results": [asdict(r) for r in self.rows], "seconds": round(self.seconds, 2)}


# ------------------------------------------------------------------ designs and validation
def trial_designs(protocol: Protocol, keys: Sequence[str]) -> list[TrialDesign]:
    """The designs named ``v1``, ``v2`` (or ``1.0``, ``2.0``): protocol versions to simulate."""
    versions = {v.version: v for v in protocol.protocol_versions}
    aliases = {f"v{v.split('.')[0]}": v for v in versions if v.endswith(".0")}
    out = []
    for key in keys:
        key = key.strip()
        version = aliases.get(key.lower(), key)
        if version not in versions:
            raise SimulationError(f"--designs: unknown design {key!r}; use one of "
                                  f"{', '.join(sorted(aliases) + sorted(versions))}")
        pv = versions[version]
        cells = [a for a in pv.arms if a.receives_cells]
        if len(cells) != 1 or len(pv.arms) > 2:
            raise SimulationError(f"--designs: protocol {version} has arms {[a.code for a in pv.arms]}; "
                                  "the simulation needs one cell arm and at most one control arm")
        if pv.design == "randomized":
            ratio = pv.randomization.ratio if pv.randomization else {a.code: 1 for a in pv.arms}
            n_cell = round(pv.planned_enrollment * ratio[cells[0].code] / sum(ratio.values()))
        else:
            n_cell = pv.planned_enrollment
        key_name = next((k for k, v in aliases.items() if v == version), version)
        randomized = pv.design == "randomized"
        model = _plan_model(protocol, randomized, version)
        out.append(TrialDesign(key_name, version, randomized, pv.planned_enrollment, n_cell,
                               f"protocol {version}: {pv.allocation}, {pv.planned_enrollment} patients",
                               model.formula, model.covariance, model.method.lower(), model.df))
    if not out:
        raise SimulationError("--designs: name at least one design")
    return out


def check_settings(n_sim: int, dropout: float, cell_effects: Sequence[float], background: float | None) -> None:
    """Refuse impossible scenarios with a message naming the option, the value and the rule."""
    if not isinstance(n_sim, int) or n_sim < 1:
        raise SimulationError(f"--n-sim {n_sim}: the number of simulated trials must be a positive integer")
    if not (0.0 <= dropout < 1.0) or not math.isfinite(dropout):
        raise SimulationError(f"--dropout {dropout}: the dropout probability must be at least 0 and below 1")
    for x in [*cell_effects, *([] if background is None else [background])]:
        if not math.isfinite(x) or abs(x) > 50:
            raise SimulationError(f"effect {x}: LVEF effects must be finite and within +/-50 points")
    if not cell_effects:
        raise SimulationError("--cell-effect: give at least one cell effect")


# ------------------------------------------------------------------ data and analysis
def simulate_lvef(model: LvefModel, cell: np.ndarray, dropout: float, rng: np.random.Generator,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Baseline LVEF (n,) and change from baseline (n, visits) with NaN after dropout, for subjects
    with ``cell`` True (cell arm) or False (background only). Vectorized form of the cohort's draws."""
    n = len(cell)
    base = np.clip(rng.normal(model.baseline_mean, model.baseline_sd, n), model.baseline_min, model.inclusion_max)
    redraw = base >= model.inclusion_max
    while redraw.any():  # truncated at the inclusion limit, as the cohort does
        base[redraw] = np.clip(rng.normal(model.baseline_mean, model.baseline_sd, redraw.sum()),
                               model.baseline_min, model.inclusion_max)
        redraw = base >= model.inclusion_max
    response = rng.normal(model.response_mean, model.response_sd, n)
    mean_change = np.asarray(model.background)[None, :] + np.outer(cell, np.asarray(model.cell_effect))
    visits = np.clip(base[:, None] + mean_change * response[:, None]
                     + rng.normal(0.0, model.noise_sd, (n, len(model.background))), *model.value_range)
    change = visits - base[:, None]
    drops = rng.random(n) < dropout
    last = rng.integers(0, len(model.background), n)  # number of follow-up visits kept by a dropout
    change[drops[:, None] & (np.arange(change.shape[1])[None, :] >= last[:, None])] = np.nan
    return base, change


def _design_arrays(base: np.ndarray, change: np.ndarray, cell: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The SAP model's design and the contrast of the cell effect at the last visit.

    Single arm: [1, BASE, V2..VT, BASE:V2..VT]; contrast = LS mean at the last visit at the mean
    baseline of the analysed rows. Randomized: [1, BASE, ARM, V2..VT, ARM:V2..VT, BASE:V2..VT];
    contrast = arm difference at the last visit.
    """
    n, T = change.shape
    vis = np.zeros((n, T, T - 1))
    for k in range(1, T):
        vis[:, k, k - 1] = 1.0
    b = np.broadcast_to(base[:, None, None], (n, T, 1))
    ones = np.ones((n, T, 1))
    if cell is None:
        X = np.concatenate([ones, b, vis, vis * b], axis=2)
        observed = np.isfinite(change) & np.isfinite(change).any(axis=1, keepdims=True)
        mean_base = float(np.broadcast_to(base[:, None], (n, T))[observed].mean())
        last = np.zeros(X.shape[2])
        last[0], last[1], last[1 + (T - 1)], last[1 + 2 * (T - 1)] = 1.0, mean_base, 1.0, mean_base
        return X, last
    a = np.broadcast_to(cell.astype(float)[:, None, None], (n, T, 1))
    X = np.concatenate([ones, b, a, vis, vis * a, vis * b], axis=2)
    diff = np.zeros(X.shape[2])
    diff[2] = 1.0
    diff[3 + (T - 1) + (T - 2)] = 1.0  # ARM:V_T
    return X, diff


def analyse_trial(design: TrialDesign, base: np.ndarray, change: np.ndarray, cell: np.ndarray):
    """The SAP's MMRM on one simulated trial; returns the cell-effect estimate (``ContrastFit``)."""
    X, contrast = _design_arrays(base, change, cell if design.randomized else None)
    return fit_contrast(change, X, contrast, structure=design.covariance, df=design.df, method=design.method,
                        alpha=ALPHA)


def _mcse_rate(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else float("nan")


def summarise(design: TrialDesign, truth: float, background: float, dropout: float, estimates: np.ndarray,
              lower: np.ndarray, upper: np.ndarray, p_values: np.ndarray, n_failed: int) -> ScenarioResult:
    """Power, bias, coverage and CI width with Monte Carlo SEs from the successful fits."""
    n = len(estimates)
    if n == 0:
        raise SimulationError(f"design {design.key}: every simulated trial failed to fit")
    reject = float(np.mean(p_values < ALPHA))
    cover = float(np.mean((lower <= truth) & (truth <= upper)))
    width = upper - lower
    sd = float(np.std(estimates, ddof=1)) if n > 1 else float("nan")
    return ScenarioResult(
        design=design.key, version=design.version, n=design.n, cell_effect=truth, background=background,
        dropout=dropout, n_sim=n + n_failed, n_failed=n_failed, power=reject, power_mcse=_mcse_rate(reject, n),
        mean_estimate=float(np.mean(estimates)), bias=float(np.mean(estimates) - truth),
        bias_mcse=sd / math.sqrt(n), coverage=cover, coverage_mcse=_mcse_rate(cover, n),
        ci_width=float(np.mean(width)),
        ci_width_mcse=float(np.std(width, ddof=1) / math.sqrt(n)) if n > 1 else float("nan"), empirical_se=sd)


def analytic_power(design: TrialDesign, model: LvefModel, dropout: float) -> float | None:
    """Two-sample t-test power at the last visit (statsmodels ``TTestIndPower``), randomized designs only.

    Effect = the cell effect; SD = the pooled within-arm SD of the last change implied by the model
    (response and reading noise); n per arm = completers (1 - dropout). In this model the baseline is
    independent of the change, so the ANCOVA's power equals the t-test's.
    """
    if not design.randomized:
        return None
    from statsmodels.stats.power import TTestIndPower

    effect = model.cell_effect[-1]
    var_cell = (model.background[-1] + effect) ** 2 * model.response_sd**2 + model.noise_sd**2
    var_ctrl = model.background[-1] ** 2 * model.response_sd**2 + model.noise_sd**2
    sd = math.sqrt((var_cell + var_ctrl) / 2)
    n_cell = design.n_cell * (1 - dropout)
    n_ctrl = (design.n - design.n_cell) * (1 - dropout)
    if effect == 0:
        return ALPHA
    return float(TTestIndPower().power(effect_size=effect / sd, nobs1=n_cell, alpha=ALPHA, ratio=n_ctrl / n_cell))


CHUNK = 50  # trials per unit of work (progress step; what a worker process gets at a time)


def _simulate_chunk(design: TrialDesign, model: LvefModel, dropout: float,
                    seeds: Sequence[np.random.SeedSequence]) -> np.ndarray:
    """Simulate and analyse one trial per seed; rows (estimate, lower, upper, p, ok). Pure.

    The SAP's MMRM (us, Kenward-Roger) is fitted to the whole chunk at once (:func:`fit_contrasts`,
    the same algorithm in lockstep); a trial it leaves aside, and every trial of another model, is
    fitted alone by :func:`fit_contrast` with its fallbacks."""
    out = np.zeros((len(seeds), 5))
    cell = np.arange(design.n) < design.n_cell
    trials = [simulate_lvef(model, cell, dropout, np.random.default_rng(seed)) for seed in seeds]
    fitted = np.zeros(len(seeds), bool)
    if _batch_fits(design):
        arrays = [_design_arrays(base, change, cell if design.randomized else None) for base, change in trials]
        try:
            fits, fitted = fit_contrasts(np.stack([change for _, change in trials]), np.stack([X for X, _ in arrays]),
                                         np.stack([contrast for _, contrast in arrays]), alpha=ALPHA,
                                         method=design.method)
        except (np.linalg.LinAlgError, ValueError, ArithmeticError):
            fitted = np.zeros(len(seeds), bool)  # numerically unusual chunk: every trial alone
        else:
            good = fitted & np.isfinite(fits["std_error"])
            out[good] = np.column_stack([fits["estimate"], fits["lower"], fits["upper"], fits["p_value"],
                                         np.ones(len(seeds))])[good]
    for k in np.flatnonzero(~fitted):
        base, change = trials[k]
        try:
            fit = analyse_trial(design, base, change, cell)
        except (MMRMError, np.linalg.LinAlgError, ValueError, ArithmeticError):
            continue  # a failed fit: counted in n_failed, never hidden
        if fit.converged and math.isfinite(fit.std_error):
            out[k] = (fit.estimate, fit.lower, fit.upper, fit.p_value, 1.0)
    return out


def _batch_fits(design: TrialDesign) -> bool:
    """Whether the design's MMRM is the one :func:`fit_contrasts` implements (us, REML/ML, KR)."""
    return (design.covariance == "us" and METHODS.get(str(design.df).lower()) == "kenward-roger"
            and design.method in ("reml", "ml"))


def analytic_sample_size(model: LvefModel, dropout: float, power: float = 0.8) -> float | None:
    """Patients per arm to randomize for ``power`` with the two-sample t-test at the last visit
    (statsmodels ``TTestIndPower.solve_power``, 1:1, two-sided 5%), inflated for dropout; None at
    effect 0."""
    from statsmodels.stats.power import TTestIndPower

    effect = model.cell_effect[-1]
    if effect == 0:
        return None
    var_cell = (model.background[-1] + effect) ** 2 * model.response_sd**2 + model.noise_sd**2
    var_ctrl = model.background[-1] ** 2 * model.response_sd**2 + model.noise_sd**2
    n = TTestIndPower().solve_power(effect_size=effect / math.sqrt((var_cell + var_ctrl) / 2), power=power,
                                    alpha=ALPHA, ratio=1.0)
    return float(n / (1 - dropout))


def run_simulation(protocol: Protocol, designs: Sequence[str] = ("v1", "v2"), *, n_sim: int = 1000,
                   cell_effects: Sequence[float] = DEFAULT_CELL_EFFECTS, background: float | None = None,
                   dropout: float = 0.1, seed: int = 20200301, model: LvefModel = DEFAULT_LVEF_MODEL,
                   workers: int = 1, progress: Callable[[str, int], None] | None = None) -> SimulationRun:
    """Simulate ``n_sim`` trials of each design for each cell effect (M6, LVEF points) and analyse them.

    ``background`` (M6 points; default: the model's) is the improvement without cells. Same seed,
    same simulation: every trial draws from its own stream of ``seed`` (``SeedSequence``), so the
    result does not depend on ``workers`` (processes; 1 = in this process). ``progress`` is called
    with a description and the number of trials just finished.
    """
    import time
    from concurrent.futures import ProcessPoolExecutor

    check_settings(n_sim, dropout, list(cell_effects), background)
    if workers < 1:
        raise SimulationError(f"--workers {workers}: use at least one worker")
    chosen = trial_designs(protocol, designs)
    base_model = model.scaled(background=background)
    run = SimulationRun(chosen, n_sim, seed, base_model.background[-1], dropout,
                        {"background": list(base_model.background), "cell_effect_default": list(model.cell_effect),
                         "response_sd": model.response_sd, "noise_sd": model.noise_sd,
                         "baseline": [model.baseline_mean, model.baseline_sd, model.inclusion_max],
                         "visits": list(protocol.endpoints.secondary.visits)})
    effects = sorted({float(x) for x in cell_effects})
    cells = [(d, e) for d in chosen for e in effects]
    streams = np.random.SeedSequence(seed).spawn(len(cells))
    jobs = []  # (cell index, start, design, model, seeds)
    for c, ((design, effect), stream) in enumerate(zip(cells, streams)):
        trial_seeds = stream.spawn(n_sim)
        for start in range(0, n_sim, CHUNK):
            jobs.append((c, start, design, base_model.scaled(cell_effect=effect), trial_seeds[start:start + CHUNK]))
    results = {c: np.zeros((n_sim, 5)) for c in range(len(cells))}
    started = time.perf_counter()

    def collect(job, chunk: np.ndarray) -> None:
        c, start, design, _, seeds = job
        results[c][start:start + len(seeds)] = chunk
        if progress:
            progress(f"{design.key} ({design.version}), cell effect {cells[c][1]:g}", len(seeds))

    if workers == 1:
        for job in jobs:
            collect(job, _simulate_chunk(job[2], job[3], dropout, job[4]))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [(job, pool.submit(_simulate_chunk, job[2], job[3], dropout, job[4])) for job in jobs]
            for job, future in futures:
                collect(job, future.result())
    for c, (design, effect) in enumerate(cells):
        r = results[c]
        ok = r[:, 4] == 1.0
        row = summarise(design, effect, base_model.background[-1], dropout, r[ok, 0], r[ok, 1], r[ok, 2], r[ok, 3],
                        int((~ok).sum()))
        if design.randomized:
            scenario = base_model.scaled(cell_effect=effect)
            row = ScenarioResult(**{**asdict(row), "analytic_power": analytic_power(design, scenario, dropout),
                                    "analytic_n_per_arm_80": analytic_sample_size(scenario, dropout)})
        run.rows.append(row)
    run.seconds = time.perf_counter() - started
    return run


# ------------------------------------------------------------------ outputs
def design_cost_summary(run: SimulationRun) -> dict[str, Any]:
    """The report's "What the change of design cost" block: the table rows plus the headline numbers."""
    rows = [asdict(r) for r in run.rows]
    default_effect = max((r.cell_effect for r in run.rows), key=lambda x: -abs(x - DEFAULT_LVEF_MODEL.cell_effect[-1]))

    def pick(randomized: bool, effect: float) -> dict[str, Any] | None:
        keys = {d.key for d in run.designs if d.randomized == randomized}
        return next((asdict(r) for r in run.rows if r.design in keys and r.cell_effect == effect), None)

    return {**run.to_dict(), "rows": rows, "headline_cell_effect": default_effect,
            "randomized_at_effect": pick(True, default_effect), "single_arm_at_effect": pick(False, default_effect),
            "randomized_null": pick(True, 0.0), "single_arm_null": pick(False, 0.0)}


CSV_COLUMNS = [f for f in ScenarioResult.__dataclass_fields__]


def write_outputs(run: SimulationRun, out_dir: Path) -> list[Path]:
    """``simulation.csv``, ``simulation.json`` and the figure ``simulation.png`` / ``.svg`` in ``out_dir``."""
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([asdict(r) for r in run.rows], columns=CSV_COLUMNS)
    table["data"] = "SYNTHETIC simulation (regenheart.synth.model)"  # the label travels with the table
    csv_path = out_dir / "simulation.csv"
    table.to_csv(csv_path, index=False, float_format="%.6g")
    json_path = out_dir / "simulation.json"
    json_path.write_text(json.dumps(run.to_dict(), indent=1, allow_nan=False, default=_json_default),
                         encoding="utf-8")
    return [csv_path, json_path, *write_figure(run, out_dir / "simulation")]


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def write_figure(run: SimulationRun, stem: Path) -> list[Path]:
    """Power and bias against the cell effect, one line per design, with 95% Monte Carlo bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.8))
    FigureCanvasAgg(fig)
    ax_power, ax_bias = fig.subplots(1, 2)
    for design in run.designs:
        rows = sorted((r for r in run.rows if r.design == design.key), key=lambda r: r.cell_effect)
        x = [r.cell_effect for r in rows]
        label = f"{design.key}: {'randomized' if design.randomized else 'single arm'}, n={design.n}"
        ax_power.errorbar(x, [r.power for r in rows], yerr=[1.96 * r.power_mcse for r in rows], marker="o",
                          capsize=3, label=label)
        ax_bias.errorbar(x, [r.bias for r in rows], yerr=[1.96 * r.bias_mcse for r in rows], marker="o",
                         capsize=3, label=label)
    ax_power.axhline(ALPHA, color="grey", lw=0.8, ls=":")
    ax_power.axhline(0.8, color="grey", lw=0.8, ls="--")
    ax_power.set(xlabel="true cell effect on LVEF at month 6 (points)", ylabel="share of trials with p < 0.05",
                 ylim=(0, 1.02), title="Power (type I error at 0)")
    ax_bias.axhline(0, color="grey", lw=0.8)
    ax_bias.set(xlabel="true cell effect on LVEF at month 6 (points)", ylabel="mean estimate - truth (points)",
                title="Bias of the cell-effect estimate")
    ax_power.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"SYNTHETIC design simulation: {run.n_sim} trials per point, background "
                 f"{run.background:g} points, dropout {run.dropout:g}", fontsize=9)
    fig.tight_layout()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=120, metadata={"Software": "regenheart"})
    fig.savefig(paths[1], metadata={"Date": None})
    return paths
