"""Missing-data codes and "specify" fields on the browser's form page, without a browser (TestClient):
the POST handler turns missing__<field> / missing_reason__<field> into the coded value the capture
service stores, errors come back at the field with what was typed, the page shows a saved code again,
and read-only views (locked form, audit trail) print "ND - Not done: reason", never the raw mapping.
Also the pure helpers of web/form_values.py."""

from __future__ import annotations

import re

import pytest

from regenheart.capture.permissions import Actor
from regenheart.protocol import load_protocol
from regenheart.web import form_values

from .test_pages import browser, csrf_of  # noqa: F401 (fixture)

LABS = "/subjects/01-002/forms/SCR/labs"
HISTORY = "/subjects/01-002/forms/SCR/medical_history"
SAVED_HISTORY = {"hf_etiology": "IDCM", "hf_duration_months": "30", "hf_hospitalizations_12m": "1",
                 "atrial_fibrillation": "N", "hypertension": "Y", "diabetes": "N", "icd_implanted": "N",
                 "crt_implanted": "N", "raas_inhibitor": "ARNI", "beta_blocker": "Y", "mra": "Y", "sglt2i": "Y",
                 "loop_diuretic": "Y"}


def post_form(client, url: str, fields: dict[str, str], **extra: str):
    """POST a visit form the way the page does: f_<name> values plus any other posted names."""
    token = csrf_of(client.get(url).text)
    version = re.search(r'name="version" value="(\d+)"', client.get(url).text).group(1)
    data = {"csrf_token": token, "version": version, "action": "save"} | {f"f_{k}": v for k, v in fields.items()}
    return client.post(url, data=data | extra, follow_redirects=False)


def stored(app, url: str) -> dict:
    """The stored values of the form at ``url`` (read through the capture service)."""
    _, _, code, _, visit, form = url.split("/")
    return app.state.ctx.capture.get_form(Actor("mon1", "monitor"), code, visit, form)


# ---------------------------------------------------------------------------------------------- the POST handler
def test_a_code_with_its_reason_is_saved_and_completes_the_form(app, browser):  # noqa: F811
    c = browser("coord1")
    response = post_form(c, LABS, {"creatinine_mg_dl": "1.1"}, missing__ntprobnp_pg_ml="ND",
                         missing_reason__ntprobnp_pg_ml="  sample haemolysed ")
    assert response.status_code == 303, response.text
    view = stored(app, LABS)
    assert view.data["ntprobnp_pg_ml"] == {"missing": "ND", "reason": "sample haemolysed"}
    assert view.data["creatinine_mg_dl"] == pytest.approx(1.1, abs=1e-12)
    assert view.status == "complete"


def test_a_code_without_a_reason_is_stored_with_reason_none(app, browser):  # noqa: F811
    c = browser("coord1")
    response = post_form(c, LABS, {"creatinine_mg_dl": "1.1"}, missing__ntprobnp_pg_ml="UNK",
                         missing_reason__ntprobnp_pg_ml="")
    assert response.status_code == 303, response.text
    assert stored(app, LABS).data["ntprobnp_pg_ml"] == {"missing": "UNK", "reason": None}


def test_a_code_that_needs_a_reason_is_refused_at_the_field_keeping_what_was_typed(app, browser):  # noqa: F811
    c = browser("coord1")
    response = post_form(c, LABS, {"creatinine_mg_dl": "1.13"}, missing__ntprobnp_pg_ml="ND")
    assert response.status_code == 422
    row = field_row(response.text, "ntprobnp_pg_ml")
    assert "needs a reason" in row and 'data-error-for="ntprobnp_pg_ml"' in row
    assert re.search(r'<option value="ND"[^>]*selected', row)  # the code chosen is kept
    assert 'value="1.13"' in field_row(response.text, "creatinine_mg_dl")
    assert stored(app, LABS).version == 0  # nothing written


def test_an_undeclared_code_is_refused_naming_the_study_codes(app, browser):  # noqa: F811
    c = browser("coord1")
    response = post_form(c, LABS, {"creatinine_mg_dl": "1.1"}, missing__ntprobnp_pg_ml="XX",
                         missing_reason__ntprobnp_pg_ml="typed")
    assert response.status_code == 422
    row = field_row(response.text, "ntprobnp_pg_ml")
    assert "missing-data codes: ND (Not done)" in row
    assert re.search(r'<option value="XX" selected', row) and 'value="typed"' in row


