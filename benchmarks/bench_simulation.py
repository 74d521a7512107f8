"""Benchmark of the demo's design simulation: lockstep fits against one fit at a time.

Run from the repository root:  .venv/bin/python benchmarks/bench_simulation.py [--repeats R]

Times what ``regenheart demo`` runs beside the analysis, the design simulation of the protocol's
randomized and single-arm versions at the demo's settings (``simulate_design_cost``: 200 trials x 2
designs x 3 cell effects, seed 20200301, one process), in CPU seconds of this process, after one
warm-up call (lazy imports). Twice: as shipped (each chunk of trials fitted in lockstep by
``mmrm.batch.fit_contrasts``) and with every trial fitted alone by ``mmrm.arrays.fit_contrast``; the
two summaries must agree within 1e-9 relative (the script exits non-zero otherwise). Prints a
Markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time

import numpy as np
from _machine import cpu_model  # benchmarks run as scripts: their folder is on sys.path

from regenheart.cli.pipeline import simulate_design_cost
from regenheart.protocol import load_protocol
from regenheart.stats import simulate

SEED = 20200301


def _cpu_seconds(protocol, repeats: int) -> tuple[float, dict]:
    """Least CPU time of ``repeats`` calls (the least disturbed by other work) and the last summary."""
    times = []
    summary: dict = {}
    for _ in range(repeats):
        started = time.process_time()
        summary = simulate_design_cost(protocol, SEED, workers=1) or {}
        times.append(time.process_time() - started)
    return min(times), summary


def _largest_difference(a, b) -> float:
    """Largest relative difference between the numbers of two nested summaries (inf: different shape)."""
    if isinstance(a, dict):
        if set(a) != set(b):
            return math.inf
        return max((_largest_difference(a[k], b[k]) for k in a if k != "seconds"), default=0.0)
    if isinstance(a, list):
        if len(a) != len(b):
            return math.inf
        return max((_largest_difference(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, float) and isinstance(b, float):
        if a == b or (math.isnan(a) and math.isnan(b)):
            return 0.0
        return abs(a - b) / max(abs(a), abs(b))
    return 0.0 if a == b else math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    protocol = load_protocol()
    simulate_design_cost(protocol, 1, n_sim=5, workers=1)  # warm-up: lazy imports
    print(f"Machine: {os.cpu_count()} CPUs, {cpu_model()}; Python {platform.python_version()}, numpy "
          f"{np.__version__}; load average before: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    lockstep, fast = _cpu_seconds(protocol, args.repeats)
    batch_fits = simulate._batch_fits
    simulate._batch_fits = lambda design: False  # every trial through fit_contrast
    try:
        alone, slow = _cpu_seconds(protocol, args.repeats)
    finally:
        simulate._batch_fits = batch_fits
    difference = _largest_difference(fast, slow)
    print(f"| fits | CPU s (least of {args.repeats}) | trials | largest relative difference |")
    print("|---|---|---|---|")
    trials = sum(r["n_sim"] for r in fast["results"])
    print(f"| lockstep (mmrm.batch) | {lockstep:.2f} | {trials} | {difference:.1e} |")
    print(f"| one at a time (fit_contrast) | {alone:.2f} | {trials} | |")
    print(f"\nload average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not difference <= 1e-9:
        sys.exit("the two paths disagree by more than 1e-9 relative")


if __name__ == "__main__":
    main()
