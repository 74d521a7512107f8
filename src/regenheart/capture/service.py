"""The capture service: the only way data gets into a study database.

Every method validates against the protocol, writes in one transaction and appends an audit record
for every change (user, role, UTC time, record, field, old value, new value, reason) to the
hash-chained trail in the same transaction. A refused request raises a :mod:`capture.errors`
exception and writes nothing. A reason is required for any change to data after first entry.

Batch mode (:meth:`CaptureService.unit_of_work`): an importer runs many calls in one transaction;
each call then runs in its own savepoint (a refused call still writes nothing) and the caller wraps
a subject in :meth:`UnitOfWork.savepoint` so that a refused subject rolls back alone.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Insert, bindparam, event, func, insert, select, update
from sqlalchemy.orm import ORMExecuteState, Session, make_transient_to_detached, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from regenheart.capture import randomization
from regenheart.capture.common import UNRESOLVED, audit_entry, find_form_record, find_subject, require
from regenheart.capture.eligibility import EligibilityOutcome, evaluate_eligibility
from regenheart.capture.errors import Conflict, NotFound, PermissionDenied, StateError, ValidationFailed
from regenheart.capture.permissions import Actor
from regenheart.capture.sites import active_site_codes
from regenheart.capture.validation import Violation, run_checks, validate_record
from regenheart.protocol.missing import is_missing, plain, plain_value
from regenheart.protocol.models import Protocol
from regenheart.protocol.schedule import in_window, study_day
from regenheart.store import audit
from regenheart.store.audit import AuditEntry, canonical
from regenheart.store.bulk import insert_plain_rows
from regenheart.store.db import reader
from regenheart.store.models import AdverseEvent, DataQuery, DerivedValue, FormRecord, ItemValue, Subject, Visit

# A scorer maps (instrument, item responses) to (scores, scoring version).
Scorer = Callable[[str, Mapping[str, Any]], tuple[dict[str, float | None], str]]

SUBJECT_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")
# SAE criteria are the AE log's yes/no fields named sae_* (RegenHeart: death, life-threatening, ...).
SAE_PREFIX = "sae_"
# Marks a screen failure recorded by withdrawal (not by the eligibility rules) in eligibility_failed.
WITHDRAWN_AT_SCREENING = "withdrawn at screening"
# Prepared Core statements of the hot path (built once; rows are passed as parameters).
_INSERT_RECORD = insert(FormRecord.__table__)
_INSERT_ITEMS = insert(ItemValue.__table__)
_INSERT_DERIVED = insert(DerivedValue.__table__)
_INSERT_VISIT = insert(Visit.__table__)
_LAST_RECORD_ID = select(func.max(FormRecord.__table__.c.id))
_UPDATE_ITEMS = (update(ItemValue.__table__).where(ItemValue.__table__.c.id == bindparam("item_id"))
                 .values(value=bindparam("value")))


def default_scorer(instrument: str, items: Mapping[str, Any]) -> tuple[dict[str, float | None], str]:
    """Score with :mod:`regenheart.instruments` (imported lazily: capture works without it)."""
    from regenheart import instruments

    return instruments.score(instrument, items), instruments.scoring_version(instrument)


@dataclass(frozen=True)
class SaveResult:
    """Outcome of a save: new version, form status, warnings (soft checks), derived scores, and the form as
    stored afterwards (what :meth:`CaptureService.get_form` would read, without reading it again)."""

    version: int
    status: str
    changed: list[str] = field(default_factory=list)
    warnings: list[Violation] = field(default_factory=list)
    derived: dict[str, float | None] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # every stored value, as get_form returns them
    scoring_version: str | None = None
    verified: bool = False
    signed: bool = False
    visit_date: dt.date | None = None


@dataclass(frozen=True)
class FormView:
    subject_code: str
    visit_code: str
    form_code: str
    data: dict[str, Any]
    version: int
    status: str
    derived: dict[str, float | None]
    scoring_version: str | None
    verified: bool
    locked: bool
    signed: bool
    visit_date: dt.date | None = None


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


# SQLite page cache of a unit of work, in KiB (a negative PRAGMA cache_size counts KiB). A long
# import in one transaction touches every index page of the audit trail (its hash index is written
# in random order); with SQLite's default 2 MiB cache each insert re-reads pages from the log.
# Memory is taken only as pages are read, and the setting is put back when the unit ends.
# Durability is unchanged: the connection's synchronous=FULL still syncs the log at commit.
BULK_CACHE_KIB = 256 * 1024


def _bulk_pragmas(session: Session) -> Callable[[], None] | None:
    """Give a SQLite connection a large page cache for a unit of work.

    Returns the function that restores the previous setting (None on other databases).
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return None
    driver = connection.connection.driver_connection  # a PRAGMA is not a statement worth caching
    cache_size = driver.execute("PRAGMA cache_size").fetchone()[0]
    driver.execute(f"PRAGMA cache_size = {-BULK_CACHE_KIB}")

    def restore() -> None:
        driver.execute(f"PRAGMA cache_size = {int(cache_size)}")

    return restore


def _decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _no_missing_codes(values: Mapping[str, Any], record: str) -> list[Violation]:
    """Log records (adverse events, disposition) hold values only: their fields map to typed columns."""
    message = f"missing-data codes are for visit forms; the {record} record needs values (leave an optional field empty)"
    return [Violation(name, value, "missing_code", message) for name, value in values.items() if is_missing(value)]


@dataclass(slots=True)
class NewVisit:
    """A visit a unit of work inserted (one Core INSERT, no ORM object): what the visit checks read.

    Read-only: a change of its date loads the stored row first (:meth:`CaptureService._ensure_visit`).
    """

    subject_id: int
    visit_code: str
    visit_date: dt.date
    study_day: int | None = None
    in_window: bool | None = None


@dataclass(slots=True)
class NewRecord:
    """A form record a unit of work inserted (one Core INSERT, no ORM object), as the save that made it
    reads it. A later save of the same form in the unit loads the stored record instead."""

    id: int
    subject_id: int
    visit_code: str
    form_code: str
    status: str
    version: int
    verified: bool
    locked: bool
    signed: bool


