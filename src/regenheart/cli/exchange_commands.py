"""CLI: ``regenheart template`` (form templates from the protocol) and ``regenheart import`` (data in).

``import`` reads a source with the reader of its ``--format`` (templates here; REDCap and ODM in
their own modules, imported lazily: a reader that is not installed is reported as unavailable) and
writes it through the capture service with :func:`regenheart.exchange.importer.import_source`.
Errors a user can cause print one clear message and exit 2; refusals exit 1 (see the report).
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console()
err = Console(stderr=True)
FORMATS = ("template", "redcap", "odm")
IMPORT_ACTIONS = ("screen_subject", "enter_data", "evaluate_eligibility", "enrol")
PROGRESS_FROM = 20  # subjects: smaller imports finish before a progress bar would help


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(2)


def _protocol(protocol_file: Path | None, engine=None):
    """The protocol given, else the one stored in the database, else the embedded RegenHeart protocol
    (with the protocol version the database was created under as the active one)."""
    from regenheart.protocol import ProtocolError
    from regenheart.store.study import study_protocol

    try:
        return study_protocol(engine, protocol_file)
    except (ProtocolError, OSError) as exc:
        raise _fail(str(exc)) from None


def template_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the template (created if missing).")],
    fmt: Annotated[str, typer.Option("--format", help="xlsx (one workbook, drop-downs) or csv (one file per form).")]
    = "xlsx",
    protocol: Annotated[Path | None, typer.Option("--protocol", help="Protocol YAML (default: RegenHeart).")] = None,
) -> None:
    """Write empty data-entry templates for the protocol's forms, subjects, adverse events and disposition."""
    from regenheart.exchange.templates import TemplateError, write_templates

    proto = _protocol(protocol)
    if fmt not in ("xlsx", "csv"):
        raise _fail(f"--format must be xlsx or csv, not '{fmt}'")
    try:
        files = write_templates(proto, out, fmt)
    except (TemplateError, OSError) as exc:
        raise _fail(f"cannot write the template into {out}: {exc}") from None
    console.print(f"Wrote the {proto.study.acronym} template ({fmt}, {len(proto.forms)} forms): "
                  + ", ".join(str(f) for f in files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else ""))
    console.print(f"Fill it in, then: regenheart import --db STUDY.db {files[0] if fmt == 'xlsx' else out}")


def _actor(engine, protocol, user: str | None):
    from regenheart.capture.accounts import AccountService
    from regenheart.capture.permissions import Actor

    if user is None:
        try:
            login = getpass.getuser()
        except Exception:  # noqa: BLE001 - no login name in some containers
            login = "unknown"
        return Actor(f"cli:{login}"[:64], "data_manager")
    view = AccountService(engine, protocol).get_user(user)
    if view is None:
        raise _fail(f"no user account '{user}' in this database (see 'regenheart users list')")
    if not view.active:
        raise _fail(f"user account '{user}' is deactivated")
    actor = view.actor
    refused = [a.replace("_", " ") for a in IMPORT_ACTIONS if not actor.may(a)]
    if refused:
        raise _fail(f"user '{user}' has role '{actor.role}', which may not {', '.join(refused)}; an import needs "
                    "a data_manager, investigator or coordinator account")
    return actor


def _reader(fmt: str):
    """The reader function of a format, or an error saying the format is not available."""
    try:
        if fmt == "template":
            from regenheart.exchange.templates import read_templates

            return read_templates
        if fmt == "redcap":
            from regenheart.exchange.redcap import read_redcap_records

            return read_redcap_records
        from regenheart.exchange.odm import read_odm

        return read_odm
    except ImportError as exc:
        raise _fail(f"the {fmt} format is not available in this installation ({exc})") from None


def _draft(path: Path, source: Path, fmt: str, protocol, dictionary: Path | None) -> None:
    from regenheart.exchange.mapping import SourceName, draft_mapping

    if fmt == "template":
        from regenheart.exchange.templates import template_columns

        columns = template_columns(source)
        tables = sorted({t for t, _ in columns})
        names = [SourceName(c, None, t) for t, c in columns
                 if c not in ("subject", "visit", "visit_date", "ae_seq")]
        text = draft_mapping(protocol, names, forms=[SourceName(t) for t in tables])
    elif fmt == "redcap":
        if dictionary is None:
            raise _fail("--draft-mapping for REDCap needs the data dictionary (--dictionary DD.csv)")
        try:
            from regenheart.exchange.redcap_format import RedcapFormatError, read_dictionary
        except ImportError as exc:
            raise _fail(f"the redcap format is not available in this installation ({exc})") from None
        try:
            fields = read_dictionary(dictionary)
        except RedcapFormatError as exc:
            raise _fail(str(exc)) from None
        names = [SourceName(f.field_name, f.field_label or None, f.form_name or None)
                 for f in fields]
        forms = sorted({n.form for n in names if n.form})
        text = draft_mapping(protocol, names, forms=[SourceName(f) for f in forms])
    else:
        from regenheart.exchange.odm import odm_source_names

        names, events, forms = odm_source_names(source)
        if not names:
            raise _fail(f"{source}: no ODM metadata (ItemDef/FormDef) to draft a mapping from; an ODM file with "
                        "ClinicalData only needs a mapping written by hand")
        text = draft_mapping(protocol, names, events=events, forms=forms)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot write {path}: {exc.strerror or exc}") from None
    console.print(f"Wrote a draft mapping to {path}: review it, then import with --mapping {path}")


