"""Two administrators adding the same site code at once: the loser gets the 'unique' violation, never a
database error (the check reads before the audit head serializes writers on PostgreSQL; simulated here by
hiding the first site from the loser's check)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from regenheart.capture import sites as sites_module
from regenheart.capture.errors import ValidationFailed
from regenheart.capture.permissions import Actor
from regenheart.capture.sites import SiteService
from regenheart.store.audit import verify_chain
from regenheart.store.models import AuditRecord, Site

ADMIN = Actor("admin1", "admin")


def test_a_concurrent_duplicate_site_is_a_unique_violation(engine, protocol, monkeypatch):
    service = SiteService(engine, protocol)
    service.add_site(ADMIN, "03", "Third site", reason="new site opened")
    with Session(engine) as session:
        audit_rows = session.scalar(select(func.count()).select_from(AuditRecord))
    real = sites_module.study_sites
    monkeypatch.setattr(sites_module, "study_sites",
                        lambda session, p: [s for s in real(session, p) if s.code != "03"])
    with pytest.raises(ValidationFailed) as excinfo:
        service.add_site(ADMIN, "03", "Third site again", reason="opened twice")
    assert [(v.field, v.rule) for v in excinfo.value.violations] == [("code", "unique")]
    with Session(engine) as session:
        assert session.scalar(select(Site.name).where(Site.code == "03")) == "Third site"
        assert session.scalar(select(func.count()).select_from(AuditRecord)) == audit_rows  # nothing written
    assert verify_chain(engine).ok
