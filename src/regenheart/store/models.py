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