def import_command(
    source: Annotated[Path, typer.Argument(help="The source: an xlsx template or a folder of CSV templates, a REDCap "
                                                "records CSV (or its export folder), or an ODM XML file.")],
    db: Annotated[str, typer.Option("--db", help="Study database (SQLite file or database URL).")],
    fmt: Annotated[str, typer.Option("--format", help="template, redcap or odm.")] = "template",
    protocol: Annotated[Path | None, typer.Option("--protocol", help="Protocol YAML (default: the database's, "
                                                                     "else RegenHeart).")] = None,
    dictionary: Annotated[Path | None, typer.Option("--dictionary", help="REDCap data dictionary CSV.")] = None,
    events: Annotated[Path | None, typer.Option("--events", help="REDCap events CSV.")] = None,
    event_mapping: Annotated[Path | None, typer.Option("--event-mapping",
                                                       help="REDCap instrument-event mapping CSV.")] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="Mapping file (YAML) from source names to the "
                                                                   "protocol's.")] = None,
    draft_mapping: Annotated[Path | None, typer.Option("--draft-mapping", help="Write a first mapping file matched "
                                                                               "by name and label, and stop.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Run every check, write nothing.")] = False,
    all_or_nothing: Annotated[bool, typer.Option("--all-or-nothing",
                                                 help="Write nothing when anything is refused "
                                                      "(default: refused subjects only are left out).")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="Write every refusal to this CSV file.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Import as this account of the database (default: "
                                                            "cli:<login> as data manager).")] = None,
) -> None:
    """Import a trial's existing data through the capture service (same checks and audit trail as typed data)."""
    from regenheart.capture.service import CaptureService
    from regenheart.exchange.importer import import_source
    from regenheart.exchange.mapping import Mapping, MappingError
    from regenheart.exchange.report import print_summary, write_report_csv
    from regenheart.store.db import DatabaseError, open_study_database

    if fmt not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    if not source.exists():
        raise _fail(f"no such file or folder: {source}")
    try:
        engine = open_study_database(db)
    except DatabaseError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - unreadable file, bad URL, missing driver: one clear line
        raise _fail(f"cannot open the study database {db}: {exc.__class__.__name__}: {exc}") from None
    try:
        proto = _protocol(protocol, engine)
        try:
            the_mapping = Mapping.load(mapping, proto) if mapping else Mapping.identity(proto)
        except MappingError as exc:
            raise _fail(str(exc)) from None
        if draft_mapping is not None:
            _draft(draft_mapping, source, fmt, proto, dictionary)
            return
        actor = _actor(engine, proto, user)
        reader = _reader(fmt)
        kwargs: dict[str, Any] = {}
        if fmt == "redcap":
            kwargs = {"dictionary": dictionary, "events": events, "event_mapping": event_mapping}
        elif dictionary or events or event_mapping:
            raise _fail("--dictionary, --events and --event-mapping apply to --format redcap only")
        with console.status(f"Reading {source}"):
            data = reader(source, proto, the_mapping, **kwargs)
        service = CaptureService(engine, proto)
        total = len(data.subjects)
        if total >= PROGRESS_FROM:
            with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True) as bar:
                task = bar.add_task("Importing subjects", total=total)

                def tick(done: int, _total: int, code: str) -> None:
                    bar.update(task, completed=done, description=f"Importing subject {code}")

                outcome = import_source(service, actor, data, dry_run=dry_run, all_or_nothing=all_or_nothing,
                                        progress=tick)
        else:
            outcome = import_source(service, actor, data, dry_run=dry_run, all_or_nothing=all_or_nothing)
        print_summary(outcome, console)
        if report is not None:
            try:
                write_report_csv(outcome, report)
            except OSError as exc:
                raise _fail(f"cannot write the report {report}: {exc.strerror or exc}") from None
            console.print(f"Report: {report} ({len(outcome.rows())} row(s))")
    finally:
        engine.dispose()
    if not outcome.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``template`` and ``import`` to ``app``."""
    app.command("template")(template_command)
    app.command("import")(import_command)
