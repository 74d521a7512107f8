"""Edit checks: validate one record of form data against its protocol definition (pure functions).

Every violation names the field, the offending value and the rule, so a coordinator, an API client
or a data manager reading a log sees exactly what to correct. All violations of a record are
collected (never only the first), and nothing is written unless there are none.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from regenheart.protocol.missing import MISSING_KEY, REASON_KEY, coded, is_missing, plain, plain_value
from regenheart.protocol.models import Check, FieldDef, FormDef, LogForm, Protocol
from regenheart.protocol.rules import compile_rule

# Longest free-text reason accepted with a missing-data code (characters).
MAX_MISSING_REASON = 500


@dataclass(frozen=True)
class Violation:
    """One broken rule: ``field`` and ``value`` that broke it, ``rule`` (machine code), ``message``."""

    field: str
    value: Any
    rule: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        value = self.value.isoformat() if isinstance(self.value, (dt.date, dt.datetime)) else self.value
        return {"field": self.field, "value": value, "rule": self.rule, "message": self.message}

    def __str__(self) -> str:
        return f"{self.field}={self.value!r}: {self.message} [{self.rule}]"


@dataclass(frozen=True)
class ValidationResult:
    values: dict[str, Any]          # typed, cleaned values of the fields supplied
    violations: list[Violation]     # errors: the record must not be written
    warnings: list[Violation]       # soft checks: written, shown to the user

    @property
    def ok(self) -> bool:
        return not self.violations


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "") or (
        isinstance(value, float) and math.isnan(value)
    )


def _decimals(value: float | str) -> int:
    try:
        exponent = Decimal(str(value)).normalize().as_tuple().exponent
    except InvalidOperation:
        return 0
    return max(0, -exponent) if isinstance(exponent, int) else 0


def coerce_missing(protocol: Protocol, field: FieldDef, raw: Mapping[str, Any]) -> tuple[Any, Violation | None]:
    """Check a missing-data code given in place of a value (``{"missing": CODE, "reason": TEXT}``)."""
    name = field.name
    extra = sorted(set(raw) - {MISSING_KEY, REASON_KEY})
    if extra or MISSING_KEY not in raw:
        return None, Violation(name, raw, "type", "must be a value, or a missing-data code given as "
                                                  '{"missing": CODE, "reason": TEXT}')
    code = raw[MISSING_KEY]
    declared = protocol.missing_code(code) if isinstance(code, str) else None
    if declared is None:
        if not protocol.missing_codes:
            return None, Violation(name, code, "missing_code", "this study declares no missing-data codes")
        shown = ", ".join(f"{m.code} ({m.label})" for m in protocol.missing_codes)
        return None, Violation(name, code, "missing_code", f"must be one of the study's missing-data codes: {shown}")
    reason = raw.get(REASON_KEY)
    if reason is not None and not isinstance(reason, str):
        return None, Violation(name, reason, "type", "the reason of a missing-data code must be text")
    reason = (reason or "").strip()
    if len(reason) > MAX_MISSING_REASON:
        return None, Violation(name, reason, "max_length",
                               f"the reason of a missing-data code must be at most {MAX_MISSING_REASON} characters")
    if declared.reason_required and not reason:
        return None, Violation(name, code, "reason_required",
                               f"missing-data code {code} ({declared.label}) needs a reason")
    return coded(code, reason), None


def coerce_value(protocol: Protocol, field: FieldDef, raw: Any) -> tuple[Any, Violation | None]:
    """Convert ``raw`` (from JSON, a form post or Python) to the field's type, or explain why not.

    A mapping ``{"missing": CODE, "reason": TEXT}`` records a missing-data code instead of a value
    (see :mod:`regenheart.protocol.missing`).
    """
    name = field.name
    if isinstance(raw, Mapping):
        return coerce_missing(protocol, field, raw)
    if _is_blank(raw):
        return None, None
    if field.type == "integer":
        if isinstance(raw, bool):
            return None, Violation(name, raw, "type", "must be a whole number")
        try:
            number = float(raw) if isinstance(raw, str) else raw
            if not isinstance(number, (int, float)) or not float(number).is_integer():
                raise ValueError
            value: Any = int(number)
        except (TypeError, ValueError):
            return None, Violation(name, raw, "type", "must be a whole number")
    elif field.type == "float":
        if isinstance(raw, bool):
            return None, Violation(name, raw, "type", "must be a number")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return None, Violation(name, raw, "type", "must be a number")
        if not math.isfinite(value):
            return None, Violation(name, raw, "type", "must be a finite number")
        if field.decimals is not None and _decimals(raw) > field.decimals:
            return None, Violation(name, raw, "decimals", f"must have at most {field.decimals} decimal(s)")
        if value.is_integer() and not isinstance(raw, float):
            value = float(value)
    elif field.type == "date":
        if isinstance(raw, dt.datetime):
            value = raw.date()
        elif isinstance(raw, dt.date):
            value = raw
        else:
            try:
                value = dt.date.fromisoformat(str(raw).strip())
            except ValueError:
                return None, Violation(name, raw, "type", "must be a date in the form YYYY-MM-DD")
    elif field.type == "code":
        allowed = protocol.allowed_codes(field)
        value = raw
        if all(isinstance(c, int) for c in allowed) and not isinstance(raw, bool):
            try:
                number = float(raw) if isinstance(raw, str) else raw
                if isinstance(number, (int, float)) and float(number).is_integer():
                    value = int(number)
            except (TypeError, ValueError):
                pass
        elif isinstance(raw, str):
            value = raw.strip()
        if value not in allowed:
            shown = ", ".join(str(c) for c in allowed)
            return None, Violation(name, raw, "codelist", f"must be one of: {shown}")
    else:  # text
        if not isinstance(raw, str):
            return None, Violation(name, raw, "type", "must be text")
        value = raw.strip()
        if field.max_length is not None and len(value) > field.max_length:
            return None, Violation(name, raw, "max_length", f"must be at most {field.max_length} characters")
    if field.range is not None and value is not None:
        lo, hi = field.range
        if not lo <= value <= hi:
            unit = f" {field.unit}" if field.unit else ""
            return None, Violation(
                name, raw, "range", f"must be between {_fmt(lo)} and {_fmt(hi)}{unit} (plausible range)"
            )
    return value, None


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def run_checks(checks: list[Check], values: Mapping[str, Any]) -> tuple[list[Violation], list[Violation]]:
    """Evaluate cross-field checks; a check whose inputs are missing stays silent (not evaluable)."""
    errors: list[Violation] = []
    warnings: list[Violation] = []
    for check in checks:
        result = compile_rule(check.rule).evaluate(values)
        if result is False:
            target = check.fields[0] if check.fields else min(compile_rule(check.rule).names)
            violation = Violation(target, values.get(target), check.id, check.message)
            (warnings if check.severity == "warning" else errors).append(violation)
    return errors, warnings


def validate_record(
    protocol: Protocol,
    form: FormDef | LogForm,
    data: Mapping[str, Any],
    *,
    existing: Mapping[str, Any] | None = None,
    require_complete: bool = True,
) -> ValidationResult:
    """Validate ``data`` for ``form``; ``existing`` values fill fields not supplied (partial updates).

    Checks: unknown fields, type, code list, decimals, plausible range, required fields (when
    ``require_complete``) and the form's cross-field checks on the merged record.
    """
    known = {f.name: f for f in form.fields}
    violations: list[Violation] = []
    values: dict[str, Any] = {}
    for name, raw in data.items():
        field = known.get(name)
        if field is None:
            violations.append(Violation(name, raw, "unknown_field", "is not a field of this form"))
            continue
        value, problem = coerce_value(protocol, field, raw)
        if problem is not None:
            violations.append(problem)
        else:
            values[name] = value
    merged = {**(existing or {}), **values}
    bad_fields = {v.field for v in violations}
    if require_complete:  # a coded field is answered: "not done" is a complete answer
        for field in form.fields:
            if field.required and merged.get(field.name) is None and field.name not in bad_fields:
                violations.append(Violation(field.name, None, "required", "is required"))
    violations.extend(_specify_violations(protocol, form, merged, require_complete, bad_fields))
    bad_fields = {v.field for v in violations}
    # Cross-field checks see a coded value as missing (not evaluable), like an empty one.
    if not violations:
        errors, warnings = run_checks(form.checks, plain(merged))
        violations.extend(errors)
    else:
        # Cross-field checks on values that passed their own checks still help the user.
        checkable = plain({k: v for k, v in merged.items() if k not in bad_fields})
        errors, warnings = run_checks(form.checks, checkable)
        violations.extend(e for e in errors if e.field not in bad_fields)
    return ValidationResult(values=values, violations=violations, warnings=warnings)


def _specify_violations(protocol: Protocol, form: FormDef | LogForm, merged: Mapping[str, Any],
                        require_complete: bool, bad_fields: set[str]) -> list[Violation]:
    """An "Other" answer needs its specify text; any other answer leaves the specify field blank."""
    violations = []
    for field in form.fields:
        if field.specify_for is None or field.name in bad_fields or field.specify_for in bad_fields:
            continue
        target = form.field(field.specify_for)
        answer = plain_value(merged.get(target.name))
        needs = protocol.specify_codes(target)
        text = merged.get(field.name)
        if answer in needs:
            if text is None and require_complete:
                violations.append(Violation(field.name, None, "specify_required",
                                            f"is required when {target.name} is {answer}: say what it is"))
        elif text is not None and not is_missing(text):
            shown = ", ".join(str(c) for c in needs)
            violations.append(Violation(field.name, text, "specify_not_applicable",
                                        f"must be blank unless {target.name} is {shown}"))
    return violations