def test_a_value_and_a_code_together_or_a_reason_alone_are_refused(app, browser):  # noqa: F811
    c = browser("coord1")
    response = post_form(c, LABS, {"ntprobnp_pg_ml": "1200", "creatinine_mg_dl": "1.1"},
                         missing__ntprobnp_pg_ml="ND", missing_reason__ntprobnp_pg_ml="why")
    assert response.status_code == 422
    assert "enter a value or the missing-data code ND, not both" in field_row(response.text, "ntprobnp_pg_ml")
    response = post_form(c, LABS, {"ntprobnp_pg_ml": "1200", "creatinine_mg_dl": "1.1"},
                         missing__ntprobnp_pg_ml="", missing_reason__ntprobnp_pg_ml="a reason")
    assert response.status_code == 422
    row = field_row(response.text, "ntprobnp_pg_ml")
    assert "given without a code" in row and 'value="a reason"' in row and 'value="1200"' in row
    assert stored(app, LABS).version == 0


def test_reopened_form_shows_the_code_and_replacing_it_needs_a_reason(app, browser):  # noqa: F811
    c = browser("coord1")
    assert post_form(c, LABS, {"creatinine_mg_dl": "1.1"}, missing__ntprobnp_pg_ml="ND",
                     missing_reason__ntprobnp_pg_ml="sample haemolysed").status_code == 303
    row = field_row(c.get(LABS).text, "ntprobnp_pg_ml")
    assert re.search(r'<details class="missing-ctl"[^>]*\bopen\b', row)
    assert re.search(r'<option value="ND"[^>]*selected', row) and 'value="sample haemolysed"' in row
    assert re.search(r'id="f_ntprobnp_pg_ml"[^>]*value=""', row)  # the value input is empty, not the mapping
    # a value in place of the code: a change of saved data, so a reason for change
    response = post_form(c, LABS, {"ntprobnp_pg_ml": "1850", "creatinine_mg_dl": "1.1"}, missing__ntprobnp_pg_ml="",
                         missing_reason__ntprobnp_pg_ml="")
    assert response.status_code == 422 and 'data-error-for="reason"' in response.text
    response = post_form(c, LABS, {"ntprobnp_pg_ml": "1850", "creatinine_mg_dl": "1.1"}, missing__ntprobnp_pg_ml="",
                         reason="repeat sample analysed")
    assert response.status_code == 303, response.text
    assert stored(app, LABS).data["ntprobnp_pg_ml"] == 1850


def test_other_needs_its_specify_text_and_any_other_answer_refuses_one(app, browser):  # noqa: F811
    c = browser("coord1")
    page = c.get(HISTORY).text
    # the specify field comes right after its code field and says which answers need it
    rows = re.findall(r'id="row-([a-z0-9_]+)"', page)
    assert rows[rows.index("hf_etiology") + 1] == "hf_etiology_other"
    assert re.search(r'id="row-hf_etiology_other"[^>]*data-specify-for="f_hf_etiology" data-specify-codes="OTHER"',
                     page)
    fields = SAVED_HISTORY | {"hf_etiology": "OTHER"}
    response = post_form(c, HISTORY, fields, reason="etiology revised")
    assert response.status_code == 422
    assert "is required when hf_etiology is OTHER" in field_row(response.text, "hf_etiology_other")
    assert re.search(r'name="f_hf_etiology" value="OTHER" checked', response.text)  # the answer is kept
    response = post_form(c, HISTORY, SAVED_HISTORY | {"hf_etiology_other": "sarcoid"}, reason="r")
    assert response.status_code == 422
    assert "must be blank unless hf_etiology is OTHER" in field_row(response.text, "hf_etiology_other")
    response = post_form(c, HISTORY, fields | {"hf_etiology_other": "cardiac sarcoidosis"}, reason="etiology revised")
    assert response.status_code == 303, response.text
    assert stored(app, HISTORY).data["hf_etiology_other"] == "cardiac sarcoidosis"


# ---------------------------------------------------------------------------------------------- read-only views
def test_locked_form_audit_trail_and_conflict_print_the_code_as_text(app, browser):  # noqa: F811
    c = browser("coord1")
    assert post_form(c, LABS, {"creatinine_mg_dl": "1.1"}, missing__ntprobnp_pg_ml="ND",
                     missing_reason__ntprobnp_pg_ml="sample haemolysed").status_code == 303
    # a save conflict lists the saved code as text beside the user's own value
    token = csrf_of(c.get(LABS).text)
    response = c.post(LABS, data={"csrf_token": token, "version": "0", "action": "save", "f_ntprobnp_pg_ml": "900",
                                  "f_creatinine_mg_dl": "1.1", "missing__ntprobnp_pg_ml": ""})
    assert response.status_code == 409
    assert re.search(r'<td class="current">ND - Not done: sample haemolysed</td><td class="yours">900</td>',
                     response.text)
    app.state.ctx.workflow.lock(Actor("dm1", "data_manager"), "01-002", "SCR", "labs", confirm=True)
    for who in ("coord1", "mon1"):
        page = browser(who).get(LABS).text
        row = field_row(page, "ntprobnp_pg_ml")
        assert '<span class="missing-shown" data-missing="ND">ND - Not done: sample haemolysed</span>' in row
        assert "missing__" not in page and "{&#39;missing&#39;" not in page and "'missing'" not in page
    audit = browser("mon1").get("/subjects/01-002/audit?form=labs").text
    assert "ND - Not done: sample haemolysed" in audit and "&#39;missing&#39;" not in audit


