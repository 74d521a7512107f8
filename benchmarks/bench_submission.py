"""Benchmark: the regulatory submission package (SDTM + ADaM as XPT v5 and Dataset-JSON, Define-XML + HTML,
conformance checks, manifest) for a generated synthetic trial.

Run: .venv/bin/python benchmarks/bench_submission.py [--subjects 1000] [--db PATH] [--pdf] [--seed N]
The trial (N infused subjects plus N/6 screen failures) is entered through the capture service once and kept
at --db (default: /tmp/regenheart-bench-<N>.db) so later runs time only the package. Prints the time of each
phase; with --pdf the study report (analysis + SAP + HTML) is made and rendered to PDF too.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20200301)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--pdf", action="store_true", help="also the study report (SAP) and its PDF")
    args = parser.parse_args()
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
        t = time.perf_counter()
        result = build_submission(engine, protocol, Path(tmp) / "submission",
                                  protocol_bytes=default_protocol_text().encode(), report_html=report, pdf=args.pdf)
        total = time.perf_counter() - t
    engine.dispose()
    m = result.manifest
    rows = {f["path"].split("/")[0] for f in m["files"]}
    print(f"package: {len(m['files'])} files ({', '.join(sorted(rows))}); conformance {m['conformance']['errors']} "
          f"errors, {m['conformance']['warnings']} warnings")
    for phase, seconds in result.timings.items():
        print(f"  {phase:>22}: {seconds:6.2f} s")
    print(f"submission package for {args.subjects} subjects: {total:.2f} s")


if __name__ == "__main__":
    main()
