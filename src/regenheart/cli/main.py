"""The ``regenheart`` command: the demo trial, protocol, database, audit and analysis commands.

Errors a user can cause (bad protocol file, missing database, broken audit chain, refused input)
are printed as one clear message with a non-zero exit code, never as a stack trace.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from regenheart import __version__

app = typer.Typer(help="regenheart: run the RegenHeart trial (NCT04325594) from first patient to posted results.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Create and migrate study databases.", no_args_is_help=True)
audit_app = typer.Typer(help="Audit trail.", no_args_is_help=True)


class _ShowByDefault(TyperGroup):
    """``regenheart protocol [FILE]`` validates and shows a protocol (the ``show`` command); named
    sub-commands (``from-redcap``) draft one."""

    def parse_args(self, ctx, args):
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


protocol_app = typer.Typer(cls=_ShowByDefault, help="Validate and show a protocol (default), or draft one.")
app.add_typer(protocol_app, name="protocol")
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
console = Console()
err = Console(stderr=True)

DbOption = Annotated[Path, typer.Option("--db", help="Study database file (SQLite) or database URL.")]
ProtocolOption = Annotated[Path | None, typer.Option("--protocol", help="Protocol YAML (default: embedded RegenHeart).")]


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into a message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from regenheart.capture.errors import CaptureError
        from regenheart.exchange.cdisc.metadata import SubmissionError
        from regenheart.protocol import ProtocolError
        from regenheart.store.db import DatabaseError

        try:
            return func(*args, **kwargs)
        except (ProtocolError, DatabaseError, CaptureError, SubmissionError, FileNotFoundError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Output folder for study.db, report.html, results.json.")] = Path("regenheart-demo"),
    seed: Annotated[int, typer.Option(help="Seed of the synthetic cohort (same seed, same trial).")] = 20200301,
    protocol_version: Annotated[str | None, typer.Option(
        "--protocol-version", help="Protocol version to run (default: the active one, 2.0 single arm); 1.0 runs "
                                   "the registered randomized design with a concealed allocation list.")] = None,
    subjects: Annotated[int | None, typer.Option("--subjects", min=1, help="Screen N synthetic subjects instead of "
                                                 "the trial's 35 (30 enrolled, 5 screen failures; same mix).")] = None,
) -> None:
    """Run the whole synthetic RegenHeart trial: new database, cohort entered through capture, analysis, report."""
    from regenheart.cli.pipeline import run_demo, with_active_version
    from regenheart.protocol import load_protocol

    protocol = with_active_version(load_protocol(), protocol_version)
    if subjects is not None and protocol.active_version.randomization is not None:
        err.print("[bold red]error:[/] --subjects applies to the single-arm design; the randomized design "
                  "enrols its planned number of patients", highlight=False)
        raise typer.Exit(2)
    console.print(f"[bold]{protocol.study.acronym}[/] ({protocol.study.nct_id}), protocol version "
                  f"{protocol.active_protocol_version}: [yellow]SYNTHETIC demonstration cohort[/], seed {seed}")
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("Entering subjects through the capture service", total=None)

        def tick(code: str, done: int, total: int) -> None:
            progress.update(task, total=total, completed=done, description=f"Entering subject {code}")

        run, entered = run_demo(protocol, out, seed, progress=tick, n_subjects=subjects)
        progress.update(task, description="Entered all subjects")
    r = run.results
    console.print(f"Entered {entered['subjects']} subjects, {entered['forms']} forms, "
                  f"{entered['adverse_events']} adverse events, {entered['corrections']} corrections with reasons; "
                  f"audit trail {r['snapshot']['audit_records']} records, head {r['snapshot']['audit_head_hash'][:16]}...")
    _print_summary(r)
    console.print(f"Report:  [bold]{run.report_path}[/]\nResults: {run.results_path}\n"
                  f"ADaM datasets (XPT v5 + CSV): {run.datasets[0].parent}\n"
                  f"ClinicalTrials.gov results draft: {run.ctgov_path}\nDatabase: {entered['database']}")
    from regenheart.cli.submission_commands import print_summary

    print_summary(entered["submission"])


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _fmt_p(p: float | None) -> str:
    """'p < 0.0001' or 'p = 0.0123' (SAS-style display of small p-values)."""
    if p is None:
        return "p = -"
    return "p < 0.0001" if p < 0.0001 else f"p = {p:.4f}"


def _print_summary(r: dict[str, Any]) -> None:
    """The primary endpoint and the plan's headline endpoint at its last visit (when the plan has them)."""
    p = r.get("primary")
    if p:
        console.print(f"Primary endpoint ({p['label']}): {p['n_events']}/{p['n_total']} "
                      f"({_fmt(p['percent'])}%), exact 95% CI {_fmt(100 * p['lower'])}% to {_fmt(100 * p['upper'])}%")
    headline = (r.get("plan") or {}).get("headline")
    block = next((b for b in r.get("efficacy") or [] if b["paramcd"] == headline), None)
    if block is not None and block["visits"]:
        last = block["visits"][-1]
        line = (f"{headline} change at {last['label']}: {_fmt(last['mean_change'])} {block.get('unit') or ''} "
                f"(95% CI {_fmt(last['lower'])} to {_fmt(last['upper'])}, n={last['n']}, "
                f"paired t {_fmt_p(last['p_value_t'])})")
        mmrm = r.get("mmrm", {}).get("results", {}).get(headline, {})
        if mmrm.get("lsmeans"):
            m = mmrm["lsmeans"][-1]
            line += f"; MMRM LS mean {_fmt(m['estimate'])} (95% CI {_fmt(m['lower'])} to {_fmt(m['upper'])})"
        console.print(line)
    if not p and block is None:
        console.print(f"Analysis plan: {(r.get('plan') or {}).get('title', 'default')}")
    if r.get("synthetic"):
        console.print("[yellow]All numbers come from SYNTHETIC data and are not RegenHeart results.[/]")


