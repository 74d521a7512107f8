"""Sites administered in the study database: the protocol file's sites are the default; administrators add a
site, rename one or (de)activate it in the browser, each change audited (entity ``site``, record key = the
site's code, fields ``name`` and ``active``, with the reason).

The sites of a study are the rows of the ``sites`` table (migration 0005, seeded from the protocol at
``db init``) plus any protocol site without a row (a database made before 0005, or a protocol amendment
adding a site): those are active under their protocol name. Screening (``CaptureService.screen_subject``)
accepts the active sites only; a deactivated site keeps its subjects and accounts.

A site code is 1-16 letters or digits and never changes (subjects and accounts refer to it). When the
protocol states a subject-code rule, the rule's ``{site}`` part is filled with site codes shaped like the
protocol's own (all digits of one length, e.g. RegenHeart's two-digit "01"): a new code must have that shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from regenheart.capture.common import audit_entry, require
from regenheart.capture.errors import Conflict, NotFound, ValidationFailed
from regenheart.capture.permissions import Actor
from regenheart.capture.validation import Violation
from regenheart.protocol.models import Protocol
from regenheart.store import audit
from regenheart.store.audit import canonical, utc_now
from regenheart.store.models import Site

SITE_CODE = re.compile(r"^[A-Za-z0-9]{1,16}$")
NAME_MAX = 200
# Who seeds the protocol's sites at 'db init' (the audit trail names a user for every change).
SYSTEM = Actor("system", "admin")
_UNSET: Any = object()


@dataclass(frozen=True)
class SiteView:
    code: str
    name: str
    active: bool
    in_protocol: bool  # declared in the protocol file
    version: int  # 0: a protocol site never stored in the database

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def site_code_shape(protocol: Protocol) -> tuple[re.Pattern[str], str] | None:
    """(pattern, description) every site code must follow when the protocol has a subject-code rule whose
    ``{site}`` part the protocol's own sites fill with digits of one length; None otherwise."""
    rule = protocol.study.subject_code
    codes = [s.code for s in protocol.study.sites]
    if rule is None or "{site}" not in rule.pattern or not codes:
        return None
    lengths = {len(c) for c in codes}
    if all(c.isdigit() for c in codes) and len(lengths) == 1:
        n = lengths.pop()
        return re.compile(rf"^\d{{{n}}}$"), (f"{n} digits, as the site part of the subject-code rule "
                                             f"{rule.pattern}" + (f" (e.g. {rule.example})" if rule.example else ""))
    return None


def study_sites(session: Session, protocol: Protocol) -> list[SiteView]:
    """Every site of the study: the database's rows, then protocol sites without a row, in code order."""
    declared = {s.code: s for s in protocol.study.sites}
    stored = {s.code: s for s in session.scalars(select(Site))}
    views = [SiteView(s.code, s.name, s.active, s.code in declared, s.version) for s in stored.values()]
    views += [SiteView(code, s.name, True, True, 0) for code, s in declared.items() if code not in stored]
    return sorted(views, key=lambda v: v.code)


def active_site_codes(session: Session, protocol: Protocol) -> list[str]:
    """Codes of the sites where subjects may be screened and accounts assigned now."""
    return [s.code for s in study_sites(session, protocol) if s.active]


