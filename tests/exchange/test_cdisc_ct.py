"""CDISC Controlled Terminology loader against facts checked by hand in the NCI EVS files
(see shared/reference/cdisc-ct/README.md: row counts and the verified codelists)."""

from __future__ import annotations

import gzip

import pytest
from tests.conftest import SHARED

from regenheart.exchange.cdisc.ct import (
    ADAM_CT_FILE,
    SDTM_CT_FILE,
    TerminologyError,
    adam_ct,
    default_terminology,
    load_terminology,
    sdtm_ct,
)


def test_shipped_files_are_the_reference_packages_byte_for_byte():
    reference = SHARED / "reference" / "cdisc-ct"
    assert SDTM_CT_FILE.read_bytes() == (reference / SDTM_CT_FILE.name).read_bytes()
    assert ADAM_CT_FILE.read_bytes() == (reference / ADAM_CT_FILE.name).read_bytes()


def test_sdtm_package_counts_match_package_59():
    ct = sdtm_ct()
    assert ct.standard == "SDTM" and ct.version == "2025-03-28"
    assert len(ct.codelists) == 1158
    assert sum(len(c.terms) for c in ct.codelists.values()) == 43698


@pytest.mark.parametrize(("code", "short", "extensible", "n_terms", "values"), [
    ("C66731", "SEX", False, 4, {"M", "F", "U", "INTERSEX"}),
    ("C66742", "NY", False, 4, {"N", "Y", "NA", "U"}),
    ("C71620", "UNIT", True, 929, {"mL", "%"}),
    ("C66729", "ROUTE", True, 142, {"INTRACORONARY"}),
    ("C101839", "NYHAC", False, 4, {"NYHA CLASS I", "NYHA CLASS IV"}),
    ("C115388", "SIXMW1TC", False, 6, {"SIXMW101", "SIXMW106"}),
    ("C66727", "NCOMPLT", True, 44, {"COMPLETED", "DEATH", "LOST TO FOLLOW-UP", "SCREEN FAILURE"}),
    ("C101847", "CVTESTCD", True, 178, {"LVEF"}),
])
def test_codelists_by_code_and_short_name(code, short, extensible, n_terms, values):
    ct = sdtm_ct()
    by_code, by_short = ct.get(code), ct.get(short)
    assert by_code is by_short and ct.get(by_code.name) is by_code
    assert by_code.short_name == short and by_code.extensible is extensible
    assert len(by_code.terms) == n_terms and values <= set(by_code.terms)


def test_terms_carry_nci_codes_and_preferred_terms():
    sex = sdtm_ct().get("SEX")
    assert sex.terms["F"].code == "C16576" and sex.terms["F"].preferred_term == "Female"
    assert sdtm_ct().get("C101847").terms["LVEF"].code == "C99524"


def test_adam_package_and_lookup_order():
    ct = adam_ct()
    assert ct.version == "2025-03-28" and len(ct.codelists) == 23
    assert set(ct.get("C81223").terms) == {"D", "M", "Y"}  # DATEFL
    both = default_terminology()
    assert both.find("SEX")[0].standard == "SDTM" and both.find("DATEFL")[0].standard == "ADaM"
    assert both.find("SPONSOR:Sites") is None


def test_unknown_codelist_names_the_package():
    with pytest.raises(TerminologyError, match=r"'C0000' is not in SDTM CT 2025-03-28"):
        sdtm_ct().get("C0000")


def test_a_file_that_is_not_ct_is_refused(tmp_path):
    bad = tmp_path / "Other_2025-01-01.txt.gz"
    with gzip.open(bad, "wt") as handle:
        handle.write("a\tb\n1\t2\n")
    with pytest.raises(TerminologyError, match="not an NCI EVS CDISC terminology file"):
        load_terminology(bad, "SDTM")
    undated = tmp_path / "terms.csv"
    undated.write_text("Code\n")
    with pytest.raises(TerminologyError, match="package date"):
        load_terminology(undated, "SDTM")
