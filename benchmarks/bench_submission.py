"""Benchmark: the regulatory submission package (SDTM + ADaM as XPT v5 and Dataset-JSON, Define-XML + HTML,
conformance checks, manifest) for a generated synthetic trial.

Run: .venv/bin/python benchmarks/bench_submission.py [--subjects 1000] [--db PATH] [--pdf] [--seed N]
The trial (N infused subjects plus N/6 screen failures) is entered through the capture service once and kept
at --db (default: /tmp/regenheart-bench-<N>.db) so later runs time only the package. Prints the time of each
phase; with --pdf the study report (analysis + SAP + HTML) is made and rendered to PDF too.

    .venv/bin/python benchmarks/bench_submission.py --replicate-from regenheart-demo/study.db --subjects 1000
times the writers and checks alone at N subjects without entering them: the SDTM and ADaM datasets of an
existing study are built once and their subjects copied (new USUBJIDs) until there are N.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _machine import cpu_model

from regenheart.capture.service import CaptureService
from regenheart.cli.pipeline import analyze, study_meta
from regenheart.exchange.cdisc.submission import build_submission
from regenheart.protocol import load_protocol
from regenheart.protocol.loader import default_protocol_text
from regenheart.store.db import create_study_database, open_study_database
from regenheart.synth import generate_cohort
from regenheart.synth.entry import EntryStats, enter_subject


def make_trial(path: Path, subjects: int, seed: int, batch: int = 50) -> float:
    """Enter a synthetic trial of ``subjects`` infused patients through the capture service (every call
    validated and audited; ``batch`` subjects per transaction, as an import does); seconds taken."""
    protocol = load_protocol()
    t = time.perf_counter()
    engine = create_study_database(path, study_meta(protocol, synthetic=True, seed=seed), durable=False)
    cohort = generate_cohort(protocol, seed=seed, n_enrolled=subjects, n_screen_failures=max(1, subjects // 6))
    service, stats = CaptureService(engine, protocol), EntryStats()
    for start in range(0, len(cohort.subjects), batch):
        with service.unit_of_work(reason="synthetic benchmark trial"):
            for plan in cohort.subjects[start:start + batch]:
                enter_subject(service, plan, stats)
        print(f"  {min(start + batch, len(cohort.subjects))}/{len(cohort.subjects)} subjects entered", flush=True)
    engine.dispose()
    return time.perf_counter() - t


def replicated(datasets: dict, subjects: int) -> dict:
    """Copies of every dataset with its subjects repeated (USUBJID/SUBJID suffixed) to reach ``subjects``."""
    import copy
    import math

    import pandas as pd

    base = len(datasets["DM"].records) if "DM" in datasets else len(next(iter(datasets.values())).records)
    copies = max(1, math.ceil(subjects / max(base, 1)))
    out = {}
    for name, ds in datasets.items():
        ds = copy.copy(ds)
        frames = []
        for k in range(copies):
            frame = ds.records.copy()
            for column in ("USUBJID", "SUBJID"):
                if column in frame.columns and k:
                    frame[column] = frame[column].astype(str) + f"R{k}"
            frames.append(frame)
        ds.records = pd.concat(frames, ignore_index=True) if "USUBJID" in ds.records.columns else ds.records
        out[name] = ds
    return out


def bench_replicated(db: Path, subjects: int) -> None:
    from regenheart.derive.adam import adam_datasets
    from regenheart.derive.sdtm import build_sdtm
    from regenheart.exchange.cdisc.submission import study_info, write_package
    from regenheart.store.audit import utc_now
    from regenheart.store.snapshot import take_snapshot

    protocol = load_protocol()
    snap = take_snapshot(open_study_database(db))
    sdtm, adam = build_sdtm(snap, protocol), adam_datasets(snap, protocol)
    sdtm, adam = replicated(sdtm, subjects), replicated(adam, subjects)
    rows = sum(len(d.records) for d in [*sdtm.values(), *adam.values()])
    print(f"machine: {cpu_model()}; {len(sdtm['DM'].records)} subjects, {rows} records in "
          f"{len(sdtm)} SDTM + {len(adam)} ADaM datasets")
    with tempfile.TemporaryDirectory() as tmp:
        t, cpu = time.perf_counter(), time.process_time()
        result = write_package(sdtm, adam, Path(tmp) / "submission", pdf=False,
                               study=study_info(protocol, sdtm, utc_now(), synthetic=True))
        total, cpu = time.perf_counter() - t, time.process_time() - cpu
    for phase, seconds in result.timings.items():
        print(f"  {phase:>22}: {seconds:6.2f} s")
    print(f"writers and checks for {len(sdtm['DM'].records)} subjects: {total:.2f} s wall, {cpu:.2f} s CPU "
          f"(load average {os.getloadavg()[0]:.1f}) "
          f"({result.manifest['conformance']['errors']} errors, {result.manifest['conformance']['warnings']} warnings)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20200301)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--pdf", action="store_true", help="also the study report (SAP) and its PDF")
    parser.add_argument("--replicate-from", type=Path, default=None,
                        help="time the writers and checks on an existing study's datasets copied to N subjects")
    args = parser.parse_args()
    if args.replicate_from:
        bench_replicated(args.replicate_from, args.subjects)
        return
    db = args.db or Path(tempfile.gettempdir()) / f"regenheart-bench-{args.subjects}.db"
    if not db.exists():
        seconds = make_trial(db, args.subjects, args.seed)
        print(f"entered {args.subjects} subjects through the capture service in {seconds:.1f} s -> {db}")
    protocol = load_protocol()
    engine = open_study_database(db)
    print(f"machine: {cpu_model()}")
    with tempfile.TemporaryDirectory() as tmp:
        report = None
        if args.pdf:
            t = time.perf_counter()
            run = analyze(engine, protocol, Path(tmp) / "report")
            report = run.report_path
            print(f"study report (ADaM, SAP, HTML): {time.perf_counter() - t:.2f} s")
        t, cpu = time.perf_counter(), time.process_time()
        result = build_submission(engine, protocol, Path(tmp) / "submission",
                                  protocol_bytes=default_protocol_text().encode(), report_html=report, pdf=args.pdf)
        total, cpu = time.perf_counter() - t, time.process_time() - cpu
    engine.dispose()
    m = result.manifest
    rows = {f["path"].split("/")[0] for f in m["files"]}
    print(f"package: {len(m['files'])} files ({', '.join(sorted(rows))}); conformance {m['conformance']['errors']} "
          f"errors, {m['conformance']['warnings']} warnings")
    for phase, seconds in result.timings.items():
        print(f"  {phase:>22}: {seconds:6.2f} s")
    print(f"submission package for {args.subjects} subjects: {total:.2f} s wall, {cpu:.2f} s CPU "
          f"(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
