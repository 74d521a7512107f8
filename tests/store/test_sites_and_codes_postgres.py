"""Sites administered in the database and a corrected subject code on PostgreSQL: migration 0005 matches the
models, and screening at an added site, deactivation, the code correction and reconciliation behave as on SQLite.
Needs REGENHEART_TEST_PG_URL (see test_postgres.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from regenheart.capture.errors import StateError, ValidationFailed
from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.capture.sites import SiteService
from regenheart.capture.subject_admin import SubjectAdmin
from regenheart.store.audit import verify_chain
from regenheart.store.models import Base
from regenheart.store.reconcile import reconcile

from ..conftest import eligible_screening_data
from .test_postgres import pg_engine, pytestmark  # noqa: F401 (fixture, markers)

ADMIN = Actor("admin1", "admin")
DM = Actor("dm1", "data_manager")


def test_sites_and_code_correction_on_postgres(pg_engine, protocol):  # noqa: F811
    with pg_engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    sites = SiteService(pg_engine, protocol)
    assert sites.seed_from_protocol() == len(protocol.study.sites)
    sites.add_site(ADMIN, "02", "Second site", reason="new centre")
    capture = CaptureService(pg_engine, protocol, today=lambda: dt.date(2026, 1, 1))
    coord = Actor("coord2", "coordinator", "02")
    capture.screen_subject(coord, "02-001", "02", "2025-01-10", "2025-01-09")
    sites.update_site(ADMIN, "02", active=False, reason="closed")
    with pytest.raises(ValidationFailed, match="site_code"):
        capture.screen_subject(coord, "02-002", "02", "2025-01-10", "2025-01-09")
    for form, data in eligible_screening_data().items():
        capture.save_form(coord, "02-001", "SCR", form, data, visit_date="2025-01-10")
    admin = SubjectAdmin(pg_engine, protocol)
    with pytest.raises(ValidationFailed, match="pattern"):
        admin.correct_subject_code(DM, "02-001", "01-001", reason="wrong site part")
    assert admin.correct_subject_code(DM, "02-001", "02-011", reason="typo") == "02-011"
    assert capture.get_form(coord, "02-011", "SCR", "echo").version == 1
    assert reconcile(pg_engine, protocol).ok and verify_chain(pg_engine).ok
    capture.withdraw_screen_failure(coord, "02-011", "not going on")
    with pytest.raises(StateError, match="in screening"):
        admin.correct_subject_code(DM, "02-011", "02-012", reason="x")