class UnitOfWork:
    """One transaction shared by many service calls (see :meth:`CaptureService.unit_of_work`)."""

    def __init__(self, session: Session, reason: str | None):
        self.session = session
        self.reason = reason
        self.discarded = False
        self.subjects: dict[str, Subject] = {}  # strong references: the identity map's are weak
        self.head: audit.BatchHead | None = None  # the audit-chain head, locked for the whole unit
        # Per subject id, its visits and form records as the unit has them (one query per subject,
        # not one per save); only the capture service creates either, and keeps these up to date.
        # Visits and records it inserts itself are kept as plain rows (NewVisit, NewRecord): the ORM's
        # bookkeeping of a new object costs more than its INSERT.
        self.visits: dict[int, list[Visit | NewVisit]] = {}
        self.records: dict[int, dict[tuple[str, str], FormRecord | NewRecord]] = {}
        # Single forms loaded ahead by :meth:`CaptureService.prefetch_forms` (items and scores with them;
        # None: never saved), and their open-query counts, keyed by (subject id, visit, form).
        self.forms: dict[tuple[int, str, str], FormRecord | NewRecord | None] = {}
        self.open_queries: dict[tuple[int, str, str], int] = {}
        # False: calls run without a savepoint of their own, for a caller that rolls back the whole
        # enclosing savepoint whenever a call is refused (saves two statements per call).
        self.call_savepoints = True
        # Rows of new items and derived scores, inserted together (one multi-row INSERT per table)
        # before anything reads the database, at the end of each savepoint and before the commit;
        # the audit records appended meanwhile wait in the same way (audit.BatchHead.pending).
        self._pending: dict[Insert, list[dict[str, Any]]] = {}
        # SQLite: the id the next new form record takes. The unit holds the database's write lock from
        # its first statement (BEGIN IMMEDIATE), so nobody else inserts records meanwhile and the ids
        # are those SQLite would choose (the largest + 1): records can be inserted later, together, and
        # their items refer to them at once. None: not read yet, or another database (ids from a sequence).
        self.next_record_id: int | None = None

    def defer_insert(self, statement: Insert, rows: list[dict[str, Any]], *, referenced: bool = False) -> None:
        """Insert ``rows`` with ``statement`` at the next :meth:`flush_pending` (values of plain types only,
        see :func:`~regenheart.store.bulk.insert_plain_rows`). ``referenced``: other deferred rows refer to
        these (their table is inserted before every other)."""
        if referenced and statement not in self._pending:
            self._pending = {statement: [], **self._pending}
        self._pending.setdefault(statement, []).extend(rows)

    def flush_pending(self) -> None:
        """Insert every deferred row and pending audit record (the session's ORM changes flush on their own)."""
        if self._pending:
            pending, self._pending = self._pending, {}
            connection = self.session.connection()
            for statement, rows in pending.items():
                insert_plain_rows(connection, statement, rows)
        audit.flush_pending(self.session)

    def _before_read(self, _state: ORMExecuteState) -> None:
        self.flush_pending()  # every query of the unit sees the rows it has written

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Calls inside are kept together: an exception rolls back all of them (and propagates)."""
        head = (self.head.seq, self.head.hash) if self.head is not None else None
        next_record_id = self.next_record_id
        self.flush_pending()  # what was deferred before belongs to the enclosing transaction
        kept_audit = audit.pending_count(self.session)  # a late chain holds its records to the end
        try:
            with self.session.begin_nested():
                yield
                self.flush_pending()
        except BaseException:
            self._pending.clear()
            audit.discard_pending(self.session, kept_audit)
            self.next_record_id = next_record_id  # the rolled-back records' ids are free again
            if head is not None:  # the rolled-back audit records are gone: so is their advance of the head
                self.head.seq, self.head.hash = head  # type: ignore[union-attr]
            # Rows inserted in the savepoint can linger in the identity map, and their ids are reused
            # by the next inserts: start the session afresh (everything kept is flushed already).
            self._forget()
            self.session.expunge_all()
            raise

    def discard(self) -> None:
        """Roll the whole unit back when it ends (a dry run, or an all-or-nothing import that failed)."""
        self.discarded = True

    def release_memory(self) -> None:
        """Forget loaded objects (all flushed) so that a long import does not grow without bound."""
        self.flush_pending()
        self.session.flush()
        self._forget()
        self.session.expunge_all()

    def _forget(self) -> None:
        self.subjects.clear()
        self.visits.clear()
        self.records.clear()
        self.forms.clear()
        self.open_queries.clear()


class CaptureService:
    """Validated, audited writes (and the matching reads) on one study database."""

    def __init__(self, engine: Engine, protocol: Protocol, scorer: Scorer | None = None,
                 today: Callable[[], dt.date] = _today):
        self.engine = engine
        self.protocol = protocol
        self.scorer = scorer or default_scorer
        self.today = today
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(reader(engine), expire_on_commit=False)  # never wait for the writer
        self._local = threading.local()  # the active unit of work of this thread, if any
        # Day 0: the protocol's anchor (RegenHeart: D0 catheterization with cells given); without
        # one, the date of the visit with target day 0, else of the first visit.
        self._day0 = protocol.day0
        self._infusion_visit = protocol.day0.visit if protocol.day0 else next(
            (v.code for v in protocol.visits if v.day == 0), protocol.visits[0].code)
        ae_log = protocol.adverse_events
        self._sae_criteria = tuple(f.name for f in ae_log.fields if f.name.startswith(SAE_PREFIX)) if ae_log else ()

    # ------------------------------------------------------------------ helpers
    _require = staticmethod(require)

    def _subject(self, session: Session, actor: Actor, subject_code: str, *, lock: bool = True) -> Subject:
        """The subject (see :func:`find_subject`); a unit of work keeps the subjects it saw (no repeated query)."""
        work = getattr(self._local, "work", None)
        if work is not None:
            subject = work.subjects.get(subject_code)
            if subject is not None and subject in session:  # not rolled back or released meanwhile
                if not actor.sees_site(subject.site_code):
                    raise NotFound(f"subject {subject_code} not found")
                return subject
        subject = find_subject(session, actor, subject_code, lock=lock)
        if work is not None:
            work.subjects[subject_code] = subject
        return subject

    def _visits(self, session: Session, subject: Subject) -> list[Visit | NewVisit]:
        """The subject's visits (a unit of work loads them once per subject and keeps the list current)."""
        work = getattr(self._local, "work", None)
        if work is not None and subject.id in work.visits:
            return work.visits[subject.id]
        visits: list[Visit | NewVisit] = list(session.scalars(select(Visit).where(Visit.subject_id == subject.id)))
        if work is not None:
            work.visits[subject.id] = visits
        return visits

    def _form_record(self, session: Session, subject: Subject, visit_code: str, form_code: str) -> FormRecord | None:
        """The stored record of a form (a unit of work loads a subject's records once and keeps them)."""
        work = getattr(self._local, "work", None)
        if work is None:
            return find_form_record(session, subject.id, visit_code, form_code)
        key = (subject.id, visit_code, form_code)
        records: dict[Any, FormRecord | NewRecord | None] | None
        if key in work.forms:  # loaded ahead (prefetch_forms)
            records, index = work.forms, key
        else:
            records, index = work.records.get(subject.id), (visit_code, form_code)
            if records is None:
                records = work.records[subject.id] = {(r.visit_code, r.form_code): r for r in session.scalars(
                    select(FormRecord).where(FormRecord.subject_id == subject.id))}
        record = records.get(index)
        if isinstance(record, NewRecord):  # inserted earlier in the unit: saved again, read it as stored
            record = records[index] = find_form_record(session, subject.id, visit_code, form_code)
        return record  # type: ignore[return-value]

    def _insert_record(self, session: Session, columns: dict[str, Any]) -> FormRecord:
        """Insert a new form record with one Core INSERT; return it as the rest of the save reads it.

        Outside a unit of work, the object joins the session as stored (not pending): the ORM's flush
        machinery for a new object costs more than the rest of a save. A unit of work keeps a plain
        :class:`NewRecord` instead (cheaper still; a first save changes nothing on it afterwards) and,
        on SQLite, defers the INSERT to its next flush with the id SQLite would give the row
        (:attr:`UnitOfWork.next_record_id`).
        """
        work = getattr(self._local, "work", None)
        if work is not None and self.engine.dialect.name == "sqlite":  # deferred, with the id SQLite would give
            if work.next_record_id is None:
                work.next_record_id = (session.connection().scalar(_LAST_RECORD_ID) or 0) + 1
            record_id, work.next_record_id = work.next_record_id, work.next_record_id + 1
            work.defer_insert(_INSERT_RECORD, [{"id": record_id, **columns}], referenced=True)
        else:
            record_id = session.connection().execute(_INSERT_RECORD, columns).inserted_primary_key[0]
        if work is None:
            record = FormRecord(id=record_id, **columns)
            make_transient_to_detached(record)
            session.add(record)
            return record
        new = NewRecord(id=record_id, **columns)
        records = work.records.get(columns["subject_id"])
        if records is not None:
            records[(new.visit_code, new.form_code)] = new
        if (key := (new.subject_id, new.visit_code, new.form_code)) in work.forms:
            work.forms[key] = new
        return new  # type: ignore[return-value]  # read like a FormRecord by the save that inserted it

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def unit_of_work(self, *, reason: str | None = None, forms: Sequence[tuple[str, str, str]] = (),
                     late_chain: bool = False) -> Iterator[UnitOfWork]:
        """Run every service call of this thread inside the block in one database transaction.

        Each call gets its own savepoint, so a refused call still writes nothing; the caller may
        wrap a group of calls (one subject) in :meth:`UnitOfWork.savepoint` to roll the group back
        together. ``reason`` is recorded on audit entries that carry none (first entries,
        eligibility, enrolment): an import names its source there. The transaction commits when the
        block ends, unless :meth:`UnitOfWork.discard` was called or an exception escapes.

        ``forms``: (subject, visit, form) the calls will save, loaded ahead with a few queries for all
        (:meth:`prefetch_forms`) instead of several per call. ``late_chain``: the audit-chain head is locked
        only to chain the unit's records just before the commit (:func:`regenheart.store.audit.begin_late_chain`)
        instead of from the start, so that the units of other processes run meanwhile; the unit's audit
        records cannot be read before its commit (no capture call reads them).
        """
        if getattr(self._local, "work", None) is not None:
            raise RuntimeError("a unit of work is already active in this thread")
        session = self._sessions()
        work = UnitOfWork(session, reason)
        self._local.work = work
        event.listen(session, "do_orm_execute", work._before_read)
        try:
            with session.begin():
                restore_pragmas = _bulk_pragmas(session)
                try:
                    if forms:  # first, as every writer does: the subjects' rows, then the chain head
                        self.prefetch_forms(forms)
                    # held to the end (appends advance it in memory), or taken at the end
                    work.head = audit.begin_late_chain(session) if late_chain else audit.lock_head(session)
                    yield work
                    if not work.discarded:
                        work.flush_pending()
                finally:  # on the unit's own connection: after the transaction it is back in the pool
                    if restore_pragmas is not None:  # (closed, or another thread's)
                        restore_pragmas()
                if work.discarded:
                    session.rollback()
                else:
                    audit.store_head(session)
        finally:
            self._local.work = None
            event.remove(session, "do_orm_execute", work._before_read)
            session.close()

    def prefetch_forms(self, forms: Sequence[tuple[str, str, str]]) -> None:
        """Load ahead, in the active unit of work, what saving these (subject, visit, form) reads: the
        subjects' rows (locked for the rest of the transaction on PostgreSQL, in the order of their ids, so
        that two units never wait for each other crosswise), their visits, the forms' records with their
        items and scores, and the forms' open-query counts: six queries for any number of forms.
        Unknown subjects are skipped (the call itself refuses them)."""
        work: UnitOfWork = self._local.work
        session = work.session
        codes = sorted({code for code, _, _ in forms})
        subjects = session.scalars(select(Subject).where(Subject.subject_code.in_(codes))
                                   .order_by(Subject.id).with_for_update()).all()
        if not subjects:
            return
        ids = {subject.subject_code: subject.id for subject in subjects}
        for subject in subjects:
            work.subjects[subject.subject_code] = subject
            work.visits[subject.id] = []
        for visit in session.scalars(select(Visit).where(Visit.subject_id.in_(ids.values())).order_by(Visit.id)):
            work.visits[visit.subject_id].append(visit)
        keys = {(ids[code], visit_code, form_code) for code, visit_code, form_code in forms if code in ids}
        wanted = (FormRecord.subject_id.in_({k[0] for k in keys}) & FormRecord.visit_code.in_({k[1] for k in keys})
                  & FormRecord.form_code.in_({k[2] for k in keys}))
        records = {}
        for record in session.scalars(select(FormRecord).where(wanted)):
            key = (record.subject_id, record.visit_code, record.form_code)
            if key in keys:
                records[record.id] = record
        children: dict[str, dict[int, list[Any]]] = {"items": {i: [] for i in records},
                                                     "derived": {i: [] for i in records}}
        if records:
            for name, model in (("items", ItemValue), ("derived", DerivedValue)):
                for row in session.scalars(select(model).where(model.record_id.in_(records)).order_by(model.id)):
                    children[name][row.record_id].append(row)
        for record_id, record in records.items():  # read as loaded: no lazy load of either collection
            set_committed_value(record, "items", children["items"][record_id])
            set_committed_value(record, "derived", children["derived"][record_id])
        work.forms.update(dict.fromkeys(keys))
        work.forms.update({(r.subject_id, r.visit_code, r.form_code): r for r in records.values()})
        work.open_queries.update(dict.fromkeys(keys, 0))
        for subject_id, visit_code, form_code, count in session.execute(
                select(DataQuery.subject_id, DataQuery.visit_code, DataQuery.form_code, func.count())
                .where(DataQuery.subject_id.in_(ids.values()), DataQuery.status.in_(UNRESOLVED))
                .group_by(DataQuery.subject_id, DataQuery.visit_code, DataQuery.form_code)):
            if (subject_id, visit_code, form_code) in keys:
                work.open_queries[(subject_id, visit_code, form_code)] = count

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A write transaction: a savepoint of the active unit of work, or a transaction of its own."""
        work = getattr(self._local, "work", None)
        if work is None:
            with self._sessions.begin() as session:
                yield session
        elif work.call_savepoints:
            with work.savepoint():
                yield work.session
        else:
            yield work.session

    def _insert_rows(self, session: Session, statement: Insert, rows: list[dict[str, Any]]) -> None:
        """Insert rows nobody needs the ids of: at once, or with the unit of work's next flush."""
        work = getattr(self._local, "work", None)
        if work is not None:
            work.defer_insert(statement, rows)
        else:
            session.connection().execute(statement, rows)

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        """A read session: the active unit of work's (reads see its uncommitted writes), else one that never
        waits for the writer (:func:`regenheart.store.db.reader`)."""
        work = getattr(self._local, "work", None)
        if work is None:
            with self._read_sessions() as session:
                yield session
        else:
            yield work.session

    def _entry(self, actor: Actor, action: str, entity: str, subject: str | None, **kw: Any) -> AuditEntry:
        work = getattr(self._local, "work", None)
        if work is not None and work.reason and not kw.get("reason"):
            kw["reason"] = work.reason
        return audit_entry(actor, action, entity, subject, **kw)

    def _date(self, name: str, raw: Any, violations: list[Violation]) -> dt.date | None:
        if raw is None:
            violations.append(Violation(name, None, "required", "is required"))
            return None
        if isinstance(raw, dt.date):
            value = raw
        else:
            try:
                value = dt.date.fromisoformat(str(raw))
            except ValueError:
                violations.append(Violation(name, raw, "type", "must be a date in the form YYYY-MM-DD"))
                return None
        if value > self.today():
            violations.append(Violation(name, raw, "not_future", "must not be in the future"))
        return value

    # ------------------------------------------------------------------ subjects
    def screen_subject(self, actor: Actor, subject_code: str, site_code: str, screening_date: Any,
                       consent_date: Any, *, synthetic: bool = False) -> None:
        """Register a consented subject for screening (status 'screening')."""
        self._require(actor, "screen_subject")
        violations: list[Violation] = []
        if not SUBJECT_CODE.match(subject_code or ""):
            violations.append(Violation("subject_code", subject_code, "format",
                                        "must be 1-32 letters, digits or '-' starting with a letter or digit"))
        with self._reading() as session:  # the database's active sites (the protocol's by default)
            sites = active_site_codes(session, self.protocol)
        if site_code not in sites:
            violations.append(Violation("site_code", site_code, "codelist", f"must be one of: {', '.join(sites)}"))
        elif not actor.sees_site(site_code):
            raise PermissionDenied(f"user {actor.username} may not screen subjects at site {site_code}")
        rule = self.protocol.study.subject_code
        if rule is not None and site_code in sites and SUBJECT_CODE.match(subject_code or "") \
                and not re.fullmatch(rule.regex_for(site_code), subject_code):
            example = f" (e.g. {rule.example})" if rule.example else ""
            violations.append(Violation("subject_code", subject_code, "pattern",
                                        f"does not follow the protocol's subject code rule {rule.pattern} with "
                                        f"site {site_code}{example}"))
        screening = self._date("screening_date", screening_date, violations)
        consent = self._date("consent_date", consent_date, violations)
        if screening and consent and consent > screening:
            violations.append(Violation("consent_date", consent_date, "order",
                                        "informed consent must be obtained on or before the screening date"))
        with self._transaction() as session:
            if session.scalars(select(Subject.id).where(Subject.subject_code == subject_code)).first():
                violations.append(Violation("subject_code", subject_code, "unique", "is already registered"))
            if violations:
                raise ValidationFailed(violations)
            subject = Subject(subject_code=subject_code, site_code=site_code, status="screening",
                              screening_date=screening, consent_date=consent, synthetic=synthetic, version=1)
            session.add(subject)
            session.flush()  # its id now: a unit of work inserts its forms' rows without the ORM
            values = {"site_code": site_code, "screening_date": screening, "consent_date": consent,
                      "status": "screening", "synthetic": synthetic}
            audit.append(session, [
                self._entry(actor, "create", "subject", subject_code, record_key=subject_code,
                            field=k, new_value=canonical(v)) for k, v in values.items()
            ])
            work = getattr(self._local, "work", None)
            if work is not None:  # known to have no visits and no forms yet: no query for them later
                work.subjects[subject_code] = subject
                work.visits[subject.id], work.records[subject.id] = [], {}

    def _set_subject(self, session: Session, actor: Actor, subject: Subject, changes: Mapping[str, Any],
                     action: str, reason: str | None) -> None:
        entries = []
        for name, new in changes.items():
            old = getattr(subject, name)
            if old != new:
                setattr(subject, name, new)
                entries.append(self._entry(actor, action, "subject", subject.subject_code,
                                           record_key=subject.subject_code, field=name,
                                           old_value=canonical(old), new_value=canonical(new), reason=reason))
        if entries:
            subject.version += 1
            audit.append(session, entries)

    def screening_values(self, session: Session, subject: Subject) -> dict[str, Any]:
        """All values captured on the baseline visit's forms, merged into one mapping."""
        baseline = self.protocol.baseline_visit.code
        values: dict[str, Any] = {}
        # One query for all forms' items (not one per form), in record then item order as before.
        rows = session.execute(select(ItemValue.field, ItemValue.value)
                               .join(FormRecord, ItemValue.record_id == FormRecord.id)
                               .where(FormRecord.subject_id == subject.id, FormRecord.visit_code == baseline)
                               .order_by(FormRecord.id, ItemValue.id))
        for name, text in rows:
            values[name] = plain_value(_decode(text))  # a coded value is missing to the eligibility rules
        return values

    def evaluate_eligibility(self, actor: Actor, subject_code: str) -> EligibilityOutcome:
        """Evaluate inclusion/exclusion on the screening data and record the outcome."""
        self._require(actor, "evaluate_eligibility")
        with self._transaction() as session:
            subject = self._subject(session, actor, subject_code)
            if subject.status not in ("screening", "eligible", "screen_failed"):
                raise StateError(f"subject {subject_code} is already {subject.status}")
            if subject.eligibility_failed and WITHDRAWN_AT_SCREENING in subject.eligibility_failed:
                raise StateError(f"subject {subject_code} was withdrawn at screening; eligibility is not re-evaluated")
            outcome = evaluate_eligibility(self.protocol, self.screening_values(session, subject))
            failed = outcome.failed + [f"{c} (not assessed)" for c in outcome.not_assessed]
            self._set_subject(session, actor, subject, {
                "eligible": outcome.eligible,
                "eligibility_failed": json.dumps(failed) if failed else None,
                "status": "eligible" if outcome.eligible else "screen_failed",
            }, "eligibility", None)
            return outcome

    def withdraw_screen_failure(self, actor: Actor, subject_code: str, reason: str | None) -> None:
        """Withdraw a subject who is still in screening (screening or eligible, not enrolled) as a screen
        failure, e.g. one registered under a wrong code: status 'screen_failed', audited with the reason.
        The subject's data stay; the patient, if still to be screened, gets a new, correct code."""
        self._require(actor, "screen_subject")
        if not (reason or "").strip():
            raise ValidationFailed([Violation("reason", reason, "reason_required",
                                              "a reason is required to withdraw a subject at screening")])
        with self._transaction() as session:
            subject = self._subject(session, actor, subject_code)
            if subject.status not in ("screening", "eligible"):
                raise StateError(f"subject {subject_code} is {subject.status}: only a subject in screening can be "
                                 "withdrawn as a screen failure")
            self._set_subject(session, actor, subject, {
                "eligible": False,
                "eligibility_failed": json.dumps([f"{WITHDRAWN_AT_SCREENING}: {reason.strip()}"]),
                "status": "screen_failed",
            }, "withdraw", reason.strip())

    def enrol(self, actor: Actor, subject_code: str, enrolled_date: Any, arm_code: str | None = None) -> str:
        """Enrol an eligible subject; returns the arm.

        Single arm: the only arm. Randomized version: the subject takes the next concealed slot of
        their stratum in this same transaction (``capture.randomization``); an ``arm_code`` is
        refused, and for an arm whose day 0 is the randomization date the enrolment date becomes day 0.
        """
        self._require(actor, "enrol")
        violations: list[Violation] = []
        date = self._date("enrolled_date", enrolled_date, violations)
        version = self.protocol.active_version
        arms = [a.code for a in version.arms]
        if version.randomization is not None:
            if arm_code is not None:
                violations.append(Violation("arm_code", arm_code, "randomized",
                                            f"protocol version {version.version} is randomized: the arm is "
                                            "assigned from the concealed allocation list and cannot be entered"))
        else:
            if arm_code is None and len(arms) == 1:
                arm_code = arms[0]
            if arm_code not in arms:
                violations.append(Violation("arm_code", arm_code, "codelist", f"must be one of: {', '.join(arms)}"))
        with self._transaction() as session:
            subject = self._subject(session, actor, subject_code)
            if subject.status != "eligible":
                raise StateError(f"subject {subject_code} cannot be enrolled: status is {subject.status}, "
                                 "eligibility must be confirmed first")
            if date and date < subject.screening_date:
                violations.append(Violation("enrolled_date", enrolled_date, "order",
                                            "must not be before the screening date"))
            if violations:
                raise ValidationFailed(violations)
            changes: dict[str, Any] = {"enrolled_date": date, "arm_code": arm_code, "status": "enrolled"}
            if version.randomization is not None:
                stratum = randomization.subject_stratum(version.randomization, subject.site_code,
                                                        self.screening_values(session, subject))
                arm_code = randomization.take_slot(session, actor, version.version, subject, stratum).arm_code
                changes["arm_code"] = arm_code
                if next(a for a in version.arms if a.code == arm_code).day0 == "randomization":
                    changes["infusion_date"] = date  # the day-0 date of an arm without a procedure
            self._set_subject(session, actor, subject, changes, "enrol", None)
            return arm_code  # type: ignore[return-value]

    # ------------------------------------------------------------------ visits
    def _visit_checks(self, visits: list[Visit], subject: Subject, visit_code: str, date: dt.date,
                      raw: Any, violations: list[Violation], warnings: list[Violation]) -> None:
        order = self.protocol.visit_codes
        position = order.index(visit_code)
        if subject.consent_date and date < subject.consent_date:
            violations.append(Violation("visit_date", raw, "order", "must not be before informed consent"))
        for other in visits:
            if other.visit_code == visit_code:
                continue
            other_pos = order.index(other.visit_code)
            if other_pos < position and date < other.visit_date:
                violations.append(Violation("visit_date", raw, "order",
                                            f"must not be before the {other.visit_code} visit ({other.visit_date})"))
            if other_pos > position and date > other.visit_date:
                violations.append(Violation("visit_date", raw, "order",
                                            f"must not be after the {other.visit_code} visit ({other.visit_date})"))
        if subject.infusion_date is not None and visit_code != self._infusion_visit:  # day 0 defines itself
            visit = self.protocol.visit(visit_code)
            day = study_day(date, subject.infusion_date)
            if not in_window(visit, day):
                warnings.append(Violation("visit_date", raw, "window",
                                          f"study day {day} is outside the {visit_code} window "
                                          f"[{visit.window[0]}, {visit.window[1]}] (protocol deviation)"))

    def _ensure_visit(self, session: Session, actor: Actor, subject: Subject, visit_code: str,
                      visit_date: Any, reason: str | None, violations: list[Violation],
                      warnings: list[Violation]) -> Visit | NewVisit | None:
        visits = self._visits(session, subject)
        visit = next((v for v in visits if v.visit_code == visit_code), None)
        if visit_date is None:
            if visit is None:
                violations.append(Violation("visit_date", None, "required",
                                            f"the {visit_code} visit date is required before its forms"))
            return visit
        date = self._date("visit_date", visit_date, violations)
        if date is None or (visit is not None and visit.visit_date == date):
            return visit
        self._visit_checks(visits, subject, visit_code, date, visit_date, violations, warnings)
        if visit is not None and not reason:
            violations.append(Violation("reason", None, "reason_required",
                                        "a reason is required to change a saved visit date"))
        if violations:
            return visit
        old = visit.visit_date if visit else None
        if visit is None and getattr(self._local, "work", None) is not None:
            visit = NewVisit(subject.id, visit_code, date)
            self._update_visit_day(subject, visit)
            session.connection().execute(_INSERT_VISIT, {"subject_id": subject.id, "visit_code": visit_code,
                                                         "visit_date": date, "study_day": visit.study_day,
                                                         "in_window": visit.in_window})
            visits.append(visit)
        else:
            if isinstance(visit, NewVisit):  # inserted earlier in the unit: change the stored row
                stored = session.scalars(select(Visit).where(Visit.subject_id == subject.id,
                                                             Visit.visit_code == visit_code)).one()
                visits[visits.index(visit)] = visit = stored
            if visit is None:
                visit = Visit(subject_id=subject.id, visit_code=visit_code, visit_date=date)
                session.add(visit)
                visits.append(visit)
            visit.visit_date = date
            self._update_visit_day(subject, visit)
        audit.append(session, [self._entry(actor, "update" if old else "create", "visit", subject.subject_code,
                                           visit_code=visit_code, record_key=f"{subject.subject_code}/{visit_code}",
                                           field="visit_date", old_value=canonical(old),
                                           new_value=canonical(date), reason=reason)])
        if visit_code == self._infusion_visit and (old is not None or self._day0 is None):
            session.flush()  # a corrected (or, without an anchor form, a first) day-0 date moves every study day
            self._sync_infusion(session, actor, subject, reason)
        return visit

    def _update_visit_day(self, subject: Subject, visit: Visit | NewVisit) -> None:
        if subject.infusion_date is None:
            visit.study_day, visit.in_window = None, None
        else:
            visit.study_day = study_day(visit.visit_date, subject.infusion_date)
            visit.in_window = in_window(self.protocol.visit(visit.visit_code), visit.study_day)

    def record_visit(self, actor: Actor, subject_code: str, visit_code: str, visit_date: Any,
                     reason: str | None = None) -> list[Violation]:
        """Record (or, with a reason, correct) a visit date; returns window warnings."""
        self._require(actor, "enter_data")
        if visit_code not in self.protocol.visit_codes:
            raise NotFound(f"visit {visit_code} is not in the protocol")
        violations: list[Violation] = []
        warnings: list[Violation] = []
        with self._transaction() as session:
            subject = self._subject(session, actor, subject_code)
            self._check_visit_allowed(subject, visit_code)
            self._ensure_visit(session, actor, subject, visit_code, visit_date, reason, violations, warnings)
            if violations:
                raise ValidationFailed(violations)
        return warnings

    def _check_visit_allowed(self, subject: Subject, visit_code: str) -> None:
        if visit_code == self.protocol.baseline_visit.code:
            return
        if subject.status in ("screening", "eligible", "screen_failed"):
            raise StateError(f"subject {subject.subject_code} is not enrolled (status {subject.status}); "
                             f"only screening data can be entered")
        day0 = self._infusion_visit
        if visit_code != day0 and subject.infusion_date is None:
            needed = f"the {day0} {self._day0.form} record" if self._day0 else f"the {day0} visit date"
            raise StateError(f"subject {subject.subject_code} has no day 0 recorded; "
                             f"later visits need {needed} first")

    # ------------------------------------------------------------------ forms
    def save_form(self, actor: Actor, subject_code: str, visit_code: str, form_code: str,
                  data: Mapping[str, Any], *, reason: str | None = None, expected_version: int | None = None,
                  visit_date: Any = None, complete: bool = True) -> SaveResult:
        """Validate and save form data (a partial update of an existing form is allowed).

        ``expected_version``: the version the client read; a different current version raises
        :class:`Conflict`. ``reason`` is required once the form has been saved before.
        ``complete=False`` saves a draft without requiring the required fields.
        """
        self._require(actor, "enter_data")
        try:
            visit_def = self.protocol.visit(visit_code)
        except KeyError:
            raise NotFound(f"visit {visit_code} is not in the protocol") from None
        if form_code not in visit_def.forms:
            raise NotFound(f"form {form_code} is not collected at visit {visit_code}")
        form = self.protocol.forms[form_code]
        with self._transaction() as session:
            subject = self._subject(session, actor, subject_code)
            self._check_visit_allowed(subject, visit_code)
            violations: list[Violation] = []
            warnings: list[Violation] = []
            visit = self._ensure_visit(session, actor, subject, visit_code, visit_date, reason, violations, warnings)
            record = self._form_record(session, subject, visit_code, form_code)
            if record is not None:
                if record.locked:
                    raise StateError(f"{form_code} at {visit_code} for {subject_code} is locked")
                if expected_version is not None and expected_version != record.version:
                    raise Conflict(f"{form_code} at {visit_code} for {subject_code} is at version "
                                   f"{record.version}, not {expected_version}: reload and re-apply your change")
            existing = {i.field: _decode(i.value) for i in record.items} if record else {}
            result = validate_record(self.protocol, form, data, existing=existing, require_complete=complete)
            violations.extend(result.violations)
            warnings.extend(result.warnings)
            changed = [k for k, v in result.values.items() if canonical(existing.get(k)) != canonical(v)]
            if record is not None and changed and not (reason and reason.strip()):
                violations.append(Violation("reason", reason, "reason_required",
                                            "a reason is required to change saved data"))
            if violations:
                raise ValidationFailed(violations)
            merged = {**existing, **result.values}
            status = "complete" if all(merged.get(f.name) is not None for f in form.fields if f.required) \
                else "incomplete"
            first_entry = record is None
            if record is None:
                record = self._insert_record(session, {
                    "subject_id": subject.id, "visit_code": visit_code, "form_code": form_code, "status": status,
                    "version": 1, "verified": False, "locked": False, "signed": False})
            record_key = f"{subject_code}/{visit_code}/{form_code}"
            entries: list[AuditEntry] = []
            record_changes: dict[str, Any] = {}  # columns of the form record this save changes
            items = {} if first_entry else {i.field: i for i in record.items}  # a new record has none
            new_items, updated_items = [], []
            for name in changed:
                new_text = canonical(result.values[name])
                if name in items:
                    updated_items.append({"item_id": items[name].id, "value": new_text})
                    set_committed_value(items[name], "value", new_text)  # written below, by Core
                else:
                    new_items.append({"record_id": record.id, "field": name, "value": new_text})
                entries.append(self._entry(actor, "create" if first_entry else "update", "item", subject_code,
                                           visit_code=visit_code, form_code=form_code, record_key=record_key,
                                           field=name, old_value=canonical(existing.get(name)),
                                           new_value=new_text, reason=None if first_entry else reason))
            if new_items:
                self._insert_rows(session, _INSERT_ITEMS, new_items)
            if updated_items:  # one prepared UPDATE for all changed items (the ORM's flush of them costs more)
                session.connection().execute(_UPDATE_ITEMS, updated_items)
            derived: dict[str, float | None] = {}
            scoring_version: str | None = None
            if form.instrument and changed:  # scored from values only: a coded item is missing to the scorer
                derived, scoring_version = self._derive(session, actor, record, form.instrument, plain(merged),
                                                        entries, first_entry)
            elif form.instrument and not first_entry:  # unchanged: the stored scores stand
                derived = {d.name: d.value for d in record.derived}
                scoring_version = record.derived[0].scoring_version if record.derived else None
            if record.status != status:
                entries.append(self._entry(actor, "status", "form", subject_code, visit_code=visit_code,
                                           form_code=form_code, record_key=record_key, field="status",
                                           old_value=canonical(None if first_entry else record.status),
                                           new_value=canonical(status), reason=None if first_entry else reason))
                record_changes["status"] = status
            if changed and not first_entry:
                record_changes["version"] = record.version + 1
            if record.verified and changed:  # changed data need re-verification by the monitor
                record_changes["verified"] = False
                entries.append(self._entry(actor, "unverify", "form", subject_code, visit_code=visit_code,
                                           form_code=form_code, record_key=record_key, field="verified",
                                           old_value="true", new_value="false", reason="data changed after SDV"))
            if record.signed and changed:
                record_changes["signed"] = False
                entries.append(self._entry(actor, "unsign", "form", subject_code, visit_code=visit_code,
                                           form_code=form_code, record_key=record_key, field="signed",
                                           old_value="true", new_value="false",
                                           reason="data changed after signature"))
            if record_changes:  # one Core UPDATE; the loaded record takes the values as stored (not dirty)
                session.connection().execute(update(FormRecord.__table__).where(
                    FormRecord.__table__.c.id == record.id).values(**record_changes))
                for name, value in record_changes.items():
                    set_committed_value(record, name, value)
            audit.append(session, entries)
            if self._day0 and form_code == self._day0.form and visit_code == self._infusion_visit:
                self._sync_infusion(session, actor, subject, reason,
                                    dose=plain_value(merged.get(self._day0.field)) or 0)
            stored = existing | {name: _decode(canonical(result.values[name])) for name in changed}
            derived = {name: None if value is None else float(value) for name, value in derived.items()}  # as stored
            return SaveResult(record.version, status, changed, warnings, derived, stored, scoring_version,
                              record.verified, record.signed, visit.visit_date if visit is not None else None)

    def _derive(self, session: Session, actor: Actor, record: FormRecord, instrument: str,
                items: Mapping[str, Any], entries: list[AuditEntry],
                first_entry: bool) -> tuple[dict[str, float | None], str]:
        """Compute instrument scores from the items and store them with the scoring version (both returned)."""
        scores, version = self.scorer(instrument, items)
        stored = {} if first_entry else {d.name: d for d in record.derived}
        subject_code = session.get(Subject, record.subject_id).subject_code  # type: ignore[union-attr]
        record_key = f"{subject_code}/{record.visit_code}/{record.form_code}"
        new_rows = []
        for name, value in scores.items():
            value = None if value is None else float(value)
            old = stored.get(name)
            if old is None:
                new_rows.append({"record_id": record.id, "name": name, "value": value, "scoring_version": version})
            elif old.value == value and old.scoring_version == version:
                continue
            else:
                old.value, old.scoring_version = value, version
            entries.append(self._entry(actor, "derive", "score", subject_code, visit_code=record.visit_code,
                                       form_code=record.form_code, record_key=record_key, field=name,
                                       old_value=canonical(old.value if old else None), new_value=canonical(value),
                                       reason=f"derived from item responses ({version})"))
        if new_rows:  # one multi-row INSERT, as for the items
            self._insert_rows(session, _INSERT_DERIVED, new_rows)
        return scores, version

    def _day0_is_randomization(self, subject: Subject) -> bool:
        """True for a subject in an arm whose protocol day 0 is the randomization date."""
        arm = next((a for a in self.protocol.active_version.arms if a.code == subject.arm_code), None)
        return arm is not None and arm.day0 == "randomization"

    def _sync_infusion(self, session: Session, actor: Actor, subject: Subject, reason: str | None,
                       dose: float | None = None) -> None:
        """Day 0 is the date of the day-0 visit when its anchor record gives a positive dose.

        Called when that record is saved (``dose`` given) and when the day-0 visit's date is
        corrected (dose read from the stored record). Moves every study day with it. Without a
        protocol anchor, day 0 is the day-0 visit's date and the subject's status is not changed.
        """
        if self._day0_is_randomization(subject):
            return  # day 0 was fixed at randomization (an arm without a procedure)
        visit = session.scalars(select(Visit).where(Visit.subject_id == subject.id,
                                                    Visit.visit_code == self._infusion_visit)).one_or_none()
        changes: dict[str, Any]
        if self._day0 is None:
            changes = {"infusion_date": visit.visit_date if visit is not None else None}
        else:
            if dose is None:
                record = find_form_record(session, subject.id, self._infusion_visit, self._day0.form)
                stored = {i.field: _decode(i.value) for i in record.items} if record else {}
                dose = plain_value(stored.get(self._day0.field))
            day0_date = visit.visit_date if visit is not None and (dose or 0) > 0 else None
            changes = {"infusion_date": day0_date}
            if subject.status in ("enrolled", "infused"):  # a closed subject keeps its end-of-study status
                changes["status"] = "infused" if day0_date else "enrolled"
        infusion = changes["infusion_date"]
        if all(getattr(subject, k) == v for k, v in changes.items()):
            return
        self._set_subject(session, actor, subject, changes, "infusion", reason)
        for other in session.scalars(select(Visit).where(Visit.subject_id == subject.id)).all():
            self._update_visit_day(subject, other)
        for ae in session.scalars(select(AdverseEvent).where(AdverseEvent.subject_id == subject.id)).all():
            ae.study_day = study_day(ae.onset_date, infusion) if infusion else None

    def get_form(self, actor: Actor, subject_code: str, visit_code: str, form_code: str) -> FormView:
        """Current data of a form (empty, version 0, status 'not_started' if never saved)."""
        self._require(actor, "view")
        if visit_code not in self.protocol.visit_codes or form_code not in self.protocol.visit(visit_code).forms:
            raise NotFound(f"form {form_code} is not collected at visit {visit_code}")
        with self._reading() as session:
            subject = self._subject(session, actor, subject_code, lock=False)
            record = find_form_record(session, subject.id, visit_code, form_code)
            visit_date = session.scalar(select(Visit.visit_date).where(Visit.subject_id == subject.id,
                                                                       Visit.visit_code == visit_code))
            if record is None:
                return FormView(subject_code, visit_code, form_code, {}, 0, "not_started", {}, None,
                                False, False, False, visit_date)
            derived = {d.name: d.value for d in record.derived}
            version = record.derived[0].scoring_version if record.derived else None
            return FormView(subject_code, visit_code, form_code,
                            {i.field: _decode(i.value) for i in record.items}, record.version, record.status,
                            derived, version, record.verified, record.locked, record.signed, visit_date)

    def unresolved_queries(self, actor: Actor, subject_code: str, visit_code: str, form_code: str) -> int:
        """Open or answered queries on one form; in the active unit of work's transaction, if any (so a
        grouped API save counts them without a connection of its own)."""
        self._require(actor, "view")
        with self._reading() as session:
            subject = self._subject(session, actor, subject_code, lock=False)
            work = getattr(self._local, "work", None)
            if work is not None and (subject.id, visit_code, form_code) in work.open_queries:  # loaded ahead
                return work.open_queries[(subject.id, visit_code, form_code)]
            return session.scalar(select(func.count()).select_from(DataQuery).where(
                DataQuery.subject_id == subject.id, DataQuery.visit_code == visit_code,
                DataQuery.form_code == form_code, DataQuery.status.in_(UNRESOLVED))) or 0

    def acknowledge_warning(self, actor: Actor, subject_code: str, visit_code: str, form_code: str, check_id: str,
                            reason: str | None) -> None:
        """Acknowledge a soft-check warning that still stands on a saved form, with a reason (audited as
        entity 'soft_check', field = the check's id, new value = the checked field's current value: a
        later change of that value brings the warning back)."""
        self._require(actor, "enter_data")
        form = self.protocol.forms.get(form_code)
        check = next((c for c in form.checks if c.id == check_id and c.severity == "warning"), None) if form else None
        if check is None:
            raise NotFound(f"form {form_code} has no soft check {check_id}")
        if not (reason or "").strip():
            raise ValidationFailed([Violation("reason", reason, "reason_required",
                                              "a reason is required to acknowledge a warning")])
        with self._transaction() as session:
            subject = self._subject(session, actor, subject_code)
            record = find_form_record(session, subject.id, visit_code, form_code)
            if record is None:
                raise StateError(f"form {form_code} at {visit_code} of {subject_code} is not saved yet")
            if record.locked:
                raise StateError(f"form {form_code} at {visit_code} of {subject_code} is locked")
            values = plain({i.field: _decode(i.value) for i in record.items})
            _errors, warnings = run_checks([check], values)
            if not warnings:
                raise StateError(f"check {check_id} does not raise a warning on the stored values")
            audit.append(session, [self._entry(
                actor, "acknowledge", "soft_check", subject_code, visit_code=visit_code, form_code=form_code,
                record_key=f"{subject_code}/{visit_code}/{form_code}", field=check_id,
                new_value=canonical(values.get(warnings[0].field)), reason=reason.strip())])

    # ------------------------------------------------------------------ adverse events
    def _ae_log(self):
        if self.protocol.adverse_events is None:
            raise StateError("this study's protocol has no adverse-event log")
        return self.protocol.adverse_events

    def _ae_values(self, data: Mapping[str, Any], existing: Mapping[str, Any]) -> tuple[dict[str, Any], list[Violation], list[Violation]]:
        result = validate_record(self.protocol, self._ae_log(), data, existing=existing)
        violations = list(result.violations) + _no_missing_codes(result.values, "adverse event")
        return {**existing, **result.values}, violations, list(result.warnings)

    def _apply_ae(self, ae: AdverseEvent, values: Mapping[str, Any], infusion: dt.date | None) -> None:
        ae.term, ae.category = values["term"], values["category"]
        ae.onset_date, ae.stop_date = values["onset_date"], values.get("stop_date")
        ae.study_day = study_day(ae.onset_date, infusion) if infusion else None
        ae.ctcae_grade, ae.serious = values["ctcae_grade"], values["serious"] == "Y"
        criteria = [c for c in self._sae_criteria if values.get(c) == "Y"]
        ae.sae_criteria = json.dumps(criteria) if criteria else None
        ae.related_product, ae.related_procedure = values["related_product"], values["related_procedure"]
        ae.outcome = values["outcome"]
        ae.data = json.dumps({k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in values.items()},
                             sort_keys=True)

    def record_adverse_event(self, actor: Actor, subject_code: str, data: Mapping[str, Any]) -> int:
        """Record a new adverse event; returns its sequence number within the subject."""
        self._require(actor, "enter_data")
        with self._transaction() as session:
            subject = self._subject(session, actor, subject_code)
            values, violations, _ = self._ae_values(data, {})
            onset = values.get("onset_date")
            if onset and subject.consent_date and onset < subject.consent_date:
                violations.append(Violation("onset_date", data.get("onset_date"), "order",
                                            "adverse events are collected from informed consent onwards"))
            if onset and onset > self.today():
                violations.append(Violation("onset_date", data.get("onset_date"), "not_future",
                                            "must not be in the future"))
            if violations:
                raise ValidationFailed(violations)
            seq = (session.scalar(select(func.max(AdverseEvent.ae_seq)).where(
                AdverseEvent.subject_id == subject.id)) or 0) + 1
            ae = AdverseEvent(subject_id=subject.id, ae_seq=seq, version=1)
            self._apply_ae(ae, values, subject.infusion_date)
            session.add(ae)
            audit.append(session, [
                self._entry(actor, "create", "adverse_event", subject_code, record_key=f"{subject_code}/AE{seq}",
                            field=k, new_value=canonical(v)) for k, v in values.items() if v is not None
            ])
            return seq

    def update_adverse_event(self, actor: Actor, subject_code: str, ae_seq: int, data: Mapping[str, Any],
                             *, reason: str | None, expected_version: int | None = None) -> int:
        """Correct or follow up an adverse event (reason required); returns the new version."""
        self._require(actor, "enter_data")
        with self._transaction() as session:
            subject = self._subject(session, actor, subject_code)
            ae = session.scalars(select(AdverseEvent).where(AdverseEvent.subject_id == subject.id,
                                                            AdverseEvent.ae_seq == ae_seq)).one_or_none()
            if ae is None:
                raise NotFound(f"adverse event {ae_seq} of subject {subject_code} not found")
            if ae.locked:
                raise StateError(f"adverse event {ae_seq} of {subject_code} is locked; a data manager must unlock "
                                 "it before it can be changed")
            if expected_version is not None and expected_version != ae.version:
                raise Conflict(f"adverse event {ae_seq} is at version {ae.version}, not {expected_version}")
            existing = self.adverse_event_values(ae)
            values, violations, _ = self._ae_values(data, existing)
            changed = [k for k in values if canonical(values[k]) != canonical(existing.get(k))]
            if changed and not (reason and reason.strip()):
                violations.append(Violation("reason", reason, "reason_required",
                                            "a reason is required to change saved data"))
            if violations:
                raise ValidationFailed(violations)
            if not changed:
                return ae.version
            self._apply_ae(ae, values, subject.infusion_date)
            ae.version += 1
            entries = [
                self._entry(actor, "update", "adverse_event", subject_code, record_key=f"{subject_code}/AE{ae_seq}",
                            field=k, old_value=canonical(existing.get(k)), new_value=canonical(values[k]),
                            reason=reason) for k in changed
            ]
            # changed data need SDV and signature again, as for forms (entity "ae_state": the AE's review flags)
            for flag, action, why in (("verified", "unverify", "data changed after SDV"),
                                      ("signed", "unsign", "data changed after signature")):
                if getattr(ae, flag):
                    setattr(ae, flag, False)
                    entries.append(self._entry(actor, action, "ae_state", subject_code,
                                               record_key=f"{subject_code}/AE{ae_seq}", field=flag,
                                               old_value="true", new_value="false", reason=why))
            audit.append(session, entries)
            return ae.version

    @staticmethod
    def adverse_event_values(ae: AdverseEvent) -> dict[str, Any]:
        values = json.loads(ae.data)
        for key in ("onset_date", "stop_date"):
            if values.get(key):
                values[key] = dt.date.fromisoformat(values[key])
        return values

    # ------------------------------------------------------------------ disposition
    def record_disposition(self, actor: Actor, subject_code: str, data: Mapping[str, Any],
                           *, reason: str | None = None) -> None:
        """Record completion or discontinuation (status, date, reason)."""
        self._require(actor, "enter_data")
        if self.protocol.disposition is None:
            raise StateError("this study's protocol has no disposition record")
        with self._transaction() as session:
            subject = self._subject(session, actor, subject_code)
            if subject.status in ("screening", "eligible", "screen_failed"):
                raise StateError(f"subject {subject_code} was never enrolled; no disposition to record")
            existing = {"status": subject.disposition, "date": subject.disposition_date,
                        "reason": subject.disposition_reason} if subject.disposition else {}
            result = validate_record(self.protocol, self.protocol.disposition, data, existing=existing)
            violations = list(result.violations) + _no_missing_codes(result.values, "disposition")
            values = {**existing, **result.values}
            if values.get("date") and values["date"] < subject.screening_date:
                violations.append(Violation("date", data.get("date"), "order", "must not be before screening"))
            last_visit = session.scalars(select(Visit).where(Visit.subject_id == subject.id)
                                         .order_by(Visit.visit_date.desc()).limit(1)).first()
            if values.get("date") and last_visit and values["date"] < last_visit.visit_date:
                violations.append(Violation("date", data.get("date"), "order",
                                            f"must not be before the last recorded visit "
                                            f"({last_visit.visit_code} on {last_visit.visit_date})"))
            if subject.disposition and not (reason and reason.strip()):
                violations.append(Violation("reason", reason, "reason_required",
                                            "a reason is required to change a recorded disposition"))
            if violations:
                raise ValidationFailed(violations)
            self._set_subject(session, actor, subject, {
                "disposition": values["status"], "disposition_date": values["date"],
                "disposition_reason": values.get("reason"),
                "status": "completed" if values["status"] == "COMPLETED" else "discontinued",
            }, "disposition", reason)

