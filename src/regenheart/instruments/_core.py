"""Registry, input validation and the public ``score`` / ``score_frame`` entry points."""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from . import _kccq12, _kccq23, _mlhfq, _sf12v1, _sf12v2
from ._errors import InstrumentInputError
from ._spec import InstrumentSpec, ItemSpec, RuleSet

__all__ = [
    "INSTRUMENTS",
    "METHODS_NOTES",
    "SCORING_VERSION",
    "get_instrument",
    "get_rules",
    "score",
    "score_frame",
    "scoring_version",
]

#: Version of this scoring library. Bump on ANY change of any algorithm, rule set or table, so that a
#: stored score stamped with :func:`scoring_version` identifies exactly how it was computed.
SCORING_VERSION = "regenheart-instruments/1.0.0"

#: Registry of the supported instruments: name -> :class:`InstrumentSpec` (items with short topic
#: labels and allowed codes, scores with range and direction, rule sets with version strings).
INSTRUMENTS: Mapping[str, InstrumentSpec] = MappingProxyType({
    spec.name: spec for spec in (_kccq12.SPEC, _kccq23.SPEC, _sf12v1.SPEC, _sf12v2.SPEC, _mlhfq.SPEC)
})

#: Methods-section text per instrument (keys: "kccq12", "kccq", "sf12v1", "sf12v2", "mlhfq"): the
#: algorithm used and, where the public record is incomplete, the gap and the rule adopted.
METHODS_NOTES: Mapping[str, str] = MappingProxyType({name: s.methods_note for name, s in INSTRUMENTS.items()})


def get_instrument(instrument: str) -> InstrumentSpec:
    """Registry entry of ``instrument``; refuses unknown names with :class:`InstrumentInputError`."""
    spec = INSTRUMENTS.get(instrument) if isinstance(instrument, str) else None
    if spec is None:
        raise InstrumentInputError(
            f"unknown instrument {instrument!r}; known: {', '.join(INSTRUMENTS)}",
            instrument=str(instrument), value=instrument, rule=f"one of {', '.join(INSTRUMENTS)}",
            kind="unknown_instrument")
    return spec


def get_rules(instrument: str, rules: str | None = None) -> RuleSet:
    """The named rule set of ``instrument`` (its default when ``rules`` is None)."""
    spec = get_instrument(instrument)
    name = spec.default_rules if rules is None else rules
    rs = spec.rule_sets.get(name) if isinstance(name, str) else None
    if rs is None:
        raise InstrumentInputError(
            f"{instrument}: unknown rule set {rules!r}; available: {', '.join(spec.rule_sets)}",
            instrument=instrument, value=rules, rule=f"one of {', '.join(spec.rule_sets)}",
            kind="unknown_rules")
    return rs


def scoring_version(instrument: str, rules: str | None = None) -> str:
    """Stamp for stored scores, e.g. ``"kccq12/cvoutcomes-2012;regenheart-instruments/1.0.0"``."""
    return f"{get_rules(instrument, rules).version};{SCORING_VERSION}"


# --------------------------------------------------------------------------------------------------
# validation helpers


def _fmt(value: Any) -> str:
    """Value for messages: integral floats from float columns print as integers (9.0 -> 9)."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (np.generic,)):
        return repr(value.item())
    return repr(value)


def _err(spec: InstrumentSpec, item: ItemSpec, value: Any, kind: str, row: Hashable | None = None,
         has_row: bool = False) -> InstrumentInputError:
    where = f" (row {row!r})" if has_row else ""
    v = _fmt(value)
    if kind == "not_numeric":
        what = f"value {v} is not a numeric code; {item.rule}"
    elif kind == "not_integer":
        what = f"value {v} is not an integer code; {item.rule}"
    else:
        what = f"value {v} is outside the {item.rule}"
    return InstrumentInputError(f"{spec.name} item {item.key}{where}: {what}", instrument=spec.name,
                                item=item.key, value=value, rule=item.rule, kind=kind, row=row)


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, (float, np.floating)) and math.isnan(v)


def _scalar_kind(item: ItemSpec, v: Any) -> tuple[str | None, float]:
    """Classify one non-missing value: (error kind or None, numeric value)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        return "not_numeric", math.nan
    x = float(v)
    if not math.isfinite(x):
        return "out_of_range", x
    if x != math.floor(x):
        return "not_integer", x
    if not item.low <= x <= item.high:
        return "out_of_range", x
    return None, x


