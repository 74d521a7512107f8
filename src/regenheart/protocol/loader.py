"""Load and validate a protocol file (YAML), reporting every problem with its path in the file."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from regenheart.protocol.models import Check, FieldDef, Protocol
from regenheart.protocol.rules import compile_rule
from regenheart.protocol.sap import plan_issues

DEFAULT_STUDY = "regenheart.yaml"


@dataclass(frozen=True)
class ProtocolIssue:
    """One problem in a protocol file: where (``path``, e.g. ``forms.echo.fields[2].range``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ProtocolError(ValueError):
    """The protocol file is malformed; ``issues`` lists every problem found."""

    def __init__(self, source: str, issues: list[ProtocolIssue]):
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"protocol {source} is invalid ({len(issues)} problem(s)):\n{lines}")


def _pydantic_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _cross_reference(protocol: Protocol) -> list[ProtocolIssue]:
    """Checks that need the whole document: names that must refer to something defined elsewhere."""
    issues: list[ProtocolIssue] = []

    def check_field(path: str, field: FieldDef) -> None:
        if field.codelist is not None and field.codelist not in protocol.codelists:
            issues.append(ProtocolIssue(f"{path}.codelist", f"unknown code list '{field.codelist}'"))

    def check_rules(path: str, checks: list[Check], names: set[str]) -> None:
        for i, check in enumerate(checks):
            rule = compile_rule(check.rule)
            for name in sorted(rule.names - names):
                issues.append(ProtocolIssue(f"{path}[{i}].rule", f"rule refers to unknown field '{name}'"))
            for name in check.fields:
                if name not in names:
                    issues.append(ProtocolIssue(f"{path}[{i}].fields", f"unknown field '{name}'"))

    def check_specify(path: str, fields: list[FieldDef]) -> None:
        by_name = {f.name: f for f in fields}
        specified = {}
        for i, field in enumerate(fields):
            if field.specify_for is None:
                continue
            target = by_name.get(field.specify_for)
            if target is None or target.type != "code" or not protocol.specify_codes(target):
                issues.append(ProtocolIssue(f"{path}[{i}].specify_for", f"'{field.specify_for}' is not a code field "
                                            "of this form with an answer marked 'specify: true'"))
            elif field.specify_for in specified:
                issues.append(ProtocolIssue(f"{path}[{i}].specify_for",
                                            f"'{field.specify_for}' already has specify field '{specified[field.specify_for]}'"))
            specified[field.specify_for] = field.name
        for i, field in enumerate(fields):
            if field.type == "code" and field.codelist in protocol.codelists and protocol.specify_codes(field) \
                    and field.name not in specified:
                issues.append(ProtocolIssue(f"{path}[{i}]", f"code list '{field.codelist}' has an answer that needs "
                                            f"free text: add a text field with 'specify_for: {field.name}'"))

    codes = [m.code for m in protocol.missing_codes]
    for i, code in enumerate(codes):
        if code in codes[:i]:
            issues.append(ProtocolIssue(f"missing_codes[{i}].code", f"missing-data code '{code}' is defined twice"))

    for form_name, form in protocol.forms.items():
        for i, field in enumerate(form.fields):
            check_field(f"forms.{form_name}.fields[{i}]", field)
        check_specify(f"forms.{form_name}.fields", form.fields)
        check_rules(f"forms.{form_name}.checks", form.checks, set(form.field_names))
    for key in ("adverse_events", "disposition"):
        log_form = getattr(protocol, key)
        if log_form is None:  # optional for studies other than RegenHeart
            continue
        for i, field in enumerate(log_form.fields):
            check_field(f"{key}.fields[{i}]", field)
        check_specify(f"{key}.fields", log_form.fields)
        check_rules(f"{key}.checks", log_form.checks, set(log_form.field_names))

    seen_visits: set[str] = set()
    previous_day: int | None = None
    for i, visit in enumerate(protocol.visits):
        if visit.code in seen_visits:
            issues.append(ProtocolIssue(f"visits[{i}].code", f"visit '{visit.code}' is defined twice"))
        seen_visits.add(visit.code)
        if previous_day is not None and visit.day <= previous_day:
            issues.append(ProtocolIssue(f"visits[{i}].day", "visits must be listed in increasing target day"))
        previous_day = visit.day
        for j, form in enumerate(visit.forms):
            if form not in protocol.forms:
                issues.append(ProtocolIssue(f"visits[{i}].forms[{j}]", f"unknown form '{form}'"))
    baselines = [v.code for v in protocol.visits if v.baseline]
    if len(baselines) != 1:
        issues.append(ProtocolIssue("visits", f"exactly one visit must be the baseline, found {baselines}"))

    versions = [v.version for v in protocol.protocol_versions]
    if protocol.active_protocol_version not in versions:
        issues.append(
            ProtocolIssue("active_protocol_version", f"'{protocol.active_protocol_version}' is not one of {versions}")
        )

    screening_fields: set[str] = set()
    if baselines:
        for form in protocol.visit(baselines[0]).forms:
            if form in protocol.forms:
                screening_fields.update(protocol.forms[form].field_names)
    seen_criteria: set[str] = set()
    for i, criterion in enumerate(protocol.eligibility):
        if criterion.id in seen_criteria:
            issues.append(ProtocolIssue(f"eligibility[{i}].id", f"criterion '{criterion.id}' is defined twice"))
        seen_criteria.add(criterion.id)
        for name in sorted(compile_rule(criterion.rule).names - screening_fields):
            issues.append(
                ProtocolIssue(f"eligibility[{i}].rule", f"'{name}' is not a field of any baseline-visit form")
            )

    issues.extend(_check_day0(protocol))
    issues.extend(_check_dates(protocol))
    if protocol.endpoints is None:
        return issues
    primary = protocol.endpoints.primary
    for j, category in enumerate(primary.ae_categories):
        if category not in [c.code for c in protocol.codelists.get("ae_category", [])]:
            issues.append(ProtocolIssue(f"endpoints.primary.ae_categories[{j}]", f"unknown AE category '{category}'"))
    for group_name in ("secondary", "exploratory"):
        group = getattr(protocol.endpoints, group_name)
        for j, visit in enumerate(group.visits):
            if visit not in seen_visits:
                issues.append(ProtocolIssue(f"endpoints.{group_name}.visits[{j}]", f"unknown visit '{visit}'"))
        for j, param in enumerate(group.parameters):
            path = f"endpoints.{group_name}.parameters[{j}].source"
            form = protocol.forms.get(param.form)
            if form is None:
                issues.append(ProtocolIssue(path, f"unknown form '{param.form}'"))
            elif param.derived:
                if form.instrument is None:
                    issues.append(ProtocolIssue(path, f"form '{param.form}' has no instrument to derive a score"))
            elif param.item not in form.field_names:
                issues.append(ProtocolIssue(path, f"form '{param.form}' has no field '{param.item}'"))
            elif baselines and param.form not in protocol.visit(baselines[0]).forms:
                issues.append(ProtocolIssue(path, f"form '{param.form}' is not collected at baseline"))
    paramcds = [p.paramcd for p in protocol.all_parameters]
    for code in sorted({c for c in paramcds if paramcds.count(c) > 1}):
        issues.append(ProtocolIssue("endpoints", f"parameter code '{code}' is used twice"))
    return issues


