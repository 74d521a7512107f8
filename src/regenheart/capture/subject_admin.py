"""Correction of a subject code entered wrongly at screening (e.g. "1-38" at site 01 where the protocol's rule is
the site number, a hyphen and three digits: "01-038").

Allowed to data managers and administrators (permission ``correct_subject_code``), with a reason, while the
subject is still in screening (status screening or eligible) and has no visit after the baseline visit, and no
form of it is locked or signed (a signature covers the subject's code with the data). The new code must follow
the protocol's subject-code rule for the subject's site and be unused. Audited as entity ``subject``, field
``subject_code``, old -> new, with the reason; the record key and subject code of that audit record are the new
code.

Only the ``subjects`` table holds the code (every other table refers to the subject's id). Audit records are
never rewritten: the earlier ones keep the old code, and :class:`regenheart.store.reconcile.CodeHistory` maps
them to the subject (reconciliation, the audit-trail page, acknowledged warnings).
"""

from __future__ import annotations

import re

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from regenheart.capture.common import audit_entry, find_subject, require
from regenheart.capture.errors import StateError, ValidationFailed
from regenheart.capture.permissions import Actor
from regenheart.capture.service import SUBJECT_CODE
from regenheart.capture.validation import Violation
from regenheart.protocol.models import Protocol
from regenheart.store import audit
from regenheart.store.audit import canonical
from regenheart.store.models import FormRecord, Subject, Visit
from regenheart.store.reconcile import SUBJECT_CODE_FIELD

IN_SCREENING = ("screening", "eligible")


def code_violations(protocol: Protocol, site_code: str, code: str) -> list[Violation]:
    """What is wrong with ``code`` as a subject code at ``site_code`` (format, then the protocol's rule)."""
    if not SUBJECT_CODE.match(code):
        return [Violation("subject_code", code, "format",
                          "must be 1-32 letters, digits or '-' starting with a letter or digit")]
    rule = protocol.study.subject_code
    if rule is not None and not re.fullmatch(rule.regex_for(site_code), code):
        example = f" (e.g. {rule.example})" if rule.example else ""
        return [Violation("subject_code", code, "pattern", f"does not follow the protocol's subject code rule "
                                                           f"{rule.pattern} with site {site_code}{example}")]
    return []


class SubjectAdmin:
    """Corrections of a subject's registration on one study database (audited, one transaction each)."""

    def __init__(self, engine: Engine, protocol: Protocol):
        self.engine = engine
        self.protocol = protocol
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def _check_correctable(self, session: Session, subject: Subject) -> None:
        code = subject.subject_code
        if subject.status not in IN_SCREENING:
            raise StateError(f"subject {code} is {subject.status}: a code can be corrected only while the subject "
                             "is in screening (withdraw it as a screen failure otherwise)")
        baseline = self.protocol.baseline_visit.code
        later = sorted(session.scalars(select(Visit.visit_code).where(Visit.subject_id == subject.id,
                                                                      Visit.visit_code != baseline)))
        if later:
            raise StateError(f"subject {code} has visits after {baseline} ({', '.join(later)}): its code can no "
                             "longer be corrected")
        frozen = sorted(f"{visit}/{form}" for visit, form in session.execute(
            select(FormRecord.visit_code, FormRecord.form_code).where(
                FormRecord.subject_id == subject.id, FormRecord.locked | FormRecord.signed)))
        if frozen:
            raise StateError(f"subject {code} has locked or signed forms ({', '.join(frozen)}): unlock them, or "
                             "withdraw the subject as a screen failure")

    def correct_subject_code(self, actor: Actor, subject_code: str, new_code: str, *, reason: str | None) -> str:
        """Give a subject in screening the code it should have had (reason required); returns the new code.

        Raises ValidationFailed (reason missing, code malformed, against the protocol's rule, unchanged or taken),
        StateError (not in screening, later visits, locked or signed forms), NotFound, PermissionDenied."""
        require(actor, "correct_subject_code")
        new = (new_code or "").strip()
        why = (reason or "").strip()
        violations: list[Violation] = []
        if not why:
            violations.append(Violation("reason", reason, "reason_required",
                                        "a reason is required to correct a subject code"))
        with self._sessions.begin() as session:
            subject = find_subject(session, actor, subject_code)
            self._check_correctable(session, subject)
            old = subject.subject_code
            if new == old:
                violations.append(Violation("subject_code", new, "unchanged", "is the subject's code already"))
            else:
                violations += code_violations(self.protocol, subject.site_code, new)
                if session.scalars(select(Subject.id).where(Subject.subject_code == new)).first():
                    violations.append(Violation("subject_code", new, "unique", "is already registered"))
            if violations:
                raise ValidationFailed(violations)
            subject.subject_code = new
            subject.version += 1
            audit.append(session, [audit_entry(actor, "correct", "subject", new, record_key=new,
                                               field=SUBJECT_CODE_FIELD, old_value=canonical(old),
                                               new_value=canonical(new), reason=why)])
            return new
