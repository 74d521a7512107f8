"""The mapping file: how a source's names and codes become the protocol's.

A YAML file (all sections optional; names absent from it map to themselves when the protocol has
them)::

    events:   {baseline_arm_1: SCR, month_1_arm_1: M1}      # source event/visit -> protocol visit
    forms:    {echocardiography: echo}                      # source form/instrument -> protocol form
    fields:   {lvef: echo.lvef_pct, sex_x: demographics.sex} # source field -> protocol form.field
    recodes:  {demographics.sex: {"1": M, "2": F}}           # protocol form.field -> source code -> code
    units:    {labs.ntprobnp_pg_ml: {from: pmol/L, factor: 8.457}}  # value x factor = protocol unit
    date_format: "%d/%m/%Y"                                   # source dates when not ISO 8601
    subject:  {id: record_id, site: dag, default_site: "01"} # subject key column, site column
    ignore:   [bmi, notes_internal]                          # source fields deliberately not imported

Everything the mapping does is reported by the importer: a source name that maps to nothing is an
:class:`~regenheart.exchange.records.Unmapped`, never dropped silently.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from regenheart.protocol.missing import coded
from regenheart.protocol.models import Protocol


class MappingError(ValueError):
    """The mapping file is unreadable or names something the protocol does not have."""


class UnitConversion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_unit: str = Field(alias="from")
    factor: float

    @field_validator("factor")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("the factor must be a positive number")
        return value


class SubjectKeys(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = None
    site: str | None = None
    default_site: str | None = None


class MappingSpec(BaseModel):
    """The mapping file's content (validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: dict[str, str] = Field(default_factory=dict)
    forms: dict[str, str] = Field(default_factory=dict)
    fields: dict[str, str] = Field(default_factory=dict)
    recodes: dict[str, dict[str, str | int]] = Field(default_factory=dict)
    units: dict[str, UnitConversion] = Field(default_factory=dict)
    date_format: str | None = None
    subject: SubjectKeys = Field(default_factory=SubjectKeys)
    ignore: list[str] = Field(default_factory=list)