def _check_day0(protocol: Protocol) -> list[ProtocolIssue]:
    """The day-0 anchor names a visit, a form collected there and a numeric field of that form."""
    anchor = protocol.day0
    if anchor is None:
        return []
    if anchor.visit not in protocol.visit_codes:
        return [ProtocolIssue("day0.visit", f"unknown visit '{anchor.visit}'")]
    if anchor.form not in protocol.visit(anchor.visit).forms:
        return [ProtocolIssue("day0.form", f"form '{anchor.form}' is not collected at visit '{anchor.visit}'")]
    form = protocol.forms[anchor.form]
    if anchor.field not in form.field_names:
        return [ProtocolIssue("day0.field", f"form '{anchor.form}' has no field '{anchor.field}'")]
    if form.field(anchor.field).type not in ("integer", "float"):
        return [ProtocolIssue("day0.field", f"'{anchor.field}' must be a numeric field (day 0 is set when it is > 0)")]
    return []


def _check_dates(protocol: Protocol) -> list[ProtocolIssue]:
    """Declared date sources name date fields (subject dates: on a form of the first visit)."""
    if protocol.dates is None:
        return []
    issues = []
    first_forms = protocol.visits[0].forms
    for key in ("screening", "consent", "enrolment"):
        target = getattr(protocol.dates, key)
        if target is None:
            continue
        form, _, name = target.partition(".")
        if form not in first_forms:
            issues.append(ProtocolIssue(f"dates.{key}", f"form '{form}' is not collected at the first visit"))
        elif name not in protocol.forms[form].field_names or protocol.forms[form].field(name).type != "date":
            issues.append(ProtocolIssue(f"dates.{key}", f"'{target}' is not a date field"))
    name = protocol.dates.visit
    if name is not None and not any(name in f.field_names and f.field(name).type == "date"
                                    for f in protocol.forms.values()):
        issues.append(ProtocolIssue("dates.visit", f"no form has a date field '{name}'"))
    return issues


def parse_protocol(document: Any, source: str = "<document>") -> Protocol:
    """Validate an already-parsed protocol document (dict) and return the typed :class:`Protocol`."""
    if not isinstance(document, dict):
        raise ProtocolError(source, [ProtocolIssue("(top level)", "the document must be a mapping")])
    try:
        protocol = Protocol.model_validate(document)
    except ValidationError as exc:
        issues = [ProtocolIssue(_pydantic_path(err["loc"]), err["msg"]) for err in exc.errors()]
        raise ProtocolError(source, issues) from None
    issues = _cross_reference(protocol)
    if protocol.sap is not None:  # the analysis plan's names must exist (paths like sap.endpoints[2].visits[0])
        issues += [ProtocolIssue(path, message) for path, message in plan_issues(protocol, protocol.sap)]
    if issues:
        raise ProtocolError(source, issues)
    return protocol


def load_protocol(path: str | Path | None = None) -> Protocol:
    """Load a protocol YAML file; ``None`` loads RegenHeart's embedded study definition.

    Raises :class:`ProtocolError` listing every problem (path in the file and the rule broken).
    """
    if path is None:
        return default_protocol()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProtocolError(str(path), [ProtocolIssue("(file)", f"cannot read: {exc.strerror}")]) from None
    return _parse_text(text, str(path))


def _parse_text(text: str, source: str) -> Protocol:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ProtocolError(source, [ProtocolIssue(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    return parse_protocol(document, source)


def default_protocol_text() -> str:
    """The YAML text of the embedded RegenHeart study definition."""
    return resources.files("regenheart.protocol").joinpath("studies", DEFAULT_STUDY).read_text(encoding="utf-8")


@functools.cache
def default_protocol() -> Protocol:
    """The embedded RegenHeart protocol (parsed once; the model is immutable)."""
    return _parse_text(default_protocol_text(), f"embedded:{DEFAULT_STUDY}")
