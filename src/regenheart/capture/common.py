"""Lookups and checks shared by the capture, workflow and account services (one definition each)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from regenheart.capture.errors import NotFound, PermissionDenied
from regenheart.capture.permissions import Actor
from regenheart.store.audit import AuditEntry
from regenheart.store.models import FormRecord, Subject

# Query statuses that still need the site's answer or the monitor's close.
UNRESOLVED = ("open", "answered")


def require(actor: Actor, action: str) -> None:
    """Raise :class:`PermissionDenied` unless the actor's role may do ``action``."""
    if not actor.may(action):
        raise PermissionDenied(f"role '{actor.role}' may not {action.replace('_', ' ')}")


def find_subject(session: Session, actor: Actor, subject_code: str, *, lock: bool = True) -> Subject:
    """The subject, or :class:`NotFound` (also for another site's subject: its existence is not revealed).

    ``lock`` (writers): the subject's row is locked until the transaction ends (``SELECT ... FOR UPDATE``
    on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serializes writers), so two writers on one
    subject take turns and a version check cannot be passed by both. Reads pass ``lock=False``.
    """
    query = select(Subject).where(Subject.subject_code == subject_code)
    subject = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if subject is None or not actor.sees_site(subject.site_code):
        raise NotFound(f"subject {subject_code} not found")
    return subject


def find_form_record(session: Session, subject_id: int, visit_code: str, form_code: str) -> FormRecord | None:
    """The stored record of one form at one visit, or None if it was never saved."""
    return session.scalars(select(FormRecord).where(
        FormRecord.subject_id == subject_id, FormRecord.visit_code == visit_code,
        FormRecord.form_code == form_code)).one_or_none()


def audit_entry(actor: Actor, action: str, entity: str, subject: str | None, **kw: Any) -> AuditEntry:
    """An audit entry attributed to ``actor`` (username and role)."""
    return AuditEntry(username=actor.username, role=actor.role, action=action, entity=entity,
                      subject_code=subject, **kw)
