"""Relational schema of a study database (SQLAlchemy 2 declarative models).

Portable across SQLite (embedded default) and PostgreSQL (multi-site): only standard types, text
for JSON-encoded values, ISO-8601 UTC strings for audit timestamps. The schema is created and
evolved exclusively by the Alembic migrations in ``regenheart/store/migrations``; the models here
must match them (a test compares the two).

Form data are stored one row per item (``item_values``), the layout of clinical data stores such as
OpenClinica and CDISC ODM ``ItemData``: it makes per-field audit, queries and verification natural.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class StudyMeta(Base):
    """Key/value facts about the database: study, protocol version and hash, synthetic flag."""

    __tablename__ = "study_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Subject(Base):
    __tablename__ = "subjects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_code: Mapped[str] = mapped_column(String(32), unique=True)
    site_code: Mapped[str] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(24))  # screening, screen_failed, enrolled, infused, completed, discontinued
    screening_date: Mapped[dt.date] = mapped_column(Date)
    consent_date: Mapped[dt.date | None] = mapped_column(Date)
    eligible: Mapped[bool | None] = mapped_column(Boolean)
    eligibility_failed: Mapped[str | None] = mapped_column(Text)  # JSON list of criterion ids
    enrolled_date: Mapped[dt.date | None] = mapped_column(Date)
    arm_code: Mapped[str | None] = mapped_column(String(16))
    infusion_date: Mapped[dt.date | None] = mapped_column(Date)
    disposition: Mapped[str | None] = mapped_column(String(24))
    disposition_date: Mapped[dt.date | None] = mapped_column(Date)
    disposition_reason: Mapped[str | None] = mapped_column(Text)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)

    visits: Mapped[list[Visit]] = relationship(back_populates="subject", order_by="Visit.id")


class Visit(Base):
    __tablename__ = "visits"
    __table_args__ = (UniqueConstraint("subject_id", "visit_code"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)
    visit_code: Mapped[str] = mapped_column(String(16))
    visit_date: Mapped[dt.date] = mapped_column(Date)
    study_day: Mapped[int | None] = mapped_column(Integer)  # day 0 = infusion; None before infusion is known
    in_window: Mapped[bool | None] = mapped_column(Boolean)

    subject: Mapped[Subject] = relationship(back_populates="visits")


class FormRecord(Base):
    """One form at one visit of one subject. ``version`` increments on every saved change."""

    __tablename__ = "form_records"
    __table_args__ = (UniqueConstraint("subject_id", "visit_code", "form_code"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)
    visit_code: Mapped[str] = mapped_column(String(16))
    form_code: Mapped[str] = mapped_column(String(48))
    status: Mapped[str] = mapped_column(String(16))  # incomplete, complete
    version: Mapped[int] = mapped_column(Integer, default=1)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    signed: Mapped[bool] = mapped_column(Boolean, default=False)

    items: Mapped[list[ItemValue]] = relationship(back_populates="record", order_by="ItemValue.id")
    derived: Mapped[list[DerivedValue]] = relationship(back_populates="record", order_by="DerivedValue.id")


class ItemValue(Base):
    __tablename__ = "item_values"
    __table_args__ = (UniqueConstraint("record_id", "field"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("form_records.id"), index=True)
    field: Mapped[str] = mapped_column(String(64))
    value: Mapped[str | None] = mapped_column(Text)  # canonical JSON of the typed value

    record: Mapped[FormRecord] = relationship(back_populates="items")


class DerivedValue(Base):
    """A score derived from item responses (never typed in), stamped with the scoring version."""

    __tablename__ = "derived_values"
    __table_args__ = (UniqueConstraint("record_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("form_records.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    scoring_version: Mapped[str] = mapped_column(String(64))

    record: Mapped[FormRecord] = relationship(back_populates="derived")


class AdverseEvent(Base):
    __tablename__ = "adverse_events"
    __table_args__ = (UniqueConstraint("subject_id", "ae_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)
    ae_seq: Mapped[int] = mapped_column(Integer)
    term: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(32))
    onset_date: Mapped[dt.date] = mapped_column(Date)
    stop_date: Mapped[dt.date | None] = mapped_column(Date)
    study_day: Mapped[int | None] = mapped_column(Integer)
    ctcae_grade: Mapped[int] = mapped_column(Integer)
    serious: Mapped[bool] = mapped_column(Boolean)
    sae_criteria: Mapped[str | None] = mapped_column(Text)  # JSON list of SAE criteria met
    related_product: Mapped[str] = mapped_column(String(16))
    related_procedure: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    data: Mapped[str] = mapped_column(Text)  # canonical JSON of every captured field
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Review state, as on form records (migration 0004): SDV, lock, current investigator signature.
    verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    locked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    signed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AuditRecord(Base):
    """Append-only, hash-chained audit trail (who, when, what, old -> new, why).

    ``hash`` = SHA-256 over the canonical content of the row and ``prev_hash``; database triggers
    refuse UPDATE and DELETE, and ``regenheart audit verify`` recomputes the chain.
    """

    __tablename__ = "audit_trail"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts_utc: Mapped[str] = mapped_column(String(32))
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    subject_code: Mapped[str | None] = mapped_column(String(32), index=True)
    visit_code: Mapped[str | None] = mapped_column(String(16))
    form_code: Mapped[str | None] = mapped_column(String(48))
    record_key: Mapped[str | None] = mapped_column(String(64))
    field: Mapped[str | None] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """Single row holding the chain head; updating it in the writing transaction serializes writers."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


