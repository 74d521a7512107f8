"""Define-XML 2.1: valid against CDISC's define2-1-0.xsd for SDTM and ADaM, and says what the data are
(standards, keys, lengths sized to the data, origins, methods, codelists with NCI codes, value-level metadata)."""

from __future__ import annotations

import pytest
from lxml import etree
from tests.conftest import SHARED
from tests.exchange import _cdisc_data as data

from regenheart.derive.datasets import Variable
from regenheart.exchange.cdisc.ct import default_terminology
from regenheart.exchange.cdisc.define import DEF_NS, ODM_NS, XLINK_NS, build_define, write_define
from regenheart.exchange.cdisc.define_html import define_html, write_define_html
from regenheart.exchange.cdisc.metadata import SubmissionError

XSD = etree.XMLSchema(etree.parse(str(SHARED / "schemas" / "define-xml-2.1" / "cdisc-define-2.1" / "define2-1-0.xsd")))
NS = {"odm": ODM_NS, "def": DEF_NS, "xlink": XLINK_NS}


def _define(standard="SDTM", datasets=None):
    sets = datasets or (data.sdtm() if standard == "SDTM" else data.adam())
    return build_define(sets.values(), standard, data.STUDY, default_terminology())


def _one(tree, xpath):
    found = tree.xpath(xpath, namespaces=NS)
    assert len(found) == 1, (xpath, found)
    return found[0]


@pytest.mark.parametrize("standard", ["SDTM", "ADaM"])
def test_valid_against_the_define_2_1_schema(standard, tmp_path):
    path = write_define(_define(standard), tmp_path / "define.xml")
    reparsed = etree.parse(str(path))
    assert XSD.validate(reparsed), [e.message for e in XSD.error_log]
    assert reparsed.getroot().getprevious().target == "xml-stylesheet"


def test_schema_check_is_real_a_broken_define_fails():
    tree = _define()
    _one(tree, "//odm:ItemGroupDef[@OID='IG.DM']/def:Class").set("Name", "NOT A CLASS")
    assert not XSD.validate(tree)


def test_standards_study_and_synthetic_note():
    tree = _define("ADaM")
    standards = tree.xpath("//def:Standard", namespaces=NS)
    assert [(s.get("Name"), s.get("Type"), s.get("PublishingSet"), s.get("Version")) for s in standards] == [
        ("ADaMIG", "IG", None, "1.3"), ("CDISC/NCI", "CT", "ADaM", "2025-03-28"),
        ("CDISC/NCI", "CT", "SDTM", "2025-03-28")]
    sdtm_std = _one(_define("SDTM"), "//def:Standard[@Type='IG']")
    assert (sdtm_std.get("Name"), sdtm_std.get("Version")) == ("SDTMIG", "3.4")
    assert _one(tree, "//odm:StudyName").text == "TEST01"
    mdv = _one(tree, "//odm:MetaDataVersion")
    note = _one(tree, f"//def:CommentDef[@OID='{mdv.get(f'{{{DEF_NS}}}CommentOID')}']//odm:TranslatedText")
    assert "SYNTHETIC" in note.text


def test_item_groups_keys_roles_and_leaves():
    tree = _define()
    cv = _one(tree, "//odm:ItemGroupDef[@OID='IG.CV']")
    assert cv.get("Domain") == "CV" and cv.get("Purpose") == "Tabulation" and cv.get("Repeating") == "Yes"
    assert cv.get(f"{{{DEF_NS}}}Structure").startswith("One record per finding")
    assert _one(cv, "def:Class").get("Name") == "FINDINGS"
    leaf = _one(cv, "def:leaf")
    assert leaf.get("ID") == cv.get(f"{{{DEF_NS}}}ArchiveLocationID") == "LF.CV"
    assert leaf.get(f"{{{XLINK_NS}}}href") == "cv.xpt"
    keys = {r.get("ItemOID"): r.get("KeySequence") for r in cv.findall(f"{{{ODM_NS}}}ItemRef") if r.get("KeySequence")}
    assert keys == {"IT.CV.STUDYID": "1", "IT.CV.USUBJID": "2", "IT.CV.CVTESTCD": "3", "IT.CV.VISITNUM": "4"}
    seq = _one(cv, "odm:ItemRef[@ItemOID='IT.CV.CVSEQ']")
    assert seq.get("MethodOID") == "MT.SEQ" and seq.get("Role") == "Identifier" and seq.get("Mandatory") == "Yes"
    assert _one(tree, "//odm:ItemGroupDef[@OID='IG.DM']").get("Repeating") == "No"
    for ref in tree.xpath("//odm:ItemRef[@MethodOID]", namespaces=NS):
        _one(tree, f"//odm:MethodDef[@OID='{ref.get('MethodOID')}']")
    adsl = _one(_define("ADaM"), "//odm:ItemGroupDef[@OID='IG.ADSL']")
    assert adsl.get("Domain") is None and adsl.get("Purpose") == "Analysis"


