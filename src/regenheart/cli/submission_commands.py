"""``regenheart submission --db DB --out DIR [--protocol FILE]``: the regulatory submission package.

SDTM and ADaM datasets as SAS XPT v5 and Dataset-JSON 1.1, Define-XML 2.1 (+ HTML) for each, the study report
as HTML and PDF, conformance.csv and manifest.json (see :mod:`regenheart.exchange.cdisc.submission`).
Errors a user can cause are one clear message on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from regenheart.cli.pipeline import AnalysisRun
    from regenheart.exchange.cdisc.pdf import PdfRender
    from regenheart.exchange.cdisc.submission import SubmissionResult
    from regenheart.protocol.models import Protocol

console = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(2)


def package_after_analysis(engine: Engine, protocol: Protocol, out_dir: Path, run: AnalysisRun, *,
                           protocol_bytes: bytes, pdf: bool = True,
                           progress: Callable[[str], None] | None = None,
                           pdf_render: PdfRender | None = None) -> SubmissionResult:
    """The submission package of a database whose study report ``run`` was just made from the same data
    (``pdf_render``: the report's PDF, started by the analysis; see :func:`regenheart.cli.pipeline.analyze`)."""
    from regenheart.cli.pipeline import with_active_version
    from regenheart.derive.adam import adam_datasets_from
    from regenheart.exchange.cdisc.submission import build_submission, package_verified_snapshot
    from regenheart.store.db import read_meta

    # The database's recorded protocol version is the one analysed (as in the study report).
    recorded = read_meta(engine).get("protocol_version")
    if recorded in [v.version for v in protocol.protocol_versions]:
        protocol = with_active_version(protocol, recorded)
    if run.snapshot is not None and run.analysis_data is not None and run.tabulations is not None:
        # The analysis verified the database, then read and derived it: the package is of that same snapshot.
        started = time.perf_counter()
        adam = adam_datasets_from(run.analysis_data, run.tabulations, protocol)
        built = time.perf_counter() - started
        result = package_verified_snapshot(run.snapshot, protocol, out_dir, sdtm=run.tabulations, adam=adam,
                                           protocol_bytes=protocol_bytes, report_html=run.report_path, pdf=pdf,
                                           progress=progress, pdf_render=pdf_render)
        result.timings = {"ADaM metadata": built, **result.timings, "total": time.perf_counter() - started}
        return result
    if pdf_render is not None:
        pdf_render.cancel()
    return build_submission(engine, protocol, out_dir, protocol_bytes=protocol_bytes, report_html=run.report_path,
                            expected_audit_head=run.results["snapshot"]["audit_head_hash"], pdf=pdf,
                            progress=progress)


def print_summary(result: SubmissionResult, out: Console = console) -> None:
    """Conformance summary (errors and warnings by rule), PDF status and where the package is."""
    from regenheart.exchange.cdisc.conformance import RULES

    m = result.manifest
    counts = m["conformance"]["by_rule"]
    table = Table(title="Conformance (conformance.csv)", show_lines=False)
    for name in ("Severity", "Rule", "Findings", "Rule description"):
        table.add_column(name)
    for severity, style in (("Error", "red"), ("Warning", "yellow")):
        for rule, n in sorted(counts[severity].items()):
            table.add_row(f"[{style}]{severity}[/]", rule, str(n), RULES[rule][1])
    if not counts["Error"] and not counts["Warning"]:
        table.add_row("[green]none[/]", "", "0", "no findings")
    out.print(table)
    errors, warnings = m["conformance"]["errors"], m["conformance"]["warnings"]
    verdict = "[green]0 errors[/]" if errors == 0 else f"[bold red]{errors} errors[/]"
    out.print(f"Conformance: {verdict}, {warnings} warnings")
    if result.pdf_problem:
        out.print(f"[yellow]report.pdf not written:[/] {result.pdf_problem}", highlight=False)
    timing = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in result.timings.items())
    label = " [yellow](SYNTHETIC data)[/]" if m.get("synthetic") else ""
    out.print(f"Submission package{label}: [bold]{result.out_dir}[/] ({len(m['files'])} files; {timing})\n"
              f"Manifest: {result.out_dir / 'manifest.json'} (audit head {m['database']['audit_head_hash'][:16]}..., "
              f"{m['database']['audit_records']} audit records)")


def submission(
    db: Annotated[Path, typer.Option("--db", help="Study database file (SQLite) or database URL.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the package (new, empty, or an earlier package).")],
    protocol: Annotated[Path | None, typer.Option("--protocol",
                                                  help="Protocol YAML (default: embedded RegenHeart).")] = None,
    pdf: Annotated[bool, typer.Option("--pdf/--no-pdf", help="Render the study report as PDF too.")] = True,
) -> None:
    """Build the regulatory submission package: SDTM + ADaM (XPT v5, Dataset-JSON), Define-XML, report, manifest."""
    from regenheart.capture.errors import CaptureError
    from regenheart.cli.pipeline import analyze
    from regenheart.exchange.cdisc.ct import TerminologyError
    from regenheart.exchange.cdisc.pdf import PdfRender
    from regenheart.exchange.cdisc.submission import SubmissionError
    from regenheart.protocol import ProtocolError, load_protocol
    from regenheart.protocol.loader import default_protocol_text
    from regenheart.store.db import DatabaseError, open_study_database

    try:
        study = load_protocol(protocol)
        protocol_bytes = protocol.read_bytes() if protocol else default_protocol_text().encode("utf-8")
        engine = open_study_database(db)
    except (ProtocolError, DatabaseError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot read {protocol}: {exc.strerror or exc}") from None
    try:
        with Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            # The number of steps (datasets) is known only once the datasets are built: a pulsing bar
            # with the current step and the elapsed time.
            task = bar.add_task("Study report (analysis datasets, SAP)", total=None)

            def step(message: str) -> None:
                bar.update(task, description=message)

            with tempfile.TemporaryDirectory(prefix="regenheart-report-") as tmp:
                # The PDF engine loads on the other core during the analysis and renders the report at once.
                rendering = PdfRender.start() if pdf else None
                try:
                    run = analyze(engine, study, Path(tmp), pdf_render=rendering)
                    step("Study report written")
                    result = package_after_analysis(engine, study, out, run, protocol_bytes=protocol_bytes,
                                                    pdf=pdf, progress=step, pdf_render=rendering)
                except BaseException:
                    if rendering is not None:
                        rendering.cancel()
                    raise
    except (SubmissionError, TerminologyError, DatabaseError, CaptureError, ProtocolError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write the package to {out}: {exc.strerror or exc}") from None
    finally:
        engine.dispose()
    print_summary(result)


def register(app: typer.Typer) -> None:
    """Add ``regenheart submission`` to ``app``."""
    app.command("submission")(submission)
