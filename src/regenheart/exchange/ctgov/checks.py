"""ClinicalTrials.gov's own consistency rules, checked before anything is written.

PRS refuses (errors) or questions (warnings) a results record that breaks its rules; these are the
rules a record built here can break, each reported with the element path of the upload XML, e.g.
``result/participantFlow/periods/period[1]/dropWithdrawReasons``. A record with errors is written
only as a draft (``regenheart ctgov results --draft``).

Rules: required fields present; milestones consistent (STARTED = COMPLETED + NOT COMPLETED, the
drop/withdraw reasons add up to NOT COMPLETED, no milestone above STARTED); baseline and outcome
counts not above the participants of their group; numAffected <= numAtRisk and numEvents >=
numAffected; every outcome with a time frame and a unit; the other-events frequency threshold at
most 5%; the measure type consistent with its dispersion, and the dispersion values present.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from regenheart.exchange.ctgov.results import TOTAL, Measure, ResultsRecord

MAX_THRESHOLD_PCT = 5.0
MAX_UNIT_CHARS = 40
MAX_TITLE_CHARS = 255
# Allowed dispersions per measure type (PRS Data Element Definitions, results section).
DISPERSIONS = {
    "COUNT_OF_PARTICIPANTS": {"NA"},
    "COUNT_OF_UNITS": {"NA"},
    "NUMBER": {"NA", "CONFIDENCE_80", "CONFIDENCE_90", "CONFIDENCE_95", "CONFIDENCE_975", "CONFIDENCE_99",
               "CONFIDENCE_OTHER"},
    "MEAN": {"STANDARD_DEVIATION", "STANDARD_ERROR", "CONFIDENCE_80", "CONFIDENCE_90", "CONFIDENCE_95",
             "CONFIDENCE_975", "CONFIDENCE_99", "CONFIDENCE_OTHER", "FULL_RANGE", "INTER_QUARTILE_RANGE"},
    "LEAST_SQUARES_MEAN": {"STANDARD_DEVIATION", "STANDARD_ERROR", "CONFIDENCE_80", "CONFIDENCE_90", "CONFIDENCE_95",
                           "CONFIDENCE_975", "CONFIDENCE_99", "CONFIDENCE_OTHER"},
    "MEDIAN": {"FULL_RANGE", "INTER_QUARTILE_RANGE", "CONFIDENCE_80", "CONFIDENCE_90", "CONFIDENCE_95",
               "CONFIDENCE_975", "CONFIDENCE_99", "CONFIDENCE_OTHER"},
    "GEOMETRIC_MEAN": {"GEOMETRIC_COEFFICIENT", "CONFIDENCE_80", "CONFIDENCE_90", "CONFIDENCE_95", "CONFIDENCE_975",
                       "CONFIDENCE_99", "CONFIDENCE_OTHER"},
    "GEOMETRIC_LEAST_SQUARES_MEAN": {"GEOMETRIC_COEFFICIENT", "STANDARD_ERROR", "CONFIDENCE_80", "CONFIDENCE_90",
                                     "CONFIDENCE_95", "CONFIDENCE_975", "CONFIDENCE_99", "CONFIDENCE_OTHER"},
}
SPREAD = {"STANDARD_DEVIATION", "STANDARD_ERROR", "GEOMETRIC_COEFFICIENT"}
# The 27 MedDRA system organ classes (PRS pick-list MeDRASOCTypeUtil; "Product issues" since MedDRA 19.0).
MEDDRA_SOCS = frozenset({
    "Blood and lymphatic system disorders", "Cardiac disorders", "Congenital, familial and genetic disorders",
    "Ear and labyrinth disorders", "Endocrine disorders", "Eye disorders", "Gastrointestinal disorders",
    "General disorders and administration site conditions", "Hepatobiliary disorders", "Immune system disorders",
    "Infections and infestations", "Injury, poisoning and procedural complications", "Investigations",
    "Metabolism and nutrition disorders", "Musculoskeletal and connective tissue disorders",
    "Neoplasms benign, malignant and unspecified (incl cysts and polyps)", "Nervous system disorders",
    "Pregnancy, puerperium and perinatal conditions", "Product issues", "Psychiatric disorders",
    "Renal and urinary disorders", "Reproductive system and breast disorders",
    "Respiratory, thoracic and mediastinal disorders", "Skin and subcutaneous tissue disorders",
    "Social circumstances", "Surgical and medical procedures", "Vascular disorders",
})


@dataclass(frozen=True)
class Finding:
    severity: Literal["error", "warning"]
    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper()} {self.path}: {self.message} [{self.rule}]"


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.lstrip("<>="))
    except ValueError:
        return None


class _Collector:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def error(self, path: str, rule: str, message: str) -> None:
        self.findings.append(Finding("error", path, rule, message))

    def warning(self, path: str, rule: str, message: str) -> None:
        self.findings.append(Finding("warning", path, rule, message))


def _check_measure(c: _Collector, path: str, measure: Measure, limits: dict[str, int], *, outcome: bool,
                   group_titles: dict[str, str]) -> None:
    if not measure.title:
        c.error(f"{path}/title", "required", "the measure has no title")
    elif len(measure.title) > MAX_TITLE_CHARS:
        c.error(f"{path}/title", "length", f"title longer than {MAX_TITLE_CHARS} characters")
    if not measure.unit:
        c.error(f"{path}/unitOfMeasure", "required", "the measure has no unit of measure")
    elif len(measure.unit) > MAX_UNIT_CHARS:
        c.error(f"{path}/unitOfMeasure", "length", f"unit '{measure.unit}' longer than {MAX_UNIT_CHARS} characters")
    if outcome and not measure.time_frame:
        c.error(f"{path}/timeFrame", "required", "the outcome measure has no time frame")
    if outcome and measure.outcome_type not in ("PRIMARY", "SECONDARY", "OTHER_PRE_SPECIFIED", "POST_HOC"):
        c.error(f"{path}/measureType", "required", f"outcome measure type '{measure.outcome_type}' is not a PRS type")
    allowed = DISPERSIONS.get(measure.param_type)
    if allowed is None:
        c.error(f"{path}/parameterType", "picklist", f"measure type '{measure.param_type}' is not a PRS measure type")
    elif measure.dispersion not in allowed:
        c.error(f"{path}/dispersionType", "type-dispersion",
                f"dispersion '{measure.dispersion}' is not allowed with measure type '{measure.param_type}' "
                f"(allowed: {', '.join(sorted(allowed))})")
    counting = measure.param_type in ("COUNT_OF_PARTICIPANTS", "COUNT_OF_UNITS")
    for key, n in measure.analyzed.items():
        limit = limits.get(key)
        label = group_titles.get(key, key)
        if limit is not None and n > limit:
            c.error(f"{path}/reportingGroup[{label}]/subjectsAnalyzed", "count-above-participants",
                    f"{n} participants analysed, more than the {limit} participants of the group")
    for ci, cls in enumerate(measure.classes, start=1):
        row = f"{path}/measureRows/measureRow[{ci}]"
        denominators = {**measure.analyzed, **(cls.analyzed or {})}
        for key, n in (cls.analyzed or {}).items():
            if key in measure.analyzed and n > measure.analyzed[key]:
                c.error(f"{row}/reportedValue[{group_titles.get(key, key)}]/subjectsAnalyzed", "count-above-participants",
                        f"{n} analysed in the row, more than the measure's {measure.analyzed[key]}")
        totals: dict[str, int] = {}
        for category in cls.categories:
            for key, value in category.values.items():
                where = f"{row}/reportedValue[{group_titles.get(key, key)}]"
                if value.value is None and not value.na_comment and denominators.get(key, 0) > 0:
                    c.error(f"{where}/parameterValue", "required", "no value and no explanation (naComment)")
                    continue
                if counting and value.value is not None:
                    k = _int(value.value)
                    if k is None or k < 0:
                        c.error(f"{where}/parameterValue", "count", f"count '{value.value}' is not a whole number >= 0")
                        continue
                    totals[key] = totals.get(key, 0) + k
                    if k > denominators.get(key, 0):
                        c.error(f"{where}/parameterValue", "count-above-participants",
                                f"count {k} is above the {denominators.get(key, 0)} participants analysed")
                if value.value is not None and measure.dispersion in SPREAD and value.spread is None:
                    c.error(f"{where}/dispersionSpread", "dispersion-value",
                            f"a {measure.dispersion} needs the spread value")
                if (value.value is not None and measure.dispersion not in SPREAD and measure.dispersion != "NA"
                        and (value.lower is None or value.upper is None) and not value.na_comment):
                    c.error(f"{where}/dispersionLowerLimit", "dispersion-value",
                            f"a {measure.dispersion} needs lower and upper limits (or an naComment)")
                lo, hi, v = _float(value.lower), _float(value.upper), _float(value.value)
                if lo is not None and hi is not None and lo > hi:
                    c.error(f"{where}/dispersionLowerLimit", "interval", f"lower limit {lo} above upper limit {hi}")
                if (measure.dispersion.startswith("CONFIDENCE") and None not in (lo, hi, v)
                        and not lo <= v <= hi):  # type: ignore[operator]
                    c.warning(f"{where}/parameterValue", "interval", f"value {v} outside its interval [{lo}, {hi}]")
        if counting and measure.baseline_kind != "REGION":
            for key, total in totals.items():
                if total > denominators.get(key, 0):
                    c.error(f"{row}/reportedValue[{group_titles.get(key, key)}]", "categories-sum",
                            f"categories add up to {total}, more than the {denominators.get(key, 0)} analysed")
    for ai, analysis in enumerate(measure.analyses, start=1):
        where = f"{path}/outcomeMeasureAnalyses/measureAnalysis[{ai}]"
        unknown = [k for k in analysis.group_keys if k not in measure.analyzed]
        if unknown or not analysis.group_keys:
            c.error(f"{where}/outcomeReportingGroups", "groups", f"comparison groups {unknown} are not reporting groups")
        if not analysis.param_type:
            c.error(f"{where}/parameterType", "required", "no estimated parameter")
        p = _float(analysis.p_value)
        if analysis.p_value is not None and (p is None or not 0 <= p <= 1):
            c.error(f"{where}/pValue", "p-value", f"p-value '{analysis.p_value}' is not between 0 and 1")
        if analysis.p_value is not None and not analysis.method:
            c.error(f"{where}/statisticalMethod", "required", "a p-value needs its statistical method")
        lo, hi, est = _float(analysis.ci_lower), _float(analysis.ci_upper), _float(analysis.param_value)
        if (lo is None) != (hi is None):
            c.error(f"{where}/ciLowerLimit", "interval", "a confidence interval needs both limits")
        if lo is not None and hi is not None:
            if not analysis.ci_pct or not analysis.ci_sides:
                c.error(f"{where}/ciPctValue", "required", "a confidence interval needs its level and sides")
            if lo > hi:
                c.error(f"{where}/ciLowerLimit", "interval", f"CI lower limit {lo} above upper limit {hi}")
            elif est is not None and not lo <= est <= hi:
                c.error(f"{where}/parameterValue", "interval", f"estimate {est} outside its CI [{lo}, {hi}]")


def check_results(record: ResultsRecord) -> list[Finding]:
    """Every PRS rule this record breaks (errors) or should be reviewed for (warnings)."""
    c = _Collector()
    titles = {g.key: g.title for g in record.groups}
    if record.synthetic and not record.draft:
        c.error("result", "synthetic", "a record built from synthetic data can only be a draft")
    if record.synthetic:
        c.error("result", "synthetic", "built from SYNTHETIC data: never postable")
    for g in record.groups:
        if not g.title:
            c.error(f"result/participantFlow/participantFlowGroups/flowGroup[{g.key}]/title", "required",
                    "a reporting group needs a title")
    # ---- participant flow
    flow_path = "result/participantFlow"
    if not record.flow.periods:
        c.error(f"{flow_path}/periods", "required", "the participant flow needs at least one period")
    started_first: dict[str, int] = {}
    for pi, period in enumerate(record.flow.periods, start=1):
        path = f"{flow_path}/periods/period[{pi}]"
        started, completed = period.milestone("STARTED"), period.milestone("COMPLETED")
        if started is None:
            c.error(f"{path}/startedMilestone", "required", "no STARTED milestone")
            continue
        if completed is None:
            c.error(f"{path}/completedMilestone", "required", "no COMPLETED milestone")
            continue
        if pi == 1:
            started_first = dict(started.counts)
        not_completed = period.milestone("NOT_COMPLETED")
        for key in record.group_keys:
            s, done = started.counts.get(key, 0), completed.counts.get(key, 0)
            label = titles[key]
            if done > s:
                c.error(f"{path}/completedMilestone[{label}]", "milestones",
                        f"COMPLETED {done} is above STARTED {s}")
            if not_completed is not None and not_completed.counts.get(key, 0) != s - done:
                c.error(f"{path}/milestones/NOT_COMPLETED[{label}]", "milestones",
                        f"STARTED {s} != COMPLETED {done} + NOT COMPLETED {not_completed.counts.get(key, 0)}")
            reasons = sum(r.counts.get(key, 0) for r in period.drop_reasons)
            if reasons != s - done:
                c.error(f"{path}/dropWithdrawReasons[{label}]", "reasons-sum",
                        f"drop/withdraw reasons add up to {reasons}, not to NOT COMPLETED = {s - done}")
            for m in period.milestones:
                if m.kind == "OTHER" and m.counts.get(key, 0) > s:
                    c.error(f"{path}/milestones/milestone[{m.title}][{label}]", "milestones",
                            f"milestone count {m.counts.get(key, 0)} is above STARTED {s}")
        for ri, reason in enumerate(period.drop_reasons, start=1):
            if not reason.reason_type:
                c.error(f"{path}/dropWithdrawReasons/dropWithdrawReason[{ri}]/reasonType", "required", "no reason type")
            if reason.reason_type == "Other" and not reason.other_name:
                c.error(f"{path}/dropWithdrawReasons/dropWithdrawReason[{ri}]/otherReasonName", "required",
                        "an 'Other' reason needs its name")
    # ---- baseline
    base_path = "result/baseline"
    limits = dict(record.baseline_participants)
    for key, n in record.baseline_participants.items():
        if key != TOTAL and started_first and n > started_first.get(key, 0):
            c.error(f"{base_path}/baselineReportingGroups/baselineReportingGroup[{titles.get(key, key)}]",
                    "count-above-participants", f"{n} baseline participants, more than the {started_first.get(key, 0)} "
                                                "who STARTED")
    if TOTAL in record.baseline_participants:
        total = sum(v for k, v in record.baseline_participants.items() if k != TOTAL)
        if record.baseline_participants[TOTAL] != total:
            c.error(f"{base_path}/totalBaselineReportingGroup", "total",
                    f"total {record.baseline_participants[TOTAL]} is not the sum of the groups ({total})")
    kinds = {m.baseline_kind for m in record.baseline}
    for required, title in (("AGE_CONTINUOUS", "age"), ("SEX", "sex"), ("RACE_NOT_COLLECTED", "race and ethnicity")):
        alternatives = {"AGE_CONTINUOUS": {"AGE_CONTINUOUS", "AGE_CATEGORICAL"},
                        "RACE_NOT_COLLECTED": {"RACE_NOT_COLLECTED", "RACE", "ETHNICITY"}}.get(required, {required})
        if not kinds & alternatives:
            c.error(f"{base_path}/baselineMeasures", "required", f"no baseline measure of {title}")
    for mi, measure in enumerate(record.baseline, start=1):
        _check_measure(c, f"{base_path}/baselineMeasures/baselineMeasure[{mi}]", measure, limits, outcome=False,
                       group_titles={**titles, TOTAL: "Total"})
    # ---- outcomes
    if not any(m.outcome_type == "PRIMARY" for m in record.outcomes):
        c.error("result/outcomeMeasures", "required", "no primary outcome measure")
    for mi, measure in enumerate(record.outcomes, start=1):
        _check_measure(c, f"result/outcomeMeasures/outcomeMeasure[{mi}]", measure, started_first, outcome=True,
                       group_titles=titles)
    # ---- adverse events
    ae = record.adverse_events
    ae_path = "result/reportedEvents"
    if not ae.time_frame:
        c.error(f"{ae_path}/timeFrame", "required", "no adverse-event time frame")
    if not ae.source_vocabulary:
        c.error(f"{ae_path}/sourceVocabulary", "required", "no source vocabulary")
    if ae.assessment_type not in ("SYSTEMATIC_ASSESSMENT", "NON_SYSTEMATIC_ASSESSMENT"):
        c.error(f"{ae_path}/assessmentType", "picklist", f"assessment type '{ae.assessment_type}' is not a PRS value")
    if not 0 <= ae.threshold_pct <= MAX_THRESHOLD_PCT:
        c.error(f"{ae_path}/frequencyReportingThreshold", "threshold",
                f"frequency threshold {ae.threshold_pct:g}% must be between 0% and {MAX_THRESHOLD_PCT:g}%")
    for key, g in ae.groups.items():
        where = f"{ae_path}/interventionGroups/interventionGroup[{titles.get(key, key)}]"
        for name, affected, at_risk in (("numDeaths", g.deaths, g.deaths_at_risk),
                                        ("numSubjectsSeriousEvents", g.serious_affected, g.serious_at_risk),
                                        ("numSubjectsFrequentEvents", g.other_affected, g.other_at_risk)):
            if affected > at_risk:
                c.error(f"{where}/{name}", "affected-above-at-risk", f"{affected} affected, more than {at_risk} at risk")
        if started_first and g.serious_at_risk > started_first.get(key, 0):
            c.error(f"{where}/partAtRiskSeriousEvents", "count-above-participants",
                    f"{g.serious_at_risk} at risk, more than the {started_first.get(key, 0)} who STARTED")
    for table, events, group_total in (("seriousAdverseEvents/seriousEvent", ae.serious, "serious_affected"),
                                       ("frequentAdverseEvents/frequentEvent", ae.other, "other_affected")):
        for ei, event in enumerate(events, start=1):
            where = f"{ae_path}/{table}[{ei}]"
            if not event.term:
                c.error(f"{where}/term", "required", "an adverse event needs a term")
            if not event.organ_system:
                c.error(f"{where}/organSystemName", "required",
                        f"'{event.term}' has no organ system (give its code-list item a 'soc:' in the protocol)")
            elif event.organ_system not in MEDDRA_SOCS:
                c.error(f"{where}/organSystemName", "organ-system",
                        f"'{event.organ_system}' (of '{event.term}') is not a MedDRA system organ class name")
            for key, s in event.stats.items():
                label = f"{where}/eventStats[{titles.get(key, key)}]"
                if s.affected > s.at_risk:
                    c.error(f"{label}/numSubjectsAffected", "affected-above-at-risk",
                            f"{s.affected} affected, more than {s.at_risk} at risk")
                if s.events < s.affected:
                    c.error(f"{label}/numEvents", "events-below-affected",
                            f"{s.events} events for {s.affected} affected participants")
                if key in ae.groups and s.affected > getattr(ae.groups[key], group_total):
                    c.error(f"{label}/numSubjectsAffected", "term-above-total",
                            f"{s.affected} affected by '{event.term}', more than the group total "
                            f"{getattr(ae.groups[key], group_total)}")
    # ---- administrative
    poc = record.point_of_contact
    if poc is None:
        c.error("result/pointOfContact", "required", "no results point of contact")
    else:
        for name, value in (("title", poc.name), ("organizationName", poc.organization), ("email", poc.email),
                            ("phoneNumber", poc.phone)):
            if not value:
                c.error(f"result/pointOfContact/{name}", "required", f"the results point of contact needs {name}")
    if record.pi_sponsor_employee is None:
        c.error("result/certainAgreement/piSponsorEmployee", "required", "say whether all PIs are sponsor employees")
    elif not record.pi_sponsor_employee and record.restrictive_agreement is None:
        c.error("result/certainAgreement/restrictiveAgreement", "required",
                "say whether an agreement restricts the PI's results disclosure")
    if record.restrictive_agreement and not record.restriction_type:
        c.error("result/certainAgreement/restrictionType", "required", "a restrictive agreement needs its type")
    return c.findings


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]
