"""Benchmark of the MMRM engine (regenheart.stats.mmrm).

Run from the repository root:  .venv/bin/python benchmarks/bench_mmrm.py [--quick]

Cases (unstructured covariance, REML, Satterthwaite df unless stated):
  1. fev_data (200 subjects, 4 visits): FEV1 ~ RACE + SEX + ARMCD*AVISIT + us(AVISIT | USUBJID)
  2. simulated 1,000 subjects x 10 visits with dropout and intermittent missing values:
     Y ~ BASE + ARM*AVISIT + us(AVISIT | USUBJID)  (21 fixed effects, 55 covariance parameters)
  3. simulated 100,000 subjects x 4 visits, same model (9 fixed effects, 10 covariance parameters)
Each time is the wall-clock time of ``fit_mmrm`` (parse, design, optimize, df machinery), best and
median of several runs after one warm-up run; "+ inference" adds type 3 tests and LS means / differences by
visit. Writes nothing; prints a Markdown table.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _machine import cpu_model  # benchmarks run as scripts: their folder is on sys.path

from regenheart.stats.mmrm import MMRMWarning, fit_mmrm

ORACLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "oracles"


def load_fev() -> pd.DataFrame:
    d = pd.read_csv(ORACLES / "fev_data.csv")
    d["AVISIT"] = pd.Categorical(d["AVISIT"], ["VIS1", "VIS2", "VIS3", "VIS4"])
    d["ARMCD"] = pd.Categorical(d["ARMCD"], ["PBO", "TRT"])
    d["RACE"] = pd.Categorical(d["RACE"], ["Asian", "Black or African American", "White"])
    d["SEX"] = pd.Categorical(d["SEX"], ["Male", "Female"])
    return d


def simulate(n: int, T: int, seed: int = 2024) -> pd.DataFrame:
    """Two-arm trial: AR(1)-like correlation with growing variance, ~20% monotone dropout by the
    last visit plus 5% intermittent missing values."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    sd = np.linspace(4, 8, T)
    S = np.outer(sd, sd) * 0.7 ** np.abs(np.subtract.outer(t, t))
    arm = rng.integers(0, 2, n)
    base = rng.normal(50, 6, n)
    mean = 0.5 * base[:, None] + 1.0 * t[None] + 0.4 * arm[:, None] * t[None]
    Y = mean + rng.standard_normal((n, T)) @ np.linalg.cholesky(S).T
    drop = rng.integers(1, 5 * T, n)  # visit index from which a subject has dropped out
    Y[t[None, :] >= drop[:, None]] = np.nan
    Y[rng.random((n, T)) < 0.05] = np.nan
    visits = [f"V{k + 1:02d}" for k in t]
    return pd.DataFrame(
        {
            "USUBJID": np.repeat(np.arange(n), T),
            "AVISIT": pd.Categorical(np.tile(visits, n), visits),
            "ARM": pd.Categorical(np.repeat(np.where(arm == 1, "TRT", "PBO"), T), ["PBO", "TRT"]),
            "BASE": np.repeat(base, T),
            "Y": Y.reshape(-1),
        }
    )


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """(best, median) wall-clock seconds over ``repeat`` runs after a warm-up run.

    The best time is the least disturbed by other processes on a shared machine."""
    out = fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), out


def main() -> None:
    quick = "--quick" in sys.argv
    warnings.simplefilter("ignore", MMRMWarning)
    cases = [
        (
            "fev_data, 200 subj x 4 visits (197 with data), us",
            load_fev(),
            "FEV1 ~ RACE + SEX + ARMCD*AVISIT + us(AVISIT | USUBJID)",
            "satterthwaite",
            31,
            "AVISIT",
            "ARMCD",
        ),
        (
            "fev_data, same model, Kenward-Roger",
            load_fev(),
            "FEV1 ~ RACE + SEX + ARMCD*AVISIT + us(AVISIT | USUBJID)",
            "kenward-roger",
            31,
            "AVISIT",
            "ARMCD",
        ),
        (
            "simulated 1,000 subj x 10 visits, us",
            simulate(1_000, 10),
            "Y ~ BASE + ARM*AVISIT + us(AVISIT | USUBJID)",
            "satterthwaite",
            7,
            "AVISIT",
            "ARM",
        ),
        (
            "simulated 100,000 subj x 4 visits, us",
            simulate(100_000, 4),
            "Y ~ BASE + ARM*AVISIT + us(AVISIT | USUBJID)",
            "satterthwaite",
            1 if quick else 3,
            "AVISIT",
            "ARM",
        ),
    ]
    print(
        f"machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}; Python {platform.python_version()}, "
        f"numpy {np.__version__}, pandas {pd.__version__}; load average {os.getloadavg()[0]:.2f}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )
    print()
    print(
        "| case | n obs | patterns | iterations | fit, best / median (s) | fit + type 3 + LS means/diffs, best (s) | -2 logL |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, data, formula, dfm, repeat, visit, arm in cases:
        t_best, t_med, fit = timed(lambda data=data, formula=formula, dfm=dfm: fit_mmrm(data, formula, df=dfm), repeat)

        def full(data=data, formula=formula, dfm=dfm, arm=arm, visit=visit):
            f = fit_mmrm(data, formula, df=dfm)
            f.type3()
            f.lsmeans(arm, by=visit)
            f.pairwise(arm, by=visit)
            return f

        t_all, _, _ = timed(full, max(1, repeat // 3))
        print(
            f"| {name} ({dfm}) | {fit.n_observations:,} | {len(fit._lik.patterns)} | {fit.n_iterations} | "
            f"{t_best:.3f} / {t_med:.3f} | {t_all:.3f} | {fit.neg2loglik:.4f} |"
        )


if __name__ == "__main__":
    main()