def test_study_pages_work_with_coded_values_and_never_print_the_mapping(app, browser):  # noqa: F811
    c = browser("coord1")
    assert post_form(c, LABS, {"creatinine_mg_dl": "1.1"}, missing__ntprobnp_pg_ml="ND",
                     missing_reason__ntprobnp_pg_ml="sample haemolysed").status_code == 303
    dm = browser("dm1")
    for url in ("/subjects/01-002", "/dashboard", "/data-quality", "/data-quality.csv",
                "/subjects/01-002/visits/SCR/review/lock", "/subjects/01-002/casebook/review/verify"):
        response = dm.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert "missing&#39;:" not in response.text and "'missing':" not in response.text, url
        assert '"missing":' not in response.text, url


def test_adverse_events_and_disposition_offer_no_missing_code(browser):  # noqa: F811
    c = browser("coord1")
    for url in ("/subjects/01-001/adverse-events", "/subjects/01-001"):
        page = c.get(url).text
        assert "missing-ctl" not in page and "missing__" not in page


def test_a_coded_field_a_soft_check_reads_leaves_the_form_page_working(app, browser):  # noqa: F811
    c = browser("coord1")
    url = "/subjects/01-002/forms/SCR/echo"
    fields = {"modality": "TTE", "lvedv_ml": "250", "lvesv_ml": "182", "lvedd_mm": "69", "lvesd_mm": "58",
              "ivsd_mm": "9.5", "lvpwd_mm": "9.0"}
    response = post_form(c, url, fields, missing__lvef_pct="UNK", reason="LVEF not reported")
    assert response.status_code == 303, response.text
    page = c.get(url)
    assert page.status_code == 200 and "ECHO03" not in page.text  # a coded LVEF: the cross-check is not evaluable


# ---------------------------------------------------------------------------------------------- helpers
def field_row(html: str, name: str) -> str:
    """The HTML of one field's row on the form page (from its row div to the next row)."""
    start = html.index(f'id="row-{name}"')
    following = html.find('<div class="field', start)
    return html[start:following if following > 0 else len(html)]


def test_posted_values_translation():
    fields = load_protocol().forms["labs"].fields
    values, problems = form_values.posted_values(fields, {
        "f_ntprobnp_pg_ml": "", "missing__ntprobnp_pg_ml": "NASK", "missing_reason__ntprobnp_pg_ml": " not asked ",
        "f_creatinine_mg_dl": "0.9"})
    assert values == {"ntprobnp_pg_ml": {"missing": "NASK", "reason": "not asked"}, "creatinine_mg_dl": "0.9"}
    assert problems == []
    values, problems = form_values.posted_values(fields, {})
    assert values == {"ntprobnp_pg_ml": "", "creatinine_mg_dl": ""} and problems == []
    _values, problems = form_values.posted_values(fields, {"f_ntprobnp_pg_ml": "5", "missing__ntprobnp_pg_ml": "ND"})
    assert [(p.field, p.rule) for p in problems] == [("ntprobnp_pg_ml", "value_and_missing")]


def test_coded_values_as_text():
    protocol = load_protocol()
    ntprobnp = protocol.forms["labs"].field("ntprobnp_pg_ml")
    assert form_values.coded_text(protocol, {"missing": "ND", "reason": "sample haemolysed"}) == \
        "ND - Not done: sample haemolysed"
    assert form_values.coded_text(protocol, {"missing": "NA", "reason": None}) == "NA - Not applicable"
    assert form_values.coded_text(protocol, {"missing": "ZZ"}) == "ZZ - undeclared code"
    assert form_values.coded_text(protocol, 5) == ""
    assert form_values.value_text(protocol, ntprobnp, 1850.0) == "1850"
    assert form_values.value_text(protocol, ntprobnp, None) == ""
    assert form_values.shown(protocol, {"missing": "UNK", "reason": None}) == "UNK - Unknown"
    assert form_values.shown(protocol, ["a"]) == ["a"]
    sixmwt = [f.name for f in form_values.entry_order(protocol.forms["sixmwt"].fields)]
    assert sixmwt.index("not_done_reason_other") == sixmwt.index("not_done_reason") + 1
    shuffled = list(reversed(protocol.forms["medical_history"].fields))
    ordered = [f.name for f in form_values.entry_order(shuffled)]
    assert ordered.index("hf_etiology_other") == ordered.index("hf_etiology") + 1
    assert sorted(ordered) == sorted(f.name for f in shuffled)
