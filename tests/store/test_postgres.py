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
