"""``regenheart ctgov ...``: ClinicalTrials.gov results upload, registration record and results preview.

- ``ctgov results --db DB --out FILE.xml [--draft]``: the PRS results upload XML (and its API-v2-shaped
  twin with ``--json``). PRS's own checks run first; a record with errors, or built from synthetic
  data, is written only with ``--draft`` (and then says DRAFT/SYNTHETIC in every displayed text).
- ``ctgov protocol --out FILE.xml [--protocol FILE]``: the registration record from the protocol file.
- ``ctgov preview --db DB --out FILE.html``: the results as ClinicalTrials.gov lays them out, for review.

Errors a user can cause are one clear message and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()
err = Console(stderr=True)
ctgov_app = typer.Typer(help="ClinicalTrials.gov: results upload (PRS XML), registration record, results preview.",
                        no_args_is_help=True)

DbOption = Annotated[Path, typer.Option("--db", help="Study database file (SQLite) or database URL.")]
ProtocolOption = Annotated[Path | None, typer.Option("--protocol", help="Protocol YAML (default: embedded).")]


def _user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from regenheart.capture.errors import CaptureError
        from regenheart.exchange.ctgov.results import CtgovError
        from regenheart.protocol import ProtocolError
        from regenheart.store.db import DatabaseError

        try:
            return func(*args, **kwargs)
        except (CtgovError, ProtocolError, DatabaseError, CaptureError, FileNotFoundError, PermissionError,
                IsADirectoryError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def build_from_database(db: Path, protocol_file: Path | None, *, draft: bool):
    """Database -> verified, reconciled audit trail -> snapshot -> ADaM -> SAP -> results record and PRS findings."""
    from regenheart.derive.adam import derive_all
    from regenheart.exchange.ctgov.checks import check_results
    from regenheart.exchange.ctgov.results import build_results
    from regenheart.stats.analysis import run_sap
    from regenheart.store.db import open_study_database
    from regenheart.store.reconcile import require_integrity
    from regenheart.store.snapshot import take_snapshot
    from regenheart.store.study import study_protocol

    steps = ["Verifying the audit trail", "Reading the snapshot", "Deriving analysis datasets",
             "Running the SAP", "Building the results record"]
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task(steps[0], total=len(steps))
        engine = open_study_database(db)
        try:
            protocol = study_protocol(engine, protocol_file)
            # the chain verifies and every stored value matches its trail, or nothing is reported
            require_integrity(engine, protocol, "reported to ClinicalTrials.gov")
            progress.update(task, advance=1, description=steps[1])
            snap = take_snapshot(engine)
        finally:
            engine.dispose()
        progress.update(task, advance=1, description=steps[2])
        data = derive_all(protocol, snap)
        progress.update(task, advance=1, description=steps[3])
        results = run_sap(protocol, data, items=snap.items)
        results["synthetic"] = snap.meta.get("synthetic") == "true"
        progress.update(task, advance=1, description=steps[4])
        record = build_results(protocol, results, data, draft=draft)
        progress.update(task, advance=1)
    return protocol, record, check_results(record)


def _print_findings(findings: list) -> None:
    for f in findings:
        colour = "red" if f.severity == "error" else "yellow"
        err.print(f"[{colour}]{f.severity.upper()}[/] {f.path}: {f.message}", highlight=False)


@ctgov_app.command("results")
@_user_errors
def results_command(
    db: DbOption,
    out: Annotated[Path, typer.Option("--out", help="PRS results upload XML to write.")],
    draft: Annotated[bool, typer.Option("--draft", help="Write even with PRS errors; every text marked DRAFT.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the API-v2-shaped JSON twin.")] = None,
    protocol: ProtocolOption = None,
) -> None:
    """Write the ClinicalTrials.gov results upload (PRS XML) of a study database, after PRS's own checks."""
    from regenheart.exchange.ctgov.api_json import write_results_json
    from regenheart.exchange.ctgov.checks import errors
    from regenheart.exchange.ctgov.prs_xml import write_results_xml

    _, record, findings = build_from_database(db, protocol, draft=draft)
    _print_findings(findings)
    problems = errors(findings)
    if record.synthetic and not draft:
        err.print("[bold red]error:[/] the database holds SYNTHETIC data: results built from it are never postable; "
                  "use --draft to write a marked draft for review. Nothing written.", highlight=False)
        raise typer.Exit(2)
    if problems and not draft:
        err.print(f"[bold red]error:[/] {len(problems)} PRS check error(s) (listed above): nothing written. "
                  "Fix them (most come from the protocol's registry section) or write a marked draft with --draft.",
                  highlight=False)
        raise typer.Exit(2)
    write_results_xml(record, out)
    if json_out is not None:
        write_results_json(record, json_out)
    kind = "SYNTHETIC DRAFT" if record.synthetic else ("DRAFT" if record.draft else "results upload")
    console.print(f"Wrote {kind} {out}: {len(record.outcomes)} outcome measures, {len(record.baseline)} baseline "
                  f"measures, {len(record.adverse_events.serious)} serious and {len(record.adverse_events.other)} "
                  f"other adverse-event terms; {len(problems)} error(s), "
                  f"{len(findings) - len(problems)} warning(s).")


@ctgov_app.command("protocol")
@_user_errors
def protocol_command(
    out: Annotated[Path, typer.Option("--out", help="Registration record XML to write.")],
    protocol: ProtocolOption = None,
) -> None:
    """Write the ClinicalTrials.gov registration record (PRS protocol XML) from the protocol file."""
    from regenheart.exchange.ctgov.protocol_xml import write_protocol_xml
    from regenheart.protocol import load_protocol

    p = load_protocol(protocol)
    write_protocol_xml(p, out)
    console.print(f"Wrote the registration record of {p.study.nct_id or p.study.acronym} to {out}")


@ctgov_app.command("preview")
@_user_errors
def preview_command(
    db: DbOption,
    out: Annotated[Path, typer.Option("--out", help="HTML preview to write.")],
    protocol: ProtocolOption = None,
) -> None:
    """Write an HTML preview of the results as ClinicalTrials.gov lays them out (review before uploading)."""
    from regenheart.exchange.ctgov.preview import write_preview

    _, record, findings = build_from_database(db, protocol, draft=False)
    write_preview(record, findings, out)
    console.print(f"Wrote the results preview {out} ({sum(f.severity == 'error' for f in findings)} PRS error(s) "
                  "listed on the page)")


def register(app: typer.Typer) -> None:
    """Add ``regenheart ctgov`` to ``app``."""
    app.add_typer(ctgov_app, name="ctgov")
