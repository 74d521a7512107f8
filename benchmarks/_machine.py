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
