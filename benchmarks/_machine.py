"""Machine description for benchmark reports (shared by the benchmark scripts)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, else what the platform module reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def core_speed_seconds() -> float:
    """Seconds one core takes for a fixed pure-Python loop (sum of 10 million squares), best of three.

    The benchmark machine is a virtual machine whose cores run at different speeds from hour to hour (the
    same loop took 0.53-0.85 s on one day) without any load or steal time showing: printed beside each
    result so that results from different hours can be compared.
    """
    import time

    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        sum(i * i for i in range(10_000_000))
        best = min(best, time.perf_counter() - started)
    return best
