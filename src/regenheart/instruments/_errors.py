"""Exception raised for response data that the scoring library refuses."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

__all__ = ["InstrumentInputError"]


class InstrumentInputError(ValueError):
    """A response value or item key that cannot be scored.

    The library never silently turns bad input into a missing answer: out-of-range codes,
    non-integer values on integer items, non-numeric values and unknown item keys are refused.
    Only ``None`` / ``NaN`` (and pandas ``NA``) mean "unanswered".

    Attributes
    ----------
    instrument : str
        Instrument name, e.g. ``"kccq12"``.
    item : str | None
        Offending item key (or column name).
    value : Any
        Offending value as received.
    rule : str
        Human-readable statement of the rule that was broken, e.g. ``"allowed codes 1..7"``.
    kind : str
        Machine-readable category: ``"out_of_range"``, ``"not_integer"``, ``"not_numeric"``,
        ``"unknown_item"``, ``"duplicate_item"``, ``"unknown_instrument"``, ``"unknown_rules"``.
    row : Hashable | None
        Row index label of the first offending row (``score_frame`` only).
    """

    def __init__(
        self,
        message: str,
        *,
        instrument: str | None = None,
        item: str | None = None,
        value: Any = None,
        rule: str = "",
        kind: str = "",
        row: Hashable | None = None,
    ) -> None:
        super().__init__(message)
        self.instrument = instrument
        self.item = item
        self.value = value
        self.rule = rule
        self.kind = kind
        self.row = row
