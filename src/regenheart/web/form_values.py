"""Form posts to values and values to text, for the browser's visit forms.

A visit form posts, for each protocol field ``x``, the value input ``f_x`` and beside it an optional
missing-data code ``missing__x`` with its free-text reason ``missing_reason__x``. :func:`posted_values`
turns a post into what ``CaptureService.save_form`` takes: the text typed, or the coded mapping
``{"missing": CODE, "reason": TEXT|None}`` (see :mod:`regenheart.protocol.missing`). Whether the code
is one of the study's and whether it needs a reason is the service's to decide; this module only
refuses a post it cannot read unambiguously (a value and a code for the same field).

:func:`value_text` and :func:`shown` turn stored values into what a person reads: a coded value as
``"ND - Not done: sample haemolysed"``, never the raw mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from regenheart.capture.validation import MAX_MISSING_REASON, Violation
from regenheart.protocol.missing import coded, is_missing, missing_code, missing_reason
from regenheart.protocol.models import FieldDef, Protocol

VALUE_PREFIX = "f_"
MISSING_PREFIX = "missing__"
MISSING_REASON_PREFIX = "missing_reason__"
# Longest reason the browser lets a user type (characters): the capture service's own limit.
REASON_MAX_LENGTH = MAX_MISSING_REASON


def posted_values(fields: Iterable[FieldDef], data: Mapping[str, str]) -> tuple[dict[str, Any], list[Violation]]:
    """The values of a visit-form post, by field name, and the problems that make a field unreadable.

    ``data``: the posted form (name -> text). A field with a missing-data code chosen gets the coded
    mapping (reason None when blank); otherwise the text typed (blank when nothing was posted). A field
    with both a value and a code, or a reason without a code, is reported as a :class:`Violation`
    (rules ``value_and_missing`` and ``missing_reason_without_code``) and left out of the values.
    """
    values: dict[str, Any] = {}
    problems: list[Violation] = []
    for field in fields:
        value = data.get(VALUE_PREFIX + field.name, "")
        code = data.get(MISSING_PREFIX + field.name, "").strip()
        reason = data.get(MISSING_REASON_PREFIX + field.name, "").strip()
        if code and value.strip():
            problems.append(Violation(field.name, value, "value_and_missing",
                                      f"enter a value or the missing-data code {code}, not both: clear the value, "
                                      "or choose no code"))
        elif code:
            values[field.name] = coded(code, reason)
        elif reason:
            problems.append(Violation(field.name, reason, "missing_reason_without_code",
                                      "a missing-data reason was given without a code: choose the code, or clear "
                                      "the reason"))
        else:
            values[field.name] = value
    return values, problems


def coded_text(protocol: Protocol, value: Any) -> str:
    """A coded value as people read it: ``"ND - Not done: sample haemolysed"`` (no reason: no colon part).

    A code the protocol does not declare (an old database, another study's file) is shown as
    ``"XX - undeclared code"``. Anything that is not a coded value gives ``""``."""
    code = missing_code(value)
    if code is None:
        return ""
    declared = protocol.missing_code(code)
    text = f"{code} - {declared.label if declared else 'undeclared code'}"
    reason = missing_reason(value)
    return f"{text}: {reason}" if reason else text


def value_text(protocol: Protocol, field: FieldDef | None, value: Any) -> str:
    """A stored item value as text: blank for none, whole numbers without ``.0`` where the field has no
    decimals, a coded value as :func:`coded_text`, anything else as ``str``."""
    if value is None:
        return ""
    if is_missing(value):
        return coded_text(protocol, value)
    if isinstance(value, float) and value.is_integer() and field is not None and field.decimals in (0, None):
        return str(int(value))
    return str(value)


def posted_text(protocol: Protocol, field: FieldDef, data: Mapping[str, str]) -> str:
    """What the user posted for ``field`` as text: the code with its label and reason, else the value typed."""
    code = data.get(MISSING_PREFIX + field.name, "").strip()
    if code:
        return coded_text(protocol, coded(code, data.get(MISSING_REASON_PREFIX + field.name, "").strip()))
    return data.get(VALUE_PREFIX + field.name, "")


def shown(protocol: Protocol, value: Any) -> Any:
    """For templates that print stored values as they are (the audit trail): a coded value becomes its
    text (:func:`coded_text`); any other value is returned unchanged."""
    return coded_text(protocol, value) if is_missing(value) else value


def missing_widget(protocol: Protocol, field: FieldDef, fields: list[FieldDef], stored: Any,
                   raw: Mapping[str, str] | None) -> dict[str, Any]:
    """The missing-data and specify parts of a field's widget.

    ``missing`` / ``missing_reason``: the code and reason to show in the control (the post's when the
    page is shown again after an error, else the stored value's); ``missing_shown``: the stored coded
    value as text (read-only views); ``specify_for`` / ``specify_codes``: for a "specify" text field,
    the code field it belongs to and the answers that need it."""
    if raw is not None:
        code = raw.get(MISSING_PREFIX + field.name, "").strip()
        reason = raw.get(MISSING_REASON_PREFIX + field.name, "")
    else:
        code = missing_code(stored) or ""
        reason = missing_reason(stored) or ""
    target = next((f for f in fields if f.name == field.specify_for), None)
    return {"missing": code, "missing_reason": reason, "missing_reason_max": REASON_MAX_LENGTH,
            "missing_shown": coded_text(protocol, stored),
            "specify_for": target.name if target else None,
            "specify_codes": [str(c) for c in protocol.specify_codes(target)] if target else []}


def entry_order(fields: Iterable[FieldDef]) -> list[FieldDef]:
    """The fields in the order they are entered: each "specify" text field right after the code field it
    belongs to (``specify_for``), the others in protocol order."""
    fields = list(fields)
    names = {f.name for f in fields}
    followers: dict[str, list[FieldDef]] = {}
    for f in fields:
        if f.specify_for in names:
            followers.setdefault(f.specify_for, []).append(f)
    out: list[FieldDef] = []
    for f in fields:
        if f.specify_for in names:
            continue
        out.append(f)
        out.extend(followers.get(f.name, []))
    return out
