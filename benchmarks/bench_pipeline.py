"""Benchmark: the synthetic trial through the capture service, then snapshot -> ADaM -> SAP.

Run: .venv/bin/python benchmarks/bench_pipeline.py [--seed N] [--durable]
Prints the time of each phase and the capture throughput (form saves and audit records per second).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from regenheart.capture.service import CaptureService
from regenheart.derive.adam import derive_all
from regenheart.protocol import load_protocol
from regenheart.stats.analysis import run_sap
from regenheart.store.audit import verify_chain
from regenheart.store.db import create_study_database
from regenheart.store.snapshot import take_snapshot
from regenheart.synth import enter_cohort, generate_cohort


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=20200301)
    parser.add_argument("--durable", action="store_true", help="synchronous=FULL (fsync every commit)")
    args = parser.parse_args()
    protocol = load_protocol()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cohort = generate_cohort(protocol, seed=args.seed)
        t1 = time.perf_counter()
        engine = create_study_database(Path(tmp) / "study.db", {"synthetic": "true"}, durable=args.durable)
        stats = enter_cohort(CaptureService(engine, protocol), cohort)
        t2 = time.perf_counter()
        chain = verify_chain(engine)
        t3 = time.perf_counter()
        snap = take_snapshot(engine)
        data = derive_all(protocol, snap)
        t4 = time.perf_counter()
        run_sap(protocol, data, with_mmrm=False)
        t5 = time.perf_counter()
        run_sap(protocol, data)
        t6 = time.perf_counter()
    saves = stats.forms + stats.adverse_events + stats.corrections
    print(f"plan cohort ({len(cohort.subjects)} subjects)      {t1 - t0:7.2f} s")
    print(f"enter through capture              {t2 - t1:7.2f} s  ({saves} saves, {saves / (t2 - t1):.0f}/s; "
          f"{chain.records} audit records, {chain.records / (t2 - t1):.0f}/s; durable={args.durable})")
    print(f"verify audit chain                 {t3 - t2:7.2f} s")
    print(f"snapshot + ADaM                    {t4 - t3:7.2f} s")
    print(f"SAP without MMRM                   {t5 - t4:7.2f} s")
    print(f"SAP with MMRM (10 KR fits)         {t6 - t5:7.2f} s")


if __name__ == "__main__":
    main()
