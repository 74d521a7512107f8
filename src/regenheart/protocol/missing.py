"""Missing-data codes as values: how a coded "not done / unknown / ..." travels through the system.

A field that was not answered for a known reason holds, in place of its value, the mapping
``{"missing": CODE, "reason": TEXT or None}`` (CODE one of the protocol's ``missing_codes``). It is
stored, audited, exchanged over the API and read back in exactly that form, so the audit trail shows
the code like any value. Everything that computes with values (edit checks, scoring, eligibility,
analysis) sees a coded field as missing (``None``): :func:`plain` does that conversion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MISSING_KEY = "missing"
REASON_KEY = "reason"


def coded(code: str, reason: str | None = None) -> dict[str, Any]:
    """The stored form of missing-data code ``code`` with its optional free-text ``reason``."""
    return {MISSING_KEY: code, REASON_KEY: reason or None}


def is_missing(value: Any) -> bool:
    """True when ``value`` is a missing-data code (not a value, not a plain blank)."""
    return isinstance(value, Mapping) and MISSING_KEY in value


def missing_code(value: Any) -> str | None:
    """The code of a coded value (``"ND"``), None for anything else."""
    return str(value[MISSING_KEY]) if is_missing(value) else None


def missing_reason(value: Any) -> str | None:
    """The free-text reason given with a coded value, None for anything else or no reason."""
    return (value.get(REASON_KEY) or None) if is_missing(value) else None


def plain_value(value: Any) -> Any:
    """The value for computation: None for a coded value, the value itself otherwise."""
    return None if is_missing(value) else value


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` with every coded value replaced by None (edit checks, scoring, analysis)."""
    return {name: None if is_missing(value) else value for name, value in values.items()}
