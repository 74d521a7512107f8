"""One neutral model of a study's ClinicalTrials.gov results section, built once.

:func:`build_results` turns the protocol (groups, registered outcomes, registry texts), the SAP
results dictionary (``results.json``: flow, primary endpoint, analyses) and the analysis datasets
(facts per subject: arm, age, sex, site, disposition, baseline and follow-up values, adverse
events) into a :class:`ResultsRecord`. The PRS upload XML (:mod:`.prs_xml`), the API-v2-shaped JSON
(:mod:`.api_json`) and the HTML preview (:mod:`.preview`) all write this one model, so they agree.

Nothing here is specific to one trial: groups are the active protocol version's arms, outcome
measures are the protocol's registered outcomes, baseline measures its secondary endpoints.
Enumerations use the API v2 spelling (``MEAN``, ``STANDARD_DEVIATION``, ``COUNT_OF_PARTICIPANTS``);
the XML writer translates them to the PRS pick-list values.

The SAP results are read through the small accessors at the top (``_flow``, ``_primary``, ...):
when a key of results.json moves, one line changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from regenheart.derive.adam import AnalysisDatasets
from regenheart.protocol.models import Protocol
from regenheart.protocol.registry import RegisteredOutcome, Registry
from regenheart.stats import descriptive as ds

SYNTHETIC_MARK = "[SYNTHETIC DATA - DRAFT, NOT FOR POSTING]"
DRAFT_MARK = "[DRAFT]"
# PRS age categories (baseline measure "Age, Categorical", NLM categories).
AGE_CATEGORIES = ("<=18 years", "Between 18 and 65 years", ">=65 years")


class CtgovError(ValueError):
    """The protocol or the results cannot make a results record (a clear message, never a traceback)."""


# ------------------------------------------------------------------ accessors of the SAP results
def _flow(results: dict[str, Any]) -> dict[str, Any]:
    return results["flow"]


def _primary(results: dict[str, Any]) -> dict[str, Any]:
    return results["primary"]


def _efficacy_block(results: dict[str, Any], paramcd: str) -> dict[str, Any] | None:
    return next((b for b in results.get("efficacy", []) if b.get("paramcd") == paramcd), None)


def _ordinal_visit(results: dict[str, Any], paramcd: str, visit: str) -> dict[str, Any] | None:
    """Shift table and improvement test of an ordinal endpoint at a visit."""
    return results.get("shift_tables", {}).get(paramcd, {}).get(visit)


def _population(results: dict[str, Any], flag: str, fallback: str) -> str:
    """The SAP plan's label and definition of the population flagged ``flag`` in ADSL."""
    for population in results.get("plan", {}).get("populations", []):
        if population.get("flag") == flag:
            return f"{population['label']}: {population.get('definition', '')}".strip()
    return fallback


def _mmrm(results: dict[str, Any], paramcd: str) -> dict[str, Any] | None:
    return results.get("mmrm", {}).get("results", {}).get(paramcd)


def _risk_difference(results: dict[str, Any]) -> dict[str, Any] | None:
    """Between-arm risk difference of the primary endpoint (first arm against the reference), if any."""
    differences = results.get("between_arms", {}).get("primary", {}).get("risk_differences", [])
    return next((d for d in differences if d.get("estimate") is not None), None)


def _ordinal_between_arms(results: dict[str, Any], paramcd: str, visit: str) -> dict[str, Any] | None:
    """Between-arm test (Mann-Whitney) of an ordinal endpoint's change at a visit, if any."""
    tests = results.get("between_arms", {}).get("ordinal", {}).get(paramcd, {}).get(visit, {}).get("tests", [])
    return next((t for t in tests if t.get("p_value") is not None), None)


def _is_synthetic(results: dict[str, Any]) -> bool:
    return bool(results.get("synthetic"))


# ------------------------------------------------------------------ the model
@dataclass(frozen=True)
class Group:
    """A reporting group: one arm of the active protocol version."""

    key: str          # the arm code
    title: str
    description: str


@dataclass
class Value:
    value: str | None = None
    spread: str | None = None
    lower: str | None = None
    upper: str | None = None
    na_comment: str | None = None


@dataclass
class Category:
    title: str | None
    values: dict[str, Value]                   # group key -> value


@dataclass
class MeasureClass:
    """A row block of a measure (e.g. one visit); ``analyzed`` overrides the measure's numbers analysed."""

    title: str | None
    categories: list[Category]
    analyzed: dict[str, int] | None = None


