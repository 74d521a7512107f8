"""Benchmark: import a ~1,000-subject SYNTHETIC trial from filled form templates through the capture service.

Run: .venv/bin/python benchmarks/bench_import.py [--subjects 999] [--seed N] [--format csv|xlsx] [--profile]

1. Plan a synthetic cohort of N screened subjects (regenheart.synth, the trial's 30:5 mix).
2. Write it as filled templates (the template writer, rows built from the plan's final values).
3. Read the templates back (SourceData) and import them into a new SQLite study database with full
   validation, eligibility, derived scores and the hash-chained audit trail (durable commits).
4. Verify the audit chain, reconcile every stored value with the trail (store/reconcile.py); import the
   same files again (must write nothing).
Prints form records per second of the import step and of read + import.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import os
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_model

from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.exchange.importer import import_source
from regenheart.exchange.templates import ADVERSE_EVENTS, DISPOSITION, SUBJECTS, read_templates, write_templates
from regenheart.protocol import load_protocol
from regenheart.protocol.missing import is_missing, missing_code, missing_reason
from regenheart.store.audit import verify_chain
from regenheart.store.db import create_study_database
from regenheart.store.reconcile import reconcile
from regenheart.synth.cohort import CohortPlan, cohort_sizes, generate_cohort

IMPORTER = Actor("cli:benchmark", "data_manager")


def _cell(value: Any) -> Any:
    """A planned value as a site writes it in a template: a missing-data code as ``CODE`` or ``CODE: reason``."""
    if not is_missing(value):
        return value
    reason = missing_reason(value)
    return f"{missing_code(value)}: {reason}" if reason else missing_code(value)


def plan_rows(cohort: CohortPlan) -> dict[str, list[dict[str, Any]]]:
    """Template rows of a cohort plan: what a site would have on file (final values after corrections)."""
    rows: dict[str, list[dict[str, Any]]] = {SUBJECTS: [], ADVERSE_EVENTS: [], DISPOSITION: []}
    for subject in cohort.subjects:
        rows[SUBJECTS].append({"subject": subject.code, "site": subject.site, "screening_date": subject.screening_date,
                               "consent_date": subject.consent_date, "eligible": "Y" if subject.enrol else "N",
                               "enrolled_date": subject.enrolled_date, "synthetic": "Y"})
        corrected = {(c.visit, c.form): c.data for c in subject.corrections}
        for form in subject.forms:
            data = {name: _cell(value) for name, value in
                    {**form.data, **corrected.get((form.visit, form.form), {})}.items()}
            rows.setdefault(form.form, []).append({"subject": subject.code, "visit": form.visit,
                                                   "visit_date": subject.visit_dates[form.visit], **data})
        for seq, ae in enumerate(subject.adverse_events, start=1):
            rows[ADVERSE_EVENTS].append({"subject": subject.code, "ae_seq": seq, **ae})
        if subject.disposition:
            rows[DISPOSITION].append({"subject": subject.code, **subject.disposition})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    # 999: the protocol's subject-code rule (site-NNN) numbers at most 999 subjects per site
    parser.add_argument("--subjects", type=int, default=999)
    parser.add_argument("--seed", type=int, default=20200301)
    parser.add_argument("--format", choices=("csv", "xlsx"), default="csv")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the import step on the CPU clock (top 25 by own time)")
    args = parser.parse_args()
    protocol = load_protocol()
    # the synthetic plan runs up to 2022; 'today' is fixed so the benchmark does not depend on the date
    today = lambda: dt.date(2026, 1, 1)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        cohort = generate_cohort(protocol, seed=args.seed, **cohort_sizes(args.subjects))
        files = write_templates(protocol, folder / "templates", args.format, plan_rows(cohort), synthetic=True)
        t1 = time.perf_counter()
        source_path = files[0] if args.format == "xlsx" else folder / "templates"
        source = read_templates(source_path, protocol)
        t2 = time.perf_counter()
        assert not source.problems and not source.unmapped, (source.problems[:3], source.unmapped[:3])
        engine = create_study_database(folder / "study.db", {"synthetic": "true"})
        service = CaptureService(engine, protocol, today=today)
        # CPU clock: on a shared machine, wall-clock timings also count the time other processes ran
        profiler = cProfile.Profile(time.process_time) if args.profile else None
        c0 = time.process_time()
        t3 = time.perf_counter()
        if profiler:
            profiler.enable()
        report = import_source(service, IMPORTER, source)
        if profiler:
            profiler.disable()
        t4 = time.perf_counter()
        cpu = time.process_time() - c0
        assert report.ok, report.rows()[:5]
        chain = verify_chain(engine)
        replayed = reconcile(engine, protocol)  # every stored value equals its last audited value
        t5 = time.perf_counter()
        assert chain.ok and replayed.ok, (chain, replayed.mismatches[:3])
        again = import_source(service, IMPORTER, read_templates(source_path, protocol))
        t6 = time.perf_counter()
        assert again.ok and again.audit_records == 0
        engine.dispose()
    forms = report.forms.written
    print(f"cohort: {len(cohort.subjects)} subjects ({cohort.n_enrolled} enrolled), SYNTHETIC")
    print(f"plan + write {args.format} templates     {t1 - t0:7.2f} s")
    print(f"read templates                  {t2 - t1:7.2f} s")
    print(f"import through capture          {t4 - t3:7.2f} s  ({forms} form records, {forms / (t4 - t3):.0f}/s; "
          f"CPU {cpu:.2f} s = {forms / cpu:.0f}/s of CPU; {report.values.written} values; "
          f"{report.audit_records} audit records, {report.audit_records / (t4 - t3):.0f}/s)")
    print(f"read + import                   {t4 - t1:7.2f} s  ({forms / (t4 - t1):.0f} form records/s)")
    print(f"verify audit chain + reconcile  {t5 - t4:7.2f} s  (chain ok={chain.ok}, {chain.records} records; "
          f"reconcile ok={replayed.ok}, {replayed.values_checked} values)")
    print(f"re-import (writes nothing)      {t6 - t5:7.2f} s  ({again.forms.unchanged} forms unchanged)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
