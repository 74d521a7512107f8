"""Typed models of a study protocol (pydantic v2).

The models validate structure and types; :func:`regenheart.protocol.loader.load_protocol` adds the
cross-references (a visit names an existing form, a field names an existing code list, a rule
names existing fields, an endpoint names an existing form field or instrument score).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from regenheart.protocol.rules import RuleSyntaxError, compile_rule

FieldType = Literal["integer", "float", "text", "date", "code"]
_IDENT = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Site(_Strict):
    code: str
    name: str


class StudyIdentity(_Strict):
    """Registry identifiers and design descriptors of the study."""

    nct_id: str = Field(pattern=r"^NCT\d{8}$")
    acronym: str
    org_study_id: str
    sponsor: str
    brief_title: str
    official_title: str
    phase: str
    study_type: str
    masking: str
    conditions: list[str]
    intervention: str
    day0_definition: str
    sites: list[Site] = Field(min_length=1)


class Arm(_Strict):
    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    label: str
    description: str
    receives_cells: bool


class ProtocolVersion(_Strict):
    version: str
    date: dt.date
    design: Literal["randomized", "single_arm"]
    allocation: str
    planned_enrollment: int = Field(gt=0)
    arms: list[Arm] = Field(min_length=1)
    summary: str

    @model_validator(mode="after")
    def _arms_match_design(self) -> ProtocolVersion:
        if self.design == "randomized" and len(self.arms) < 2:
            raise ValueError("a randomized design needs at least two arms")
        if self.design == "single_arm" and len(self.arms) != 1:
            raise ValueError("a single-arm design has exactly one arm")
        return self


class CodeItem(_Strict):
    code: str | int
    decode: str


class FieldDef(_Strict):
    """One item of a case report form."""

    name: str = Field(pattern=_IDENT)
    label: str
    type: FieldType
    unit: str | None = None
    range: tuple[float, float] | None = None
    decimals: int | None = Field(default=None, ge=0, le=6)
    required: bool = False
    codelist: str | None = None
    codes: list[int | str] | None = None
    max_length: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> FieldDef:
        if self.range is not None:
            if self.type not in ("integer", "float"):
                raise ValueError(f"a range is only allowed on numeric fields, not on type '{self.type}'")
            if self.range[0] > self.range[1]:
                raise ValueError(f"range minimum {self.range[0]} is above maximum {self.range[1]}")
        if self.type == "code":
            if (self.codelist is None) == (self.codes is None):
                raise ValueError("a code field needs exactly one of 'codelist' or 'codes'")
        elif self.codelist is not None or self.codes is not None:
            raise ValueError(f"'codelist'/'codes' are only allowed on code fields, not on type '{self.type}'")
        return self


class Check(_Strict):
    """A cross-field edit check: ``rule`` must hold; otherwise ``message`` is raised on ``fields``."""

    id: str
    rule: str
    message: str
    fields: list[str] = Field(default_factory=list)
    severity: Literal["error", "warning"] = "error"

    @field_validator("rule")
    @classmethod
    def _parse(cls, value: str) -> str:
        try:
            compile_rule(value)
        except RuleSyntaxError as exc:
            raise ValueError(f"invalid rule {value!r}: {exc}") from None
        return value


class _FieldContainer(_Strict):
    """Typed fields plus cross-field checks: what every form (visit form or log) is made of."""

    fields: list[FieldDef] = Field(min_length=1)
    checks: list[Check] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_fields(self) -> _FieldContainer:
        seen: set[str] = set()
        for f in self.fields:
            if f.name in seen:
                raise ValueError(f"field '{f.name}' is defined twice")
            seen.add(f.name)
        return self

    def field(self, name: str) -> FieldDef:
        """Return the field called ``name`` (KeyError if absent)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


class FormDef(_FieldContainer):
    """A case report form collected at visits; ``instrument`` names its scoring algorithm, if any."""

    label: str
    cdisc_domain: str | None = None
    instrument: str | None = None