@dataclass
class Analysis:
    group_keys: list[str]
    param_type: str                           # PRS estimate parameter, e.g. "Mean Difference (Net)"
    param_value: str | None = None
    ci_pct: str | None = None
    ci_sides: str | None = None               # TWO_SIDED / ONE_SIDED
    ci_lower: str | None = None
    ci_upper: str | None = None
    p_value: str | None = None
    method: str | None = None                 # PRS statistical method, e.g. "t-test, 2 sided"
    test_type: str = "OTHER"                  # SUPERIORITY / NON_INFERIORITY / EQUIVALENCE / OTHER
    group_description: str | None = None
    method_comment: str | None = None
    estimate_comment: str | None = None
    other_param_name: str | None = None


@dataclass
class Measure:
    """A baseline or outcome measure."""

    title: str
    param_type: str                            # MEAN, MEDIAN, COUNT_OF_PARTICIPANTS, NUMBER, ...
    dispersion: str                            # NA, STANDARD_DEVIATION, CONFIDENCE_95, ...
    unit: str
    classes: list[MeasureClass]
    analyzed: dict[str, int]                   # group key -> number analysed
    description: str | None = None
    population: str | None = None
    baseline_kind: str | None = None           # AGE_CONTINUOUS, AGE_CATEGORICAL, SEX, RACE_NOT_COLLECTED, REGION, OTHER
    outcome_type: str | None = None            # PRIMARY, SECONDARY, OTHER_PRE_SPECIFIED, POST_HOC
    time_frame: str | None = None
    analyses: list[Analysis] = field(default_factory=list)
    source: str | None = None                  # primary / PARAMCD: where the numbers come from


@dataclass
class Milestone:
    kind: str                                  # STARTED, COMPLETED, NOT_COMPLETED, OTHER
    title: str
    counts: dict[str, int]
    comment: str | None = None


@dataclass
class DropReason:
    reason_type: str                           # PRS reason, e.g. "Death"; "Other" with other_name
    counts: dict[str, int]
    other_name: str | None = None


@dataclass
class Period:
    title: str
    milestones: list[Milestone]
    drop_reasons: list[DropReason]

    def milestone(self, kind: str) -> Milestone | None:
        return next((m for m in self.milestones if m.kind == kind), None)


@dataclass
class ParticipantFlow:
    recruitment_details: str
    pre_assignment_details: str
    periods: list[Period]


@dataclass
class EventStats:
    events: int
    affected: int
    at_risk: int


@dataclass
class AdverseEvent:
    term: str
    organ_system: str | None
    stats: dict[str, EventStats]               # group key -> stats


@dataclass
class GroupEvents:
    deaths: int
    deaths_at_risk: int
    serious_affected: int
    serious_at_risk: int
    other_affected: int
    other_at_risk: int


@dataclass
class AdverseEvents:
    time_frame: str
    description: str | None
    assessment_type: str
    source_vocabulary: str
    threshold_pct: float
    groups: dict[str, GroupEvents]
    serious: list[AdverseEvent]
    other: list[AdverseEvent]
    mortality_comment: str | None = None


@dataclass
class PointOfContact:
    name: str
    organization: str | None
    email: str | None
    phone: str | None
    phone_ext: str | None = None


@dataclass
class ResultsRecord:
    """Everything the results section says; every text already carries the synthetic/draft mark."""

    nct_id: str | None
    org_study_id: str | None
    brief_title: str
    synthetic: bool
    draft: bool
    groups: list[Group]
    flow: ParticipantFlow
    baseline_population: str | None
    baseline_participants: dict[str, int]
    baseline: list[Measure]
    outcomes: list[Measure]
    adverse_events: AdverseEvents
    limitations: str | None
    pi_sponsor_employee: bool | None
    restrictive_agreement: bool | None
    restriction_type: str | None
    agreement_details: str | None
    point_of_contact: PointOfContact | None
    notes: list[str] = field(default_factory=list)

    @property
    def group_keys(self) -> list[str]:
        return [g.key for g in self.groups]

    @property
    def mark(self) -> str | None:
        """The text every displayed free-text field starts with (None for a final, real record)."""
        if self.synthetic:
            return SYNTHETIC_MARK
        return DRAFT_MARK if self.draft else None


# ------------------------------------------------------------------ formatting
def _num(value: Any, digits: int = 2) -> str | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return f"{value:.{digits}f}"


def p_value_text(p: Any) -> str | None:
    """A p-value as PRS takes it: 3 decimals, or '<0.001' below that."""
    if p is None or not math.isfinite(float(p)):
        return None
    return "<0.001" if float(p) < 0.001 else f"{float(p):.3f}"


def _marked(mark: str | None, text: str | None) -> str | None:
    if text is None:
        return None
    text = " ".join(str(text).split()) if "\n\n" not in str(text) else str(text).strip()
    return f"{mark} {text}" if mark else text


