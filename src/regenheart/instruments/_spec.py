"""Metadata types of the instrument registry (items, scores, rule sets)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = ["InstrumentSpec", "ItemSpec", "RuleSet", "ScoreSpec"]


def _frozen(mapping: Mapping[Any, Any] | None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class ItemSpec:
    """One questionnaire item.

    ``topic`` is a short paraphrased topic label for navigation and data review. It is NOT the
    item wording, which is copyrighted and must come from the licensed form.
    ``codes`` are all accepted integer codes (a contiguous range ``low..high``), including the
    special codes listed in ``special_codes`` (code -> short meaning of the special answer).
    How a special code is scored depends on the rule set (see ``RuleSet.params``).
    """

    key: str
    topic: str
    low: int
    high: int
    special_codes: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "special_codes", _frozen(self.special_codes))

    @property
    def codes(self) -> tuple[int, ...]:
        """All accepted codes, special codes included."""
        return tuple(range(self.low, self.high + 1))

    @property
    def rule(self) -> str:
        """Human-readable statement of the accepted values."""
        return f"allowed codes {self.low}..{self.high}"


@dataclass(frozen=True)
class ScoreSpec:
    """One score produced by an instrument: name, range, direction and what it is built from."""

    name: str
    label: str
    minimum: float
    maximum: float
    higher_is_better: bool
    built_from: tuple[str, ...]
    unit: str = "points"

    @property
    def direction(self) -> str:
        return "higher = better" if self.higher_is_better else "higher = worse"


@dataclass(frozen=True)
class RuleSet:
    """A named, versioned set of scoring rules of one instrument.

    ``version`` is the string to stamp on stored scores (e.g. ``"kccq12/cvoutcomes-2012"``).
    ``official`` is True only when the rules reproduce the instrument owner's published scoring.
    ``params`` holds the concrete parameters (special-code handling, minimum items ...).
    """

    name: str
    version: str
    official: bool
    description: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _frozen(self.params))


# compute(idx, n, rules) -> {score name: float64 array}; idx maps item key to an intp array of
# (code - low + 1), 0 meaning unanswered, or None when the item column is absent.
ComputeFn = Callable[[Mapping[str, "np.ndarray | None"], int, RuleSet], dict[str, np.ndarray]]


@dataclass(frozen=True)
class InstrumentSpec:
    """Registry entry of one instrument (see ``regenheart.instruments.INSTRUMENTS``)."""

    name: str
    title: str
    items: tuple[ItemSpec, ...]
    scores: tuple[ScoreSpec, ...]
    default_rules: str
    rule_sets: Mapping[str, RuleSet]
    references: tuple[str, ...]
    methods_note: str
    compute: ComputeFn = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule_sets", _frozen(self.rule_sets))
        object.__setattr__(self, "_items_by_key", _frozen({it.key: it for it in self.items}))

    @property
    def item_keys(self) -> tuple[str, ...]:
        return tuple(it.key for it in self.items)

    @property
    def score_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.scores)

    @property
    def version(self) -> str:
        """Version string of the default rule set, e.g. ``"kccq12/cvoutcomes-2012"``."""
        return self.rule_sets[self.default_rules].version

    def item(self, key: str) -> ItemSpec:
        return self._items_by_key[key]  # type: ignore[attr-defined]

    def has_item(self, key: object) -> bool:
        return key in self._items_by_key  # type: ignore[attr-defined]

    def score_spec(self, name: str) -> ScoreSpec:
        for s in self.scores:
            if s.name == name:
                return s
        raise KeyError(name)