@protocol_app.command("show")
@user_errors
def protocol(
    file: Annotated[Path | None, typer.Argument(help="Protocol YAML to validate and show (default: embedded).")] = None,
) -> None:
    """Validate a protocol and print its schedule of assessments."""
    from regenheart.protocol import load_protocol

    p = load_protocol(file)
    console.print(f"[bold]{p.study.acronym}[/] {p.study.nct_id or '(not registered)'}: {p.study.brief_title}")
    for v in p.protocol_versions:
        mark = " (active)" if v.version == p.active_protocol_version else ""
        console.print(f"  protocol {v.version} of {v.date}: {v.design}, {v.planned_enrollment} patients, "
                      f"arms {', '.join(a.code for a in v.arms)}{mark}")
    visits = Table(title="Visits (study day 0 = intracoronary infusion)" if p.day0 else "Visits")
    for column in ("Visit", "Label", "Target day", "Window (days)"):
        visits.add_column(column)
    for v in p.visits:
        visits.add_row(v.code, v.label, str(v.day), f"{v.window[0]} to {v.window[1]}")
    console.print(visits)
    grid = Table(title="Schedule of assessments", show_lines=False, pad_edge=False)
    grid.add_column("Form", no_wrap=True)
    for v in p.visits:
        grid.add_column(v.code, justify="center", no_wrap=True)
    for code in p.forms:
        grid.add_row(code, *["X" if code in v.forms else "." for v in p.visits])
    console.print(grid)
    if p.endpoints is None:  # a study captured and exchanged, not analysed by the SAP
        console.print(f"Eligibility: {len(p.eligibility)} criteria. No endpoints defined.")
        return
    console.print(f"Eligibility: {sum(c.kind == 'inclusion' for c in p.eligibility)} inclusion, "
                  f"{sum(c.kind == 'exclusion' for c in p.eligibility)} exclusion criteria. "
                  f"Primary endpoint: {p.endpoints.primary.label}. Secondary: "
                  f"{', '.join(x.paramcd for x in p.endpoints.secondary.parameters)} at "
                  f"{', '.join(p.endpoints.secondary.visits)}.")


@db_app.command("init")
@user_errors
def db_init(db: DbOption, protocol: ProtocolOption = None) -> None:
    """Create a new, empty study database (for the embedded protocol, or --protocol FILE, stored in it)."""
    import hashlib

    from regenheart.cli.pipeline import study_meta
    from regenheart.protocol import load_protocol
    from regenheart.store.db import create_study_database
    from regenheart.store.study import PROTOCOL_SHA256_KEY, PROTOCOL_TEXT_KEY

    study = load_protocol(protocol)
    meta = study_meta(study, synthetic=False)
    if protocol is not None:  # later commands (export, ...) load the study's own protocol from the database
        text = protocol.read_text(encoding="utf-8")
        meta.update({"study_nct_id": study.study.nct_id or "", PROTOCOL_TEXT_KEY: text,
                     PROTOCOL_SHA256_KEY: hashlib.sha256(text.encode()).hexdigest(), "protocol_source": str(protocol)})
    engine = create_study_database(db, meta)
    from regenheart.capture.sites import SiteService

    SiteService(engine, study).seed_from_protocol()  # the protocol's sites, administered in the browser from now on
    engine.dispose()
    console.print(f"Created study database {db} for {study.study.acronym}")