# ------------------------------------------------------------------ subjects per group
@dataclass(frozen=True)
class _Subjects:
    """Subject-level facts of the analysis datasets, restricted and grouped by arm."""

    adsl: pd.DataFrame
    groups: list[Group]

    def of(self, flag: str | None = None) -> dict[str, pd.DataFrame]:
        rows = self.adsl if flag is None else self.adsl[self.adsl[flag] == "Y"]
        return {g.key: rows[rows["ARMCD"] == g.key] for g in self.groups}

    def count(self, flag: str) -> dict[str, int]:
        return {k: len(v) for k, v in self.of(flag).items()}


def _groups(protocol: Protocol) -> list[Group]:
    return [Group(a.code, a.label, " ".join(a.description.split())) for a in protocol.active_version.arms]


# ------------------------------------------------------------------ participant flow
def _reason_of(protocol: Protocol, code: Any) -> tuple[str, str | None]:
    items = protocol.codelists.get("disposition", [])
    for item in items:
        if item.code == code:
            return (item.registry_reason, None) if item.registry_reason else ("Other", item.decode)
    return "Other", str(code)


def _participant_flow(protocol: Protocol, registry: Registry, results: dict[str, Any], subjects: _Subjects,
                      mark: str | None) -> ParticipantFlow:
    flow = _flow(results)
    enrolled = subjects.of("ENRLFL")
    started = {k: len(v) for k, v in enrolled.items()}
    treated = {k: int((v["SAFFL"] == "Y").sum()) for k, v in enrolled.items()}
    completed = {k: int((v["EOSSTT"] == "COMPLETED").sum()) for k, v in enrolled.items()}
    milestones = [Milestone("STARTED", "STARTED", started)]
    if treated != started:
        milestones.append(Milestone("OTHER", "Received study intervention (day 0)", treated))
    milestones += [Milestone("COMPLETED", "COMPLETED", completed),
                   Milestone("NOT_COMPLETED", "NOT COMPLETED", {k: started[k] - completed[k] for k in started})]
    reasons: dict[tuple[str, str | None], dict[str, int]] = {}
    for key, rows in enrolled.items():
        for _, row in rows[rows["EOSSTT"] != "COMPLETED"].iterrows():
            code = row["DCSREAS"]
            reason = _reason_of(protocol, code) if isinstance(code, str) and code else ("Other", "No end-of-study record yet")
            reasons.setdefault(reason, {g.key: 0 for g in subjects.groups})[key] += 1
    drops = [DropReason(r, counts, other) for (r, other), counts in sorted(reasons.items(), key=lambda x: x[0][0])]
    sites = protocol.study.sites
    places = sorted({", ".join(p for p in (s.city, s.country_name) if p) for s in sites} - {""})
    screened = subjects.adsl.get("SCRNDT")
    dates = [d for d in (screened.dropna() if screened is not None else []) if hasattr(d, "isoformat")]
    period = f" between {min(dates).isoformat()} and {max(dates).isoformat()}" if dates else ""
    recruitment = " ".join(filter(None, [
        registry.results.recruitment_details if registry.results else None,
        f"{flow['screened']} participants were screened at {len(sites)} site(s)"
        + (f" ({'; '.join(places)})" if places else "") + f"{period}."]))
    reasons_text = "; ".join(f"{text} (n={n})" for text, n in flow.get("excluded_reasons", {}).items())
    pre = (f"{flow['screened']} screened, {flow['screen_failed']} screen failures"
           + (f" (criteria not met: {reasons_text})" if reasons_text else "")
           + f", {flow.get('eligible_not_enrolled', 0)} eligible but not enrolled; {flow['enrolled']} enrolled.")
    return ParticipantFlow(_marked(mark, recruitment) or "", _marked(mark, pre) or "",
                           [Period("Overall Study", milestones, drops)])


# ------------------------------------------------------------------ baseline
def _continuous(values: pd.Series) -> ds.Summary:
    return ds.summarize(pd.to_numeric(values, errors="coerce").dropna().astype(float))


def _mean_sd_class(per_group: dict[str, pd.Series], total_key: str | None = None) -> tuple[list[MeasureClass],
                                                                                         dict[str, int]]:
    values, analyzed = {}, {}
    for key, series in per_group.items():
        s = _continuous(series)
        analyzed[key] = int(s.n)
        values[key] = Value(_num(s.mean), _num(s.sd)) if s.n else Value(na_comment="No participants analysed")
    return [MeasureClass(None, [Category(None, values)])], analyzed


def _median_iqr_class(per_group: dict[str, pd.Series]) -> tuple[list[MeasureClass], dict[str, int]]:
    values, analyzed = {}, {}
    for key, series in per_group.items():
        s = _continuous(series)
        analyzed[key] = int(s.n)
        values[key] = (Value(_num(s.median), lower=_num(s.q1), upper=_num(s.q3)) if s.n
                       else Value(na_comment="No participants analysed"))
    return [MeasureClass(None, [Category(None, values)])], analyzed


