"""Typed models of a study protocol (pydantic v2).

The models validate structure and types; :func:`regenheart.protocol.loader.load_protocol` adds the
cross-references (a visit names an existing form, a field names an existing code list, a rule
names existing fields, an endpoint names an existing form field or instrument score).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from regenheart.protocol.registry import Registry
from regenheart.protocol.rules import RuleSyntaxError, compile_rule
from regenheart.protocol.sap import SapPlan, default_plan

FieldType = Literal["integer", "float", "text", "date", "code"]
_IDENT = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Site(_Strict):
    code: str
    name: str
    # Where the site is: ISO 3166-1 alpha-3 code (CDISC COUNTRY), the English country name as
    # registries spell it (ClinicalTrials.gov region of enrollment), and the city.
    country: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    country_name: str | None = None
    city: str | None = None


class SubjectCodeRule(_Strict):
    """How subject codes are written: ``pattern`` is a regular expression in which ``{site}`` stands
    for the screening site's code (e.g. ``^{site}-\\d{3}$``: site code, hyphen, three digits);
    ``example`` is shown to the user beside the rule."""

    pattern: str
    example: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value.replace("{site}", "01"))
        except re.error as exc:
            raise ValueError(f"subject code pattern {value!r} is not a valid regular expression: {exc}") from exc
        return value

    def regex_for(self, site_code: str) -> str:
        """The pattern with ``{site}`` replaced by the (escaped) site code."""
        return self.pattern.replace("{site}", re.escape(site_code))


class StudyIdentity(_Strict):
    """Registry identifiers and design descriptors of the study."""

    # Registry fields are optional: a study drafted from another EDC (e.g. a REDCap project) may
    # have no registration yet. The NCT number must still be stated (null: not registered).
    nct_id: str | None = Field(pattern=r"^NCT\d{8}$")
    acronym: str
    org_study_id: str | None = None
    sponsor: str | None = None
    brief_title: str
    official_title: str | None = None
    phase: str | None = None
    study_type: str | None = None
    masking: str | None = None
    conditions: list[str] = Field(default_factory=list)
    intervention: str | None = None
    day0_definition: str | None = None
    sites: list[Site] = Field(min_length=1)
    # Optional: without it any code of letters, digits and hyphens is accepted.
    subject_code: SubjectCodeRule | None = None


class Arm(_Strict):
    """A treatment arm. ``day0`` anchors its study days: the infusion, or (an arm without a
    procedure, e.g. a randomized control arm) the randomization date."""

    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    label: str
    description: str
    receives_cells: bool
    day0: Literal["infusion", "randomization"] = "infusion"


class StratificationFactor(_Strict):
    """A randomization stratification factor: the subject's site (``by: site``), or a rule over the
    screening data with the level names for true and false (e.g. ``lvef_pct <= 25``)."""

    name: str = Field(pattern=_IDENT)
    label: str
    by: Literal["site"] | None = None
    rule: str | None = None
    if_true: str | None = None
    if_false: str | None = None

    @field_validator("rule")
    @classmethod
    def _parse(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_rule(value)
            except RuleSyntaxError as exc:
                raise ValueError(f"invalid rule {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> StratificationFactor:
        if (self.by is None) == (self.rule is None):
            raise ValueError("a stratification factor needs exactly one of 'by: site' or 'rule'")
        if self.rule is not None and (not self.if_true or not self.if_false or self.if_true == self.if_false):
            raise ValueError("a rule factor needs two different level names, 'if_true' and 'if_false'")
        return self


class RandomizationScheme(_Strict):
    """How a randomized protocol version allocates: permuted blocks of randomly varying size within
    strata, the allocation ratio per arm, and the roles that may see allocation lists (unblinded)."""

    method: Literal["permuted_blocks"]
    ratio: dict[str, int] = Field(min_length=2)
    block_sizes: list[int] = Field(min_length=1)
    stratification: list[StratificationFactor] = Field(default_factory=list)
    slots_per_stratum: int = Field(gt=0)
    unblinded_roles: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _blocks_fit_ratio(self) -> RandomizationScheme:
        if any(v <= 0 for v in self.ratio.values()):
            raise ValueError("every allocation ratio must be a positive integer")
        unit = sum(self.ratio.values())
        bad = [b for b in self.block_sizes if b <= 0 or b % unit]
        if bad:
            raise ValueError(f"block sizes {bad} are not positive multiples of the ratio sum {unit}")
        names = [f.name for f in self.stratification]
        if len(set(names)) != len(names):
            raise ValueError(f"stratification factor names must be unique: {names}")
        return self


class ProtocolVersion(_Strict):
    version: str
    date: dt.date
    design: Literal["randomized", "single_arm"]
    allocation: str
    planned_enrollment: int = Field(gt=0)
    arms: list[Arm] = Field(min_length=1)
    summary: str
    randomization: RandomizationScheme | None = None

    @model_validator(mode="after")
    def _arms_match_design(self) -> ProtocolVersion:
        if self.design == "randomized" and len(self.arms) < 2:
            raise ValueError("a randomized design needs at least two arms")
        if self.design == "randomized" and self.randomization is None:
            raise ValueError("a randomized design needs a 'randomization' scheme (ratio, block sizes, "
                             "stratification, unblinded roles)")
        if self.design != "randomized" and self.randomization is not None:
            raise ValueError("only a randomized design has a 'randomization' scheme")
        if self.randomization is not None and set(self.randomization.ratio) != {a.code for a in self.arms}:
            raise ValueError(f"randomization.ratio names arms {sorted(self.randomization.ratio)}, "
                             f"the version's arms are {[a.code for a in self.arms]}")
        if self.design == "single_arm" and len(self.arms) != 1:
            raise ValueError("a single-arm design has exactly one arm")
        return self


class CodeItem(_Strict):
    code: str | int
    decode: str
    # Registry vocabularies of a code (ClinicalTrials.gov results): the MedDRA system organ class of
    # an adverse-event category, the PRS drop/withdraw reason of a disposition.
    soc: str | None = None
    registry_reason: str | None = None
    # The CDISC submission value of the code in SDTM (e.g. NYHA 3 -> NYHA CLASS III).
    sdtm: str | None = None
    # An answer that needs free text ("Other"): the form then has a text field with ``specify_for``
    # naming the coded field, required exactly when such an answer is given.
    specify: bool = False


class MissingCode(_Strict):
    """A missing-data code the study allows in place of any form value (REDCap's missing data codes).

    ``reason_required``: the code must come with a free-text reason (e.g. ND not done: why). The reason
    becomes SDTM --REASND; ``sdtm_stat`` is the --STAT value ("NOT DONE" for every code: SDTM knows no other).
    """

    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,7}$")
    label: str
    reason_required: bool = False
    sdtm_stat: Literal["NOT DONE"] = "NOT DONE"


class SdtmField(_Strict):
    """Where a field (or a derived score) is tabulated in SDTM (SDTMIG 3.4); every key is optional.

    Findings: ``testcd``/``test`` (<= 8 / <= 40 characters) with ``cat``, ``loc``, ``dir``, ``method``,
    ``spec``, ``tpt`` and ``unit`` (the CDISC unit of the collected value when the CRF's unit text is
    not a CDISC submission value). ``var``: a standard variable the value fills (``AGE``, ``EXDOSE``,
    ``AESTDTC``, ``CVMETHOD``); with ``of`` it qualifies only the record of that field (``LBORNRHI`` of
    the troponin result). ``term``: a prespecified event or intervention (``MHTERM``/``CMTRT``/``PRTRT``)
    whose Y/N answer is ``--OCCUR``; for a code field the decoded answer is the term, ``klass`` its
    class and ``none_code`` the answer meaning "none". ``qnam``/``qlabel``: a supplemental qualifier
    (SUPP--). ``domain`` overrides the form's domain; ``comment`` says why a field is not tabulated.
    """

    domain: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    var: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9]{1,7}$")
    of: str | None = None
    testcd: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]{0,7}$")
    test: str | None = Field(default=None, max_length=40)
    cat: str | None = None
    scat: str | None = None
    loc: str | None = None
    dir: str | None = None
    method: str | None = None
    spec: str | None = None
    tpt: str | None = None
    unit: str | None = None
    term: str | None = None
    klass: str | None = None
    none_code: str | int | None = None
    qnam: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9]{0,7}$")
    qlabel: str | None = Field(default=None, max_length=40)
    comment: str | None = None

    @model_validator(mode="after")
    def _one_role(self) -> SdtmField:
        roles = [k for k in ("var", "testcd", "term", "qnam", "comment") if getattr(self, k) is not None]
        if not roles:
            raise ValueError("an sdtm annotation needs one of var, testcd, term, qnam or comment")
        if self.testcd is not None and self.test is None:
            raise ValueError(f"test code {self.testcd} needs its test name ('test')")
        if self.qnam is not None and self.qlabel is None:
            raise ValueError(f"supplemental qualifier {self.qnam} needs its label ('qlabel')")
        return self


class SdtmForm(_Strict):
    """The SDTM domain of a form's records and what all of them share.

    ``testcd_codelist``/``test_codelist``: NCI codes of the CDISC test code/name codelists (absent:
    sponsor-defined codes, said so in the dataset metadata). ``fixed``: constant values of standard
    variables (``EXTRT``, ``EXROUTE``); a variable prefix other than ``domain`` makes a record in that
    domain too (a catheterization form gives EX and PR). ``performed``: the field whose "N" answer makes
    the form's tests ``--STAT = NOT DONE`` (a field annotated ``var: --REASND`` gives the reason). ``scores``: derived
    scores of an instrument form (``--DRVFL = Y``). ``evlint``: ISO 8601 evaluation interval (recall).
    """

    domain: str = Field(pattern=r"^[A-Z]{2}$")
    cat: str | None = None
    method: str | None = None
    spec: str | None = None
    evlint: str | None = None
    testcd_codelist: str | None = None
    test_codelist: str | None = None
    fixed: dict[str, str | int | float] = Field(default_factory=dict)
    performed: str | None = None
    scores: dict[str, SdtmField] = Field(default_factory=dict)
    comment: str | None = None


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
    # Short generic labels of a ``codes`` field's responses, one per code in order (e.g. questionnaire
    # anchors "1 most limited" .. "5 not limited"): never an instrument's copyrighted wording.
    labels: list[str] | None = None
    sdtm: SdtmField | None = None
    # A text field holding the free text of another code field's "Other" answer (see CodeItem.specify).
    specify_for: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FieldDef:
        if self.specify_for is not None and self.type != "text":
            raise ValueError("'specify_for' is only allowed on text fields")
        if self.range is not None:
            if self.type not in ("integer", "float"):
                raise ValueError(f"a range is only allowed on numeric fields, not on type '{self.type}'")
            if self.range[0] > self.range[1]:
                raise ValueError(f"range minimum {self.range[0]} is above maximum {self.range[1]}")
        if self.type == "code":
            if (self.codelist is None) == (self.codes is None):
                raise ValueError("a code field needs exactly one of 'codelist' or 'codes'")
            if self.labels is not None and (self.codes is None or len(self.labels) != len(self.codes)):
                raise ValueError("'labels' needs 'codes' and one label per code")
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
    sdtm: SdtmForm | None = None  # where the form's records are tabulated (SDTM)

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
    # A site holding the instrument's licence may name a local file (YAML or JSON: field name -> item
    # wording) whose text the forms then show; the wording itself is never shipped with the protocol.
    wording_file: str | None = None


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


class Day0Anchor(_Strict):
    """What fixes study day 0: the date of ``visit`` once its ``form`` records ``field`` > 0.

    RegenHeart: the D0 catheterization record with cells given. Without an anchor, day 0 is the
    date of the visit with target day 0 (else the first visit) as soon as it is recorded.
    """

    visit: str
    form: str
    field: str


class DateSources(_Strict):
    """Where capture's dates are found in form data that arrive from another system (imports).

    ``screening``/``consent``/``enrolment`` name a ``form.field`` of the first visit; ``visit``
    names the date field (on any form of a visit) that gives that visit's date. ``undated:
    entry_date`` declares a source without such dates (e.g. a classic REDCap project): every date
    not found in the data is the date the data were entered here, and the import report says so.
    """

    screening: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    consent: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    enrolment: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    visit: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    undated: Literal["entry_date"] | None = None


class Protocol(_Strict):
    """A whole study definition. Build it with :func:`regenheart.protocol.load_protocol`."""

    schema_version: Literal[1]
    study: StudyIdentity
    protocol_versions: list[ProtocolVersion] = Field(min_length=1)
    active_protocol_version: str
    codelists: dict[str, list[CodeItem]]
    forms: dict[str, FormDef]
    visits: list[Visit] = Field(min_length=1)
    # Optional for studies other than RegenHeart: no criteria means every screened subject is
    # eligible; no log form means the study has no AE log / disposition record; no endpoints means
    # the study is captured and exchanged, not analysed by the SAP.
    eligibility: list[Criterion] = Field(default_factory=list)
    adverse_events: LogForm | None = None
    disposition: LogForm | None = None
    endpoints: Endpoints | None = None
    day0: Day0Anchor | None = None
    dates: DateSources | None = None
    registry: Registry | None = None
    # The statistical analysis plan (protocol/sap.py); without one, default_plan() applies.
    sap: SapPlan | None = None
    # Codes a site may record in place of a form value (not done, unknown, ...); none: values only.
    missing_codes: list[MissingCode] = Field(default_factory=list)

    @model_validator(mode="after")
    def _stratification_uses_screening_fields(self) -> Protocol:
        baseline = [v for v in self.visits if v.baseline]
        if len(baseline) != 1:
            return self  # reported by the loader's cross-reference check
        fields = {f for form in baseline[0].forms if form in self.forms for f in self.forms[form].field_names}
        problems = []
        for i, version in enumerate(self.protocol_versions):
            for j, factor in enumerate(version.randomization.stratification if version.randomization else []):
                unknown = sorted(compile_rule(factor.rule).names - fields) if factor.rule else []
                if unknown:
                    problems.append(f"protocol_versions[{i}].randomization.stratification[{j}].rule: "
                                    f"{', '.join(unknown)} is not a field of any baseline-visit form")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def protocol_version(self, version: str) -> ProtocolVersion:
        """The protocol version called ``version`` (KeyError if absent)."""
        for v in self.protocol_versions:
            if v.version == version:
                return v
        raise KeyError(version)

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

    def missing_code(self, code: str) -> MissingCode | None:
        """The declared missing-data code ``code`` (None if the protocol does not declare it)."""
        return next((m for m in self.missing_codes if m.code == code), None)

    def specify_codes(self, field: FieldDef) -> list[str | int]:
        """Codes of a code field whose answer needs a free-text "specify" (CodeItem.specify)."""
        if field.codelist is None:
            return []
        return [item.code for item in self.codelists.get(field.codelist, []) if item.specify]

    def decode(self, codelist: str, code: str | int) -> str:
        """Human-readable label of ``code`` in ``codelist`` (the code itself if unknown)."""
        for item in self.codelists.get(codelist, []):
            if item.code == code:
                return item.decode
        return str(code)

    @property
    def all_parameters(self) -> list[Parameter]:
        if self.endpoints is None:
            return []
        return self.endpoints.secondary.parameters + self.endpoints.exploratory.parameters

    @property
    def analysis_plan(self) -> SapPlan:
        """The plan the SAP runs: the ``sap:`` section, else :func:`~regenheart.protocol.sap.default_plan`."""
        return self.sap if self.sap is not None else default_plan(self)

    def parameter(self, paramcd: str) -> Parameter:
        for p in self.all_parameters:
            if p.paramcd == paramcd:
                return p
        raise KeyError(paramcd)