@dataclass
class Mapping:
    """A validated mapping bound to a protocol. Build with :meth:`load` or :meth:`identity`."""

    protocol: Protocol
    spec: MappingSpec = field(default_factory=MappingSpec)
    source: str = "(names as in the protocol)"

    # ------------------------------------------------------------------ construction
    @classmethod
    def identity(cls, protocol: Protocol) -> Mapping:
        """No mapping file: source names are the protocol's."""
        return cls(protocol)

    @classmethod
    def load(cls, path: str | Path, protocol: Protocol) -> Mapping:
        """Read and check a mapping file; :class:`MappingError` names the file and every problem."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError) as exc:
            raise MappingError(f"{path}: cannot read the mapping file: {exc}") from None
        except yaml.YAMLError as exc:
            raise MappingError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise MappingError(f"{path}: the mapping file must be a YAML mapping of sections")
        try:
            spec = MappingSpec.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise MappingError(f"{path}: {problems}") from None
        mapping = cls(protocol, spec, str(path))
        problems = mapping._check()
        if problems:
            raise MappingError(f"{path}: " + "; ".join(problems))
        return mapping

    def _check(self) -> list[str]:
        problems = []
        visits = set(self.protocol.visit_codes)
        for source, target in self.spec.events.items():
            if target not in visits:
                problems.append(f"events.{source}: '{target}' is not a protocol visit")
        for source, target in self.spec.forms.items():
            if target not in self._form_names():
                problems.append(f"forms.{source}: '{target}' is not a protocol form")
        for section in ("fields",):
            for source, target in self.spec.fields.items():
                if self._resolve(target) is None:
                    problems.append(f"{section}.{source}: '{target}' is not a protocol form.field")
        for section, entries in (("recodes", self.spec.recodes), ("units", self.spec.units)):
            for target in entries:
                if self._resolve(target) is None:
                    problems.append(f"{section}.{target}: not a protocol form.field")
        if self.spec.date_format:
            try:
                dt.datetime.strftime(dt.datetime(2000, 1, 2), self.spec.date_format)
            except ValueError as exc:
                problems.append(f"date_format: {exc}")
        return problems

    # ------------------------------------------------------------------ lookups
    def _form_names(self) -> set[str]:
        return set(self.protocol.forms) | {"adverse_events", "disposition"}

    def _container(self, form: str):
        if form == "adverse_events":
            return self.protocol.adverse_events
        if form == "disposition":
            return self.protocol.disposition
        return self.protocol.forms.get(form)

    def _resolve(self, target: str) -> tuple[str, str] | None:
        form, _, name = target.partition(".")
        container = self._container(form)
        if container is None or name not in container.field_names:
            return None
        return form, name

    def visit(self, source_event: str) -> str | None:
        """The protocol visit of a source event or visit name (None: unmapped)."""
        if source_event in self.spec.events:
            return self.spec.events[source_event]
        return source_event if source_event in self.protocol.visit_codes else None

    def form(self, source_form: str) -> str | None:
        """The protocol form of a source form or instrument name (None: unmapped)."""
        if source_form in self.spec.forms:
            return self.spec.forms[source_form]
        return source_form if source_form in self._form_names() else None

    def ignored(self, source_field: str) -> bool:
        return source_field in self.spec.ignore

    def field(self, source_field: str, source_form: str | None = None) -> tuple[str, str] | None:
        """The protocol (form, field) of a source field; ``source_form`` disambiguates plain names.

        Order: an explicit ``fields`` entry; then the same name on the mapped form; then the same
        name on exactly one protocol form. None when nothing (or more than one form) matches.
        """
        if source_field in self.spec.fields:
            return self._resolve(self.spec.fields[source_field])
        if source_form is not None:
            form = self.form(source_form)
            if form is not None:
                container = self._container(form)
                if container is not None and source_field in container.field_names:
                    return form, source_field
                return None
        matches = [name for name in self._form_names()
                   if source_field in self._container(name).field_names]  # type: ignore[union-attr]
        return (matches[0], source_field) if len(matches) == 1 else None

    # ------------------------------------------------------------------ values
    def convert(self, form: str, name: str, raw: Any) -> Any:
        """Apply the recode and unit conversion of ``form.field`` to one source value.

        Blank values pass through. A unit factor applies to numbers only; text that is not a
        number is passed on unchanged, so the capture service refuses it with its own message.
        Converted numbers are rounded to the field's declared decimals (the conversion, not the
        source, decides the precision).
        """
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            return raw
        key = f"{form}.{name}"
        recode = self.spec.recodes.get(key)
        if recode is not None:
            text = str(raw).strip()
            if text in recode:
                return recode[text]
        unit = self.spec.units.get(key)
        if unit is not None:
            try:
                number = float(raw)
            except (TypeError, ValueError):
                return raw
            value = number * unit.factor
            container = self._container(form)
            decimals = container.field(name).decimals if container is not None else None
            return round(value, decimals) if decimals is not None else value
        if self.spec.date_format and isinstance(raw, str):
            container = self._container(form)
            if container is not None and container.field(name).type == "date":
                return self.date(raw)
        return raw

    def missing(self, form: str, name: str, raw: Any, source: str, *, with_reason: bool = False) -> Any:
        """A source value that is one of the protocol's missing-data codes, as the coded mapping; else ``raw``.

        Only visit-form fields take codes (log forms hold values only). A code-list field whose own
        codes include the text keeps it as its answer (a code list ``NA`` is an answer, not a code).
        ``with_reason``: the text may also be ``CODE: reason`` (templates: a code that needs a reason and
        has none is passed on without one, so capture refuses it naming the code). Without it (REDCap's
        model has no reason), a code that needs a reason gets ``recorded as CODE in <source>``, so the
        audit trail states where the code came from.
        """
        if not isinstance(raw, str) or not self.protocol.missing_codes or form not in self.protocol.forms:
            return raw
        text = raw.strip()
        code, reason = text, None
        if with_reason and ":" in text:
            code, _, rest = text.partition(":")
            code, reason = code.strip(), rest.strip() or None
        declared = self.protocol.missing_code(code)
        if declared is None:
            return raw
        container = self.protocol.forms[form]
        if name in container.field_names:
            definition = container.field(name)
            if definition.type == "code" and text in {str(c) for c in self.protocol.allowed_codes(definition)}:
                return raw
        if reason is None and declared.reason_required and not with_reason:
            reason = f"recorded as {code} in {source}"
        return coded(code, reason)

    def date(self, raw: Any) -> Any:
        """A source date in ISO 8601 form when ``date_format`` parses it; else unchanged (capture refuses it)."""
        if not isinstance(raw, str) or not self.spec.date_format:
            return raw
        try:
            return dt.datetime.strptime(raw.strip(), self.spec.date_format).date().isoformat()
        except ValueError:
            return raw


# ---------------------------------------------------------------------------------------------
# A first draft of a mapping file, matched by name and label.


@dataclass(frozen=True)
class SourceName:
    """A source field as a reader lists it: its name, its label (if any) and its form (if known)."""

    name: str
    label: str | None = None
    form: str | None = None


def _norm(text: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", " ", (text or "").lower()).strip()


def _similarity(a: str | None, b: str | None) -> float:
    a, b = _norm(a), _norm(b)
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b).ratio()


def _best(candidates: dict[str, list[str]], texts: list[str | None], threshold: float) -> tuple[str, float] | None:
    """The candidate whose texts are most similar to any of ``texts`` (score >= threshold), if unique."""
    scored = sorted(((max(_similarity(t, c) for t in texts for c in cands), target)
                     for target, cands in candidates.items()), reverse=True)
    if not scored or scored[0][0] < threshold:
        return None
    if len(scored) > 1 and scored[1][0] == scored[0][0]:
        return None  # a tie: leave it to the data manager
    return scored[0][1], scored[0][0]


def draft_mapping(protocol: Protocol, fields: list[SourceName], events: list[SourceName] | None = None,
                  forms: list[SourceName] | None = None, *, threshold: float = 0.75) -> str:
    """YAML text of a first mapping file: source names matched to the protocol's by name, then by label.

    Names equal to the protocol's need no entry and are listed as comments; matches by similarity
    (difflib ratio on lower-cased words, ``threshold``) are written with their score for review; a
    name that matches nothing is listed under a commented ``ignore`` block, so the data manager
    decides. The text loads with :meth:`Mapping.load` as it is.
    """
    identity = Mapping.identity(protocol)
    lines = ["# Draft mapping file written by regenheart (matched by name and label): REVIEW EVERY LINE.",
             f"# Protocol: {protocol.study.acronym} {protocol.study.nct_id}, version {protocol.active_protocol_version}.",
             ""]

    def section(title: str, matched: dict[str, tuple[str, str]], same: list[str], unmatched: list[str]) -> None:
        lines.append(f"{title}:" + ("" if matched else " {}"))
        for source, (target, note) in matched.items():
            lines.append(f"  {yaml.safe_dump(source).strip().removesuffix('...').strip()}: {target}  # {note}")
        for name in same:
            lines.append(f"  # {name}: same name as in the protocol")
        for name in unmatched:
            lines.append(f"  # {name}: NO MATCH - map it here, or list it under 'ignore'")

    # events -> visits
    visit_texts = {v.code: [v.code, v.label] for v in protocol.visits}
    matched, same, unmatched = {}, [], []
    for event in events or []:
        if identity.visit(event.name):
            same.append(event.name)
            continue
        best = _best(visit_texts, [event.name, event.label], threshold)
        if best:
            matched[event.name] = (best[0], f"by name/label, score {best[1]:.2f}")
        else:
            unmatched.append(event.name)
    section("events", matched, same, unmatched)
    # forms
    form_texts = {code: [code, f.label] for code, f in protocol.forms.items()}
    form_texts |= {"adverse_events": ["adverse_events", protocol.adverse_events.label],
                   "disposition": ["disposition", protocol.disposition.label]}
    form_of: dict[str, str] = {}
    matched, same, unmatched = {}, [], []
    for source_form in forms or []:
        if identity.form(source_form.name):
            same.append(source_form.name)
            form_of[source_form.name] = source_form.name
            continue
        best = _best(form_texts, [source_form.name, source_form.label], threshold)
        if best:
            matched[source_form.name] = (best[0], f"by name/label, score {best[1]:.2f}")
            form_of[source_form.name] = best[0]
        else:
            unmatched.append(source_form.name)
    section("forms", matched, same, unmatched)
    # fields
    containers = {**protocol.forms, "adverse_events": protocol.adverse_events, "disposition": protocol.disposition}
    field_texts = {f"{code}.{f.name}": [f.name, f.label] for code, c in containers.items() for f in c.fields}
    matched, same, unmatched = {}, [], []
    for source in fields:
        target_form = form_of.get(source.form or "", source.form)
        if identity.field(source.name, target_form if target_form in containers else None):
            same.append(source.name)
            continue
        candidates = field_texts
        if target_form in containers:
            candidates = {k: v for k, v in field_texts.items() if k.startswith(f"{target_form}.")}
        exact = [k for k in candidates if _norm(k.split(".", 1)[1]) == _norm(source.name)]
        if len(exact) == 1:
            matched[source.name] = (exact[0], "same name apart from case/punctuation")
            continue
        best = _best(candidates, [source.label, source.name], threshold)
        if best:
            matched[source.name] = (best[0], f"by label, score {best[1]:.2f}")
        else:
            unmatched.append(source.name)
    section("fields", matched, same, unmatched)
    lines += ["", "# recodes: {form.field: {source code: protocol code}}", "recodes: {}",
              "# units: {form.field: {from: source unit, factor: multiply by}}", "units: {}",
              "# date_format: \"%d/%m/%Y\"   # when source dates are not ISO 8601", "ignore: []"]
    if unmatched:
        lines += ["# ignore:   # source fields deliberately not imported"]
        lines += [f"#   - {name}" for name in unmatched]
    return "\n".join(lines) + "\n"
