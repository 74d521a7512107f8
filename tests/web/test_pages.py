"""Browser pages without a browser (TestClient): log-in with CSRF, cookie flags, inline errors,
reason for change, read-only views for reviewers, no stack traces."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from .conftest import PASSWORD

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD):
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password, "csrf_token": csrf_of(page.text),
                                       "next": "/subjects"}, follow_redirects=False)


@pytest.fixture
def browser(app):
    def make(username: str, https: bool = False) -> TestClient:
        c = TestClient(app, base_url="https://testserver" if https else "http://testserver")
        response = login(c, username)
        assert response.status_code == 303, response.text
        return c
    return make


def test_pages_need_a_session(client):
    response = client.get("/subjects/01-001", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2Fsubjects%2F01-001"


def test_login_sets_a_strict_httponly_cookie(client):
    response = login(client, "coord1")
    assert response.status_code == 303 and response.headers["location"] == "/subjects"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("rh_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie  # plain HTTP (local use)
    assert "Subjects" in client.get("/subjects").text


def test_cookie_is_secure_over_https(app):
    c = TestClient(app, base_url="https://testserver")
    response = login(c, "coord1")
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("rh_session="))
    assert "Secure" in cookie and "HttpOnly" in cookie
    assert c.get("/login").headers["strict-transport-security"]


def test_login_without_csrf_or_with_bad_password_is_refused(client):
    response = client.post("/login", data={"username": "coord1", "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 403 and "rh_session" not in response.headers.get("set-cookie", "")
    response = login(client, "coord1", "wrong password")
    assert response.status_code == 401 and "invalid username or password" in response.text


def test_form_posts_need_the_session_csrf_token(browser):
    c = browser("coord1")
    data = {"subject_code": "01-077", "site_code": "01", "screening_date": "2025-05-02", "consent_date": "2025-05-01"}
    response = c.post("/subjects", data=data | {"csrf_token": "forged"}, follow_redirects=False)
    assert response.status_code == 403 and "CSRF" in response.text
    assert "01-077" not in c.get("/subjects").text
    token = csrf_of(c.get("/subjects").text)
    response = c.post("/subjects", data=data | {"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/subjects/01-077"


def test_subject_list_shows_status_and_next_visit_window(browser):
    html = browser("coord1").get("/subjects").text
    assert "01-001" in html and "02-001" not in html  # site 01 account
    assert "infused (on study)" in html
    # the first visit with forms missing: baseline (window day -30 to -1, target day -14)
    assert "target <time>2025-01-10</time>" in html and "overdue" in html and "8 of 13 forms missing" in html


def test_casebook_grid_shows_cell_states(browser):
    html = browser("coord1").get("/subjects/01-001").text
    assert 'data-visit="SCR" data-form="nyha" data-status="locked"' in html
    assert 'data-visit="SCR" data-form="echo" data-status="complete"' in html
    assert 'data-visit="SCR" data-form="cardiac_ct" data-status="not_started"' in html
    assert 'aria-label="open query">?1' in html
    assert "2025-02-23" in html  # M1 target date from the infusion date


def test_form_page_is_generated_from_the_protocol(browser):
    html = browser("coord1").get("/subjects/01-001/forms/SCR/echo").text
    assert 'name="f_lvef_pct" value="27.0"' in html and 'inputmode="decimal"' in html
    assert "plausible range 5–80 %" in html and '<span class="unit">mL</span>' in html
    assert html.count('title="required"') == 8
    assert 'type="radio" name="f_modality" value="TTE" checked' in html  # short code list: radios
    assert 'name="reason"' in html  # saved form: reason prompt
    ae = browser("coord1").get("/subjects/01-001/adverse-events").text
    assert '<select id="f_category" name="f_category"' in ae  # longer code list: select
    assert 'value="PERIPROC_MI" >PERIPROC_MI · Peri-procedural myocardial infarction' in ae


def _echo_post(c: TestClient, **changes: str) -> dict[str, str]:
    page = c.get("/subjects/01-001/forms/SCR/echo").text
    data = {"csrf_token": csrf_of(page), "version": "1", "visit_date": "2025-01-10", "action": "save",
            "f_modality": "TTE", "f_lvef_pct": "27.0", "f_lvedv_ml": "250", "f_lvesv_ml": "182", "f_lvedd_mm": "69",
            "f_lvesd_mm": "58", "f_ivsd_mm": "9.5", "f_lvpwd_mm": "9.0"}
    return data | changes


def test_out_of_range_value_is_shown_next_to_the_field(browser):
    c = browser("coord1")
    response = c.post("/subjects/01-001/forms/SCR/echo", data=_echo_post(c, f_lvef_pct="95", reason="typo"))
    assert response.status_code == 422
    html = response.text
    error = re.search(r'data-error-for="lvef_pct">([^<]+)<', html)
    assert error and "must be between 5 and 80 % (plausible range) (entered: 95)" in error.group(1)
    assert 'name="f_lvef_pct" value="95"' in html  # the user's input is kept for correction
    assert c.get("/api/subjects/01-001/forms/SCR/echo").status_code == 401  # (API needs a bearer token)


def test_change_without_reason_then_with_reason(browser):
    c = browser("coord1")
    response = c.post("/subjects/01-001/forms/SCR/echo", data=_echo_post(c, f_lvef_pct="28.5"))
    assert response.status_code == 422
    assert re.search(r'data-error-for="reason">a reason is required to change saved data', response.text)
    response = c.post("/subjects/01-001/forms/SCR/echo", data=_echo_post(c, f_lvef_pct="28.5",
                                                                          reason="transcription error"))
    assert response.status_code == 200 and "Saved: version 2" in response.text
    audit = c.get("/subjects/01-001/audit?visit=SCR&form=echo&field=lvef_pct").text
    row = re.search(r'<tr class="act-update">(.*?)</tr>', audit, re.DOTALL).group(1)
    assert 'class="old">27.0<' in row and 'class="new">28.5<' in row and "transcription error" in row
    assert "coord1" in row and "coordinator" in row


def test_unchanged_resubmission_needs_no_reason(browser):
    c = browser("coord1")
    response = c.post("/subjects/01-001/forms/SCR/echo", data=_echo_post(c))
    assert response.status_code == 200 and "no changes" in response.text


def test_stale_form_shows_a_conflict(browser):
    c = browser("coord1")
    stale = _echo_post(c, f_lvef_pct="29.0", reason="x")
    c.post("/subjects/01-001/forms/SCR/echo", data=_echo_post(c, f_lvef_pct="28.0", reason="y"))
    response = c.post("/subjects/01-001/forms/SCR/echo", data=stale)
    assert response.status_code == 409 and "version 2, not 1" in response.text


def test_reviewers_get_read_only_forms(browser):
    html = browser("mon1").get("/subjects/01-001/forms/SCR/echo").text
    assert "<fieldset disabled>" in html and 'id="save"' not in html
    assert 'id="verify"' in html and 'id="open-query"' in html and 'id="sign"' not in html
    html = browser("inv1").get("/subjects/01-001/forms/SCR/echo").text
    assert 'id="sign"' in html and 'id="verify"' not in html
    html = browser("dm1").get("/subjects/01-001/forms/SCR/nyha").text
    assert 'id="unlock"' in html and "locked by data management" in html


def test_monitor_post_to_a_form_is_refused_and_logged(browser, app):
    c = browser("mon1")
    response = c.post("/subjects/01-001/forms/SCR/echo", data=_echo_post(c, f_lvef_pct="30.0", reason="x"))
    assert response.status_code == 403 and "may not enter data" in response.text
    events = app.state.ctx.accounts.access_log(app.state.ctx.accounts.get_user("admin1").actor, username="mon1")
    assert events[0].event == "permission_denied" and events[0].channel == "web"


def test_query_answer_and_close_in_the_browser_pages(browser):
    coord, mon = browser("coord1"), browser("mon1")
    page = coord.get("/subjects/01-001/queries").text
    response = coord.post("/subjects/01-001/queries/1/answer", data={
        "csrf_token": csrf_of(page), "text": "Confirmed against the echo report.",
        "return_to": "/subjects/01-001/queries"})
    assert response.status_code == 200 and "Query 1 is now answered." in response.text
    page = mon.get("/queries").text
    assert "Confirmed against the echo report." in page
    response = mon.post("/subjects/01-001/queries/1/close", data={"csrf_token": csrf_of(page), "text": "",
                                                                  "return_to": "//evil.example/"})
    assert response.status_code == 200 and "Query 1 is now closed." in response.text
    assert str(response.url).startswith("http://testserver/subjects/01-001/queries")  # no open redirect


def test_signature_page_shows_the_manifestation(browser):
    c = browser("inv1")
    page = c.get("/subjects/01-001/forms/SCR/medical_history").text
    response = c.post("/subjects/01-001/forms/SCR/medical_history/sign", data={
        "csrf_token": csrf_of(page), "version": "1", "meaning": "approval", "password": PASSWORD})
    html = response.text
    assert response.status_code == 200 and 'id="signature"' in html
    assert "Dr Ivan Vestigator" in html and "Approval: I have reviewed" in html
    assert re.search(r'signed <time datetime="[0-9T:.-]+Z" title="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>', html)


def test_logout_ends_the_session(browser):
    c = browser("coord1")
    token = csrf_of(c.get("/subjects").text)
    stolen = c.cookies.get("rh_session")
    assert c.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    other = TestClient(c.app)
    other.cookies.set("rh_session", stolen)
    assert other.get("/subjects", follow_redirects=False).status_code == 303  # revoked


def test_error_pages_have_no_stack_trace(browser):
    c = browser("coord1")
    for path, status in (("/subjects/99-999", 404), ("/subjects/02-001", 404), ("/nope", 404),
                         ("/subjects/01-001/forms/SCR/unknown", 404), ("/admin/users", 403)):
        response = c.get(path)
        assert response.status_code == status, path
        assert "Traceback" not in response.text and "<h1>" in response.text


def test_admin_pages(browser):
    c = browser("admin1")
    page = c.get("/admin/users").text
    assert "coord2" in page and "What each role may do" in page
    response = c.post("/admin/users", data={"csrf_token": csrf_of(page), "username": "x", "role": "monitor",
                                            "password": "short", "full_name": "", "site": ""})
    assert response.status_code == 422 and "at least 10 characters" in response.text
    log = c.get("/admin/access-log").text
    assert "login success" in log
