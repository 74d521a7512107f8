"""Benchmark of the design simulation (regenheart.stats.simulate).

Run from the repository root:  .venv/bin/python benchmarks/bench_simulate.py [--n-sim N] [--workers W]

Simulates N trials (default 1,000) of each design, v1 (protocol 1.0, randomized, 60 patients) and
v2 (protocol 2.0, single arm, 30 patients), at the synthetic model's cell effect (3.5 LVEF points at
month 6), and fits the SAP's MMRM (unstructured covariance, REML, Kenward-Roger df) to each on arrays.
Reports wall-clock and CPU time, fits per second, the machine's load average, and the operating
characteristics found (as a sanity check). Writes nothing; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from _machine import cpu_model  # benchmarks run as scripts: their folder is on sys.path

from regenheart.protocol import load_protocol
from regenheart.stats.simulate import run_simulation
from regenheart.synth.model import DEFAULT_LVEF_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sim", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    protocol = load_protocol()
    effect = DEFAULT_LVEF_MODEL.cell_effect[-1]
    print(f"Machine: {os.cpu_count()} CPUs, {cpu_model()}; Python {platform.python_version()}, numpy "
          f"{np.__version__}; load average before: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print("| workers | trials (v1 + v2) | wall (s) | CPU this process (s) | trials/s | load after | "
          "v1 power | v1 bias | v2 bias |")
    print("|---|---|---|---|---|---|---|---|---|")
    for workers in args.workers:
        cpu, wall = time.process_time(), time.perf_counter()
        run = run_simulation(protocol, ["v1", "v2"], n_sim=args.n_sim, cell_effects=[effect], workers=workers)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        v1 = next(r for r in run.rows if r.design == "v1")
        v2 = next(r for r in run.rows if r.design == "v2")
        trials = 2 * args.n_sim
        print(f"| {workers} | {trials:,} | {wall:.1f} | {cpu:.1f}{' (parent only)' if workers > 1 else ''} | "
              f"{trials / wall:.0f} | {os.getloadavg()[0]:.1f} | {v1.power:.3f} | {v1.bias:+.3f} | {v2.bias:+.3f} |")


if __name__ == "__main__":
    main()
