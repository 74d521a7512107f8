"""Trial-design commands: concealed randomization lists and the design simulation.

``regenheart randomization generate|export`` (statistician or admin; the CLI acts as admin) and
``regenheart simulate``. Errors a user can cause are one clear message and exit code 2.
"""

from __future__ import annotations

import functools
import getpass
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console()
err = Console(stderr=True)

DbOption = Annotated[Path, typer.Option("--db", help="Study database file (SQLite) or database URL.")]
ProtocolOption = Annotated[Path | None, typer.Option("--protocol", help="Protocol YAML (default: embedded RegenHeart).")]
VersionOption = Annotated[str | None, typer.Option(
    "--protocol-version", help="Randomized protocol version (default: the database's, else the active one).")]


def _user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into one message and exit code 2 (never a traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from regenheart.capture.errors import CaptureError
        from regenheart.protocol import ProtocolError
        from regenheart.stats.simulate import SimulationError
        from regenheart.store.db import DatabaseError

        try:
            return func(*args, **kwargs)
        except (ProtocolError, DatabaseError, CaptureError, SimulationError, FileExistsError,
                FileNotFoundError, NotADirectoryError, PermissionError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def _cli_actor():
    from regenheart.capture.permissions import Actor

    try:
        who = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        who = "unknown"
    return Actor(f"cli:{who}"[:64], "admin")


def _study(db: Path, protocol_file: Path | None, version: str | None):
    from regenheart.capture.errors import ValidationFailed
    from regenheart.capture.validation import Violation
    from regenheart.protocol import load_protocol
    from regenheart.store.db import open_study_database, read_meta

    protocol = load_protocol(protocol_file)
    engine = open_study_database(db)
    version = version or read_meta(engine).get("protocol_version") or protocol.active_protocol_version
    if version not in [v.version for v in protocol.protocol_versions]:
        engine.dispose()
        raise ValidationFailed([Violation("--protocol-version", version, "codelist", "must be one of: " + ", ".join(
            v.version for v in protocol.protocol_versions))])
    return protocol, engine, version


# ------------------------------------------------------------------ randomization
@_user_errors
def randomization_generate(
    db: DbOption,
    seed: Annotated[int | None, typer.Option(help="Seed of the list (default: drawn from the operating system). "
                                                  "Keep it confidential: it reproduces the list.")] = None,
    protocol_version: VersionOption = None,
    protocol: ProtocolOption = None,
) -> None:
    """Generate the concealed allocation list of every stratum (once per protocol version)."""
    from regenheart.capture.randomization import generate_list

    study, engine, version = _study(db, protocol, protocol_version)
    try:
        made = generate_list(engine, study, _cli_actor(), seed=seed, version=version)
    finally:
        engine.dispose()
    console.print(f"Generated the allocation list of protocol {made.protocol_version}: {made.n_slots} slots in "
                  f"{len(made.strata)} strata ({', '.join(made.strata)}); SHA-256 {made.sha256[:16]}...\n"
                  "It is concealed: site users cannot see it; 'regenheart randomization export' unblinds it "
                  "for the statistician and the data monitoring committee.")


@_user_errors
def randomization_export(
    db: DbOption,
    out: Annotated[Path, typer.Option("--out", help="CSV file for the unblinded list (must not exist).")],
    protocol_version: VersionOption = None,
    protocol: ProtocolOption = None,
) -> None:
    """Export the unblinded allocation list with what was used (subject, time, user); the export is audited."""
    from regenheart.capture.randomization import export_list, write_export

    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new file for the unblinded list")
    study, engine, version = _study(db, protocol, protocol_version)
    try:
        rows = export_list(engine, _cli_actor(), study, version)
    finally:
        engine.dispose()
    write_export(rows, out)
    used = sum(1 for r in rows if r["subject_code"])
    console.print(f"[yellow]UNBLINDED[/] allocation list of protocol {version}: {len(rows)} slots, {used} used -> {out}")


# ------------------------------------------------------------------ simulation
def _floats(text: str, option: str) -> list[float]:
    from regenheart.stats.simulate import SimulationError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SimulationError(f"{option} {text!r}: give numbers separated by commas, e.g. 0,2,3.5") from None


@_user_errors
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Folder for simulation.csv, .json, .png and .svg.")],
    designs: Annotated[str, typer.Option(help="Designs to simulate: v1 (protocol 1.0), v2 (protocol 2.0).")] = "v1,v2",
    n_sim: Annotated[int, typer.Option("--n-sim", help="Simulated trials per design and cell effect.")] = 1000,
    cell_effect: Annotated[str, typer.Option(
        "--cell-effect", help="True cell effect(s) on LVEF at month 6, points, comma-separated; 0 gives the "
                              "type I error. Default: 0,1,2,3.5,5 (3.5 = the synthetic model's).")] = "0,1,2,3.5,5",
    background_effect: Annotated[float | None, typer.Option(
        "--background-effect", help="Improvement without cells at month 6 (standard therapy + regression to the "
                                    "mean), points. Default: the synthetic model's (2.0).")] = None,
    dropout: Annotated[float, typer.Option(help="Probability that a patient drops out after baseline.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed (same seed, same simulation).")] = 20200301,
    workers: Annotated[int, typer.Option(help="Worker processes (results do not depend on it).")] = 2,
    protocol: ProtocolOption = None,
) -> None:
    """Simulate many trials of each design from the synthetic model and analyse each with the SAP's MMRM.

    Reports power, type I error, bias, 95% CI coverage and CI width of the cell-effect estimate with
    Monte Carlo standard errors, and the analytic t-test power of the randomized design.
    """
    from regenheart.protocol import load_protocol
    from regenheart.stats.simulate import check_settings, run_simulation, trial_designs, write_outputs

    study = load_protocol(protocol)
    effects = _floats(cell_effect, "--cell-effect")
    names = [d for d in designs.split(",") if d.strip()]
    check_settings(n_sim, dropout, effects, background_effect)
    chosen = trial_designs(study, names)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    total = n_sim * len(chosen) * len(set(effects))
    console.print(f"[yellow]SYNTHETIC[/] design simulation: {', '.join(d.label for d in chosen)}; "
                  f"{n_sim} trials per design and cell effect ({total} MMRM fits), seed {seed}")
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as progress:
        task = progress.add_task("Simulating", total=total)
        run = run_simulation(study, names, n_sim=n_sim, cell_effects=effects, background=background_effect,
                             dropout=dropout, seed=seed, workers=workers,
                             progress=lambda what, k: progress.update(task, advance=k, description=what))
    paths = write_outputs(run, out)
    table = Table(title=f"Operating characteristics of the cell-effect estimate (LVEF, month 6; background "
                        f"{run.background:g} points, dropout {dropout:g}); +/- Monte Carlo SE")
    for column in ("design", "cell effect", "power", "analytic power", "bias", "coverage", "CI width", "failed"):
        table.add_column(column, justify="right")
    for r in run.rows:
        table.add_row(f"{r.design} (n={r.n})", f"{r.cell_effect:g}", f"{r.power:.3f} +/- {r.power_mcse:.3f}",
                      "-" if r.analytic_power is None else f"{r.analytic_power:.3f}",
                      f"{r.bias:+.2f} +/- {r.bias_mcse:.2f}", f"{r.coverage:.3f} +/- {r.coverage_mcse:.3f}",
                      f"{r.ci_width:.2f}", str(r.n_failed))
    console.print(table)
    console.print(f"{total} trials in {run.seconds:.1f} s. Written: " + ", ".join(str(p) for p in paths))


def register(app: typer.Typer) -> None:
    """Add the ``randomization`` command group and ``simulate`` to ``app``."""
    group = typer.Typer(help="Concealed randomization lists (statistician or admin only).", no_args_is_help=True)
    group.command("generate")(randomization_generate)
    group.command("export")(randomization_export)
    app.add_typer(group, name="randomization")
    app.command("simulate")(simulate)
