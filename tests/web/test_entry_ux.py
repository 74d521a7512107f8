"""Fast, safe data entry without a browser (TestClient): save and next form in visit order, questionnaire
items as radio rows with short labels, history links out of the Tab order, save conflicts that keep the
user's values and reason beside the saved ones, soft-check warnings that stay until acknowledged (audited),
the protocol's subject-code rule and withdrawal at screening with a reason."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from regenheart.store.audit import verify_chain
from regenheart.store.models import AuditRecord, Subject
from regenheart.store.reconcile import reconcile
from regenheart.web import create_app

from ..conftest import eligible_screening_data
from .conftest import FAST_HASHER, TODAY, no_scorer
from .test_pages import csrf_of, login

SUBJECT = "01-002"  # screened at site 01 (conftest), eligibility not evaluated


@pytest.fixture
def coord(app) -> TestClient:
    c = TestClient(app)
    assert login(c, "coord1").status_code == 303
    return c


def form_post(client: TestClient, visit: str, form: str, values: dict, **extra) -> object:
    page = client.get(f"/subjects/{SUBJECT}/forms/{visit}/{form}")
    version = re.search(r'name="version" value="(\d+)"', page.text).group(1)
    data = {"csrf_token": csrf_of(page.text), "version": version, "visit_date": "2025-01-10",
            **{f"f_{k}": str(v) for k, v in values.items()}, **extra}
    return client.post(f"/subjects/{SUBJECT}/forms/{visit}/{form}", data=data, follow_redirects=False)


def audit_rows(db_path, **where) -> list[AuditRecord]:
    engine = create_engine(f"sqlite:///{db_path}")
    with Session(engine) as s:
        stmt = select(AuditRecord)
        for k, v in where.items():
            stmt = stmt.where(getattr(AuditRecord, k) == v)
        rows = list(s.scalars(stmt.order_by(AuditRecord.seq)))
    engine.dispose()
    return rows


# ---------------------------------------------------------------------------------------------- fast entry
def test_save_and_next_follows_the_visit_order_then_returns_to_the_casebook(coord, web_protocol):
    order = web_protocol.visit("SCR").forms
    data = eligible_screening_data()
    response = form_post(coord, "SCR", order[0], data[order[0]], action="save_next")
    assert response.status_code == 303
    assert response.headers["location"] == f"/subjects/{SUBJECT}/forms/SCR/{order[1]}"
    last = order[-1]
    response = form_post(coord, "SCR", last, {"q1": 2}, action="save_next")
    assert response.status_code == 303 and response.headers["location"] == f"/subjects/{SUBJECT}"
    page = coord.get(f"/subjects/{SUBJECT}/forms/SCR/{order[0]}").text
    assert f"Save and next: {web_protocol.forms[order[1]].label}" in page


def test_questionnaire_items_are_radio_rows_with_short_labels_not_drop_downs(coord, web_protocol):
    page = coord.get(f"/subjects/{SUBJECT}/forms/SCR/kccq").text
    kccq = web_protocol.forms["kccq"]
    assert page.count('class="scale"') == len(kccq.fields) == 23
    assert '<select id="f_q1a"' not in page
    # q1a: six responses with the protocol's generic labels, plus "not answered" (the item is optional)
    q1a = re.findall(r'name="f_q1a" value="([^"]*)"', page)
    assert q1a == ["1", "2", "3", "4", "5", "6", ""]
    assert "<span>1 lowest</span>" in page and "<span>6 other reason</span>" in page
    assert page.count('aria-label="not answered"') == 23
    mlhfq = coord.get(f"/subjects/{SUBJECT}/forms/SCR/mlhfq").text
    assert mlhfq.count('class="scale"') == 21 and "<span>0 none</span>" in mlhfq and "<span>5 most</span>" in mlhfq


def test_history_links_are_out_of_the_tab_order(coord, web_protocol):
    page = coord.get(f"/subjects/{SUBJECT}/forms/SCR/echo").text
    links = re.findall(r'<a class="hist"[^>]*>', page)
    assert len(links) == 1 + len(web_protocol.forms["echo"].fields)  # visit date + the echo form's fields
    assert all('tabindex="-1"' in a for a in links)


def test_licensed_wording_is_shown_only_from_the_local_file_the_protocol_names(tmp_path, db_path, web_protocol):
    wording = tmp_path / "kccq_wording.yaml"
    wording.write_text("q1a: 'LICENSED TEXT OF ITEM 1a'\n", encoding="utf-8")
    forms = dict(web_protocol.forms)
    forms["kccq"] = forms["kccq"].model_copy(update={"wording_file": str(wording)})
    protocol = web_protocol.model_copy(update={"forms": forms})
    app = create_app(db_path, protocol, scorer=no_scorer, today=lambda: TODAY, hasher=FAST_HASHER)
    with TestClient(app) as c:
        login(c, "coord1")
        assert "LICENSED TEXT OF ITEM 1a" in c.get(f"/subjects/{SUBJECT}/forms/SCR/kccq").text
        wording.unlink()  # the file is not there (another site): short labels only, no error
        page = c.get(f"/subjects/{SUBJECT}/forms/SCR/kccq")
        assert page.status_code == 200 and "LICENSED TEXT" not in page.text


# ---------------------------------------------------------------------------------------------- conflicts
def test_a_conflict_keeps_the_users_values_and_reason_beside_the_saved_ones(coord, app):
    echo = eligible_screening_data()["echo"]
    stale = coord.get(f"/subjects/{SUBJECT}/forms/SCR/echo")
    token = csrf_of(stale.text)
    # someone else saves first (same account in another tab is enough for optimistic locking)
    other = TestClient(app)
    login(other, "inv1")
    assert form_post(other, "SCR", "echo", {**echo, "lvedd_mm": 70}, reason="echo report re-read").status_code == 303
    mine = {"csrf_token": token, "version": "1", "visit_date": "2025-01-10",
            **{f"f_{k}": str(v) for k, v in echo.items()}, "f_lvedd_mm": "71", "reason": "my transcription fix"}
    response = coord.post(f"/subjects/{SUBJECT}/forms/SCR/echo", data=mine, follow_redirects=False)
    assert response.status_code == 409
    page = response.text
    assert 'id="conflict"' in page
    row = re.search(r"<tr><td>LV end-diastolic diameter</td><td class=\"current\">([^<]*)</td>"
                    r"<td class=\"yours\">([^<]*)</td></tr>", page)
    assert row and row.groups() == ("70", "71")
    assert 'name="f_lvedd_mm" value="71"' in page  # the user's own value stays in the form
    assert "my transcription fix" in page           # and the reason
    assert 'name="version" value="2"' in page        # saving again goes against the current version
    again = {**mine, "version": "2", "csrf_token": csrf_of(page)}
    assert coord.post(f"/subjects/{SUBJECT}/forms/SCR/echo", data=again, follow_redirects=False).status_code == 303


# ---------------------------------------------------------------------------------------------- soft checks
def test_a_soft_check_warning_stays_until_acknowledged_with_a_reason(coord, db_path):
    echo = {**eligible_screening_data()["echo"], "lvef_pct": 40.0}  # EF implied by volumes: 27.2 %
    assert form_post(coord, "SCR", "echo", echo, reason="re-measured").status_code == 303
    for _ in range(2):  # still there on every later load, not only right after the save
        page = coord.get(f"/subjects/{SUBJECT}/forms/SCR/echo").text
        assert 'id="standing-warnings"' in page and "(check ECHO03)" in page
    token = csrf_of(page)
    url = f"/subjects/{SUBJECT}/forms/SCR/echo/acknowledge"
    refused = coord.post(url, data={"csrf_token": token, "check": "ECHO03", "ack_reason": " "}, follow_redirects=False)
    assert refused.status_code == 422 and "a reason is required" in refused.text
    assert coord.post(url, data={"csrf_token": token, "check": "NOPE", "ack_reason": "x"},
                      follow_redirects=False).status_code == 404
    ok = coord.post(url, data={"csrf_token": token, "check": "ECHO03", "ack_reason": "confirmed with echo lab"},
                    follow_redirects=False)
    assert ok.status_code == 303
    assert 'id="standing-warnings"' not in coord.get(f"/subjects/{SUBJECT}/forms/SCR/echo").text
    [ack] = audit_rows(db_path, entity="soft_check")
    assert (ack.username, ack.action, ack.field, ack.new_value, ack.reason) == (
        "coord1", "acknowledge", "ECHO03", "40.0", "confirmed with echo lab")
    # a new value brings the warning back: the acknowledgement covered 40.0 only
    assert form_post(coord, "SCR", "echo", {**echo, "lvef_pct": 41.0}, reason="typo").status_code == 303
    assert "(check ECHO03)" in coord.get(f"/subjects/{SUBJECT}/forms/SCR/echo").text
    engine = create_engine(f"sqlite:///{db_path}")
    assert verify_chain(engine).ok and reconcile(engine).ok
    engine.dispose()


def test_save_and_next_stays_on_a_form_with_a_new_warning(coord):
    echo = {**eligible_screening_data()["echo"], "lvef_pct": 40.0}
    response = form_post(coord, "SCR", "echo", echo, reason="re-measured", action="save_next")
    assert response.status_code == 303 and response.headers["location"] == f"/subjects/{SUBJECT}/forms/SCR/echo"


# ---------------------------------------------------------------------------------------------- subject codes
@pytest.mark.parametrize(("code", "site", "status"), [
    ("1-38", "01", 422), ("01-38", "01", 422), ("01-0381", "01", 422), ("02-038", "01", 422),
    ("01-038", "02", 422), ("01-038", "01", 303)])
def test_subject_codes_follow_the_protocols_rule_with_the_sites_number(app, code, site, status):
    c = TestClient(app)
    login(c, "dm1")  # all sites
    page = c.get("/subjects")
    response = c.post("/subjects", data={"csrf_token": csrf_of(page.text), "subject_code": code, "site_code": site,
                                         "screening_date": "2025-01-10", "consent_date": "2025-01-09"},
                      follow_redirects=False)
    assert response.status_code == status
    if status == 422:
        assert "does not follow the protocol&#39;s subject code rule ^{site}-\\d{3}$ with site " + site in response.text
        assert "e.g. 01-001" in response.text


def test_a_wrongly_screened_subject_is_withdrawn_at_screening_with_an_audited_reason(coord, db_path):
    page = coord.get(f"/subjects/{SUBJECT}").text
    assert 'id="withdraw-form"' in page
    url = f"/subjects/{SUBJECT}/withdraw"
    refused = coord.post(url, data={"csrf_token": csrf_of(page), "withdraw_reason": ""}, follow_redirects=False)
    assert refused.status_code == 422 and "a reason is required" in refused.text
    done = coord.post(url, data={"csrf_token": csrf_of(page), "withdraw_reason": "registered under a wrong code"},
                      follow_redirects=False)
    assert done.status_code == 303
    engine = create_engine(f"sqlite:///{db_path}")
    with Session(engine) as s:
        subject = s.scalars(select(Subject).where(Subject.subject_code == SUBJECT)).one()
        assert subject.status == "screen_failed" and subject.eligible is False
    status = [r for r in audit_rows(db_path, subject_code=SUBJECT, action="withdraw") if r.field == "status"]
    assert [(r.old_value, r.new_value, r.reason) for r in status] == [
        ('"screening"', '"screen_failed"', "registered under a wrong code")]
    assert verify_chain(engine).ok and reconcile(engine).ok
    engine.dispose()
    # no way back through eligibility, and an infused subject cannot be withdrawn at screening
    assert "withdrawn at screening" in coord.get(f"/subjects/{SUBJECT}").text
    inv = TestClient(coord.app)
    login(inv, "inv1")
    again = inv.post(f"/subjects/{SUBJECT}/eligibility", data={"csrf_token": csrf_of(inv.get("/subjects").text)},
                     follow_redirects=False)
    assert again.status_code == 409 and "eligibility is not re-evaluated" in again.text
    infused = coord.post("/subjects/01-001/withdraw", data={"csrf_token": csrf_of(page), "withdraw_reason": "x"},
                         follow_redirects=False)
    assert infused.status_code == 409


def test_an_adverse_event_conflict_keeps_the_users_values_beside_the_saved_ones(coord, app):
    ae = {"term": "Fever", "category": "FEVER", "onset_date": "2025-01-25", "stop_date": "2025-01-26",
          "ctcae_grade": "1", "serious": "N", "related_product": "POSSIBLE", "related_procedure": "PROBABLE",
          "outcome": "RECOVERED", "max_temperature_c": "38.6"}
    page = coord.get("/subjects/01-001/adverse-events")
    posted = coord.post("/subjects/01-001/adverse-events", data={"csrf_token": csrf_of(page.text),
                                                                  **{f"f_{k}": v for k, v in ae.items()}},
                        follow_redirects=False)
    assert posted.status_code == 303
    stale = coord.get("/subjects/01-001/adverse-events/1")
    other = TestClient(app)
    login(other, "inv1")
    theirs = other.get("/subjects/01-001/adverse-events/1")
    assert other.post("/subjects/01-001/adverse-events/1", data={
        "csrf_token": csrf_of(theirs.text), "version": "1", **{f"f_{k}": v for k, v in ae.items()},
        "f_max_temperature_c": "38.9", "reason": "chart re-read"}, follow_redirects=False).status_code == 303
    response = coord.post("/subjects/01-001/adverse-events/1", data={
        "csrf_token": csrf_of(stale.text), "version": "1", **{f"f_{k}": v for k, v in ae.items()},
        "f_max_temperature_c": "39.1", "reason": "nurse's note"}, follow_redirects=False)
    assert response.status_code == 409
    row = re.search(r"<tr><td>Peak temperature \(fever events\)</td><td class=\"current\">([^<]*)</td>"
                    r"<td class=\"yours\">([^<]*)</td></tr>", response.text)
    assert row and row.groups() == ("38.9", "39.1")
    assert 'name="f_max_temperature_c" value="39.1"' in response.text and "nurse&#39;s note" in response.text
    assert 'name="version" value="2"' in response.text
