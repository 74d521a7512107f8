"""``regenheart export odm``: the study database as a CDISC ODM 1.3.2 file (metadata, users, sites, data
with the full audit history). Reading ODM goes through ``regenheart import --format odm``.

Errors a user can cause (no database, broken audit chain, bad protocol file, unwritable output) are
one clear message on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from regenheart.cli.export_app import export_app

console = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(2)


def export_odm(
    out: Annotated[Path, typer.Option("--out", help="ODM XML file to write.")],
    db: Annotated[str | None, typer.Option("--db", help="Study database file (SQLite) or database URL.")] = None,
    protocol: Annotated[Path | None, typer.Option("--protocol",
                                                  help="Protocol YAML (default: the database's, else "
                                                       "the embedded RegenHeart protocol).")] = None,
    metadata_only: Annotated[bool, typer.Option("--metadata-only",
                                                help="Only the study definition (visits, forms, items, code "
                                                     "lists), from the protocol; no database needed.")] = False,
) -> None:
    """Write the study as CDISC ODM 1.3.2: metadata, users, sites, every value with its audit history."""
    import yaml
    from sqlalchemy.exc import SQLAlchemyError

    from regenheart.exchange.odm import OdmExportError, write_metadata_odm, write_odm
    from regenheart.protocol import ProtocolError, load_protocol
    from regenheart.store.db import DatabaseError, open_study_database
    from regenheart.store.study import study_protocol

    if not out.parent.exists():
        raise _fail(f"the folder of {out} does not exist")
    if metadata_only and db is None:
        try:
            written = write_metadata_odm(load_protocol(protocol), out)
        except (ProtocolError, FileNotFoundError) as exc:
            raise _fail(str(exc)) from None
        except OSError as exc:
            raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None
        console.print(f"Wrote {written}: ODM 1.3.2 study metadata (visits, forms, items, code lists)")
        return
    if db is None:
        raise _fail("--db is required (or --metadata-only for the study definition alone)")
    try:
        engine = open_study_database(db)
        study = study_protocol(engine, protocol)
    except (ProtocolError, DatabaseError, FileNotFoundError, yaml.YAMLError) as exc:
        raise _fail(str(exc)) from None
    except SQLAlchemyError as exc:  # unreachable server, not a database, missing driver: one clear line
        raise _fail(f"cannot open the study database {db}: {exc.__class__.__name__}: "
                    f"{str(exc.orig if getattr(exc, 'orig', None) else exc).splitlines()[0]}") from None
    if metadata_only:
        try:
            written = write_metadata_odm(study, out)
        except OSError as exc:
            raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None
        finally:
            engine.dispose()
        console.print(f"Wrote {written}: ODM 1.3.2 study metadata of the database's protocol")
        return
    try:
        with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task("Writing subjects", total=None)
            result = write_odm(engine, study, out,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    except OdmExportError as exc:
        raise _fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise _fail(f"reading the study database {db} failed: {exc.__class__.__name__}: "
                    f"{str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        engine.dispose()
    label = " [yellow](SYNTHETIC data)[/]" if result.synthetic else ""
    console.print(f"Wrote {result.path}{label}: ODM 1.3.2, {result.subjects} subjects, {result.item_data} item "
                  f"values with {result.audit_records} audit records, {result.users} users, "
                  f"{result.signatures} signatures")


def register(app: typer.Typer) -> None:
    """Add ``odm`` to the ``export`` group (``app`` is the main app; the group is registered there)."""
    del app  # the command lives in the shared export group, which cli/main.py registers once
    if not any(c.name == "odm" for c in export_app.registered_commands):
        export_app.command("odm")(export_odm)