def _count_class(per_group: dict[str, pd.Series], levels: list[tuple[Any, str]]) -> tuple[list[MeasureClass],
                                                                                        dict[str, int]]:
    analyzed = {k: int(s.notna().sum()) for k, s in per_group.items()}
    categories = [Category(title, {k: Value(str(int((s == code).sum()))) for k, s in per_group.items()})
                  for code, title in levels]
    return [MeasureClass(None, categories)], analyzed


def _age_category(age: float) -> str:
    if age <= 18:
        return AGE_CATEGORIES[0]
    return AGE_CATEGORIES[2] if age >= 65 else AGE_CATEGORIES[1]


def _collects(protocol: Protocol, *names: str) -> bool:
    return any(f.name in names for form in protocol.forms.values() for f in form.fields)


def _parameter_levels(protocol: Protocol, paramcd: str) -> list[tuple[Any, str]]:
    p = protocol.parameter(paramcd)
    fdef = protocol.forms[p.form].field(p.item)
    if fdef.codelist:
        return [(float(c.code) if isinstance(c.code, int) else c.code, c.decode)
                for c in protocol.codelists[fdef.codelist]]
    return [(float(c) if isinstance(c, int) else c, str(c)) for c in (fdef.codes or [])]


TOTAL = "TOTAL"  # the key of the all-groups column of baseline measures (several groups only)


