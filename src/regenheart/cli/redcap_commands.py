"""REDCap commands: ``regenheart export redcap`` and ``regenheart protocol from-redcap``.

Reading REDCap records goes through ``regenheart import --format redcap``. Errors a user can cause
(no database, bad protocol, not a REDCap file, unwritable output) are one clear message on stderr
with exit code 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from regenheart.cli.export_app import export_app
from regenheart.store.study import PROTOCOL_TEXT_KEY, study_protocol

__all__ = ["export_app", "register"]

console = Console()
err = Console(stderr=True)
PROTOCOL_META_KEY = PROTOCOL_TEXT_KEY  # study_meta key holding the protocol text of 'db init --protocol'


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(2)


def export_redcap_command(
    db: Annotated[Path, typer.Option("--db", help="Study database file (SQLite) or database URL.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the REDCap project files and records.")],
    protocol: Annotated[Path | None, typer.Option(
        "--protocol", help="Protocol YAML (default: the one stored by 'db init --protocol', else RegenHeart).")] = None,
) -> None:
    """Write the study as a REDCap project: data dictionary, arms, events, designations, DAGs and records."""
    from regenheart.exchange.redcap_export import export_redcap
    from regenheart.protocol import ProtocolError
    from regenheart.store.db import DatabaseError, open_study_database
    from regenheart.store.reconcile import require_integrity
    from regenheart.store.snapshot import take_snapshot

    try:
        engine = open_study_database(db)
    except (DatabaseError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    try:
        study = study_protocol(engine, protocol)
        require_integrity(engine, study, "exported")  # chain verified, every value matches its trail
        with Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            bar.add_task("Reading the study database", total=None)
            snapshot = take_snapshot(engine)
            bar.add_task("Writing the REDCap files", total=None)
            paths = export_redcap(snapshot, study, out)
    except (ProtocolError, DatabaseError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        engine.dispose()
    label = " [yellow](SYNTHETIC data)[/]" if snapshot.meta.get("synthetic") == "true" else ""
    console.print(f"Wrote the REDCap project for {study.study.acronym} to {out}{label}: "
                  f"{len(snapshot.subjects)} records; files: {', '.join(p.name for p in paths.values())}")


def from_redcap_command(
    dictionary: Annotated[Path, typer.Argument(help="REDCap data dictionary CSV (18 columns).")],
    out: Annotated[Path, typer.Option("--out", help="Protocol YAML file to write.")],
    events: Annotated[Path | None, typer.Option("--events", help="Events CSV of a longitudinal project.")] = None,
    event_mapping: Annotated[Path | None, typer.Option(
        "--event-mapping", help="Instrument-event mapping CSV (arm_num,unique_event_name,form).")] = None,
    title: Annotated[str | None, typer.Option("--title", help="Study title (default: from the file name).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing protocol file.")] = False,
) -> None:
    """Draft a protocol file from any REDCap project; review its TODO comments, then validate it."""
    import yaml

    from regenheart.exchange.redcap_draft import draft_protocol
    from regenheart.exchange.redcap_format import RedcapFormatError, read_dictionary, read_event_mapping, read_events
    from regenheart.protocol import ProtocolError, parse_protocol

    if out.exists() and not force:
        raise _fail(f"{out} exists; choose another path or pass --force")
    try:
        fields = read_dictionary(dictionary)
        event_rows = read_events(events) if events else None
        designations = read_event_mapping(event_mapping) if event_mapping else None
    except RedcapFormatError as exc:
        raise _fail(str(exc)) from None
    text = draft_protocol(fields, event_rows, designations, source=str(dictionary), title=title)
    try:
        drafted = parse_protocol(yaml.safe_load(text), str(out))
    except ProtocolError as exc:  # a project the drafter cannot express: say what, write nothing
        raise _fail(f"the draft does not validate; nothing written.\n{exc}") from None
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None
    console.print(f"Wrote {out}: {len(drafted.forms)} forms, {len(drafted.visits)} visit(s). Review the TODO "
                  f"comments, then: regenheart protocol {out}")


def register(app: typer.Typer, protocol_app: typer.Typer) -> None:
    """Add ``export redcap`` to the shared export group and ``from-redcap`` to ``protocol``."""
    if not any(c.name == "redcap" for c in export_app.registered_commands):
        export_app.command("redcap")(export_redcap_command)
    if not any(c.name == "from-redcap" for c in protocol_app.registered_commands):
        protocol_app.command("from-redcap")(from_redcap_command)
