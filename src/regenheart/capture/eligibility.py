"""Eligibility: evaluate the protocol's inclusion and exclusion rules on screening data (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from regenheart.protocol.models import Protocol
from regenheart.protocol.rules import compile_rule


@dataclass(frozen=True)
class EligibilityOutcome:
    """``eligible`` only when every inclusion criterion is met and no exclusion criterion applies.

    ``failed``: criteria that make the subject ineligible (inclusion not met, exclusion present);
    ``not_assessed``: criteria whose data are missing (also make the subject ineligible).
    """

    eligible: bool
    failed: list[str]
    not_assessed: list[str]
    results: dict[str, bool | None] = field(default_factory=dict)


def evaluate_eligibility(protocol: Protocol, values: Mapping[str, Any]) -> EligibilityOutcome:
    """Evaluate every criterion on ``values`` (the merged screening-visit form data)."""
    failed: list[str] = []
    not_assessed: list[str] = []
    results: dict[str, bool | None] = {}
    for criterion in protocol.eligibility:
        result = compile_rule(criterion.rule).evaluate(values)
        results[criterion.id] = result
        if result is None:
            not_assessed.append(criterion.id)
        elif (criterion.kind == "inclusion") != result:
            failed.append(criterion.id)
    return EligibilityOutcome(not failed and not not_assessed, failed, not_assessed, results)