def test_item_defs_lengths_digits_origins_and_formats():
    sdtm, adam = _define(), _define("ADaM")
    assert _one(sdtm, "//odm:ItemDef[@OID='IT.DM.USUBJID']").get("Length") == "10"   # 'TEST01-001'
    assert _one(sdtm, "//odm:ItemDef[@OID='IT.DM.SEX']").get("Length") == "1"
    assert _one(sdtm, "//odm:ItemDef[@OID='IT.CV.CVSTRESN']").get("SignificantDigits") == "1"   # 31.5
    assert _one(adam, "//odm:ItemDef[@OID='IT.ADSL.BMIBL']").get("SignificantDigits") == "2"    # 24.05
    trtsdt = _one(adam, "//odm:ItemDef[@OID='IT.ADSL.TRTSDT']")
    assert trtsdt.get("DataType") == "integer" and trtsdt.get(f"{{{DEF_NS}}}DisplayFormat") == "DATE9."
    assert _one(sdtm, "//odm:ItemDef[@OID='IT.DM.RFSTDTC']").get("DataType") == "date"
    assert _one(sdtm, "//odm:ItemDef[@OID='IT.DM.RFSTDTC']").get("Length") is None
    collected = _one(sdtm, "//odm:ItemDef[@OID='IT.DM.SEX']/def:Origin")
    assert (collected.get("Type"), collected.get("Source")) == ("Collected", "Investigator")
    assert collected.findtext(f".//{{{ODM_NS}}}TranslatedText") == "demographics.sex"
    predecessor = _one(adam, "//odm:ItemDef[@OID='IT.ADSL.AGE']/def:Origin")
    assert predecessor.get("Type") == "Predecessor" and predecessor.get("Source") is None
    assert predecessor.findtext(f".//{{{ODM_NS}}}TranslatedText") == "DM.AGE"
    country = _one(sdtm, "//odm:ItemDef[@OID='IT.DM.COUNTRY']")
    comment = _one(sdtm, f"//def:CommentDef[@OID='{country.get(f'{{{DEF_NS}}}CommentOID')}']")
    assert "ISO 3166" in comment.findtext(f".//{{{ODM_NS}}}TranslatedText")


def test_codelists_with_nci_codes_subset_to_the_data_and_extended_values():
    cv = data.cv()
    cv.records.loc[0, "CVORRESU"] = "furlong"  # not a CDISC unit: UNIT is extensible, so an extended value
    tree = _define(datasets={"DM": data.dm(), "CV": cv})
    sex = _one(tree, "//odm:CodeList[@OID='CL.SEX']")
    assert _one(sex, "odm:Alias").get("Name") == "C66731" and _one(sex, "odm:Alias").get("Context") == "nci:ExtCodeID"
    items = {i.get("CodedValue"): i for i in sex.findall(f"{{{ODM_NS}}}CodeListItem")}
    assert set(items) == {"F", "M"}  # the terms used, not all four
    assert items["F"].findtext(f".//{{{ODM_NS}}}TranslatedText") == "Female"
    assert _one(items["F"], "odm:Alias").get("Name") == "C16576"
    unit = {i.get("CodedValue"): i for i in _one(tree, "//odm:CodeList[@OID='CL.UNIT']")}
    assert unit["furlong"].get(f"{{{DEF_NS}}}ExtendedValue") == "Yes" and unit["%"].get(f"{{{DEF_NS}}}ExtendedValue") is None
    sites = _one(tree, "//odm:CodeList[@OID='CL.Sites']")
    assert sites.get(f"{{{DEF_NS}}}IsNonStandard") == "Yes"
    assert [e.get("CodedValue") for e in sites.findall(f"{{{ODM_NS}}}EnumeratedItem")] == ["01", "02"]
    assert XSD.validate(tree), [e.message for e in XSD.error_log]


