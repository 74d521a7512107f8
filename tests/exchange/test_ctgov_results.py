"""ClinicalTrials.gov results: the PRS upload XML is schema-valid, its numbers equal results.json and the
analysis datasets, a few are checked by hand (scipy), synthetic data are marked everywhere, the
API-v2-shaped JSON is the XML's twin, and a two-arm study gives a two-group record."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from lxml import etree
from scipy import stats
from tests.exchange._ctgov_data import (  # noqa: F401 - fixture
    RRS_XSD,
    analysed,
    clean_results,
    complete_protocol,
    ctgov_study,
    real_data,
)

from regenheart.exchange.ctgov.api_json import results_document
from regenheart.exchange.ctgov.checks import check_results, errors
from regenheart.exchange.ctgov.prs_xml import results_xml, to_bytes, validate
from regenheart.exchange.ctgov.results import SYNTHETIC_MARK, CtgovError, build_results


@pytest.fixture(scope="module")
def synthetic_record(protocol, ctgov_study):  # noqa: F811
    return build_results(protocol, ctgov_study.results, ctgov_study.data)


@pytest.fixture(scope="module")
def real_record(protocol, ctgov_study):  # noqa: F811
    return build_results(complete_protocol(protocol), clean_results(ctgov_study.results), real_data(ctgov_study.data))


def _xml(record) -> etree._Element:
    return etree.fromstring(to_bytes(results_xml(record)))


def _ints(elements) -> list[int]:
    return [int(e.text) for e in elements]


def test_upload_xml_is_valid_against_the_prs_schema(synthetic_record, real_record):
    assert validate(results_xml(synthetic_record), RRS_XSD) == []
    assert validate(results_xml(real_record), RRS_XSD) == []


def test_a_clean_real_record_passes_the_prs_checks(real_record):
    assert errors(check_results(real_record)) == []
    assert not real_record.synthetic and not real_record.draft and real_record.mark is None


def test_every_required_module_is_present(real_record):
    root = _xml(real_record)
    for path in ("baseline", "certainAgreement", "limitationsAndCaveats", "outcomeMeasures", "participantFlow",
                 "pointOfContact", "reportedEvents"):
        assert root.find(path) is not None, path
    titles = [t.text for t in root.findall("baseline/baselineMeasures/baselineMeasure/title")]
    assert {"Age, Continuous", "Age, Categorical", "Sex: Female, Male", "Race and Ethnicity Not Collected",
            "Region of Enrollment"} <= set(titles)
    other = [t.text for t in root.findall("baseline/baselineMeasures/baselineMeasure/otherTitle")]
    for label in ("LV ejection fraction", "NYHA class", "NT-proBNP", "Six-minute walk distance",
                  "KCCQ overall summary score", "SF-12 physical component summary", "MLHFQ total score"):
        assert f"{label} at baseline" in other
    assert root.find("reportedEvents/sourceVocabulary").text
    assert float(root.find("reportedEvents/frequencyReportingThreshold").text) <= 5


def test_participant_flow_equals_the_sap_flow(real_record, ctgov_study):  # noqa: F811
    flow = ctgov_study.results["flow"]
    root = _xml(real_record)
    period = root.find("participantFlow/periods/period")
    started = _ints(period.findall("startedMilestone/milestoneAchievements/milestoneAchievement/subjectsAchieve"))
    completed = _ints(period.findall("completedMilestone/milestoneAchievements/milestoneAchievement/subjectsAchieve"))
    assert started == [flow["enrolled"]] and completed == [flow["completed"]]
    reasons = {r.find("reasonType").text: int(r.find("dropWithdrawReasonDetails/reasonDetail/subjectsAffected").text)
               for r in period.findall("dropWithdrawReasons/dropWithdrawReason")}
    expected = {"DEATH": "Death", "LOST": "Lost to Follow-up", "WITHDRAWAL": "Withdrawal by Subject"}
    assert reasons == {expected[k]: v for k, v in flow["discontinued"].items()}
    assert sum(reasons.values()) == flow["enrolled"] - flow["completed"]
    pre = root.find("participantFlow/preAssignmentDescription").text
    assert f"{flow['screened']} screened, {flow['screen_failed']} screen failures" in pre


def test_baseline_numbers_equal_results_json(real_record, ctgov_study):  # noqa: F811
    by_name = {row["variable"]: row for row in ctgov_study.results["baseline"]}
    root = _xml(real_record)
    measures = {(m.findtext("otherTitle") or m.findtext("title")): m
                for m in root.findall("baseline/baselineMeasures/baselineMeasure")}
    age = measures["Age, Continuous"].find("measureRows/measureRow/reportedValues/reportedValue/reportedEntries/"
                                           "reportedEntry")
    assert float(age.findtext("parameterValue")) == pytest.approx(by_name["Age"]["mean"], abs=0.005)
    assert float(age.findtext("dispersionSpread")) == pytest.approx(by_name["Age"]["sd"], abs=0.005)
    sex = {e.findtext("catName"): int(e.findtext("parameterValue")) for e in
           measures["Sex: Female, Male"].iter("reportedEntry")}
    assert sex == {lvl["level"]: lvl["n"] for lvl in by_name["Sex"]["levels"]}
    lvef = measures["LV ejection fraction at baseline"].find(".//reportedEntry")
    assert float(lvef.findtext("parameterValue")) == pytest.approx(by_name["LV ejection fraction"]["mean"], abs=0.005)
    nyha = {e.findtext("catName"): int(e.findtext("parameterValue"))
            for e in measures["NYHA class at baseline"].iter("reportedEntry")}
    assert {f"Class {k}": v for k, v in nyha.items()} == {lvl["level"]: lvl["n"] for lvl in by_name["NYHA class"]["levels"]}
    ages = real_record.baseline[1]
    assert sum(int(c.values["MSC"].value) for c in ages.classes[0].categories) == by_name["Age"]["n"]
    group = root.find("baseline/baselineReportingGroups/baselineReportingGroup")
    assert int(group.findtext("subjectsAnalyzed")) == ctgov_study.results["flow"]["safety_population"]


def test_primary_outcome_equals_results_and_a_hand_computed_clopper_pearson(real_record, ctgov_study):  # noqa: F811
    primary = ctgov_study.results["primary"]
    root = _xml(real_record)
    outcome = root.find("outcomeMeasures/outcomeMeasure")
    assert outcome.findtext("measureType") == "Primary"
    assert int(outcome.find(".//reportedEntry/parameterValue").text) == primary["n_events"]
    assert int(outcome.findtext("outcomeReportingGroups/outcomeReportingGroup/subjectsAnalyzed")) == primary["n_total"]
    analysis = outcome.find("outcomeMeasureAnalyses/measureAnalysis")
    x, n = primary["n_events"], primary["n_total"]
    # Independent reference: the exact (Clopper-Pearson) limits are beta quantiles (scipy), in percent.
    lower = 0.0 if x == 0 else 100 * stats.beta.ppf(0.025, x, n - x + 1)
    upper = 100.0 if x == n else 100 * stats.beta.ppf(0.975, x + 1, n - x)
    assert float(analysis.findtext("ciLowerLimit")) == pytest.approx(lower, abs=0.05)
    assert float(analysis.findtext("ciUpperLimit")) == pytest.approx(upper, abs=0.05)
    assert float(analysis.findtext("parameterValue")) == pytest.approx(100 * x / n, abs=0.05)
    assert float(analysis.findtext("ciLowerLimit")) == pytest.approx(100 * primary["lower"], abs=0.05)
    assert float(analysis.findtext("ciUpperLimit")) == pytest.approx(100 * primary["upper"], abs=0.05)


def test_demo_sized_primary_ci_by_hand():
    # 2 events in 30 infused (the demo's primary endpoint): exact 95% CI 0.82% to 22.07% (beta quantiles).
    from regenheart.stats.descriptive import binomial_summary

    s = binomial_summary(2, 30)
    assert (round(100 * s.lower, 2), round(100 * s.upper, 2)) == (0.82, 22.07)


def test_secondary_outcomes_equal_the_sap_and_a_paired_t_by_hand(protocol, real_record, ctgov_study):  # noqa: F811
    results = ctgov_study.results
    registered = [o for o in protocol.registry.outcomes if o.type == "SECONDARY"]
    secondary = [m for m in real_record.outcomes if m.outcome_type == "SECONDARY"]
    assert [m.source for m in secondary] == [o.source for o in registered]
    for measure in secondary:
        assert [c.title for c in measure.classes] == ["Month 1", "Month 3", "Month 6"]
        assert measure.time_frame and measure.unit
        if measure.param_type != "MEAN":
            continue
        block = next(b for b in results["efficacy"] if b["paramcd"] == measure.source)
        for cls, visit in zip(measure.classes, block["visits"], strict=True):
            value = cls.categories[0].values["MSC"]
            assert cls.analyzed["MSC"] == visit["n"]
            if visit["n"] >= 2:
                assert float(value.value) == pytest.approx(visit["mean_change"], abs=0.005)
                assert float(value.lower) == pytest.approx(visit["lower"], abs=0.005)
                assert float(value.upper) == pytest.approx(visit["upper"], abs=0.005)
    # by hand: LVEF at month 1 from the analysis dataset, scipy's paired t
    adeff = ctgov_study.data.adeff
    rows = adeff[(adeff["PARAMCD"] == "LVEF") & (adeff["AVISIT"] == "Month 1") & (adeff["ANL01FL"] == "Y")
                 & adeff["BASE"].notna() & adeff["AVAL"].notna()
                 & adeff["SUBJID"].isin(ctgov_study.data.adsl.loc[ctgov_study.data.adsl["EFFFL"] == "Y", "SUBJID"])]
    change = rows["AVAL"].to_numpy(float) - rows["BASE"].to_numpy(float)
    half = stats.t.ppf(0.975, len(change) - 1) * change.std(ddof=1) / np.sqrt(len(change))
    lvef = next(m for m in secondary if m.source == "LVEF")
    month1 = lvef.classes[0].categories[0].values["MSC"]
    assert float(month1.lower) == pytest.approx(change.mean() - half, abs=0.005)
    assert float(month1.upper) == pytest.approx(change.mean() + half, abs=0.005)
    t_test = next(a for a in lvef.analyses if a.method == "t-test, 2 sided")
    p = stats.ttest_rel(rows["AVAL"].to_numpy(float), rows["BASE"].to_numpy(float)).pvalue
    assert t_test.p_value == ("<0.001" if p < 0.001 else f"{p:.3f}")


def test_adverse_events_equal_results_json(real_record, ctgov_study):  # noqa: F811
    ae = ctgov_study.results["adverse_events"]
    root = _xml(real_record)
    group = root.find("reportedEvents/interventionGroups/interventionGroup")
    assert int(group.findtext("numSubjectsSeriousEvents")) == ae["overview"]["Any serious adverse event"]["subjects"]
    assert int(group.findtext("numDeaths")) == len(ae["deaths"])
    assert int(group.findtext("partAtRiskSeriousEvents")) == ae["n_safety"]
    by_category = {c["category"]: c for c in ae["by_category"]}
    for event in root.findall("reportedEvents/seriousAdverseEvents/seriousEvent"):
        stats_ = event.find("adverseEventStats/eventStats")
        assert int(stats_.findtext("numEvents")) == by_category[event.findtext("term")]["serious"]
        assert event.findtext("organSystemName")
    for event in root.findall("reportedEvents/frequentAdverseEvents/frequentEvent"):
        s = event.find("adverseEventStats/eventStats")
        assert int(s.findtext("numSubjectsAffected")) / int(s.findtext("numSubjects")) >= 0.05


def test_synthetic_record_says_so_in_every_displayed_text(synthetic_record):
    assert synthetic_record.synthetic and synthetic_record.draft
    root = _xml(synthetic_record)
    comment = next(n for n in root.iterchildren() if isinstance(n, etree._Comment))
    assert "SYNTHETIC" in comment.text and "Do not upload" in comment.text
    free_text = {"recruitmentDetails", "preAssignmentDescription", "measureDescription", "populationAnalysisDescription",
                 "groupDescription", "estimateComment", "statisticalTestComment", "otherDetails", "notes",
                 "allCauseMortComment", "description"}
    seen = 0
    for element in root.iter():
        if element.tag in free_text and element.text:
            assert element.text.startswith(SYNTHETIC_MARK), (element.tag, element.text)
            seen += 1
    for title in root.findall("outcomeMeasures/outcomeMeasure/title"):
        assert title.text.startswith(SYNTHETIC_MARK)
    for frame in root.findall("outcomeMeasures/outcomeMeasure/timeFrame"):
        assert frame.text.startswith(SYNTHETIC_MARK)
    for title in root.iter("title"):
        if title.getparent().tag in ("flowGroup", "baselineReportingGroup", "outcomeReportingGroup",
                                     "interventionGroup"):
            assert title.text.startswith(SYNTHETIC_MARK)
    assert root.findtext("reportedEvents/timeFrame").startswith(SYNTHETIC_MARK)
    assert seen > 50
    assert any(f.rule == "synthetic" for f in errors(check_results(synthetic_record)))


def test_json_twin_holds_the_same_numbers(real_record):
    root = _xml(real_record)
    doc = results_document(real_record)["resultsSection"]
    flow = doc["participantFlowModule"]["periods"][0]["milestones"]
    assert flow[0]["achievements"][0]["numSubjects"] == root.findtext(
        "participantFlow/periods/period/startedMilestone/milestoneAchievements/milestoneAchievement/subjectsAchieve")
    outcomes = doc["outcomeMeasuresModule"]["outcomeMeasures"]
    assert len(outcomes) == len(root.findall("outcomeMeasures/outcomeMeasure"))
    assert outcomes[0]["classes"][0]["categories"][0]["measurements"][0]["value"] == root.findtext(
        "outcomeMeasures/outcomeMeasure/measureRows/measureRow/reportedValues/reportedValue/reportedEntries/"
        "reportedEntry/parameterValue")
    assert outcomes[0]["analyses"][0]["ciUpperLimit"] == root.findtext(
        "outcomeMeasures/outcomeMeasure/outcomeMeasureAnalyses/measureAnalysis/ciUpperLimit")
    groups = doc["adverseEventsModule"]["eventGroups"][0]
    assert str(groups["seriousNumAffected"]) == root.findtext(
        "reportedEvents/interventionGroups/interventionGroup/numSubjectsSeriousEvents")
    assert doc["moreInfoModule"]["pointOfContact"]["email"] == "results@example.org"
    assert len(doc["baselineCharacteristicsModule"]["measures"]) == len(real_record.baseline)


def test_two_arm_study_gives_a_two_group_record(protocol, ctgov_study):  # noqa: F811
    # Protocol version 1.0 (randomized 1:1): the same subjects split between the arms alternately.
    two_arm = complete_protocol(protocol).model_copy(update={"active_protocol_version": "1.0"})
    adsl = ctgov_study.data.adsl.copy()
    enrolled = adsl["ENRLFL"] == "Y"
    arms = ["MSC", "CTRL"] * len(adsl)
    adsl.loc[enrolled, "ARMCD"] = arms[: int(enrolled.sum())]
    adsl["SYNTHFL"] = "N"
    data = dataclasses.replace(ctgov_study.data, adsl=adsl)
    results = analysed(two_arm, data, synthetic=False)
    record = build_results(two_arm, results, data)
    assert [g.key for g in record.groups] == ["MSC", "CTRL"]
    assert validate(results_xml(record), RRS_XSD) == []
    root = _xml(record)
    assert len(root.findall("participantFlow/participantFlowGroups/flowGroup")) == 2
    assert root.find("baseline/totalBaselineReportingGroup") is not None
    started = _ints(root.findall("participantFlow/periods/period/startedMilestone/milestoneAchievements/"
                                 "milestoneAchievement/subjectsAchieve"))
    assert started == [int((adsl.loc[enrolled, "ARMCD"] == a).sum()) for a in ("MSC", "CTRL")]
    assert sum(started) == results["flow"]["enrolled"]
    total = int(root.findtext("baseline/totalBaselineReportingGroup/subjectsAnalyzed"))
    assert total == sum(_ints(root.findall("baseline/baselineReportingGroups/baselineReportingGroup/subjectsAnalyzed")))
    lvef = next(m for m in record.outcomes if m.source == "LVEF")
    assert set(lvef.analyzed) == {"MSC", "CTRL"}
    if results.get("mmrm", {}).get("results", {}).get("LVEF", {}).get("differences"):
        assert any(set(a.group_keys) == {"MSC", "CTRL"} for a in lvef.analyses)
    ordinal = results.get("between_arms", {}).get("ordinal", {}).get("NYHA", {})
    if any(t.get("p_value") is not None for v in ordinal.values() for t in v.get("tests", [])):
        nyha = next(m for m in record.outcomes if m.source == "NYHA")
        assert any(a.method == "Wilcoxon (Mann-Whitney)" and set(a.group_keys) == {"MSC", "CTRL"}
                   for a in nyha.analyses)
    differences = results.get("between_arms", {}).get("primary", {}).get("risk_differences", [])
    if differences and differences[0].get("newcombe_lower") is not None:
        rd = next(a for a in record.outcomes[0].analyses if a.param_type == "Risk Difference (RD)")
        assert float(rd.param_value) == pytest.approx(100 * differences[0]["estimate"], abs=0.05)
        assert float(rd.ci_lower) == pytest.approx(100 * differences[0]["newcombe_lower"], abs=0.05)
    assert errors(check_results(record)) == []


def test_a_protocol_without_registry_is_refused_clearly(protocol, ctgov_study):  # noqa: F811
    bare = protocol.model_copy(update={"registry": None})
    with pytest.raises(CtgovError, match="no 'registry' section"):
        build_results(bare, ctgov_study.results, ctgov_study.data)


def test_unknown_outcome_source_is_named(protocol, ctgov_study):  # noqa: F811
    registry = protocol.registry
    bad = registry.outcomes[1].model_copy(update={"source": "NOPE"})
    broken = protocol.model_copy(update={"registry": registry.model_copy(update={"outcomes": [registry.outcomes[0], bad]})})
    with pytest.raises(CtgovError, match=r"registry.outcomes\[1\].source: 'NOPE'"):
        build_results(broken, ctgov_study.results, ctgov_study.data)


def test_ordinal_outcome_equals_the_sap_shift_tables(real_record, ctgov_study):  # noqa: F811
    results = ctgov_study.results
    tables = results["shift_tables"]["NYHA"]
    nyha = next(m for m in real_record.outcomes if m.source == "NYHA")
    assert nyha.param_type == "COUNT_OF_PARTICIPANTS" and nyha.dispersion == "NA"
    for cls, visit in zip(nyha.classes, ("M1", "M3", "M6"), strict=True):
        change = tables[visit]["change"]
        counts = {c.title: int(c.values["MSC"].value) for c in cls.categories}
        assert counts == {"Improved": change["n_improved"], "Unchanged": change["n_unchanged"],
                          "Worsened": change["n_worsened"]}
        assert cls.analyzed["MSC"] == change["n"]
    sign_tests = [a for a in nyha.analyses if a.method == "Sign test"]
    p_values = [tables[v]["change"]["sign_test_p"] for v in ("M1", "M3", "M6")]
    p_values = [p for p in p_values if p is not None]  # no test at a visit without any change
    assert [a.p_value for a in sign_tests] == [("<0.001" if p < 0.001 else f"{p:.3f}") for p in p_values]
    assert sign_tests


def test_json_twin_is_valid_against_the_api_v2_model(synthetic_record, real_record):
    """The OpenAPI 3 component schemas of ctg-oas-v2.yaml as JSON Schema (enums of paramType, dispersionType,
    outcome type, assessment type, ...); the real posted example validates too, a wrong enum does not."""
    import json

    import jsonschema
    import yaml
    from tests.exchange._ctgov_data import SHARED

    spec = yaml.safe_load((SHARED / "schemas" / "ctgov-prs" / "ctg-oas-v2.yaml").read_text(encoding="utf-8"))
    defs = json.loads(json.dumps(spec["components"]["schemas"]).replace("#/components/schemas/", "#/$defs/"))
    validator = jsonschema.Draft202012Validator({"$defs": defs, "$ref": "#/$defs/ResultsSection"})
    for record in (synthetic_record, real_record):
        section = results_document(record)["resultsSection"]
        assert [e.message for e in validator.iter_errors(section)] == []
    example = json.loads((SHARED / "examples" / "ctgov-prs" / "NCT02513394.study-with-results.json")
                         .read_text(encoding="utf-8"))["resultsSection"]
    assert list(validator.iter_errors(example)) == []
    section = results_document(real_record)["resultsSection"]
    section["outcomeMeasuresModule"]["outcomeMeasures"][0]["paramType"] = "AVERAGE"
    assert list(validator.iter_errors(section))
