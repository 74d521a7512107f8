"""Operations commands on a study database: ``regenheart db backup | restore | check``.

Wire them into the ``db`` command group with :func:`register`. Errors are one clear line on stderr
with exit code 2 (1 when a check finds a problem), never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _protocol(engine=None):
    from regenheart.store.study import study_protocol

    return study_protocol(engine)


def register(db_app: typer.Typer) -> None:
    """Add backup, restore and check to the ``db`` command group."""

    @db_app.command("backup")
    def db_backup(db: Annotated[str, typer.Option("--db", help="Study database file (SQLite) or database URL.")],
                  out: Annotated[Path, typer.Option("--out", help="Backup file to write (never overwritten).")]) -> None:
        """Take a consistent copy while the server is writing (SQLite online backup; PostgreSQL pg_dump)."""
        from regenheart.store.backup import backup_database
        from regenheart.store.db import DatabaseError

        try:
            with console.status(f"Backing up {db}"):
                path = backup_database(db, out)
        except DatabaseError as exc:
            raise _fail(str(exc)) from None
        console.print(f"Backup written: [bold]{path}[/] ({path.stat().st_size:,} bytes)")

    @db_app.command("restore")
    def db_restore(backup: Annotated[Path, typer.Argument(help="Backup file made by 'regenheart db backup'.")],
                   db: Annotated[str, typer.Option("--db", help="New database file, or URL of an empty PostgreSQL "
                                                              "database.")]) -> None:
        """Restore a backup into a new database; refused unless its audit chain verifies and the data reconcile."""
        from regenheart.store.backup import restore_database
        from regenheart.store.db import DatabaseError

        try:
            with console.status(f"Restoring {backup} and verifying its audit trail"):
                report = restore_database(backup, db)  # checked against the restored database's own protocol
        except DatabaseError as exc:
            raise _fail(str(exc)) from None
        console.print(f"[green]Restored[/] {backup} -> {db}: {report.chain.records} audit records verified, "
                      f"{report.reconciliation.values_checked} stored values reconciled")

    @db_app.command("check")
    def db_check(db: Annotated[str, typer.Option("--db", help="Study database file (SQLite) or database URL.")]) -> None:
        """Engine integrity check, migration state, audit chain and data-to-trail reconciliation; exit 1 on a problem."""
        from regenheart.store.backup import check_database
        from regenheart.store.db import DatabaseError, database_url, make_engine

        url = database_url(db)
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            raise _fail(f"no database at {db}")
        try:
            engine = make_engine(url)
            health = check_database(engine, _protocol(engine))
        except DatabaseError as exc:
            raise _fail(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a damaged file or unreachable server: say so, no traceback
            raise _fail(f"{db} cannot be checked: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
        table = Table("check", "result", "detail")
        table.add_row("engine integrity", "OK" if health.engine_ok else "FAILED", health.engine_detail)
        table.add_row("migrations", "OK" if health.revision == health.head else "BEHIND",
                      f"database at {health.revision}, this regenheart at {health.head}")
        chain = health.integrity.chain
        table.add_row("audit chain", "OK" if chain.ok else "FAILED",
                      f"{chain.records} records" if chain.ok else f"record {chain.first_bad_seq}: {chain.problem}")
        data = health.integrity.reconciliation
        table.add_row("data vs audit trail", "OK" if data.ok else "FAILED",
                      f"{data.values_checked} values" if data.ok else health.integrity.summary(3))
        console.print(table)
        if not health.ok:
            raise typer.Exit(1)
