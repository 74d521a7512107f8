"""Synthetic RegenHeart cohort (always labelled SYNTHETIC): plan it, then enter it through capture."""

from regenheart.synth.cohort import CohortPlan, generate_cohort
from regenheart.synth.entry import SYNTH_COORDINATOR, SYNTH_INVESTIGATOR, enter_cohort

__all__ = ["SYNTH_COORDINATOR", "SYNTH_INVESTIGATOR", "CohortPlan", "enter_cohort", "generate_cohort"]
