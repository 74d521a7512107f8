"""Protocol as data: the embedded RegenHeart definition loads; malformed files are refused with paths."""

from __future__ import annotations

import copy

import pytest
import yaml

from regenheart.protocol import ProtocolError, compile_rule, load_protocol, parse_protocol
from regenheart.protocol.loader import default_protocol_text
from regenheart.protocol.rules import RuleSyntaxError
from regenheart.protocol.schedule import assign_analysis_visit, in_window, study_day


def document():
    return yaml.safe_load(default_protocol_text())


def test_embedded_protocol_describes_regenheart(protocol):
    assert protocol.study.nct_id == "NCT04325594"
    assert protocol.study.acronym == "RegenHeart"
    v1, v2 = protocol.protocol_versions
    assert (v1.design, v1.planned_enrollment, len(v1.arms)) == ("randomized", 60, 2)
    assert (v2.design, v2.planned_enrollment, len(v2.arms)) == ("single_arm", 30, 1)
    assert protocol.active_version.version == "2.0"
    assert protocol.visit("SCR").window == (-30, -1)
    assert protocol.visit("M1").window == (23, 37)    # day 30 +/- 7
    assert protocol.visit("M3").window == (76, 104)   # day 90 +/- 14
    assert protocol.visit("M6").window == (166, 194)  # day 180 +/- 14
    assert [v.code for v in protocol.visits if 1 <= v.day <= 5] == ["D1", "D2", "D3", "D4", "D5"]
    assert {p.paramcd for p in protocol.endpoints.secondary.parameters} >= {
        "LVEF", "LVEDV", "LVESV", "LVEDD", "LVESD", "NTPROBNP", "NYHA", "SIXMWD", "KCCQOS", "SF12PCS",
        "SF12MCS", "MLHFQTOT"}
    assert protocol.endpoints.primary.window_days == (0, 5)
    assert len([c for c in protocol.eligibility if c.kind == "inclusion"]) == 9


def _issues(doc):
    with pytest.raises(ProtocolError) as info:
        parse_protocol(doc, "test.yaml")
    return [str(i) for i in info.value.issues]


def test_type_error_names_the_path_and_rule():
    doc = document()
    doc["forms"]["echo"]["fields"][1]["range"] = [80, 5]
    doc["visits"][7]["window"] = [40, 50]  # target day 30 outside
    issues = _issues(doc)
    assert any(i.startswith("forms.echo.fields[1]") and "range minimum 80" in i for i in issues)
    assert any(i.startswith("visits[7]") and "outside its window" in i for i in issues)


def test_cross_references_are_checked():
    doc = document()
    doc["visits"][0]["forms"].append("no_such_form")
    doc["forms"]["echo"]["checks"][0]["rule"] = "lvesv_ml < lvedv_mL"
    doc["forms"]["nyha"]["fields"][0]["codelist"] = "nope"
    doc["endpoints"]["secondary"]["parameters"][0]["source"] = "echo.lvef"
    issues = _issues(doc)
    assert "visits[0].forms[13]: unknown form 'no_such_form'" in issues
    assert "forms.echo.checks[0].rule: rule refers to unknown field 'lvedv_mL'" in issues
    assert "forms.nyha.fields[0].codelist: unknown code list 'nope'" in issues
    assert "endpoints.secondary.parameters[0].source: form 'echo' has no field 'lvef'" in issues


def test_unsafe_rule_is_refused():
    doc = document()
    doc["forms"]["echo"]["checks"][0]["rule"] = "__import__('os').system('true')"
    issues = _issues(doc)
    assert any(i.startswith("forms.echo.checks[0].rule") and "may be called" in i for i in issues)
    with pytest.raises(RuleSyntaxError):
        compile_rule("[x for x in y]")


def test_unknown_key_and_bad_yaml(tmp_path):
    doc = copy.deepcopy(document())
    doc["study"]["nct"] = "x"
    assert any(i.startswith("study.nct") for i in _issues(doc))
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: [unclosed\n")
    with pytest.raises(ProtocolError) as info:
        load_protocol(bad)
    assert "line" in str(info.value) and "not valid YAML" in str(info.value)


def test_rule_three_valued_logic():
    rule = compile_rule("lvesv_ml < lvedv_ml")
    assert rule.evaluate({"lvesv_ml": 100, "lvedv_ml": 200}) is True
    assert rule.evaluate({"lvesv_ml": 200, "lvedv_ml": 100}) is False
    assert rule.evaluate({"lvesv_ml": 200}) is None  # not evaluable, not false
    assert compile_rule("a == 1 or b == 2").evaluate({"b": 2}) is True
    assert compile_rule("a == 1 and b == 2").evaluate({"b": 3}) is False
    assert compile_rule("default(a, 'N') == 'N'").evaluate({}) is True
    assert compile_rule("stop >= onset").evaluate({"stop": "2021-01-02", "onset": "2021-01-01"}) is True


def test_windows_and_study_days(protocol):
    import datetime as dt
    assert study_day(dt.date(2021, 3, 31), dt.date(2021, 3, 1)) == 30
    assert study_day(dt.date(2021, 2, 28), dt.date(2021, 3, 1)) == -1
    m1 = protocol.visit("M1")
    assert in_window(m1, 23) and in_window(m1, 37) and not in_window(m1, 38)
    assert assign_analysis_visit(protocol, 38, ["M1", "M3", "M6"]) is None
    assert assign_analysis_visit(protocol, 100, ["M1", "M3", "M6"]) == "M3"
    assert assign_analysis_visit(protocol, -3) == "SCR"
