"""Conformance checks: clean hand-made datasets give no errors; each rule fires on a planted violation and
names dataset, variable, record (USUBJID) and rule. --DY expectations are hand-calculated."""

from __future__ import annotations

import csv

import pytest
from tests.exchange import _cdisc_data as data

from regenheart.derive.datasets import Variable
from regenheart.exchange.cdisc.conformance import RULES, check_datasets, summarize, write_conformance_csv
from regenheart.exchange.cdisc.ct import default_terminology


def _check(sdtm=None, adam=None):
    return check_datasets(sdtm if sdtm is not None else data.sdtm(), adam if adam is not None else data.adam(),
                          default_terminology())


def _hits(findings, rule):
    return [f for f in findings if f.rule == rule]


def test_clean_datasets_have_no_errors_only_the_expected_warnings():
    findings = _check()
    assert [f for f in findings if f.severity == "Error"] == []
    assert {(f.dataset, f.variable, f.rule) for f in findings} == {
        ("DM", "RACE", "RH0002"), ("DM", "RFENDTC", "RH0002"), ("ADSL", "RACE", "RH0002")}


def test_value_outside_a_non_extensible_codelist_is_an_error():
    dm = data.dm()
    dm.records.loc[1, "SEX"] = "FEMALE"
    [hit] = _hits(_check({**data.sdtm(), "DM": dm}), "RH0010")
    assert (hit.dataset, hit.variable, hit.severity) == ("DM", "SEX", "Error")
    assert hit.record.startswith("TEST01-002") and "'FEMALE'" in hit.message and "C66731" in hit.message


def test_extension_of_an_extensible_codelist_is_a_warning():
    cv = data.cv()
    cv.records.loc[2, "CVORRESU"] = "furlong"
    [hit] = _hits(_check({**data.sdtm(), "CV": cv}), "RH0011")
    assert (hit.variable, hit.severity) == ("CVORRESU", "Warning") and "UNIT" in hit.message
    assert hit.record == "TEST01-001 CVSEQ=3 row 3"


def test_duplicate_sequence_numbers_within_a_subject():
    cv = data.cv()
    cv.records.loc[1, "CVSEQ"] = 1
    hits = _hits(_check({**data.sdtm(), "CV": cv}), "RH0020")
    assert len(hits) == 2 and all(h.record.startswith("TEST01-001 CVSEQ=1") for h in hits)


def test_dates_must_be_iso_8601_partial_dates_allowed():
    ae = data.ae()
    ae.records.loc[0, "AESTDTC"] = "10/01/2024"
    ae.records.loc[1, "AESTDTC"] = "2024-02"  # partial: allowed
    ae.records.loc[1, "AESTDY"] = None
    hits = _hits(_check({**data.sdtm(), "AE": ae}), "RH0030")
    assert [(h.variable, h.record.split()[0]) for h in hits] == [("AESTDTC", "TEST01-001")]


def test_every_subject_must_be_in_dm_and_adsl():
    ae = data.ae()
    ae.records.loc[1, "USUBJID"] = "TEST01-999"
    hits = _hits(_check({**data.sdtm(), "AE": ae}), "RH0040")
    assert [(h.dataset, h.record.split()[0]) for h in hits] == [("AE", "TEST01-999")]
    adeff = data.adeff()
    adeff.records.loc[3, "USUBJID"] = "TEST01-777"
    found = _check(adam={"ADSL": data.adsl(), "ADEFF": adeff})
    assert _hits(found, "RH0041")[0].record.startswith("TEST01-777")


def test_study_day_against_rfstdtc_hand_calculated():
    # RFSTDTC 2024-01-10: 2024-01-05 is day -5 (no day 0), 2024-07-12 is day 185 (182 days later + 1 + 2).
    cv = data.cv()
    assert cv.records.loc[0, "CVDY"] == -5 and cv.records.loc[2, "CVDY"] == 185
    cv.records.loc[2, "CVDY"] = 184  # the classic off-by-one of counting day 0
    cv.records.loc[1, "CVDY"] = 0
    found = _check({**data.sdtm(), "CV": cv})
    wrong = _hits(found, "RH0050")
    assert {(h.record, h.message) for h in wrong} >= {
        ("TEST01-001 CVSEQ=3 row 3", "CVDY is 184, expected 185 from CVDTC and RFSTDTC")}
    assert [h.record for h in _hits(found, "RH0051")] == ["TEST01-001 CVSEQ=2 row 2"]


def test_end_before_start_is_a_warning():
    ae = data.ae()
    ae.records["AEENDTC"] = ["2024-01-09", None]
    ae.variables.append(Variable("AEENDTC", "End Date/Time of Adverse Event", "date", role="Timing"))
    [hit] = _hits(_check({**data.sdtm(), "AE": ae}), "RH0031")
    assert hit.severity == "Warning" and hit.record.startswith("TEST01-001")


def test_adsl_one_record_per_subject():
    adsl = data.adsl()
    adsl.records.loc[2, "USUBJID"] = "TEST01-001"
    hits = _hits(_check(adam={"ADSL": adsl, "ADEFF": data.adeff()}), "RH0060")
    assert len(hits) == 2 and {h.record.split()[0] for h in hits} == {"TEST01-001"}