def _unknown_item(spec: InstrumentSpec, key: Any) -> InstrumentInputError:
    return InstrumentInputError(
        f"{spec.name}: unknown item key {key!r}; known item keys: {', '.join(spec.item_keys)}",
        instrument=spec.name, item=str(key), value=key, rule=f"item keys {', '.join(spec.item_keys)}",
        kind="unknown_item")


def _to_scores(spec: InstrumentSpec, idx: Mapping[str, np.ndarray | None], n: int,
               rs: RuleSet) -> dict[str, np.ndarray]:
    full = {k: idx.get(k) for k in spec.item_keys}
    return spec.compute(full, n, rs)


# --------------------------------------------------------------------------------------------------
# public entry points


def score(instrument: str, responses: Mapping[str, int | float | None], *,
          rules: str | None = None) -> dict[str, float | None]:
    """Score one response set.

    Parameters
    ----------
    instrument : str
        ``"kccq12"``, ``"kccq"`` (23 items), ``"sf12v1"``, ``"sf12v2"`` or ``"mlhfq"``
        (see :data:`INSTRUMENTS` for items, codes and scores).
    responses : Mapping[str, int | float | None]
        Item key -> raw code as printed on the form. ``None`` / ``NaN`` = unanswered; keys absent
        from the mapping are unanswered too. Integer-valued floats (``3.0``) are accepted. A pandas
        Series (one row of a frame) is accepted as a mapping.
    rules : str, optional
        Name of the rule set (``INSTRUMENTS[instrument].rule_sets``); default: the instrument's
        ``default_rules``.

    Returns
    -------
    dict[str, float | None]
        Score name -> value (full precision, no rounding) or ``None`` when the score cannot be
        computed under the rule set's missing-data rules. Units/ranges: ``INSTRUMENTS[...].scores``.

    Raises
    ------
    InstrumentInputError
        Unknown instrument, rule set or item key; non-numeric value; non-integer value; code outside
        the item's allowed codes. The error carries ``.item``, ``.value`` and ``.rule``.

    Notes
    -----
    * ``"kccq12"`` and ``"sf12v1"`` follow the published official algorithms.
    * ``"kccq"`` (23 items): the public record lacks the minimum-answered rules and the scoring of the
      "no symptoms" / "does not apply" answers (licensed CV Outcomes document). The default rule set
      ``"kccq23-public-2024"`` ASSUMES them (special code on q1*/q15* = missing; q2 "no symptoms" =
      "not changed"; q4/q6/q8 "no symptom" = "not at all bothersome"; at least half of each domain's
      items); ``"kccq23-special-missing-2024"`` treats every special answer as missing.
    * ``"sf12v2"`` is the Spritzer/Hays PUBLIC APPROXIMATION, not the official Optum scoring.
    * ``"mlhfq"``: the official missing-data rule is not public; the default ``"mlhfq-complete"``
      needs all items of a score; ``"mlhfq-prorate-20pct"`` is a non-official alternative.
    * The exact wording for a report's methods section is in :data:`METHODS_NOTES`.
    """
    spec = get_instrument(instrument)
    rs = get_rules(instrument, rules)
    if isinstance(responses, pd.Series):
        responses = responses.to_dict()
    if not isinstance(responses, Mapping):
        raise InstrumentInputError(f"{spec.name}: responses must be a mapping item -> code, got "
                                   f"{type(responses).__name__}", instrument=spec.name, value=responses,
                                   rule="mapping of item key -> code", kind="not_numeric")
    idx: dict[str, np.ndarray | None] = {}
    for key, v in responses.items():
        if not (isinstance(key, str) and spec.has_item(key)):
            raise _unknown_item(spec, key)
        item = spec.item(key)
        if _is_missing(v):
            idx[key] = np.zeros(1, dtype=np.intp)
            continue
        kind, x = _scalar_kind(item, v)
        if kind is not None:
            raise _err(spec, item, v, kind)
        idx[key] = np.array([int(x) - item.low + 1], dtype=np.intp)
    out = _to_scores(spec, idx, 1, rs)
    return {name: (None if math.isnan(arr[0]) else float(arr[0])) for name, arr in out.items()}