def _with_total(per_group: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    if len(per_group) < 2:
        return per_group
    return {**per_group, TOTAL: pd.concat(list(per_group.values()))}


def _baseline(protocol: Protocol, data: AnalysisDatasets, subjects: _Subjects, mark: str | None) -> list[Measure]:
    safety = _with_total(subjects.of("SAFFL"))
    measures: list[Measure] = []

    def add(title: str, kind: str, param: str, dispersion: str, unit: str,
            built: tuple[list[MeasureClass], dict[str, int]], description: str | None = None,
            population: str | None = None) -> None:
        classes, analyzed = built
        measures.append(Measure(title, param, dispersion, unit, classes, analyzed,
                                description=_marked(mark, description), population=_marked(mark, population),
                                baseline_kind=kind))

    add("Age, Continuous", "AGE_CONTINUOUS", "MEAN", "STANDARD_DEVIATION", "years",
        _mean_sd_class({k: v["AGE"] for k, v in safety.items()}))
    ages = {k: pd.to_numeric(v["AGE"], errors="coerce").dropna().map(_age_category) for k, v in safety.items()}
    add("Age, Categorical", "AGE_CATEGORICAL", "COUNT_OF_PARTICIPANTS", "NA", "Participants",
        _count_class(ages, [(c, c) for c in AGE_CATEGORIES]))
    sex_items = protocol.codelists.get("sex", [])
    order = sorted(((c.code, c.decode) for c in sex_items), key=lambda x: x[1])  # Female before Male, as PRS lists
    add("Sex: Female, Male", "SEX", "COUNT_OF_PARTICIPANTS", "NA", "Participants",
        _count_class({k: v["SEX"] for k, v in safety.items()}, order))
    if not _collects(protocol, "race", "ethnicity"):
        classes = [MeasureClass(None, [Category(None, {k: Value(na_comment="Not collected") for k in safety})])]
        add("Race and Ethnicity Not Collected", "RACE_NOT_COLLECTED", "COUNT_OF_PARTICIPANTS", "NA", "Participants",
            (classes, {k: 0 for k in safety}),
            population="Race and ethnicity were not collected: the case report forms have no race or ethnicity field.")
    country = {s.code: s.country_name for s in protocol.study.sites if s.country_name}
    if country:
        names = sorted(set(country.values()))
        classes = [MeasureClass(name, [Category(None, {k: Value(str(int(v["SITEID"].map(country).eq(name).sum())))
                                                    for k, v in safety.items()})]) for name in names]
        add("Region of Enrollment", "REGION", "COUNT_OF_PARTICIPANTS", "NA", "Participants",
            (classes, {k: len(v) for k, v in safety.items()}))
    if protocol.endpoints is not None:
        base = data.adeff[data.adeff["ABLFL"] == "Y"]
        for p in protocol.endpoints.secondary.parameters:
            rows = base[base["PARAMCD"] == p.paramcd]
            per_group = {k: rows[rows["SUBJID"].isin(v["SUBJID"])]["AVAL"] for k, v in safety.items()}
            title = f"{p.label} at baseline"
            if p.ordinal:
                add(title, "OTHER", "COUNT_OF_PARTICIPANTS", "NA", "Participants",
                    _count_class(per_group, _parameter_levels(protocol, p.paramcd)))
            elif p.log_scale:  # skewed: median and inter-quartile range (SAS definition 5 quartiles)
                add(title, "OTHER", "MEDIAN", "INTER_QUARTILE_RANGE", p.unit, _median_iqr_class(per_group))
            else:
                add(title, "OTHER", "MEAN", "STANDARD_DEVIATION", p.unit, _mean_sd_class(per_group))
    return measures


# ------------------------------------------------------------------ outcome measures
def _visits(protocol: Protocol, outcome: RegisteredOutcome) -> list[str]:
    if outcome.visits:
        return outcome.visits
    assert protocol.endpoints is not None
    for group in (protocol.endpoints.secondary, protocol.endpoints.exploratory):
        if any(p.paramcd == outcome.source for p in group.parameters):
            return group.visits
    raise CtgovError(f"registry.outcomes: '{outcome.source}' is neither 'primary' nor an endpoint parameter code")


def _primary_outcome(protocol: Protocol, results: dict[str, Any], data: AnalysisDatasets, subjects: _Subjects,
                     outcome: RegisteredOutcome, groups: list[Group], mark: str | None) -> Measure:
    primary = _primary(results)
    safety = subjects.of("SAFFL")
    events = set(data.adpse["SUBJID"]) if len(data.adpse) else set()
    counts = {k: int(v["SUBJID"].isin(events).sum()) for k, v in safety.items()}
    analyzed = {k: len(v) for k, v in safety.items()}
    measure = Measure(
        _marked(mark, outcome.title) or "", "COUNT_OF_PARTICIPANTS", "NA", "Participants",
        [MeasureClass(None, [Category(None, {k: Value(str(n)) for k, n in counts.items()})])], analyzed,
        description=_marked(mark, outcome.description or primary.get("definition")),
        population=_marked(mark, _population(results, "SAFFL", "Safety population: all participants who received "
                                                               "the study intervention.")),
        outcome_type=outcome.type, time_frame=_marked(mark, outcome.time_frame), source="primary")
    conf = float(primary.get("conf", 0.95))
    for g in groups:
        summary = ds.binomial_summary(counts[g.key], analyzed[g.key], conf=conf) if analyzed[g.key] else None
        if summary is None:
            continue
        measure.analyses.append(Analysis(
            [g.key], "Other", _num(summary.percent, 1), _num(100 * conf, 0), "TWO_SIDED",
            _num(100 * summary.lower, 1), _num(100 * summary.upper, 1), method=None,
            other_param_name="Percentage of participants with an event",
            group_description=_marked(mark, f"{g.title}: proportion of participants with at least one event."),
            estimate_comment=_marked(mark, f"{summary.method} {100 * conf:.0f}% confidence interval.")))
    rd = _risk_difference(results)
    if rd and len(groups) == 2 and rd.get("newcombe_lower") is not None:
        pair = [rd["arm"], rd["reference"]] if {rd.get("arm"), rd.get("reference")} == {g.key for g in groups} \
            else [g.key for g in groups]
        measure.analyses.append(Analysis(
            pair, "Risk Difference (RD)", _num(100 * rd["estimate"], 1), _num(100 * float(rd.get("conf", 0.95)), 0),
            "TWO_SIDED", _num(100 * rd["newcombe_lower"], 1), _num(100 * rd["newcombe_upper"], 1),
            group_description=_marked(mark, f"Risk difference {rd.get('contrast', '')} in percentage points."),
            estimate_comment=_marked(mark, "Newcombe hybrid score interval (Wilson, method 10; Newcombe 1998).")))
    return measure


def _continuous_outcome(protocol: Protocol, results: dict[str, Any], data: AnalysisDatasets,
                        subjects: _Subjects, outcome: RegisteredOutcome, groups: list[Group],
                        mark: str | None) -> Measure:
    p = protocol.parameter(outcome.source)
    efficacy = subjects.of("EFFFL")
    adeff = data.adeff[(data.adeff["PARAMCD"] == p.paramcd) & (data.adeff["ANL01FL"] == "Y")
                       & data.adeff["BASE"].notna() & data.adeff["AVAL"].notna()]
    classes, analyses = [], []
    mmrm = _mmrm(results, p.paramcd)
    for visit in _visits(protocol, outcome):
        label = protocol.visit(visit).label
        rows = adeff[adeff["AVISIT"] == label]
        values, analyzed = {}, {}
        for g in groups:
            mine = rows[rows["SUBJID"].isin(efficacy[g.key]["SUBJID"])]
            change = ds.paired_change(mine["BASE"].to_numpy(float), mine["AVAL"].to_numpy(float))
            analyzed[g.key] = int(change.n)
            values[g.key] = (Value(_num(change.mean_change), lower=_num(change.lower), upper=_num(change.upper))
                             if change.n >= 2 else Value(_num(change.mean_change) if change.n else None,
                                                         na_comment="Confidence interval not estimable: fewer than "
                                                                    "2 participants analysed"))
            if len(groups) == 1 and change.n >= 2:
                analyses.append(Analysis(
                    [g.key], "Mean Difference (Net)", _num(change.mean_change), "95", "TWO_SIDED",
                    _num(change.lower), _num(change.upper), p_value_text(change.p_value_t), "t-test, 2 sided",
                    group_description=_marked(mark, f"{label}: change from baseline within {g.title} "
                                                     "(single group; null hypothesis: mean change = 0)."),
                    method_comment=_marked(mark, "Paired t-test of the change from baseline (observed cases).")))
        classes.append(MeasureClass(label, [Category(None, values)], analyzed))
        if mmrm and "lsmeans" in mmrm and len(groups) == 1:
            lsm = next((e for e in mmrm["lsmeans"] if e.get("visit") == label), None)
            if lsm:
                analyses.append(Analysis(
                    [groups[0].key], "Mean Difference (Net)" if not p.log_scale else "Other",
                    _num(lsm["estimate"] if not p.log_scale else lsm.get("ratio")), "95", "TWO_SIDED",
                    _num(lsm["lower"] if not p.log_scale else lsm.get("ratio_lower")),
                    _num(lsm["upper"] if not p.log_scale else lsm.get("ratio_upper")),
                    p_value_text(lsm.get("p_value")), "Mixed Models Analysis",
                    other_param_name="Ratio to baseline (geometric LS mean)" if p.log_scale else None,
                    group_description=_marked(mark, f"{label}: LS mean change from baseline (MMRM)."),
                    method_comment=_marked(mark, f"MMRM {results['mmrm'].get('model', '')}, "
                                                 f"{results['mmrm'].get('method', 'REML')}, "
                                                 f"{results['mmrm'].get('df', '')} df.")))
        if mmrm and "differences" in mmrm and len(groups) == 2:
            diff = next((e for e in mmrm["differences"] if e.get("visit") == label), None)
            if diff:
                analyses.append(Analysis(
                    [g.key for g in groups], "Mean Difference (Net)" if not p.log_scale else "Other",
                    _num(diff["estimate"] if not p.log_scale else diff.get("ratio")), "95", "TWO_SIDED",
                    _num(diff["lower"] if not p.log_scale else diff.get("ratio_lower")),
                    _num(diff["upper"] if not p.log_scale else diff.get("ratio_upper")),
                    p_value_text(diff.get("p_value")), "Mixed Models Analysis",
                    test_type="SUPERIORITY",
                    other_param_name="Ratio of geometric LS means" if p.log_scale else None,
                    group_description=_marked(mark, f"{label}: {diff.get('contrast', 'between arms')}."),
                    method_comment=_marked(mark, f"MMRM {results['mmrm'].get('model', '')}.")))
    return Measure(
        _marked(mark, outcome.title) or "", "MEAN", "CONFIDENCE_95", p.unit, classes,
        {g.key: max((c.analyzed or {}).get(g.key, 0) for c in classes) for g in groups},
        description=_marked(mark, outcome.description), population=_marked(
            mark, _population(results, "EFFFL", "Efficacy population.")
            + " Observed cases: participants with a value at baseline and at the visit."),
        outcome_type=outcome.type, time_frame=_marked(mark, outcome.time_frame), analyses=analyses, source=p.paramcd)


def _ordinal_outcome(protocol: Protocol, results: dict[str, Any], data: AnalysisDatasets, subjects: _Subjects,
                     outcome: RegisteredOutcome, groups: list[Group], mark: str | None) -> Measure:
    p = protocol.parameter(outcome.source)
    efficacy = subjects.of("EFFFL")
    adeff = data.adeff[(data.adeff["PARAMCD"] == p.paramcd) & (data.adeff["ANL01FL"] == "Y")
                       & data.adeff["BASE"].notna() & data.adeff["AVAL"].notna()]
    lower_is_better = p.direction == "lower_better"
    classes, analyses = [], []
    for visit in _visits(protocol, outcome):
        label = protocol.visit(visit).label
        rows = adeff[adeff["AVISIT"] == label]
        cats = {"Improved": {}, "Unchanged": {}, "Worsened": {}}
        analyzed = {}
        for g in groups:
            mine = rows[rows["SUBJID"].isin(efficacy[g.key]["SUBJID"])]
            change = ds.ordinal_change(mine["BASE"], mine["AVAL"], lower_is_better=lower_is_better)
            analyzed[g.key] = int(change.n)
            cats["Improved"][g.key] = Value(str(change.n_improved))
            cats["Unchanged"][g.key] = Value(str(change.n_unchanged))
            cats["Worsened"][g.key] = Value(str(change.n_worsened))
        classes.append(MeasureClass(label, [Category(t, v) for t, v in cats.items()], analyzed))
        sap = _ordinal_visit(results, p.paramcd, visit) if len(groups) == 1 else None
        if sap and sap.get("change", {}).get("sign_test_p") is not None:
            analyses.append(Analysis(
                [groups[0].key], "Other", _num(sap["change"].get("percent_improved"), 1), "95", "TWO_SIDED",
                _num(100 * sap["change"]["improved_lower"], 1) if sap["change"].get("improved_lower") is not None else None,
                _num(100 * sap["change"]["improved_upper"], 1) if sap["change"].get("improved_upper") is not None else None,
                p_value_text(sap["change"]["sign_test_p"]), "Sign test",
                other_param_name="Percentage of participants improved",
                group_description=_marked(mark, f"{label}: improvement by at least one class within {groups[0].title}."),
                method_comment=_marked(mark, "Sign test of improved vs worsened; exact (Clopper-Pearson) CI.")))
        test = _ordinal_between_arms(results, p.paramcd, visit) if len(groups) == 2 else None
        if test is not None:
            analyses.append(Analysis(
                [test["arm"], test["reference"]], "Other", None, p_value=p_value_text(test["p_value"]),
                method="Wilcoxon (Mann-Whitney)", test_type="SUPERIORITY",
                other_param_name="Change from baseline in class (between-arm comparison)",
                group_description=_marked(mark, f"{label}: {test.get('contrast', 'between arms')}."),
                method_comment=_marked(mark, f"Mann-Whitney test of the change from baseline ({test.get('method', '')}).")))
    return Measure(
        _marked(mark, outcome.title) or "", "COUNT_OF_PARTICIPANTS", "NA", "Participants", classes,
        {g.key: max((c.analyzed or {}).get(g.key, 0) for c in classes) for g in groups},
        description=_marked(mark, outcome.description), population=_marked(
            mark, _population(results, "EFFFL", "Efficacy population.")
            + " Observed cases: participants with a class at baseline and at the visit."),
        outcome_type=outcome.type, time_frame=_marked(mark, outcome.time_frame), analyses=analyses, source=p.paramcd)


def _outcomes(protocol: Protocol, registry: Registry, results: dict[str, Any], data: AnalysisDatasets,
              subjects: _Subjects, groups: list[Group], mark: str | None) -> list[Measure]:
    out = []
    for i, outcome in enumerate(registry.outcomes):
        where = f"registry.outcomes[{i}]"
        if outcome.source == "primary":
            if protocol.endpoints is None:
                raise CtgovError(f"{where}: source 'primary' but the protocol has no endpoints section")
            out.append(_primary_outcome(protocol, results, data, subjects, outcome, groups, mark))
            continue
        try:
            p = protocol.parameter(outcome.source)
        except (KeyError, AttributeError):
            raise CtgovError(f"{where}.source: '{outcome.source}' is neither 'primary' nor an endpoint parameter "
                             "code (PARAMCD) of the protocol") from None
        build = _ordinal_outcome if p.ordinal else _continuous_outcome
        out.append(build(protocol, results, data, subjects, outcome, groups, mark))
    return out


# ------------------------------------------------------------------ adverse events
def _adverse_events(protocol: Protocol, registry: Registry, data: AnalysisDatasets, subjects: _Subjects,
                    mark: str | None) -> AdverseEvents:
    facts = registry.results
    assert facts is not None
    safety = subjects.of("SAFFL")
    at_risk = {k: len(v) for k, v in safety.items()}
    ae = data.adae[data.adae["TRTEMFL"] == "Y"] if len(data.adae) else data.adae
    soc = {item.code: item.soc for item in protocol.codelists.get("ae_category", [])}
    decode = {item.code: item.decode for item in protocol.codelists.get("ae_category", [])}

    def table(rows: pd.DataFrame) -> list[AdverseEvent]:
        events = []
        for code in [c for c in decode if c in set(rows["AECAT"])] if len(rows) else []:
            mine = rows[rows["AECAT"] == code]
            stats = {}
            for key, subj in safety.items():
                g = mine[mine["SUBJID"].isin(subj["SUBJID"])]
                stats[key] = EventStats(len(g), int(g["SUBJID"].nunique()), at_risk[key])
            events.append(AdverseEvent(decode[code], soc.get(code), stats))
        return events

    serious_rows = ae[ae["AESER"] == "Y"] if len(ae) else ae
    other_rows = ae[ae["AESER"] != "Y"] if len(ae) else ae
    threshold = float(facts.other_events_threshold_pct)
    other = [e for e in table(other_rows)
             if any(s.at_risk and 100.0 * s.affected / s.at_risk >= threshold for s in e.stats.values())]
    other_terms = {e.term for e in other}
    groups = {}
    for key, subj in safety.items():
        mine = ae[ae["SUBJID"].isin(subj["SUBJID"])] if len(ae) else ae
        deaths = int((subj["DTHFL"] == "Y").sum())
        serious = int(mine.loc[mine["AESER"] == "Y", "SUBJID"].nunique()) if len(mine) else 0
        frequent = mine[(mine["AESER"] != "Y") & mine["AECAT"].map(decode).isin(other_terms)] if len(mine) else mine
        groups[key] = GroupEvents(deaths, at_risk[key], serious, at_risk[key],
                                  int(frequent["SUBJID"].nunique()) if len(frequent) else 0, at_risk[key])
    return AdverseEvents(
        time_frame=_marked(mark, facts.ae_time_frame) or "", description=_marked(mark, facts.ae_description),
        assessment_type=facts.ae_assessment, source_vocabulary=facts.ae_source_vocabulary, threshold_pct=threshold,
        groups=groups, serious=table(serious_rows), other=other,
        mortality_comment=_marked(mark, "All-cause mortality from the end-of-study (disposition) record."))


# ------------------------------------------------------------------ all
def build_results(protocol: Protocol, results: dict[str, Any], data: AnalysisDatasets, *,
                  synthetic: bool | None = None, draft: bool = False) -> ResultsRecord:
    """The results record of a study from its protocol, SAP results and analysis datasets.

    ``synthetic`` defaults to the results' own flag or any subject flagged synthetic in ADSL; a
    synthetic record is always a draft and every displayed text says so.
    Raises :class:`CtgovError` when the protocol lacks what the record needs (a registry section
    with results facts, endpoints).
    """
    registry = protocol.registry
    if registry is None:
        raise CtgovError("the protocol has no 'registry' section: the registration facts (status, outcomes "
                         "as registered, results point of contact) are needed for the results record")
    if registry.results is None:
        raise CtgovError("the protocol's registry section has no 'results' part (adverse-event time frame, "
                         "source vocabulary, point of contact)")
    adsl_synthetic = "SYNTHFL" in data.adsl.columns and bool((data.adsl["SYNTHFL"] == "Y").any())
    synthetic = bool(synthetic) or _is_synthetic(results) or adsl_synthetic
    draft = draft or synthetic
    mark = SYNTHETIC_MARK if synthetic else (DRAFT_MARK if draft else None)
    groups = _groups(protocol)
    unknown = sorted(set(data.adsl.loc[data.adsl["ENRLFL"] == "Y", "ARMCD"].dropna()) - {g.key for g in groups})
    if unknown:
        raise CtgovError(f"enrolled subjects are in arm(s) {unknown} that the active protocol version "
                         f"{protocol.active_protocol_version} does not define")
    subjects = _Subjects(data.adsl, groups)
    facts = registry.results
    poc = facts.point_of_contact
    marked_groups = [Group(g.key, _marked(mark, g.title) or g.title, _marked(mark, g.description) or "")
                     for g in groups]
    record = ResultsRecord(
        nct_id=protocol.study.nct_id, org_study_id=protocol.study.org_study_id,
        brief_title=" ".join(protocol.study.brief_title.split()), synthetic=synthetic, draft=draft,
        groups=marked_groups,
        flow=_participant_flow(protocol, registry, results, subjects, mark),
        baseline_population=_marked(mark, facts.baseline_population),
        baseline_participants={k: len(v) for k, v in _with_total(subjects.of("SAFFL")).items()},
        baseline=_baseline(protocol, data, subjects, mark),
        outcomes=_outcomes(protocol, registry, results, data, subjects, groups, mark),
        adverse_events=_adverse_events(protocol, registry, data, subjects, mark),
        limitations=_marked(mark, facts.limitations_and_caveats),
        pi_sponsor_employee=facts.pi_sponsor_employee, restrictive_agreement=facts.restrictive_agreement,
        restriction_type=facts.restriction_type, agreement_details=_marked(mark, facts.agreement_details),
        point_of_contact=None if poc is None else PointOfContact(poc.name, poc.organization, poc.email, poc.phone,
                                                                 poc.phone_ext),
    )
    if synthetic:
        record.notes.append("Built from SYNTHETIC data: not trial results; never postable.")
    return record


def total_counts(counts: dict[str, int]) -> int:
    """Sum over groups (the PRS 'Total' column)."""
    return int(np.sum(list(counts.values()))) if counts else 0