# ---------------------------------------------------------------------------------------------
# Electronic data capture workflow (migration 0002): user accounts, access log, data queries,
# electronic signatures. Source-data verification, lock and unlock are flags on FormRecord whose
# history lives in the audit trail.


class User(Base):
    """A user account. ``password_hash`` is an argon2id hash (never the password).

    ``site_code`` restricts the account to one site's subjects (None = all sites).
    ``token_version`` increments on log-out, password, role or site changes and deactivation:
    every session cookie and API token issued before is then refused.
    """

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))  # printed name on e-signatures (21 CFR 11.50)
    role: Mapped[str] = mapped_column(String(32))
    site_code: Mapped[str | None] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locked_until: Mapped[str | None] = mapped_column(String(32))  # ISO 8601 UTC, set by a lock-out
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    created_utc: Mapped[str] = mapped_column(String(32))
    password_changed_utc: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=1)


class AccessLog(Base):
    """Append-only log of access: log-ins (success, failure, refused while locked), lock-outs,
    log-outs, invalid tokens, permission refusals and failed signature passwords."""

    __tablename__ = "access_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts_utc: Mapped[str] = mapped_column(String(32), index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str | None] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(8))  # web, api, cli
    client: Mapped[str | None] = mapped_column(String(64))  # client address
    detail: Mapped[str | None] = mapped_column(Text)


class DataQuery(Base):
    """A data query (discrepancy note) on one field of one form: open -> answered -> closed."""

    __tablename__ = "queries"
    __table_args__ = (UniqueConstraint("subject_id", "query_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)
    query_seq: Mapped[int] = mapped_column(Integer)
    visit_code: Mapped[str] = mapped_column(String(16))
    form_code: Mapped[str] = mapped_column(String(48))
    field: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # open, answered, closed
    opened_by: Mapped[str] = mapped_column(String(64))
    opened_utc: Mapped[str] = mapped_column(String(32))
    closed_by: Mapped[str | None] = mapped_column(String(64))
    closed_utc: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=1)
    # A query on an adverse event's field (migration 0004); visit_code/form_code then hold "ae" / "AE<seq>".
    ae_id: Mapped[int | None] = mapped_column(ForeignKey("adverse_events.id"), index=True)

    messages: Mapped[list[QueryMessage]] = relationship(back_populates="query", order_by="QueryMessage.id")


class QueryMessage(Base):
    """One message of a query thread (append-only): open, answer, close or reopen."""

    __tablename__ = "query_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    query_id: Mapped[int] = mapped_column(ForeignKey("queries.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    ts_utc: Mapped[str] = mapped_column(String(32))
    text: Mapped[str | None] = mapped_column(Text)

    query: Mapped[DataQuery] = relationship(back_populates="messages")


class Signature(Base):
    """An electronic signature of one form record (append-only; 21 CFR 11.50 / 11.70).

    Manifestation: printed name, UTC date and time, meaning. ``record_version`` and
    ``content_hash`` (SHA-256 of the signed data) link the signature to exactly what was signed;
    the signature stops applying when the data change (FormRecord.signed is cleared).
    """

    __tablename__ = "signatures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("form_records.id"), index=True)
    username: Mapped[str] = mapped_column(String(64))
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    meaning: Mapped[str] = mapped_column(String(200))
    ts_utc: Mapped[str] = mapped_column(String(32))
    record_version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))


class AdverseEventSignature(Base):
    """An electronic signature of one adverse event (append-only; as :class:`Signature`, migration 0004)."""

    __tablename__ = "ae_signatures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ae_id: Mapped[int] = mapped_column(ForeignKey("adverse_events.id"), index=True)
    username: Mapped[str] = mapped_column(String(64))
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    meaning: Mapped[str] = mapped_column(String(200))
    ts_utc: Mapped[str] = mapped_column(String(32))
    record_version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))


class Site(Base):
    """A site of the study as administered in this database (migration 0005): seeded from the protocol file's
    sites, added, renamed or deactivated by administrators (audited as entity 'site'). ``code`` never changes:
    subjects and accounts refer to it. A protocol site without a row here is active under its protocol name."""

    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_utc: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=1)


class RandomizationList(Base):
    """The header of a study's allocation list (one per database): who generated it, when, from which
    seed and scheme. Concealed: only the randomization module reads it (never snapshot or exports)."""

    __tablename__ = "randomization_lists"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    protocol_version: Mapped[str] = mapped_column(String(16), unique=True)
    seed: Mapped[str] = mapped_column(String(40))
    scheme: Mapped[str] = mapped_column(Text)  # JSON of the protocol's randomization scheme
    list_sha256: Mapped[str] = mapped_column(String(64))  # hash of every (stratum, slot, arm) at generation
    generated_by: Mapped[str] = mapped_column(String(64))
    generated_utc: Mapped[str] = mapped_column(String(32))


class RandomizationSlot(Base):
    """One slot of a stratum's allocation list (concealed until used). Taking a slot sets
    ``subject_id``, ``used_utc`` and ``used_by`` once; a database trigger refuses any other change."""

    __tablename__ = "randomization_slots"
    __table_args__ = (UniqueConstraint("list_id", "stratum", "slot"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("randomization_lists.id"), index=True)
    stratum: Mapped[str] = mapped_column(String(200))
    slot: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the stratum
    block: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the stratum
    block_size: Mapped[int] = mapped_column(Integer)
    arm_code: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[int | None] = mapped_column(ForeignKey("subjects.id"), unique=True)
    used_utc: Mapped[str | None] = mapped_column(String(32))
    used_by: Mapped[str | None] = mapped_column(String(64))
