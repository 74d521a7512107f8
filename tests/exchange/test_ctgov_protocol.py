"""The registration record from the protocol file: valid against ProtocolRecordSchema.xsd, and every field
the seed registry record (NCT04325594.txt) states is reproduced exactly."""

from __future__ import annotations

import re

import pytest
from lxml import etree
from tests.exchange._ctgov_data import PRS_XSD, SEED

from regenheart.exchange.ctgov.protocol_xml import protocol_xml
from regenheart.exchange.ctgov.results import CtgovError

# API v2 enumeration (seed) -> PRS upload value
STATUS = {"COMPLETED": "Completed", "RECRUITING": "Recruiting", "TERMINATED": "Terminated"}
YES_NO = {"True": "Yes", "False": "No"}


def parse_seed(text: str) -> dict[str, str]:
    """'Field: value' lines of the seed file; the multi-paragraph detailed description as one value."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        match = re.match(r"^([A-Z][A-Za-z .,#?/-]*?): ?(.*)$", line)
        if match and not (key == "Detailed Description" and not match.group(1).startswith("Has Oversight")
                          and line[:1].islower()):
            key, value = match.group(1), match.group(2)
            if key in fields and key != "Status":
                continue
            fields[key] = value
        elif key == "Detailed Description" and line.strip() != "Study Oversight":
            fields[key] += "\n" + line
    fields["Detailed Description"] = fields["Detailed Description"].strip()
    return fields


@pytest.fixture(scope="module")
def seed() -> dict[str, str]:
    return parse_seed(SEED.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def record(protocol) -> etree._Element:
    tree = protocol_xml(protocol)
    schema = etree.XMLSchema(etree.parse(str(PRS_XSD)))
    assert schema.validate(tree), [str(e) for e in schema.error_log]
    return tree.getroot().find("clinical_study")


def test_seed_parser_reads_the_record(seed):
    assert seed["Study NCT ID"] == "NCT04325594"
    assert seed["Acronym"] == "RegenHeart"
    assert seed["Detailed Description"].startswith("This prospective, open-label, single-arm")
    assert seed["Detailed Description"].endswith("may guide future hypothesis-driven research.")


def test_identity_titles_sponsor_and_status_reproduce_the_seed(seed, record):
    comment = next(n for n in record.iterchildren() if isinstance(n, etree._Comment))
    assert seed["Study NCT ID"] in comment.text
    assert record.findtext("brief_title") == seed["Brief Title"]
    assert record.findtext("official_title") == seed["Official Title"]
    assert record.findtext("acronym") == seed["Acronym"]
    assert record.findtext("sponsors/lead_sponsor/agency") == seed["Sponsor"]
    assert record.findtext("overall_status") == STATUS[seed["Status"]]
    assert record.findtext("verification_date") == seed["Status Verified Date"]
    assert record.findtext("brief_summary/textblock") == seed["Brief Summary"]
    assert record.findtext("detailed_description/textblock") == seed["Detailed Description"]
    assert record.find("why_stopped") is None and seed["If Stopped, Why?"] == "Not Stopped"


def test_oversight_reproduces_the_seed(seed, record):
    oversight = record.find("oversight_info")
    assert oversight.findtext("has_dmc") == YES_NO[seed["Has Oversight DMC"]]
    assert oversight.findtext("fda_regulated_drug") == YES_NO[seed["Is a FDA Regulated Drug?"]]
    assert oversight.findtext("fda_regulated_device") == YES_NO[seed["Is a FDA Regulated Device?"]]
    assert oversight.findtext("exported_from_us") == YES_NO[seed["Is a US Export?"]]


def test_design_and_enrolment_reproduce_the_seed(seed, record):
    description = seed["Detailed Description"]
    enrolled = int(re.search(r"A total of (\d+) patients were enrolled", description).group(1))
    assert record.findtext("enrollment") == str(enrolled)
    assert record.findtext("enrollment_type") == "Actual"
    design = record.find("study_design/interventional_design")
    assert "single-arm" in description and "no allocation or randomization" in description
    assert design.findtext("assignment") == "Single Group Assignment"
    assert design.findtext("allocation") == "N/A"
    assert design.findtext("number_of_arms") == "1"
    assert design.findtext("no_masking") == "Yes" and "open-label" in description
    assert design.findtext("phase") == "Phase 1/Phase 2"
    assert record.findtext("study_design/study_type") == "Interventional"


def test_outcome_list_reproduces_the_seed(seed, record):
    description = seed["Detailed Description"]
    primary = record.findall("primary_outcome")
    assert len(primary) == 1
    assert "5 days" in description and "day 5" in primary[0].findtext("outcome_time_frame")
    secondary = record.findall("secondary_outcome")
    titles = " | ".join(o.findtext("outcome_measure") for o in secondary)
    listed = re.search(r"Secondary outcomes included (.*?) at 1, 3, and 6 months", description).group(1)
    # every measure the registry lists has its own secondary outcome
    for phrase, expected in (("left ventricular ejection fraction", "Ejection Fraction"),
                             ("end-diastolic and end-systolic volumes", "End-Diastolic Volume"),
                             ("end-diastolic and end-systolic volumes", "End-Systolic Volume"),
                             ("diameters", "End-Diastolic Diameter"), ("diameters", "End-Systolic Diameter"),
                             ("NT-proBNP", "NT-proBNP"), ("NYHA functional class", "NYHA Functional Class"),
                             ("6-minute walk test distance", "6-Minute Walk"), ("SF-12", "SF-12"),
                             ("KCCQ", "KCCQ"), ("MLHFQ", "MLHFQ")):
        assert phrase in listed
        assert expected in titles, expected
    for outcome in secondary:
        assert "1, 3 and 6 months" in outcome.findtext("outcome_time_frame")
    assert record.find("other_outcome") is None  # post-hoc measures are results-only


def test_arms_interventions_eligibility_and_conditions(protocol, record):
    arms = record.findall("arm_group")
    assert [a.findtext("arm_group_label") for a in arms] == [a.label for a in protocol.active_version.arms]
    assert arms[0].findtext("arm_type") == "Experimental"
    intervention = record.find("intervention")
    assert intervention.findtext("intervention_type") == "Biological/Vaccine"
    assert intervention.findtext("arm_group_label") == arms[0].findtext("arm_group_label")
    eligibility = record.find("eligibility")
    assert eligibility.findtext("minimum_age") == "18 Years" and eligibility.findtext("gender") == "All"
    criteria = eligibility.findtext("criteria/textblock")
    assert criteria.startswith("Inclusion Criteria:") and "LVEF <= 35%" in criteria
    assert [c.text for c in record.findall("condition")] == protocol.study.conditions
    assert record.findtext("location/facility/address/country") == "Kazakhstan"


def test_two_arm_version_gives_a_randomized_parallel_design(protocol):
    v1 = protocol.model_copy(update={"active_protocol_version": "1.0"})
    tree = protocol_xml(v1)
    schema = etree.XMLSchema(etree.parse(str(PRS_XSD)))
    assert schema.validate(tree)
    study = tree.getroot().find("clinical_study")
    design = study.find("study_design/interventional_design")
    assert design.findtext("allocation") == "Randomized"
    assert design.findtext("assignment") == "Parallel Assignment" and design.findtext("number_of_arms") == "2"
    assert [a.findtext("arm_type") for a in study.findall("arm_group")] == ["Experimental", "No Intervention"]


def test_protocol_without_registry_is_refused(protocol):
    with pytest.raises(CtgovError, match="no 'registry' section"):
        protocol_xml(protocol.model_copy(update={"registry": None}))
