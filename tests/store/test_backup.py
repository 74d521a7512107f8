"""Backup while the server writes, restore only what verifies, and the database health check."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, select, text

from regenheart.capture.service import CaptureService
from regenheart.store.backup import BackupError, backup_database, check_database, restore_database
from regenheart.store.db import create_study_database, make_engine, open_study_database
from regenheart.store.models import Subject

from ..conftest import COORDINATOR

TODAY = dt.date(2026, 1, 1)


def _writer(engine, protocol, acknowledged: list[str], stop: threading.Event, start: int = 1) -> None:
    """Screen one subject after another; a code is appended only after its commit returned."""
    service = CaptureService(engine, protocol, today=lambda: TODAY)
    n = start
    while not stop.is_set() and n < start + 400:
        code = f"01-{n:03d}"
        service.screen_subject(COORDINATOR, code, "01", "2025-01-10", "2025-01-09")
        acknowledged.append(code)
        n += 1


def _codes(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(Subject.subject_code)).scalars())


def test_backup_during_concurrent_writes_restores_every_acknowledged_write(tmp_path, protocol):
    source = tmp_path / "live.db"
    engine = create_study_database(source, {"study": "TEST"})
    acknowledged: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=_writer, args=(engine, protocol, acknowledged, stop))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(acknowledged) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        before = set(acknowledged)  # every write acknowledged before the backup began
        backup = backup_database(source, tmp_path / "backup.db")
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert len(before) >= 10
    report = restore_database(backup, tmp_path / "restored.db", protocol)
    assert report.ok and report.chain.records >= 5 * len(before)
    restored = open_study_database(tmp_path / "restored.db")
    assert before <= _codes(restored)
    assert _codes(restored) <= set(acknowledged)  # nothing that was not committed
    restored.dispose()
    engine.dispose()


@pytest.fixture
def small_db(tmp_path, protocol):
    path = tmp_path / "small.db"
    engine = create_study_database(path, {"study": "TEST"})
    service = CaptureService(engine, protocol, today=lambda: TODAY)
    for n in range(1, 4):
        service.screen_subject(COORDINATOR, f"01-{n:03d}", "01", "2025-01-10", "2025-01-09")
    engine.dispose()
    return path


def test_restore_refuses_a_backup_that_does_not_verify_and_leaves_nothing(small_db, tmp_path, protocol):
    tampered = tmp_path / "tampered.db"
    shutil.copy(small_db, tampered)
    engine = make_engine(tampered)
    with engine.begin() as conn:
        conn.execute(text("UPDATE subjects SET consent_date = '2024-12-31' WHERE subject_code = '01-002'"))
    engine.dispose()
    target = tmp_path / "restored.db"
    with pytest.raises(BackupError, match="01-002 consent_date"):
        restore_database(tampered, target, protocol)
    assert not target.exists()


def test_backup_and_restore_refuse_bad_targets(small_db, tmp_path, protocol):
    backup = backup_database(small_db, tmp_path / "b.db")
    with pytest.raises(BackupError, match="already exists"):
        backup_database(small_db, backup)
    with pytest.raises(BackupError, match="already exists"):
        restore_database(backup, small_db, protocol)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a database at all")
    with pytest.raises(BackupError, match="not a SQLite database backup"):
        restore_database(junk, tmp_path / "x.db", protocol)
    with pytest.raises(BackupError, match="no backup file"):
        restore_database(tmp_path / "missing.db", tmp_path / "y.db", protocol)


def test_check_reports_engine_migrations_chain_and_data(small_db, protocol):
    engine = make_engine(small_db)
    health = check_database(engine, protocol)
    assert health.ok and health.engine_detail == "ok" and health.revision == health.head
    with engine.begin() as conn:
        conn.execute(text("UPDATE subjects SET status = 'completed' WHERE subject_code = '01-001'"))
    health = check_database(engine, protocol)
    assert not health.ok and not health.integrity.reconciliation.ok and health.engine_ok
    engine.dispose()


def test_cli_backup_restore_check(small_db, tmp_path):
    from typer.testing import CliRunner

    from regenheart.cli.main import app

    runner = CliRunner()
    out = tmp_path / "cli-backup.db"
    result = runner.invoke(app, ["db", "backup", "--db", str(small_db), "--out", str(out)])
    assert result.exit_code == 0 and out.exists(), result.output
    result = runner.invoke(app, ["db", "restore", str(out), "--db", str(tmp_path / "cli-restored.db")])
    assert result.exit_code == 0 and "audit records verified" in result.output, result.output
    result = runner.invoke(app, ["db", "check", "--db", str(tmp_path / "cli-restored.db")])
    assert result.exit_code == 0 and "data vs audit trail" in result.output
    result = runner.invoke(app, ["db", "check", "--db", str(tmp_path / "nothing.db")])
    assert result.exit_code == 2 and "no database" in result.output and "Traceback" not in result.output


PG_URL = os.environ.get("REGENHEART_TEST_PG_URL")


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="no PostgreSQL (set REGENHEART_TEST_PG_URL)")
def test_postgres_backup_during_writes_and_restore(protocol, tmp_path):
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    names = [f"rh_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_URL.rsplit("/", 1)[0]
    source_url, target_url = (f"{base}/{n}" for n in names)
    engine = create_study_database(source_url, {"study": "TEST"})
    acknowledged: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=_writer, args=(engine, protocol, acknowledged, stop))
    thread.start()
    try:
        while len(acknowledged) < 10:
            time.sleep(0.01)
        before = set(acknowledged)
        backup = backup_database(source_url, tmp_path / "pg.dump")
    finally:
        stop.set()
        thread.join()
    engine.dispose()
    try:
        report = restore_database(backup, target_url, protocol)
        assert report.ok
        restored = open_study_database(target_url)
        assert before <= _codes(restored) <= set(acknowledged)
        restored.dispose()
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
