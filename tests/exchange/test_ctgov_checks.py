"""PRS's own consistency rules: a clean record passes; each rule fires, with its element path, on a
record broken on purpose."""

from __future__ import annotations

import copy

import pytest
from tests.exchange._ctgov_data import clean_results, complete_protocol, ctgov_study, real_data  # noqa: F401

from regenheart.exchange.ctgov.checks import check_results, errors
from regenheart.exchange.ctgov.results import AdverseEvent, EventStats, Value, build_results


@pytest.fixture(scope="module")
def clean(protocol, ctgov_study):  # noqa: F811
    record = build_results(complete_protocol(protocol), clean_results(ctgov_study.results), real_data(ctgov_study.data))
    assert errors(check_results(record)) == []
    return record


def _broken(record, change) -> list:
    record = copy.deepcopy(record)
    change(record)
    return errors(check_results(record))


def _one(findings, rule: str, path_part: str):
    hits = [f for f in findings if f.rule == rule and path_part in f.path]
    assert hits, f"no {rule} finding at {path_part}: {[str(f) for f in findings]}"
    return hits[0]


def test_started_must_equal_completed_plus_not_completed(clean):
    def change(r):
        r.flow.periods[0].milestone("COMPLETED").counts["MSC"] -= 1
    found = _broken(clean, change)
    _one(found, "milestones", "result/participantFlow/periods/period[1]/milestones/NOT_COMPLETED")
    _one(found, "reasons-sum", "result/participantFlow/periods/period[1]/dropWithdrawReasons")


def test_reasons_must_add_up(clean):
    def change(r):
        r.flow.periods[0].drop_reasons[0].counts["MSC"] += 1
    finding = _one(_broken(clean, change), "reasons-sum", "dropWithdrawReasons")
    assert "add up to" in finding.message


def test_completed_not_above_started(clean):
    def change(r):
        period = r.flow.periods[0]
        period.milestone("COMPLETED").counts["MSC"] = period.milestone("STARTED").counts["MSC"] + 1
    _one(_broken(clean, change), "milestones", "completedMilestone")


def test_baseline_count_not_above_participants(clean):
    def change(r):
        r.baseline[0].analyzed["MSC"] = r.baseline_participants["MSC"] + 1
    _one(_broken(clean, change), "count-above-participants", "result/baseline/baselineMeasures/baselineMeasure[1]")


def test_category_count_not_above_analysed(clean):
    def change(r):
        sex = next(m for m in r.baseline if m.baseline_kind == "SEX")
        sex.classes[0].categories[0].values["MSC"] = Value(str(sex.analyzed["MSC"] + 1))
    _one(_broken(clean, change), "count-above-participants", "parameterValue")


def test_outcome_count_not_above_participants(clean):
    def change(r):
        r.outcomes[0].analyzed["MSC"] = 10_000
    _one(_broken(clean, change), "count-above-participants", "result/outcomeMeasures/outcomeMeasure[1]")


def test_affected_not_above_at_risk(clean):
    def change(r):
        r.adverse_events.serious.append(AdverseEvent("Broken", "Cardiac disorders", {"MSC": EventStats(5, 40, 12)}))
    _one(_broken(clean, change), "affected-above-at-risk", "seriousAdverseEvents/seriousEvent")


def test_group_deaths_not_above_at_risk(clean):
    def change(r):
        g = r.adverse_events.groups["MSC"]
        g.deaths = g.deaths_at_risk + 1
    _one(_broken(clean, change), "affected-above-at-risk", "interventionGroup[")


def test_every_outcome_needs_a_time_frame_and_a_unit(clean):
    def change(r):
        r.outcomes[1].time_frame = None
        r.outcomes[2].unit = ""
    found = _broken(clean, change)
    _one(found, "required", "result/outcomeMeasures/outcomeMeasure[2]/timeFrame")
    _one(found, "required", "result/outcomeMeasures/outcomeMeasure[3]/unitOfMeasure")


def test_frequency_threshold_at_most_5_percent(clean):
    def change(r):
        r.adverse_events.threshold_pct = 6.0
    finding = _one(_broken(clean, change), "threshold", "result/reportedEvents/frequencyReportingThreshold")
    assert "6%" in finding.message


def test_measure_type_consistent_with_dispersion(clean):
    def change(r):
        r.outcomes[0].dispersion = "STANDARD_DEVIATION"  # a count of participants has no dispersion
        r.outcomes[1].dispersion = "NA"                   # a mean needs one
    found = _broken(clean, change)
    _one(found, "type-dispersion", "outcomeMeasure[1]/dispersionType")
    _one(found, "type-dispersion", "outcomeMeasure[2]/dispersionType")


def test_dispersion_values_present(clean):
    def change(r):
        value = r.outcomes[1].classes[0].categories[0].values["MSC"]
        value.lower = None
    _one(_broken(clean, change), "dispersion-value", "outcomeMeasure[2]/measureRows/measureRow[1]")


def test_required_fields_present(clean):
    def change(r):
        r.point_of_contact.email = None
        r.adverse_events.source_vocabulary = ""
        r.outcomes = [m for m in r.outcomes if m.outcome_type != "PRIMARY"]
        r.adverse_events.serious.append(AdverseEvent("No organ system", None, {"MSC": EventStats(1, 1, 12)}))
    found = _broken(clean, change)
    _one(found, "required", "result/pointOfContact/email")
    _one(found, "required", "result/reportedEvents/sourceVocabulary")
    _one(found, "required", "result/outcomeMeasures")
    _one(found, "required", "organSystemName")


def test_estimate_outside_its_ci_and_bad_p_value(clean):
    def change(r):
        analysis = r.outcomes[0].analyses[0]
        analysis.param_value = "99.0"
        analysis.p_value = "1.5"
        analysis.method = None
    found = _broken(clean, change)
    _one(found, "interval", "outcomeMeasure[1]/outcomeMeasureAnalyses/measureAnalysis[1]/parameterValue")
    _one(found, "p-value", "measureAnalysis[1]/pValue")
    _one(found, "required", "measureAnalysis[1]/statisticalMethod")


def test_synthetic_record_is_never_clean(clean):
    def change(r):
        r.synthetic = True
        r.draft = False
    found = _broken(clean, change)
    assert {f.rule for f in found} >= {"synthetic"}


def test_organ_system_must_be_a_meddra_soc(clean):
    def change(r):
        r.adverse_events.serious.append(AdverseEvent("Heart thing", "Heart problems", {"MSC": EventStats(1, 1, 12)}))
    finding = _one(_broken(clean, change), "organ-system", "seriousAdverseEvents/seriousEvent")
    assert "Heart problems" in finding.message


def test_every_protocol_soc_is_a_meddra_soc(protocol):
    from regenheart.exchange.ctgov.checks import MEDDRA_SOCS

    assert len(MEDDRA_SOCS) == 27
    assert {item.soc for item in protocol.codelists["ae_category"]} <= MEDDRA_SOCS
