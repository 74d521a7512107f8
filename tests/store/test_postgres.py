"""The multi-site engine: the same migrations, capture path, append-only trigger and hash chain on
PostgreSQL. Needs REGENHEART_TEST_PG_URL (scripts/test.sh starts a local server and sets it); in CI
a missing server is a failure, not a skip."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from regenheart.capture.errors import ValidationFailed
from regenheart.capture.service import CaptureService
from regenheart.store.audit import verify_chain
from regenheart.store.db import create_study_database

from ..conftest import COORDINATOR, INVESTIGATOR, eligible_screening_data

PG_URL = os.environ.get("REGENHEART_TEST_PG_URL")
if not PG_URL and os.environ.get("CI"):
    raise RuntimeError("CI needs REGENHEART_TEST_PG_URL: run the tests through scripts/test.sh")
pytestmark = [pytest.mark.postgres,
              pytest.mark.skipif(not PG_URL, reason="no PostgreSQL (set REGENHEART_TEST_PG_URL)")]


@pytest.fixture
def pg_engine(protocol):
    """A brand-new database per test, dropped afterwards."""
    name = f"rh_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = create_study_database(url, {"study": protocol.study.nct_id})
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def test_capture_audit_and_chain_on_postgres(pg_engine, protocol):
    service = CaptureService(pg_engine, protocol, today=lambda: dt.date(2026, 1, 1))
    service.screen_subject(COORDINATOR, "01-001", "01", "2025-01-10", "2025-01-09")
    for form, data in eligible_screening_data().items():
        service.save_form(COORDINATOR, "01-001", "SCR", form, data, visit_date="2025-01-10")
    assert service.evaluate_eligibility(INVESTIGATOR, "01-001").eligible
    with pytest.raises(ValidationFailed):
        service.save_form(COORDINATOR, "01-001", "SCR", "echo", {"lvef_pct": 99})
    service.save_form(COORDINATOR, "01-001", "SCR", "echo", {"lvef_pct": 29.5}, reason="re-measured")
    assert service.get_form(COORDINATOR, "01-001", "SCR", "echo").data["lvef_pct"] == 29.5
    report = verify_chain(pg_engine)
    assert report.ok and report.records > 40


def test_audit_trail_is_append_only_on_postgres(pg_engine, protocol):
    service = CaptureService(pg_engine, protocol, today=lambda: dt.date(2026, 1, 1))
    service.screen_subject(COORDINATOR, "01-001", "01", "2025-01-10", "2025-01-09")
    for statement in ("UPDATE audit_trail SET reason = 'x'", "DELETE FROM audit_trail"):
        with pytest.raises(DBAPIError, match="append-only"), pg_engine.begin() as conn:
            conn.execute(text(statement))
    with pg_engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_trail DISABLE TRIGGER audit_trail_append_only"))
        conn.execute(text("UPDATE audit_trail SET new_value = '\"02\"' WHERE seq = 1"))
    assert verify_chain(pg_engine).first_bad_seq == 1


def test_group_transactions_with_a_late_chain_overlap_and_keep_one_chain_on_postgres(pg_engine, protocol):
    """A group transaction (the API's) locks the audit-chain head only to chain its records at its end: a
    second one, on another subject, runs and commits while the first is still open; one on the same subject
    waits for the first (the subject's row lock) and then sees its save. The chain verifies, in commit order."""
    import threading

    from regenheart.capture.errors import Conflict

    vitals = {"sbp_mmhg": 118, "dbp_mmhg": 72, "heart_rate_bpm": 64, "temperature_c": 36.6}
    service = CaptureService(pg_engine, protocol, today=lambda: dt.date(2026, 1, 1))
    for code in ("01-001", "01-002"):
        service.screen_subject(COORDINATOR, code, "01", "2025-01-10", "2025-01-09")
        service.save_form(COORDINATOR, code, "SCR", "vital_signs", vitals, visit_date="2025-01-10")
    first_saved, second_done, outcomes = threading.Event(), threading.Event(), {}

    def group(code: str, sbp: int, name: str, saved: threading.Event | None = None) -> None:
        try:
            with service.unit_of_work(forms=[(code, "SCR", "vital_signs")], late_chain=True):
                result = service.save_form(COORDINATOR, code, "SCR", "vital_signs", dict(vitals, sbp_mmhg=sbp),
                                           reason=name, expected_version=1)
                if saved is not None:
                    saved.set()
                    second_done.wait(20)  # held open until the other group has committed
            outcomes[name] = result.version
        except Conflict as exc:
            outcomes[name] = f"conflict: {exc}"

    first = threading.Thread(target=group, args=("01-001", 130, "first", first_saved))
    first.start()
    assert first_saved.wait(20)
    second = threading.Thread(target=group, args=("01-002", 140, "second"))
    second.start()
    second.join(20)
    assert not second.is_alive() and outcomes == {"second": 2}  # committed while the first is open
    same_subject = threading.Thread(target=group, args=("01-001", 150, "same subject"))
    same_subject.start()
    same_subject.join(1)
    assert same_subject.is_alive()  # waits for the first's lock on 01-001
    second_done.set()
    first.join(20)
    same_subject.join(20)
    assert outcomes["first"] == 2 and outcomes["same subject"].startswith("conflict: ")  # saw version 2
    with pg_engine.connect() as conn:
        reasons = [r for (r,) in conn.execute(text(
            "SELECT reason FROM audit_trail WHERE action = 'update' ORDER BY seq"))]
    assert reasons == ["second", "first"]  # chained in the order of the commits
    assert verify_chain(pg_engine).ok


def test_the_kept_token_check_connection_sees_revocations_and_survives_a_server_restart(pg_engine, protocol):
    """The event loop's token check keeps one connection (no checkout or ping per request): it still reads
    each revocation at once, and a connection the server dropped is replaced within the same check."""
    from argon2 import PasswordHasher

    from regenheart.capture.accounts import AccountService
    from regenheart.capture.permissions import Actor

    accounts = AccountService(pg_engine, protocol, hasher=PasswordHasher(time_cost=1, memory_cost=1024,
                                                                          parallelism=1))
    accounts.create_user(Actor("setup", "admin"), "coord", "coordinator", "a long password 1", site="01")
    version = accounts.get_user("coord").token_version
    assert accounts.token_user("coord", version, kept=True) is not None
    pid = accounts._kept[1].exec_driver_sql("SELECT pg_backend_pid()").scalar()
    accounts._kept[1].rollback()
    with pg_engine.connect() as admin:  # the server ends the kept connection's backend
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    assert accounts.token_user("coord", version, kept=True) is not None  # replaced, checked again
    assert accounts._kept[1].exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
    accounts._kept[1].rollback()
    accounts.revoke_sessions("coord", channel="api")  # log-out everywhere: committed on another connection
    assert accounts.token_user("coord", version, kept=True) is None
    assert accounts.token_user("coord", version + 1, kept=True) is not None
