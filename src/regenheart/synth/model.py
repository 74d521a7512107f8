"""The data-generating model of the SYNTHETIC cohort, stated once: the cohort generator
(:mod:`regenheart.synth.cohort`) and the design simulation (:mod:`regenheart.stats.simulate`) both
read it. SYNTHETIC assumptions for demonstration, not RegenHeart results.

LVEF (percentage points), the primary continuous endpoint:

* baseline ~ Normal(25, 6) truncated above at the inclusion limit (35) and clipped below at 12
  (clinical.md 3.3: 24.3 +/- 6.5 Vrtovec; 23.0 +/- 4.5 DYNAMIC);
* change at M1/M3/M6 = (background + cell effect if the arm receives cells) x response + noise, where
  response ~ Normal(1, 0.6) is a per-patient latent factor (it couples the endpoints and the visits)
  and noise ~ Normal(0, 3) is the per-visit reading error; values are clipped to [8, 60].

The background improvement is what every patient with LVEF <= 35% gains without cells: optimized
standard therapy and regression to the mean (control arms of peer trials: +1.85 points at 12 months
in RIMECARD's placebo arm, +0.4 at 3 months in INTRACELL's controls; clinical.md 3.1). The single-arm
change of clinical.md 3.3 (+1, +4, +5.5 at M1, M3, M6) is split into a background part and a cell part;
their sum is what a treated patient shows, so the single-arm cohort is unchanged by the split.
"""

from __future__ import annotations

from dataclasses import dataclass

# Mean LVEF change (points) at M1, M3, M6.
LVEF_BACKGROUND_CHANGE = (0.5, 1.5, 2.0)    # every patient: optimized standard therapy + regression to the mean
LVEF_CELL_EFFECT = (0.5, 2.5, 3.5)          # added in an arm that receives cells
LVEF_BASELINE_MEAN, LVEF_BASELINE_SD = 25.0, 6.0
LVEF_INCLUSION_MAX, LVEF_BASELINE_MIN = 35.0, 12.0
LVEF_RESPONSE_MEAN, LVEF_RESPONSE_SD = 1.0, 0.6
LVEF_NOISE_SD = 3.0
LVEF_RANGE = (8.0, 60.0)

# The other endpoints' mean changes (cohort.py) are those of a treated patient; an arm without cells
# gets the background share of them, visit by visit, the same share as LVEF.
BACKGROUND_SHARE = tuple(b / (b + c) for b, c in zip(LVEF_BACKGROUND_CHANGE, LVEF_CELL_EFFECT))


@dataclass(frozen=True)
class LvefModel:
    """LVEF data-generating model (points); ``background`` and ``cell_effect`` per follow-up visit."""

    background: tuple[float, ...] = LVEF_BACKGROUND_CHANGE
    cell_effect: tuple[float, ...] = LVEF_CELL_EFFECT
    baseline_mean: float = LVEF_BASELINE_MEAN
    baseline_sd: float = LVEF_BASELINE_SD
    inclusion_max: float = LVEF_INCLUSION_MAX
    baseline_min: float = LVEF_BASELINE_MIN
    response_mean: float = LVEF_RESPONSE_MEAN
    response_sd: float = LVEF_RESPONSE_SD
    noise_sd: float = LVEF_NOISE_SD
    value_range: tuple[float, float] = LVEF_RANGE

    @property
    def treated_change(self) -> tuple[float, ...]:
        """Mean change of a patient who receives cells (background + cell effect), per visit."""
        return tuple(b + c for b, c in zip(self.background, self.cell_effect))

    def scaled(self, cell_effect: float | None = None, background: float | None = None) -> LvefModel:
        """The same model with the month-6 cell effect and/or background set to the given values
        (points); earlier visits keep their proportion of month 6."""
        def rescale(profile: tuple[float, ...], last: float | None) -> tuple[float, ...]:
            if last is None:
                return profile
            if profile[-1] == 0:
                return tuple(last for _ in profile)
            return tuple(last * v / profile[-1] for v in profile)
        return LvefModel(rescale(self.background, background), rescale(self.cell_effect, cell_effect),
                         self.baseline_mean, self.baseline_sd, self.inclusion_max, self.baseline_min,
                         self.response_mean, self.response_sd, self.noise_sd, self.value_range)


DEFAULT_LVEF_MODEL = LvefModel()