def _column_idx(spec: InstrumentSpec, item: ItemSpec,
                col: pd.Series) -> tuple[np.ndarray, int | None, Any, str]:
    """Validate one item column and code it as intp ``code - low + 1`` (0 = unanswered).

    Returns (idx, position of the first bad value or None, that value, error kind).
    """
    dtype = col.dtype
    offset = item.low - 1
    if pd.api.types.is_bool_dtype(dtype):
        x_obj = col.to_numpy(dtype=object)
        notna = ~pd.isna(col).to_numpy()
        if notna.any():
            pos = int(np.argmax(notna))
            return np.zeros(len(col), np.intp), pos, x_obj[pos], "not_numeric"
        return np.zeros(len(col), np.intp), None, None, ""
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        x = col.to_numpy()
        bad = (x < item.low) | (x > item.high)
        if bad.any():
            pos = int(np.argmax(bad))
            return np.zeros(len(col), np.intp), pos, x[pos].item(), "out_of_range"
        return x.astype(np.intp, copy=False) - offset, None, None, ""  # cast first: uint8 - (-1) overflows
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        x = col.to_numpy(dtype=np.float64, na_value=np.nan)
        nan = np.isnan(x)
        ok = (x >= item.low) & (x <= item.high) & (np.floor(x) == x)
        bad = ~(ok | nan)
        if bad.any():
            pos = int(np.argmax(bad))
            kind, _ = _scalar_kind(item, float(x[pos]))
            return np.zeros(len(col), np.intp), pos, float(x[pos]), kind or "out_of_range"
        return np.where(nan, 0.0, x - offset).astype(np.intp), None, None, ""
    # Slow path (object / string / categorical / other dtypes): element-wise, Python level.
    values = col.to_numpy(dtype=object)
    idx = np.zeros(len(values), np.intp)
    for pos, v in enumerate(values):
        if _is_missing(v):
            continue
        kind, xv = _scalar_kind(item, v)
        if kind is not None:
            return idx, pos, v, kind
        idx[pos] = int(xv) - offset
    return idx, None, None, ""


def score_frame(instrument: str, frame: pd.DataFrame, *, rules: str | None = None,
                extra_columns: str = "error") -> pd.DataFrame:
    """Score many response sets at once (vectorized with numpy; no Python loop per row).

    Parameters
    ----------
    instrument : str
        Instrument name, as for :func:`score`.
    frame : pandas.DataFrame
        One response set per row; columns named by item key (raw codes as printed on the form).
        NaN / None / pandas NA = unanswered; item columns absent from the frame count as unanswered.
        Numeric dtypes (int, float, nullable Int/Float) take the fast path; object columns are
        checked element by element.
    rules : str, optional
        Rule set name (default: the instrument's default rule set).
    extra_columns : {"error", "ignore"}
        What to do with columns that are not item keys of the instrument (default ``"error"``: a
        misspelled item column would otherwise silently count as unanswered).

    Returns
    -------
    pandas.DataFrame
        Same index as ``frame``, one float64 column per score (``INSTRUMENTS[instrument].score_names``),
        NaN where a score cannot be computed. ``result.attrs["scoring_version"]`` carries the stamp of
        :func:`scoring_version`.

    Raises
    ------
    InstrumentInputError
        As :func:`score`; the error names the item, the value and the row index label (``.row``) of
        the first offending row (first in row order; ties broken by item order).
    """
    spec = get_instrument(instrument)
    rs = get_rules(instrument, rules)
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"score_frame expects a pandas DataFrame, got {type(frame).__name__}")
    if extra_columns not in ("error", "ignore"):
        raise ValueError(f"extra_columns must be 'error' or 'ignore', got {extra_columns!r}")
    cols = list(frame.columns)
    seen: set[Any] = set()
    for c in cols:
        known = isinstance(c, str) and spec.has_item(c)
        if not known and extra_columns == "error":
            raise _unknown_item(spec, c)
        if known and c in seen:
            raise InstrumentInputError(f"{spec.name}: duplicate item column {c!r}", instrument=spec.name,
                                       item=c, value=c, rule="each item column at most once",
                                       kind="duplicate_item")
        seen.add(c)
    n = len(frame)
    idx: dict[str, np.ndarray | None] = {}
    first: tuple[int, int, ItemSpec, Any, str] | None = None
    for order, item in enumerate(spec.items):
        if item.key not in seen:
            continue
        coded, pos, value, kind = _column_idx(spec, item, frame[item.key])
        if pos is not None and (first is None or pos < first[0]):
            first = (pos, order, item, value, kind)
        idx[item.key] = coded
    if first is not None:
        pos, _, item, value, kind = first
        raise _err(spec, item, value, kind, row=frame.index[pos], has_row=True)
    out = _to_scores(spec, idx, n, rs)
    result = pd.DataFrame(out, index=frame.index, columns=list(spec.score_names), dtype=np.float64)
    result.attrs["scoring_version"] = scoring_version(instrument, rs.name)
    result.attrs["instrument"] = spec.name
    result.attrs["rules"] = rs.name
    return result
