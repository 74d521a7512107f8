"""The neutral form of a trial's data between a source file and the capture service.

Readers (templates, REDCap, ODM) produce :class:`SourceData`: per subject, the subject-level
facts, the forms per visit, the adverse events and the disposition, each value still as it was
read (usually text) together with where it came from (:class:`Origin`). Names are already the
protocol's (visit codes, form codes, field names): a reader applies the mapping file before it
hands data on. Conversion to typed values and every edit check happen in the capture service, so
imported data meets exactly the rules of typed data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Origin:
    """Where a value or record came from: source file, row or XML path, and column or item OID."""

    file: str
    location: str = ""
    column: str | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.location:
            parts.append(self.location)
        if self.column:
            parts.append(f"column {self.column}")
        return ", ".join(parts)


@dataclass(frozen=True)
class SourceValue:
    """One value as read (``raw``: text, number or date) and its origin."""

    raw: Any
    origin: Origin


@dataclass
class FormEntry:
    """One form of one visit of one subject (protocol names)."""

    visit: str
    form: str
    values: dict[str, SourceValue]
    origin: Origin
    visit_date: SourceValue | None = None


@dataclass
class AdverseEventEntry:
    """One adverse-event record; ``seq`` is the source's own sequence number when it has one."""

    values: dict[str, SourceValue]
    origin: Origin
    seq: int | None = None


@dataclass
class SubjectEntry:
    """Everything a source holds for one subject.

    Subject-level dates are the capture service's (screening, consent, enrolment); eligibility is
    evaluated by capture from the screening forms, so a source's own eligibility verdict, when it
    has one, is kept in ``stated_eligible`` only to be compared with capture's outcome.
    """

    code: str
    origin: Origin
    site: SourceValue | None = None
    screening_date: SourceValue | None = None
    consent_date: SourceValue | None = None
    enrolled_date: SourceValue | None = None
    arm: SourceValue | None = None
    stated_eligible: SourceValue | None = None
    synthetic: SourceValue | None = None  # Y: synthetic (generated) data, kept labelled as such in the copy
    forms: list[FormEntry] = field(default_factory=list)
    adverse_events: list[AdverseEventEntry] = field(default_factory=list)
    disposition: dict[str, SourceValue] | None = None
    disposition_origin: Origin | None = None


@dataclass(frozen=True)
class Refusal:
    """A value or record that could not be taken, with everything needed to find and fix it."""

    origin: Origin
    rule: str
    message: str
    subject: str | None = None
    visit: str | None = None
    form: str | None = None
    field: str | None = None
    value: Any = None

    REPORT_COLUMNS = ("file", "location", "column", "subject", "visit", "form", "field", "value", "rule", "message")

    def as_row(self) -> dict[str, Any]:
        """One row of the import report (CSV columns :attr:`REPORT_COLUMNS`)."""
        value = self.value.isoformat() if hasattr(self.value, "isoformat") else self.value
        return {"file": self.origin.file, "location": self.origin.location, "column": self.origin.column or "",
                "subject": self.subject or "", "visit": self.visit or "", "form": self.form or "",
                "field": self.field or "", "value": "" if value is None else value, "rule": self.rule,
                "message": self.message}


@dataclass(frozen=True)
class Unmapped:
    """A source column, item or event that maps to nothing in the protocol: reported, never dropped silently."""

    origin: Origin
    what: str  # e.g. "column 'bmi'", "ItemOID 'IT.FOO'", "event 'unscheduled_arm_1'"
    note: str = "maps to no protocol visit, form or field"


@dataclass
class SourceData:
    """What a reader produced from one source: subjects, plus what it could not map or read."""

    source: str           # file or folder name as given
    sha256: str           # of the source file (of the concatenated files, sorted by name, for a folder)
    format: str           # template | redcap | odm
    subjects: list[SubjectEntry] = field(default_factory=list)
    unmapped: list[Unmapped] = field(default_factory=list)
    problems: list[Refusal] = field(default_factory=list)  # read-level refusals (bad file, bad row)