class Visit(_Strict):
    """A scheduled visit. ``day`` is the target study day (day 0 = infusion); ``window`` inclusive."""

    code: str = Field(pattern=r"^[A-Z][A-Z0-9]*$")
    label: str
    day: int
    window: tuple[int, int]
    baseline: bool = False
    forms: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _window_contains_day(self) -> Visit:
        lo, hi = self.window
        if lo > hi:
            raise ValueError(f"window start {lo} is after window end {hi}")
        if not lo <= self.day <= hi:
            raise ValueError(f"target day {self.day} is outside its window [{lo}, {hi}]")
        return self


class Criterion(_Strict):
    id: str = Field(pattern=r"^(IN|EX)\d{2}$")
    kind: Literal["inclusion", "exclusion"]
    text: str
    rule: str

    @field_validator("rule")
    @classmethod
    def _parse(cls, value: str) -> str:
        try:
            compile_rule(value)
        except RuleSyntaxError as exc:
            raise ValueError(f"invalid rule {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _prefix_matches_kind(self) -> Criterion:
        if (self.id.startswith("IN")) != (self.kind == "inclusion"):
            raise ValueError(f"criterion id '{self.id}' does not match its kind '{self.kind}'")
        return self


class LogForm(_FieldContainer):
    """A non-visit form (adverse-event log, disposition)."""

    label: str


class PrimaryEndpoint(_Strict):
    code: str
    label: str
    window_days: tuple[int, int]
    definition: str
    ae_categories: list[str] = Field(min_length=1)
    min_ctcae_grade: int = Field(ge=1, le=5)
    timi_after_max: int = Field(ge=0, le=3)
    fever_threshold_c: float


class Parameter(_Strict):
    """An analysis parameter (ADaM PARAMCD) read from ``source`` = ``form.field`` or ``form.score``."""

    paramcd: str = Field(pattern=r"^[A-Z][A-Z0-9]{0,7}$")
    label: str
    unit: str
    source: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    direction: Literal["higher_better", "lower_better"]
    log_scale: bool = False
    ordinal: bool = False
    derived: bool = False

    @property
    def form(self) -> str:
        return self.source.split(".", 1)[0]

    @property
    def item(self) -> str:
        return self.source.split(".", 1)[1]


class EndpointGroup(_Strict):
    visits: list[str] = Field(min_length=1)
    parameters: list[Parameter] = Field(min_length=1)


class Endpoints(_Strict):
    primary: PrimaryEndpoint
    secondary: EndpointGroup
    exploratory: EndpointGroup


class Protocol(_Strict):
    """A whole study definition. Build it with :func:`regenheart.protocol.load_protocol`."""

    schema_version: Literal[1]
    study: StudyIdentity
    protocol_versions: list[ProtocolVersion] = Field(min_length=1)
    active_protocol_version: str
    codelists: dict[str, list[CodeItem]]
    forms: dict[str, FormDef]
    visits: list[Visit] = Field(min_length=1)
    eligibility: list[Criterion] = Field(min_length=1)
    adverse_events: LogForm
    disposition: LogForm
    endpoints: Endpoints

    # ---- convenience lookups -------------------------------------------------------------
    def visit(self, code: str) -> Visit:
        """Return the visit with ``code`` (KeyError if absent)."""
        for v in self.visits:
            if v.code == code:
                return v
        raise KeyError(code)

    @property
    def visit_codes(self) -> list[str]:
        return [v.code for v in self.visits]

    @property
    def baseline_visit(self) -> Visit:
        return next(v for v in self.visits if v.baseline)

    @property
    def active_version(self) -> ProtocolVersion:
        return next(v for v in self.protocol_versions if v.version == self.active_protocol_version)

    def allowed_codes(self, field: FieldDef) -> list[str | int]:
        """The permitted codes of a code field (from its code list or inline ``codes``)."""
        if field.codes is not None:
            return list(field.codes)
        return [item.code for item in self.codelists[field.codelist or ""]]

    def decode(self, codelist: str, code: str | int) -> str:
        """Human-readable label of ``code`` in ``codelist`` (the code itself if unknown)."""
        for item in self.codelists.get(codelist, []):
            if item.code == code:
                return item.decode
        return str(code)

    @property
    def all_parameters(self) -> list[Parameter]:
        return self.endpoints.secondary.parameters + self.endpoints.exploratory.parameters

    def parameter(self, paramcd: str) -> Parameter:
        for p in self.all_parameters:
            if p.paramcd == paramcd:
                return p
        raise KeyError(paramcd)
