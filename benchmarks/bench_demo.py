"""Benchmark: `regenheart demo` end to end (entry, analysis, report, CT.gov files, design simulation,
submission package with PDF), with the time of each step.

Run: .venv/bin/python benchmarks/bench_demo.py [--runs N] [--out DIR]
Prints, per run: wall time of the whole command in a fresh process (imports included), the CPU seconds
of that process and its children, the load average before the run, and the steps the pipeline timed
(``run_demo``'s ``timings``; the submission package's own timings). The machine is often shared: the
load average says how much of the wall time was waiting for a core.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs in the child process: the demo as the CLI runs it, its step timings printed as one JSON line.
CHILD = """
import json, sys, time
t0 = time.perf_counter()
from regenheart.cli.pipeline import run_demo
from regenheart.protocol import load_protocol
from pathlib import Path
protocol = load_protocol()
imported = time.perf_counter() - t0
run, entered = run_demo(protocol, Path(sys.argv[1]), 20200301)
sub = entered["submission"]
print(json.dumps({"imports and protocol": imported, "steps": entered.get("timings", {}),
                  "submission": sub.timings, "errors": len(sub.errors), "pdf_problem": sub.pdf_problem}))
# End as the regenheart console script does (cli.console:main): exit handlers, no interpreter teardown.
import atexit, os
sys.stdout.flush()
atexit._run_exitfuncs()
os._exit(0)
"""


sys.path.insert(0, str(Path(__file__).parent))
from _machine import core_speed_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="demo folder (default: a temporary one)")
    args = parser.parse_args()
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
            out = args.out or Path(tmp) / "demo"
            load = os.getloadavg()[0]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", CHILD, str(out)], capture_output=True, text=True, check=False)
            wall = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if done.returncode != 0:
                sys.exit(f"the demo failed:\n{done.stderr[-3000:]}")
            used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            report = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"run {run + 1}: wall {wall:.1f} s, CPU {used:.1f} s (process and children), "
                  f"load average before {load:.1f}, core speed probe {core_speed_seconds():.2f} s after; "
                  f"conformance errors {report['errors']}, "
                  f"PDF problem: {report['pdf_problem']}")
            steps = dict(report["steps"])
            cpu = steps.pop("cpu", {})
            children = steps.pop("children_cpu", {})
            print(f"  {'step (this process)':44s} {'wall':>8s} {'CPU':>8s}")
            print(f"  {'imports and protocol':44s} {report['imports and protocol']:6.2f} s")
            for step, seconds in steps.items():
                print(f"  {step:44s} {seconds:6.2f} s {cpu.get(step, float('nan')):6.2f} s")
            for step, seconds in children.items():
                print(f"  child process: {step:29s} {'':8s} {seconds:6.2f} s")
            print("  submission package: " + ", ".join(f"{k} {v:.2f} s" for k, v in report["submission"].items()))


if __name__ == "__main__":
    main()
