"""Vectorized building blocks shared by the instrument scorers (numpy only, no Python loop per row)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ._spec import ItemSpec

NAN = np.nan


def lut(item: ItemSpec, values: Mapping[int, float | None]) -> np.ndarray:
    """Lookup table indexed by ``code - item.low + 1``; index 0 (unanswered) and unmapped codes -> NaN."""
    table = np.full(item.high - item.low + 2, NAN, dtype=np.float64)
    for code, v in values.items():
        if not item.low <= code <= item.high:
            raise ValueError(f"code {code} outside {item.key} range")
        table[code - item.low + 1] = NAN if v is None else float(v)
    return table


def take(idx: np.ndarray | None, table: np.ndarray, n: int) -> np.ndarray:
    """Map the coded item column through ``table``; an absent column is all NaN."""
    if idx is None:
        return np.full(n, NAN)
    return np.take(table, idx)


def mean_min(values: Sequence[np.ndarray], min_n: int, n: int) -> np.ndarray:
    """Row-wise mean of the non-NaN values; NaN where fewer than ``min_n`` values are present."""
    s = np.zeros(n)
    c = np.zeros(n)
    for v in values:
        ok = ~np.isnan(v)
        s += np.where(ok, v, 0.0)
        c += ok
    out = s / np.maximum(c, 1.0)  # no 0/0 (np.errstate is slow for one-row calls)
    out[c < max(min_n, 1)] = NAN
    return out


def count_present(values: Sequence[np.ndarray], n: int) -> np.ndarray:
    c = np.zeros(n)
    for v in values:
        c += ~np.isnan(v)
    return c
