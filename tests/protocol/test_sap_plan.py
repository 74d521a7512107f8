"""The analysis plan as data: the ``sap:`` section is validated like the rest of the protocol (every
problem reported with its path), RegenHeart's plan says what the SAP used to hard-code, and a
protocol without a plan gets the default one."""

from __future__ import annotations

import copy

import pytest
import yaml

from regenheart.instruments import interpretation
from regenheart.protocol import ProtocolError, load_protocol, parse_protocol
from regenheart.protocol.loader import default_protocol_text
from regenheart.protocol.sap import MmrmModel, SapPlan, default_plan


@pytest.fixture(scope="module")
def document() -> dict:
    return yaml.safe_load(default_protocol_text())


def issues_of(document: dict) -> dict[str, str]:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(document, "test.yaml")
    return {issue.path: issue.message for issue in info.value.issues}


def test_regenheart_plan_states_what_the_sap_runs():
    plan = load_protocol().analysis_plan
    assert load_protocol().sap is plan
    assert [p.flag for p in plan.populations] == ["SCRNFL", "ENRLFL", "SAFFL", "EFFFL"]
    assert plan.mmrm.formula == "CHG ~ BASE + AVISIT + BASE:AVISIT + us(AVISIT | USUBJID)"
    assert (plan.mmrm.method, plan.mmrm.df, plan.mmrm.covariance) == ("REML", "kenward-roger", "us")
    assert plan.between_arms.mmrm.formula == "CHG ~ BASE + ARMCD*AVISIT + BASE:AVISIT + us(AVISIT | USUBJID)"
    assert plan.between_arms.reference_arm == "CTRL"
    ntprobnp = plan.endpoint("NTPROBNP")
    assert [a.type for a in ntprobnp.analyses] == ["paired_change", "geometric_mean_ratio", "mmrm"]
    assert ntprobnp.analysis("mmrm").scale == "log"
    nyha = plan.endpoint("NYHA").analysis("shift_table")
    assert (nyha.codelist, nyha.improvement, nyha.test) == ("nyha", "lower", "sign")
    sens = plan.sensitivity[0]
    assert (sens.paramcd, sens.visit, sens.imputations, sens.seed) == ("LVEF", "M6", 50, 20200301)
    assert {e.paramcd: e.decimals for e in plan.endpoints if e.decimals is not None} == {
        "NTPROBNP": 0, "NYHA": 2, "CTIVS": 2, "CTLVPW": 2}
    assert [e.paramcd for e in plan.endpoints if e.analysis("mmrm")] == [
        "LVEF", "LVEDV", "LVESV", "LVEDD", "LVESD", "NTPROBNP", "SIXMWD", "KCCQOS", "KCCQCS", "SF12PCS", "SF12MCS",
        "MLHFQTOT"]


@pytest.mark.parametrize("paramcd, score", [("KCCQOS", "overall_summary"), ("KCCQCS", "clinical_summary")])
def test_responder_thresholds_agree_with_the_instrument_library(paramcd, score):
    """The plan cites the same published thresholds as instruments.interpretation (5/10/20 points)."""
    plan = load_protocol().analysis_plan
    thresholds = plan.endpoint(paramcd).analysis("responder").thresholds
    library = interpretation.thresholds("kccq", score)
    assert [(t.level, t.change) for t in thresholds] == [(k, v.threshold) for k, v in library.items()]
    assert [" ".join(t.source.split()) for t in thresholds] == [v.source for v in library.values()]


def test_every_unknown_name_is_reported_with_its_path(document):
    doc = copy.deepcopy(document)
    sap = doc["sap"]
    sap["endpoints"][0]["visits"] = ["M1", "M9", "SCR"]
    sap["endpoints"][1]["population"] = "nobody"
    sap["endpoints"][2]["paramcd"] = "NOSUCH"
    sap["endpoints"][6]["analyses"][1]["codelist"] = "no_list"
    sap["sensitivity"][0]["visit"] = "M3x"
    sap["between_arms"]["reference_arm"] = "PLACEBO"
    sap["between_arms"]["mmrm"]["terms"] = ["BASE", "AVISIT"]
    sap["baseline"]["variables"][5]["paramcd"] = "NYHAX"
    sap["headline"] = "QQQ"
    found = issues_of(doc)
    expected = {
        "sap.endpoints[0].visits[1]": "unknown visit 'M9'",
        "sap.endpoints[0].visits[2]": "'SCR' is the baseline visit, not a follow-up visit",
        "sap.endpoints[1].population": "unknown population 'nobody'",
        "sap.endpoints[2].paramcd": "unknown parameter 'NOSUCH'",
        "sap.endpoints[6].analyses[1].codelist": "unknown code list 'no_list'",
        "sap.sensitivity[0].visit": "'M3x' is not one of the visits of LVEF",
        "sap.between_arms.reference_arm": "'PLACEBO' is not an arm of a randomized protocol version",
        "sap.between_arms.mmrm.terms": "the model needs ARMCD among its terms",
        "sap.baseline.variables[5].paramcd": "unknown parameter 'NYHAX'",
        "sap.headline": "'QQQ' is not an endpoint of the plan",
    }
    for path, message in expected.items():
        assert path in found, (path, sorted(found))
        assert found[path].startswith(message), (path, found[path])


def test_structural_errors_carry_the_path(document):
    doc = copy.deepcopy(document)
    doc["sap"]["mmrm"]["covariance"] = "banded"
    doc["sap"]["endpoints"][0]["analyses"] = ["paired_change", {"type": "bootstrap"}]
    doc["sap"]["populations"][0]["flag"] = "screened flag"
    found = issues_of(doc)
    assert "sap.mmrm.covariance" in found
    assert any(p.startswith("sap.endpoints[0].analyses[1]") for p in found), sorted(found)
    assert "sap.populations[0].flag" in found


def test_plan_level_rules():
    base = {"populations": [{"name": "all", "label": "All", "flag": "SAFFL", "definition": "all"}]}
    with pytest.raises(ValueError, match="no 'mmrm' model"):
        SapPlan.model_validate({**base, "endpoints": [{"paramcd": "X", "group": "secondary", "visits": ["V1"],
                                                       "analyses": ["mmrm"]}]})
    with pytest.raises(ValueError, match="population all is defined twice"):
        SapPlan.model_validate({"populations": base["populations"] * 2})
    with pytest.raises(ValueError):
        MmrmModel(terms=["BASE + AVISIT"])  # one term per entry, ADaM names only
    assert MmrmModel(terms=["BASE", "ARMCD*AVISIT", "BASE:AVISIT"]).columns == ["BASE", "ARMCD", "AVISIT"]


def test_protocol_with_endpoints_but_no_plan_gets_the_conventional_default(document):
    doc = copy.deepcopy(document)
    del doc["sap"]
    protocol = parse_protocol(doc)
    plan = protocol.analysis_plan
    assert protocol.sap is None and plan == default_plan(protocol)
    assert [a.type for a in plan.endpoint("LVEF").analyses] == ["paired_change", "mmrm"]
    assert [a.type for a in plan.endpoint("NTPROBNP").analyses] == ["paired_change", "geometric_mean_ratio", "mmrm"]
    assert plan.endpoint("NYHA").analysis("shift_table").codelist == "nyha"
    assert plan.endpoint("CTIVS").analysis("mmrm") is None  # exploratory: descriptive change only
    assert plan.primary is not None and plan.between_arms is None and plan.sensitivity == []
    assert len(plan.descriptive.variables) == sum(1 for f in protocol.forms.values() for x in f.fields
                                                  if x.type in ("integer", "float", "code"))