def test_value_level_metadata_for_findings_and_bds():
    tree = _define()
    vl = _one(tree, "//def:ValueListDef[@OID='VL.CV.CVORRES']")
    refs = vl.findall(f"{{{ODM_NS}}}ItemRef")
    assert [r.get("ItemOID") for r in refs] == ["IT.CV.CVORRES.LVEF", "IT.CV.CVORRES.EDV"]
    clause = _one(tree, "//def:WhereClauseDef[@OID='WC.CV.CVTESTCD.LVEF']/odm:RangeCheck")
    assert clause.get(f"{{{DEF_NS}}}ItemOID") == "IT.CV.CVTESTCD" and clause.get("Comparator") == "EQ"
    assert clause.findtext(f"{{{ODM_NS}}}CheckValue") == "LVEF"
    lvef = _one(tree, "//odm:ItemDef[@OID='IT.CV.CVORRES.LVEF']")
    assert lvef.get("DataType") == "float" and lvef.get("SignificantDigits") == "1"
    assert lvef.findtext(f".//{{{ODM_NS}}}TranslatedText") == "Left ventricular ejection fraction (%)"
    assert _one(tree, "//odm:ItemDef[@OID='IT.CV.CVORRES.EDV']").get("Length") == "3"   # 250, 221
    assert _one(tree, "//odm:ItemDef[@OID='IT.CV.CVORRES']/def:ValueListRef").get("ValueListOID") == "VL.CV.CVORRES"
    aval = _one(_define("ADaM"), "//odm:ItemDef[@OID='IT.ADEFF.AVAL.LVEF']/def:Origin")
    assert aval.get("Type") == "Predecessor"


def test_inconsistent_metadata_is_refused():
    dm = data.dm()
    dm.variables[5] = Variable("SITEID", "Study Site Identifier", "text", codelist="C99999")
    with pytest.raises(SubmissionError, match="codelist 'C99999' is neither in CDISC CT"):
        _define(datasets={"DM": dm})
    with pytest.raises(SubmissionError, match=r"not SDTM datasets"):
        build_define([data.adsl()], "SDTM", data.STUDY, default_terminology())


def test_define_html_for_a_reviewer(tmp_path):
    tree = _define()
    html = define_html(tree)
    for text in ("Cardiovascular System Findings", "CVTESTCD", "MT.DY", "Left ventricular ejection fraction (%)",
                 "C66731", "SDTMIG", "2025-03-28", "SYNTHETIC DATA", 'href="cv.xpt"'):
        assert text in html, text
    written = write_define_html(tree, tmp_path / "define.html")
    assert (tmp_path / "define.xsl").exists() and written.read_text(encoding="utf-8").startswith("<!DOCTYPE html")


def test_external_dictionary_codelist():
    dm = data.dm()
    dm.variables[-1] = Variable("COUNTRY", "Country", "text", role="Record Qualifier", core="Req",
                                codelist="ISO 3166-1 alpha-3", origin="Assigned")
    tree = _define(datasets={"DM": dm})
    ext = _one(tree, "//odm:CodeList[@OID='CL.ISO_3166']/odm:ExternalCodeList")
    assert (ext.get("Dictionary"), ext.get("Version")) == ("ISO 3166", "ISO 3166-1 alpha-3")
    assert _one(tree, "//odm:ItemDef[@OID='IT.DM.COUNTRY']/odm:CodeListRef").get("CodeListOID") == "CL.ISO_3166"
    assert XSD.validate(tree), [e.message for e in XSD.error_log]
