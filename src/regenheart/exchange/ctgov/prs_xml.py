"""The PRS results upload XML (``RRSUploadSchema.xsd``, namespace ``http://clinicaltrials.gov/rrs``).

:func:`results_xml` writes a :class:`~regenheart.exchange.ctgov.results.ResultsRecord` as the
``<result>`` document ClinicalTrials.gov's Protocol Registration and Results System takes by XML
upload. Element order follows the schema's sequences; only the root is namespace-qualified
(``elementFormDefault="unqualified"``). Reporting-group ids are XML IDs, unique in the document:
``FG000`` (participant flow), ``BG000`` (baseline), ``EG000`` (adverse events) and ``O01G000``
(outcome measure 1) as the module prefixes of ClinicalTrials.gov.

Enumerated values are the PRS pick-list display values (RRSUploadSchema comments name the
pick-lists; PRS normalises synonyms on upload). A draft or synthetic record carries an XML comment
saying so at the top, besides the mark in every displayed text.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from regenheart.exchange.ctgov.results import (
    TOTAL,
    AdverseEvent,
    Measure,
    ResultsRecord,
)

RRS_NS = "http://clinicaltrials.gov/rrs"

PARAM_TYPES = {
    "MEAN": "Mean", "MEDIAN": "Median", "NUMBER": "Number", "COUNT_OF_PARTICIPANTS": "Count of Participants",
    "COUNT_OF_UNITS": "Count of Units", "LEAST_SQUARES_MEAN": "Least Squares Mean", "GEOMETRIC_MEAN": "Geometric Mean",
    "GEOMETRIC_LEAST_SQUARES_MEAN": "Geometric Least Squares Mean", "LOG_MEAN": "Log Mean",
}
DISPERSION_TYPES = {
    "STANDARD_DEVIATION": "Standard Deviation", "STANDARD_ERROR": "Standard Error",
    "INTER_QUARTILE_RANGE": "Inter-Quartile Range", "FULL_RANGE": "Full Range",
    "CONFIDENCE_80": "80% Confidence Interval", "CONFIDENCE_90": "90% Confidence Interval",
    "CONFIDENCE_95": "95% Confidence Interval", "CONFIDENCE_975": "97.5% Confidence Interval",
    "CONFIDENCE_99": "99% Confidence Interval", "CONFIDENCE_OTHER": "Other Confidence Interval Level",
    "GEOMETRIC_COEFFICIENT": "Geometric Coefficient of Variation",
}
OUTCOME_TYPES = {"PRIMARY": "Primary", "SECONDARY": "Secondary", "OTHER_PRE_SPECIFIED": "Other Pre-specified",
                 "POST_HOC": "Post-Hoc"}
ASSESSMENT_TYPES = {"SYSTEMATIC_ASSESSMENT": "Systematic Assessment",
                    "NON_SYSTEMATIC_ASSESSMENT": "Non-Systematic Assessment"}
TEST_TYPES = {"SUPERIORITY": "Superiority", "NON_INFERIORITY": "Non-Inferiority", "EQUIVALENCE": "Equivalence",
              "OTHER": "Other"}
CI_SIDES = {"TWO_SIDED": "2-Sided", "ONE_SIDED": "1-Sided"}
RESTRICTION_TYPES = {"LTE60": "LTE60", "GT60": "GT60", "OTHER": "Other"}
# Spread values go to dispersionSpread; the others are intervals (lower/upper limits).
SPREAD_DISPERSIONS = {"STANDARD_DEVIATION", "STANDARD_ERROR", "GEOMETRIC_COEFFICIENT"}


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else ("Yes" if value else "No")


def _sub(parent: etree._Element, tag: str, text: str | float | None = None, **attrib: str) -> etree._Element:
    element = etree.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = str(text)
    return element


def _opt(parent: etree._Element, tag: str, text: str | float | None) -> None:
    if text is not None and text != "":
        _sub(parent, tag, text)


def group_ids(record: ResultsRecord, prefix: str) -> dict[str, str]:
    """Reporting-group ids of a module: ``FG000``, ``FG001``, ... (and the total last for baseline)."""
    keys = record.group_keys + ([TOTAL] if prefix == "BG" and TOTAL in record.baseline_participants else [])
    return {key: f"{prefix}{i:03d}" for i, key in enumerate(keys)}


def outcome_group_ids(record: ResultsRecord, index: int) -> dict[str, str]:
    return {key: f"O{index + 1:02d}G{i:03d}" for i, key in enumerate(record.group_keys)}


# ------------------------------------------------------------------ measures (baseline and outcome)
def _measure_body(parent: etree._Element, measure: Measure, ids: dict[str, str], *, baseline: bool) -> None:
    """The elements of the abstract Measure type, in schema order."""
    if measure.dispersion in DISPERSION_TYPES:
        _sub(parent, "dispersionType", DISPERSION_TYPES[measure.dispersion])
    rows = _sub(parent, "measureRows")
    for cls in measure.classes:
        row = _sub(rows, "measureRow")
        values = _sub(row, "reportedValues")
        for key, gid in ids.items():
            reported = _sub(values, "reportedValue")
            _sub(reported, "reportingGroupId", gid)
            entries = _sub(reported, "reportedEntries")
            for category in cls.categories:
                value = category.values.get(key)
                if value is None:
                    continue
                entry = _sub(entries, "reportedEntry")
                _opt(entry, "catName", category.title)
                if measure.dispersion in SPREAD_DISPERSIONS:
                    _opt(entry, "dispersionSpread", value.spread)
                else:
                    _opt(entry, "dispersionLowerLimit", value.lower)
                    _opt(entry, "dispersionUpperLimit", value.upper)
                _opt(entry, "naComment", value.na_comment)
                _opt(entry, "parameterValue", value.value)
            # numbers analysed per row and group: the row's own (e.g. per visit), else the measure's
            analyzed = (cls.analyzed or {}).get(key, measure.analyzed.get(key))
            if analyzed is not None:
                _sub(reported, "subjectsAnalyzed", analyzed)
        _opt(row, "title", cls.title)
    _opt(parent, "measureDescription", measure.description)
    _sub(parent, "parameterType", PARAM_TYPES[measure.param_type])
    _opt(parent, "populationAnalysisDescription", measure.population)
    _sub(parent, "selectedUnitOfAnalysis", "Participants")
    if not baseline:
        _opt(parent, "timeFrame", measure.time_frame)
    _sub(parent, "title", _baseline_title(measure) if baseline else measure.title)
    _sub(parent, "unitOfMeasure", measure.unit)


def _baseline_title(measure: Measure) -> str:
    # A study-specific characteristic has the pick-list title and its own name in otherTitle.
    return "Study Specific Characteristic" if measure.baseline_kind == "OTHER" else measure.title


def _reporting_group(parent: etree._Element, tag: str, gid: str, title: str, description: str,
                     analyzed: int | None) -> None:
    element = _sub(parent, tag, id=gid)
    _opt(element, "description", description)
    if analyzed is not None:
        _sub(element, "subjectsAnalyzed", analyzed)
    _opt(element, "title", title)


def _baseline(root: etree._Element, record: ResultsRecord) -> None:
    ids = group_ids(record, "BG")
    baseline = _sub(root, "baseline")
    measures = _sub(baseline, "baselineMeasures")
    for measure in record.baseline:
        element = _sub(measures, "baselineMeasure")
        _measure_body(element, measure, ids, baseline=True)
        if measure.baseline_kind == "OTHER":
            _sub(element, "otherTitle", measure.title)
    groups = _sub(baseline, "baselineReportingGroups")
    for group in record.groups:
        _reporting_group(groups, "baselineReportingGroup", ids[group.key], group.title, group.description,
                         record.baseline_participants.get(group.key))
    _opt(baseline, "populationAnalysisDescription", record.baseline_population)
    if TOTAL in ids:
        _reporting_group(baseline, "totalBaselineReportingGroup", ids[TOTAL], "Total",
                         "Total of all reporting groups", record.baseline_participants[TOTAL])


def _outcomes(root: etree._Element, record: ResultsRecord) -> None:
    outcomes = _sub(root, "outcomeMeasures")
    for index, measure in enumerate(record.outcomes):
        ids = outcome_group_ids(record, index)
        element = _sub(outcomes, "outcomeMeasure")
        _measure_body(element, measure, ids, baseline=False)
        _sub(element, "measureType", OUTCOME_TYPES[measure.outcome_type or "SECONDARY"])
        analyses = _sub(element, "outcomeMeasureAnalyses")
        for analysis in measure.analyses:
            a = _sub(analyses, "measureAnalysis")
            selection = _sub(a, "outcomeReportingGroups")
            for key in analysis.group_keys:
                _sub(selection, "outcomeReportingGroupId", ids[key])
            _opt(a, "ciLowerLimit", analysis.ci_lower)
            _opt(a, "ciNumSides", CI_SIDES.get(analysis.ci_sides or "") if analysis.ci_pct else None)
            _opt(a, "ciPctValue", analysis.ci_pct)
            _opt(a, "ciUpperLimit", analysis.ci_upper)
            _opt(a, "estimateComment", analysis.estimate_comment)
            _opt(a, "groupDescription", analysis.group_description)
            _opt(a, "otherMethodName", analysis.method_comment if analysis.method == "Other" else None)
            _opt(a, "otherTypeName", analysis.other_param_name if analysis.param_type == "Other" else None)
            _sub(a, "parameterType", analysis.param_type)
            _opt(a, "parameterValue", analysis.param_value)
            _opt(a, "pValue", analysis.p_value)
            _opt(a, "statisticalMethod", analysis.method)
            _opt(a, "statisticalTestComment", analysis.method_comment if analysis.method != "Other" else None)
            _opt(a, "statisticalTestType", TEST_TYPES.get(analysis.test_type))
        groups = _sub(element, "outcomeReportingGroups")
        for group in record.groups:
            _reporting_group(groups, "outcomeReportingGroup", ids[group.key], group.title, group.description,
                             measure.analyzed.get(group.key))


def _flow(root: etree._Element, record: ResultsRecord) -> None:
    ids = group_ids(record, "FG")
    flow = _sub(root, "participantFlow")
    groups = _sub(flow, "participantFlowGroups")
    for group in record.groups:
        g = _sub(groups, "flowGroup", id=ids[group.key])
        _opt(g, "description", group.description)
        _opt(g, "title", group.title)
    periods = _sub(flow, "periods")

    def milestone(parent: etree._Element, tag: str, counts: dict[str, int], comment: str | None,
                  title: str | None = None) -> None:
        m = _sub(parent, tag)
        _opt(m, "comment", comment)
        achievements = _sub(m, "milestoneAchievements")
        for key, gid in ids.items():
            a = _sub(achievements, "milestoneAchievement")
            _sub(a, "reportingGroupId", gid)
            _sub(a, "subjectsAchieve", counts.get(key, 0))
        if title is not None:
            _sub(m, "titleOther", title)

    for period in record.flow.periods:
        p = _sub(periods, "period")
        completed = period.milestone("COMPLETED")
        milestone(p, "completedMilestone", completed.counts if completed else {}, completed and completed.comment)
        drops = _sub(p, "dropWithdrawReasons")
        for reason in period.drop_reasons:
            r = _sub(drops, "dropWithdrawReason")
            details = _sub(r, "dropWithdrawReasonDetails")
            for key, gid in ids.items():
                d = _sub(details, "reasonDetail")
                _sub(d, "reportingGroupId", gid)
                _sub(d, "subjectsAffected", reason.counts.get(key, 0))
            _opt(r, "otherReasonName", reason.other_name)
            _sub(r, "reasonType", reason.reason_type)
        others = _sub(p, "milestones")
        for m in period.milestones:
            if m.kind == "OTHER":
                milestone(others, "milestone", m.counts, m.comment, m.title)
        started = period.milestone("STARTED")
        milestone(p, "startedMilestone", started.counts if started else {}, started and started.comment)
        _sub(p, "title", period.title)
    _opt(flow, "preAssignmentDescription", record.flow.pre_assignment_details)
    _opt(flow, "recruitmentDetails", record.flow.recruitment_details)


def _event(parent: etree._Element, tag: str, event: AdverseEvent, ids: dict[str, str], record: ResultsRecord) -> None:
    e = _sub(parent, tag)
    stats = _sub(e, "adverseEventStats")
    for key, gid in ids.items():
        s = event.stats.get(key)
        if s is None:
            continue
        es = _sub(stats, "eventStats")
        _sub(es, "reportingGroupId", gid)
        _sub(es, "numEvents", s.events)
        _sub(es, "numSubjectsAffected", s.affected)
        _sub(es, "numSubjects", s.at_risk)
    _sub(e, "assessmentType", ASSESSMENT_TYPES[record.adverse_events.assessment_type])
    _opt(e, "organSystemName", event.organ_system)
    _sub(e, "sourceVocabulary", record.adverse_events.source_vocabulary)
    _sub(e, "term", event.term)


def _events(root: etree._Element, record: ResultsRecord) -> None:
    ids = group_ids(record, "EG")
    ae = record.adverse_events
    events = _sub(root, "reportedEvents")
    _opt(events, "allCauseMortComment", ae.mortality_comment)
    _sub(events, "assessmentType", ASSESSMENT_TYPES[ae.assessment_type])
    _sub(events, "frequencyReportingThreshold", f"{ae.threshold_pct:g}")
    frequent = _sub(events, "frequentAdverseEvents")
    for event in ae.other:
        _event(frequent, "frequentEvent", event, ids, record)
    groups = _sub(events, "interventionGroups")
    for group in record.groups:
        g = ae.groups[group.key]
        element = _sub(groups, "interventionGroup", id=ids[group.key])
        _opt(element, "description", group.description)
        for tag, value in (("numDeaths", g.deaths), ("numSubjectsFrequentEvents", g.other_affected),
                           ("numSubjectsSeriousEvents", g.serious_affected), ("partAtRiskAllCauseMort", g.deaths_at_risk),
                           ("partAtRiskFrequentEvents", g.other_at_risk), ("partAtRiskSeriousEvents", g.serious_at_risk)):
            _sub(element, tag, value)
        _sub(element, "title", group.title)
    _opt(events, "notes", ae.description)
    serious = _sub(events, "seriousAdverseEvents")
    for event in ae.serious:
        _event(serious, "seriousEvent", event, ids, record)
    _sub(events, "sourceVocabulary", ae.source_vocabulary)
    _sub(events, "timeFrame", ae.time_frame)


def results_xml(record: ResultsRecord) -> etree._ElementTree:
    """The PRS results upload document of ``record`` (an lxml tree; validate it with :func:`validate`)."""
    root = etree.Element(f"{{{RRS_NS}}}result", nsmap={"rrs": RRS_NS}, partialUpload="false")
    if record.mark:
        root.append(etree.Comment(
            f" {record.mark} Results of {record.nct_id or 'an unregistered study'} written by regenheart"
            + (": SYNTHETIC DATA, NOT TRIAL RESULTS. Do not upload. " if record.synthetic
               else ": DRAFT with unresolved PRS check errors. Do not upload. ")))
    _baseline(root, record)
    agreement = _sub(root, "certainAgreement")
    _opt(agreement, "otherDetails", record.agreement_details)
    _opt(agreement, "piSponsorEmployee", _yes_no(record.pi_sponsor_employee))
    _opt(agreement, "restrictionType", RESTRICTION_TYPES.get(record.restriction_type or ""))
    _opt(agreement, "restrictiveAgreement", _yes_no(record.restrictive_agreement))
    if record.limitations:
        _sub(_sub(root, "limitationsAndCaveats"), "description", record.limitations)
    _outcomes(root, record)
    _flow(root, record)
    poc = record.point_of_contact
    if poc is not None:
        contact = _sub(root, "pointOfContact")
        _opt(contact, "email", poc.email)
        _opt(contact, "organizationName", poc.organization)
        _opt(contact, "phoneExtension", poc.phone_ext)
        _opt(contact, "phoneNumber", poc.phone)
        _opt(contact, "title", poc.name)
    _events(root, record)
    return etree.ElementTree(root)


def to_bytes(tree: etree._ElementTree) -> bytes:
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def validate(tree: etree._ElementTree, xsd_path: Path) -> list[str]:
    """Schema errors of ``tree`` against the XSD at ``xsd_path`` (empty when valid)."""
    schema = etree.XMLSchema(etree.parse(str(xsd_path)))
    if schema.validate(tree):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


def write_results_xml(record: ResultsRecord, path: Path) -> Path:
    """Write the upload XML atomically (a temporary file renamed over ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(to_bytes(results_xml(record)))
    tmp.replace(path)
    return path
