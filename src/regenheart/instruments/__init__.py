"""Questionnaire and clinical scoring library of the RegenHeart trial (pure functions, no I/O).

Instruments (see :data:`INSTRUMENTS` for items, allowed codes, scores, ranges, directions and rule
sets; :data:`METHODS_NOTES` for the methods-section text, including documented gaps):

* ``"kccq12"`` - KCCQ-12, official CV Outcomes scoring (Rev. 2012).
* ``"kccq"``   - KCCQ 23 items; domain map public, missing-data rules ASSUMED (named rule sets).
* ``"sf12v1"`` - SF-12 v1 PCS-12/MCS-12, Ware 1995/1996, 1990 US norms.
* ``"sf12v2"`` - SF-12 v2, Spritzer/Hays PUBLIC APPROXIMATION (not the official Optum scoring).
* ``"mlhfq"``  - MLHFQ total/physical/emotional sums; missing-data rule as named rule sets.

Entry points: :func:`score` (one response set, a mapping) and :func:`score_frame` (a DataFrame,
vectorized). Bad input raises :class:`InstrumentInputError`. Clinically important differences:
:mod:`regenheart.instruments.interpretation`. Derived clinical values (BSA, echo, 6MWT, eGFR):
:mod:`regenheart.instruments.derive`.

Copyright: only item codes, short paraphrased topic labels and scoring rules are shipped; the
questionnaire wording of the KCCQ, MLHFQ and SF-12 is copyrighted and licensed separately.
"""

from __future__ import annotations

from . import derive, interpretation
from ._core import (
    INSTRUMENTS,
    METHODS_NOTES,
    SCORING_VERSION,
    get_instrument,
    get_rules,
    score,
    score_frame,
    scoring_version,
)
from ._errors import InstrumentInputError
from ._spec import InstrumentSpec, ItemSpec, RuleSet, ScoreSpec

__all__ = [
    "INSTRUMENTS",
    "METHODS_NOTES",
    "SCORING_VERSION",
    "InstrumentInputError",
    "InstrumentSpec",
    "ItemSpec",
    "RuleSet",
    "ScoreSpec",
    "derive",
    "get_instrument",
    "get_rules",
    "interpretation",
    "score",
    "score_frame",
    "scoring_version",
]