@db_app.command("upgrade")
@user_errors
def db_upgrade(db: DbOption) -> None:
    """Apply pending schema migrations to an existing study database."""
    from regenheart.store.db import current_revision, database_url, make_engine, upgrade_database

    url = database_url(db)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise FileNotFoundError(f"no database at {db}")
    engine = make_engine(db)
    before = current_revision(engine)
    upgrade_database(engine)
    console.print(f"{db}: schema revision {before} -> {current_revision(engine)}")


@audit_app.command("verify")
@user_errors
def audit_verify(db: DbOption) -> None:
    """Verify the audit trail's hash chain and reconcile every stored value with it; exit 1 on any problem.

    Names the first broken audit record, and every stored value (table, record, field) that differs
    from the last audited value for it: a direct change to the data tables is found here.
    """
    from regenheart.store.db import open_study_database
    from regenheart.store.reconcile import check_integrity
    from regenheart.store.study import study_protocol

    engine = open_study_database(db)
    report = check_integrity(engine, study_protocol(engine))
    chain, data = report.chain, report.reconciliation
    if chain.ok:
        console.print(f"[green]OK[/]: {chain.records} audit records verified; head hash {chain.head_hash}")
    else:
        err.print(f"[bold red]FAILED[/] at audit record {chain.first_bad_seq}: {chain.problem} "
                  f"({chain.records} records verified before it)")
    if data.ok:
        console.print(f"[green]OK[/]: {data.values_checked} stored values match their audit trail")
    else:
        table = Table("table", "record", "field", "stored value", "audited value",
                      title=f"{len(data.mismatches)} stored value(s) differ from the audit trail")
        for m in data.mismatches:
            table.add_row(m.table, m.record, m.field, str(m.stored), str(m.audited))
        err.print(table)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@user_errors
def analyze(db: DbOption,
            out: Annotated[Path, typer.Option(help="Folder for report.html and results.json.")] = Path("regenheart-report")) -> None:
    """Analyse a study database: analysis datasets, SAP, report.html and results.json."""
    from regenheart.cli.pipeline import analyze as run_analysis
    from regenheart.store.db import open_study_database
    from regenheart.store.study import study_protocol

    engine = open_study_database(db)
    with console.status("Deriving analysis datasets and running the SAP"):
        run = run_analysis(engine, study_protocol(engine), out)
    _print_summary(run.results)
    console.print(f"Report: [bold]{run.report_path}[/]\nResults: {run.results_path}\n"
                  f"ADaM datasets: {run.datasets[0].parent}\nClinicalTrials.gov results draft: {run.ctgov_path}")


from regenheart.cli.web_commands import register as _register_web_commands

_register_web_commands(app)

from regenheart.cli.design_commands import register as _register_design_commands

_register_design_commands(app)

from regenheart.cli.exchange_commands import register as _register_exchange_commands

_register_exchange_commands(app)

from regenheart.cli.ctgov_commands import register as _register_ctgov_commands

_register_ctgov_commands(app)

from regenheart.cli.ops_commands import register as _register_ops_commands

_register_ops_commands(db_app)

from regenheart.cli.submission_commands import register as _register_submission_commands

_register_submission_commands(app)

from regenheart.cli.export_app import export_app as _export_app

app.add_typer(_export_app, name="export")

from regenheart.cli.odm_commands import register as _register_odm_commands

_register_odm_commands(app)

from regenheart.cli.redcap_commands import register as _register_redcap_commands

_register_redcap_commands(app, protocol_app)


def main() -> None:
    """The ``regenheart`` command (run by the console script, :mod:`regenheart.cli.console`): runs the command,
    then ends the process without the interpreter's teardown, which frees every object one by one (after
    ``regenheart demo``, its data frames, figures and models: about a second). Output is flushed and the
    exit handlers run first (children of multiprocessing, logging, temporary files), so nothing the command
    wrote is lost; the exit status is the command's. A command that raises an unexpected exception ends the
    usual way, with its report."""
    try:
        app()
        status: object = 0
    except SystemExit as exc:
        status = exc.code
    if isinstance(status, str):  # SystemExit("message"): Python prints it and exits 1
        print(status, file=sys.stderr)
        status = 1
    for thread in threading.enumerate():  # as the interpreter does first at exit: wait for non-daemon threads
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away (| head), or a closed stream: nothing to keep
            pass
    atexit._run_exitfuncs()  # what the interpreter would run at exit, before its teardown
    os._exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
