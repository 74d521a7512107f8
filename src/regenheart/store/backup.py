"""Backup, restore and health check of a study database.

- SQLite: SQLite's online backup API copies the database inside one read transaction; in WAL mode
  writers go on meanwhile and the copy is the database as of one commit. The copy is a plain
  database file.
- PostgreSQL: ``pg_dump --format=custom`` (a consistent snapshot through one repeatable-read
  transaction) and ``pg_restore`` into an empty database. Both are PostgreSQL's client programs;
  when they are not installed the command says so and how to install them.

A restore is only accepted when the restored database's audit chain verifies and every stored
value reconciles with its trail; otherwise the restored copy is removed and the reason given.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from regenheart.protocol.models import Protocol
from regenheart.store.db import DatabaseError, current_revision, database_url, head_revision, open_study_database
from regenheart.store.reconcile import IntegrityReport, check_integrity
from regenheart.store.study import study_protocol


class BackupError(DatabaseError):
    """A backup or restore could not be made (message says why and what to do)."""


def _sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _pg_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"'{name}' (PostgreSQL client) is not installed; install it, e.g. "
                          f"'apt-get install postgresql-client', and run the command again")
    return path


def _libpq_args(url: str) -> tuple[list[str], dict[str, str]]:
    """Connection arguments for pg_dump/pg_restore from a SQLAlchemy URL (password via the environment)."""
    parsed = make_url(url)
    args = ["--dbname", parsed.database or ""]
    if parsed.host:
        args += ["--host", parsed.host]
    if parsed.port:
        args += ["--port", str(parsed.port)]
    if parsed.username:
        args += ["--username", parsed.username]
    env = {"PGPASSWORD": parsed.password} if parsed.password else {}
    return args, env


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    import os

    result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"{what} failed: {result.stderr.strip() or result.stdout.strip()}")


def backup_database(target: str | Path, out: str | Path) -> Path:
    """Write a consistent copy of the study database at ``target`` to the file ``out`` (never overwritten)."""
    out = Path(out)
    if out.exists():
        raise BackupError(f"{out} already exists; choose a new backup file name")
    open_study_database(target).dispose()  # refuse what is not a study database, before writing anything
    url = database_url(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    source = _sqlite_path(url)
    if source is not None:
        partial = out.with_name(out.name + ".partial")
        try:
            with sqlite3.connect(source, timeout=30) as src, sqlite3.connect(partial) as dst:
                # all pages in one step: one read transaction, so in WAL mode the copy is the database
                # as of one commit while writers go on (a paged copy would restart on every commit)
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
        return out
    args, env = _libpq_args(url)
    _run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(out), *args], env, "pg_dump")
    return out


def restore_database(backup: str | Path, target: str | Path, protocol: Protocol | None = None) -> IntegrityReport:
    """Restore ``backup`` into the new database ``target`` and verify it; refuse (and remove it) if it does not.

    SQLite: ``target`` is a new file path. PostgreSQL: ``target`` is the URL of an existing, empty database.
    """
    backup = Path(backup)
    if not backup.is_file():
        raise BackupError(f"no backup file at {backup}")
    url = database_url(target)
    destination = _sqlite_path(url)
    if destination is not None:
        if destination.exists():
            raise BackupError(f"{destination} already exists; restore into a new file")
        with open(backup, "rb") as handle:
            header = handle.read(16)
        if header != b"SQLite format 3\x00":
            raise BackupError(f"{backup} is not a SQLite database backup")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(backup, destination)
        cleanup = lambda: destination.unlink(missing_ok=True)
    else:
        args, env = _libpq_args(url)
        _run([_pg_tool("pg_restore"), "--no-owner", "--exit-on-error", *args, str(backup)], env, "pg_restore")
        cleanup = None
    try:
        engine = open_study_database(target)
        try:
            report = check_integrity(engine, protocol or study_protocol(engine))
        finally:
            engine.dispose()
    except DatabaseError as exc:
        if cleanup:
            cleanup()
        raise BackupError(f"{backup} does not restore to a usable study database: {exc}") from None
    if not report.ok:
        if cleanup:
            cleanup()
        raise BackupError(f"{backup} was refused: {report.summary()}")
    return report


@dataclass(frozen=True)
class HealthCheck:
    """Engine integrity, schema revision and the audit trail with the data reconciled against it."""

    engine_ok: bool
    engine_detail: str
    revision: str | None
    head: str
    integrity: IntegrityReport

    @property
    def ok(self) -> bool:
        return self.engine_ok and self.revision == self.head and self.integrity.ok


def check_database(engine: Engine, protocol: Protocol | None = None) -> HealthCheck:
    """``PRAGMA integrity_check`` (SQLite) or a catalogue check (PostgreSQL), migrations, chain, reconciliation."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = [r[0] for r in connection.execute(text("PRAGMA integrity_check")).all()]
            engine_ok, detail = rows == ["ok"], "; ".join(rows[:5])
        else:
            # every table of ours can be read to its end: a damaged page or index makes this fail
            tables = [r[0] for r in connection.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).all()]
            for table in tables:
                connection.execute(text(f'SELECT count(*) FROM "{table}"'))
            engine_ok, detail = True, f"{len(tables)} tables readable"
    return HealthCheck(engine_ok, detail, current_revision(engine), head_revision(),
                       check_integrity(engine, protocol))