class SiteService:
    """Site administration (administrators: permission ``manage_sites``) on one study database."""

    def __init__(self, engine: Engine, protocol: Protocol):
        self.engine = engine
        self.protocol = protocol
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def list_sites(self) -> list[SiteView]:
        """Every site (active or not); readable by any signed-in user (site names are not clinical data)."""
        with self._sessions() as session:
            return study_sites(session, self.protocol)

    def active_codes(self) -> list[str]:
        with self._sessions() as session:
            return active_site_codes(session, self.protocol)

    def _seed(self, session: Session, actor: Actor, reason: str) -> None:
        """Store every protocol site that has no row yet (active, protocol name), audited."""
        stored = set(session.scalars(select(Site.code)))
        entries = []
        for site in self.protocol.study.sites:
            if site.code in stored:
                continue
            session.add(Site(code=site.code, name=site.name, active=True, created_utc=utc_now(), version=1))
            entries += [audit_entry(actor, "create", "site", None, record_key=site.code, field=name,
                                    new_value=canonical(value), reason=reason)
                        for name, value in (("name", site.name), ("active", True))]
        audit.append(session, entries)

    def seed_from_protocol(self, actor: Actor = SYSTEM) -> int:
        """Store the protocol's sites (``db init``); returns how many were added (0 when all are stored)."""
        with self._sessions.begin() as session:
            before = len(list(session.scalars(select(Site.code))))
            self._seed(session, actor, "site of the protocol file")
            session.flush()
            return len(list(session.scalars(select(Site.code)))) - before

    @staticmethod
    def _name(name: str | None, violations: list[Violation]) -> str:
        text = " ".join((name or "").split())
        if not text or len(text) > NAME_MAX:
            violations.append(Violation("name", name, "length", f"must be 1-{NAME_MAX} characters"))
        return text

    def add_site(self, actor: Actor, code: str, name: str, *, reason: str | None = None) -> SiteView:
        """Add an active site (administrators). The code must be new and of the study's site-code shape."""
        require(actor, "manage_sites")
        violations: list[Violation] = []
        code = (code or "").strip()
        if not SITE_CODE.match(code):
            violations.append(Violation("code", code, "format", "must be 1-16 letters or digits"))
        else:
            shape = site_code_shape(self.protocol)
            if shape is not None and not shape[0].match(code):
                violations.append(Violation("code", code, "pattern", f"must be {shape[1]}"))
        text = self._name(name, violations)
        why = (reason or "").strip() or "site added"
        try:
            with self._sessions.begin() as session:
                if code in {s.code for s in study_sites(session, self.protocol)}:
                    violations.append(Violation("code", code, "unique", "is already a site of this study"))
                if violations:
                    raise ValidationFailed(violations)
                self._seed(session, SYSTEM, "site of the protocol file")  # the protocol's sites stay listed
                session.add(Site(code=code, name=text, active=True, created_utc=utc_now(), version=1))
                audit.append(session, [audit_entry(actor, "create", "site", None, record_key=code, field=field,
                                                   new_value=canonical(value), reason=why)
                                       for field, value in (("name", text), ("active", True))])
        except IntegrityError:
            # Another administrator added the same code between our check and our insert (PostgreSQL: the
            # check reads before the audit head serializes the writers); nothing of ours was written.
            raise ValidationFailed([Violation("code", code, "unique", "is already a site of this study")]) from None
        return SiteView(code, text, True, code in {s.code for s in self.protocol.study.sites}, 1)

    def update_site(self, actor: Actor, code: str, *, name: str | None = _UNSET, active: bool = _UNSET,
                    reason: str | None, expected_version: int | None = None) -> SiteView:
        """Rename a site or (de)activate it (administrators; a reason is required). A deactivated site takes no
        new subjects and no new accounts; its subjects and their data stay."""
        require(actor, "manage_sites")
        violations: list[Violation] = []
        changes: dict[str, Any] = {}
        if name is not _UNSET:
            changes["name"] = self._name(name, violations)
        if active is not _UNSET:
            changes["active"] = bool(active)
        why = (reason or "").strip()
        if not why:
            violations.append(Violation("reason", reason, "reason_required", "a reason is required"))
        with self._sessions.begin() as session:
            if code not in {s.code for s in study_sites(session, self.protocol)}:
                raise NotFound(f"site {code} not found")
            if violations:
                raise ValidationFailed(violations)
            self._seed(session, SYSTEM, "site of the protocol file")
            site = session.scalars(select(Site).where(Site.code == code).with_for_update()).one()
            if expected_version is not None and expected_version != site.version:
                raise Conflict(f"site {code} is at version {site.version}, not {expected_version}: reload it")
            entries = []
            for field, new in changes.items():
                old = getattr(site, field)
                if old != new:
                    setattr(site, field, new)
                    entries.append(audit_entry(actor, "update", "site", None, record_key=code, field=field,
                                               old_value=canonical(old), new_value=canonical(new), reason=why))
            if entries:
                site.version += 1
                audit.append(session, entries)
            return SiteView(site.code, site.name, site.active, code in {s.code for s in self.protocol.study.sites},
                            site.version)