def test_traceability_to_sdtm():
    adeff = data.adeff()
    adeff.records.loc[1, "SRCSEQ"] = 9          # no CV record 9 for subject 001
    adeff.records.loc[3, "AVAL"] = 33.1         # CV record 3 of subject 002 says 33
    adeff.records.loc[2, ["SRCDOM", "SRCVAR", "SRCSEQ"]] = ["", "", None]  # analysed, untraced
    found = _check(adam={"ADSL": data.adsl(), "ADEFF": adeff})
    [missing] = _hits(found, "RH0070")
    assert missing.record == "TEST01-001 row 2" and "CVSEQ 9" in missing.message
    [differs] = _hits(found, "RH0071")
    assert differs.record == "TEST01-002 row 4" and "'33.1' differs from CV.CVSTRESN = '33'" in differs.message
    [untraced] = _hits(found, "RH0072")
    assert untraced.severity == "Warning" and untraced.record == "TEST01-002 row 3"


def test_required_variables_and_metadata_agreement():
    dm = data.dm()
    dm.records = dm.records.drop(columns="SEX")
    dm.records.loc[0, "SITEID"] = None
    found = _check({**data.sdtm(), "DM": dm})
    assert {(h.variable, h.rule) for h in found if h.severity == "Error"} >= {
        ("SEX", "RH0001"), ("SEX", "RH0004"), ("SITEID", "RH0003")}


def test_transport_limits_and_test_codes():
    cv = data.cv()
    cv.records.loc[0, "CVTESTCD"] = "LVEF_BIPLANE"
    cv.records.loc[0, "CVTEST"] = "Left Ventricular Ejection Fraction, Biplane Simpson"
    cv.records.loc[1, "CVORRES"] = "é" * 101
    found = _check({**data.sdtm(), "CV": cv})
    assert _hits(found, "RH0084")[0].variable == "CVTESTCD"
    assert _hits(found, "RH0085")[0].variable == "CVTEST"
    assert _hits(found, "RH0082")[0].message == "value of 202 bytes (at most 200)"
    assert _hits(found, "RH0083")[0].severity == "Warning"


def test_derivations_must_name_defined_methods():
    adsl = data.adsl()
    adsl.variables[-1] = Variable("BMIBL", "Baseline BMI (kg/m2)", "float", origin="Derived", source="MT.NOPE")
    adsl.variables[-2] = Variable("SAFFL", "Safety Population Flag", "text", origin="Derived")
    found = _check(adam={"ADSL": adsl, "ADEFF": data.adeff()})
    assert [h.variable for h in _hits(found, "RH0091")] == ["BMIBL"]
    assert [h.variable for h in _hits(found, "RH0090")] == ["SAFFL"]


def test_many_hits_are_capped_with_a_summary_row():
    cv = data.cv()
    big = cv.records.loc[[0] * 120].reset_index(drop=True)
    big["CVSEQ"] = range(1, 121)
    big["CVORRESU"] = "furlong"
    cv.records = big
    hits = _hits(_check({**data.sdtm(), "CV": cv}), "RH0011")
    assert len(hits) == 51 and "70 more records fail RH0011" in hits[-1].message


def test_csv_and_summary(tmp_path):
    dm = data.dm()
    dm.records.loc[0, "SEX"] = "X"
    findings = _check({**data.sdtm(), "DM": dm})
    path = write_conformance_csv(findings, tmp_path / "conformance.csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert list(rows[0]) == ["dataset", "variable", "record", "rule", "severity", "message", "rule_description"]
    assert rows[0]["rule"] == "RH0010" and rows[0]["rule_description"] == RULES["RH0010"][1]
    assert summarize(findings)["Error"] == {"RH0010": 1}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_has_a_severity_and_description(rule):
    severity, description = RULES[rule]
    assert severity in ("Error", "Warning", "Notice") and description


def test_external_dictionary_codes_checked_by_form_and_arm_null_with_armnrs():
    dm = data.dm()
    dm.variables[-1] = Variable("COUNTRY", "Country", "text", core="Req", codelist="ISO 3166-1 alpha-3")
    dm.records.loc[2, "COUNTRY"] = "Poland"
    dm.records["ARMNRS"] = ["", "", "SCREEN FAILURE"]
    dm.variables.append(Variable("ARMNRS", "Reason Arm and/or Actual Arm is Null", "text", core="Exp"))
    dm.records.loc[2, ["ARMCD", "ARM", "ACTARMCD", "ACTARM"]] = None
    found = _check({**data.sdtm(), "DM": dm})
    [bad] = _hits(found, "RH0013")
    assert bad.record.startswith("TEST01-003") and "'Poland' is not a ISO 3166-1 alpha-3 code" in bad.message
    assert not _hits(found, "RH0003")  # arm variables may be null when ARMNRS says why (SDTMIG 3.4)
    dm.records.loc[2, "ARMNRS"] = ""
    assert {h.variable for h in _hits(_check({**data.sdtm(), "DM": dm}), "RH0003")} == {
        "ARMCD", "ARM", "ACTARMCD", "ACTARM"}


def test_derived_parameters_trace_through_their_method_not_sdtm():
    adeff = data.adeff()
    adeff.records.loc[2, ["SRCDOM", "SRCVAR", "SRCSEQ"]] = ["", "", None]
    adeff.records.loc[2, "PARAMCD"] = "LVMASS"
    assert _hits(_check(adam={"ADSL": data.adsl(), "ADEFF": adeff}), "RH0072")
    adeff.value_level.append(data.ValueLevel("AVAL", "PARAMCD", "LVMASS", "LV mass (ASE cube formula)", "float",
                                             unit="g", origin="Derived", source="MT.CHG"))
    assert not _hits(_check(adam={"ADSL": data.adsl(), "ADEFF": adeff}), "RH0072")
