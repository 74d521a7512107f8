"""Throughput of regenheart.instruments.score_frame on 1,000,000 random valid response sets.

Run from the repository root:  .venv/bin/python benchmarks/bench_instruments.py [--rows N] [--repeat R]

For each instrument (KCCQ-12, SF-12 v1, SF-12 v2) two input frames are scored, both with a fixed seed:
  * "int64 complete": every item answered, int64 columns (typical of a cleaned export);
  * "float 10% missing": float64 columns with 10% NaN (unanswered), as read from a CSV with gaps.
Validation (range/integer checks) is included in the timing; frame generation is not.
Prints response sets per second (best of R runs, plus the median).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import pandas as pd
from _machine import cpu_model  # benchmarks run as scripts: their folder is on sys.path

from regenheart.instruments import INSTRUMENTS, score_frame


def make_frame(instrument: str, n: int, seed: int, p_missing: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {}
    for item in INSTRUMENTS[instrument].items:
        col = rng.integers(item.low, item.high + 1, size=n)
        if p_missing > 0:
            col = col.astype(np.float64)
            col[rng.random(n) < p_missing] = np.nan
        data[item.key] = col
    return pd.DataFrame(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: nproc={os.cpu_count()} cpu={cpu_model()!r} python={platform.python_version()} "
          f"numpy={np.__version__} pandas={pd.__version__}")
    print(f"rows={args.rows:,} repeat={args.repeat} (single process, numpy default threading)")
    print(f"{'instrument':<8} {'input':<18} {'best s':>8} {'median s':>9} "
          f"{'sets/s (best)':>15} {'sets/s (median)':>16}")
    for instrument in ("kccq12", "sf12v1", "sf12v2"):
        for label, p_missing in (("int64 complete", 0.0), ("float 10% missing", 0.10)):
            frame = make_frame(instrument, args.rows, seed=20240501, p_missing=p_missing)
            score_frame(instrument, frame.head(1000))  # warm-up
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                result = score_frame(instrument, frame)
                times.append(time.perf_counter() - t0)
            assert len(result) == args.rows
            best, med = min(times), statistics.median(times)
            print(f"{instrument:<8} {label:<18} {best:8.3f} {med:9.3f} "
                  f"{args.rows / best:15,.0f} {args.rows / med:16,.0f}")


if __name__ == "__main__":
    main()
