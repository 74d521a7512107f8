"""End-to-end tests in real headless Chromium (Debian's chromium, driven by Playwright for Python).

The app runs under uvicorn in a background thread on 127.0.0.1. Screenshots of the main pages
go to $REGENHEART_SCREENSHOTS when set (docs/screenshots is made that way), else to a temp dir.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from regenheart.web import create_app

from ..conftest import eligible_screening_data
from .conftest import CATH, FAST_HASHER, PASSWORD, TODAY, no_scorer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                                     "(apt-get install -y chromium); CI installs it"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free loopback port; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def live_server(db_path, web_protocol) -> Iterator[str]:
    with serving(create_app(db_path, web_protocol, scorer=no_scorer, today=lambda: TODAY,
                            hasher=FAST_HASHER)) as url:
        yield url


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    target = Path(os.environ.get("REGENHEART_SCREENSHOTS") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


def api(base: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    response = client.post("/api/auth/token", json={"username": username, "password": PASSWORD})
    response.raise_for_status()
    client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return client


def log_in(browser, base: str, username: str, viewport=(1366, 900)):
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, base_url=base,
                                  locale="en-GB")
    page = context.new_page()
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/subjects")
    return page


def flash(page) -> str:
    return page.locator(".flash").first.inner_text()


def fill_echo(page, lvef: str) -> None:
    page.check("input[name=f_modality][value=TTE]")
    values = {"lvef_pct": lvef, "lvedv_ml": "250", "lvesv_ml": "182", "lvedd_mm": "69", "lvesd_mm": "58",
              "ivsd_mm": "9.5", "lvpwd_mm": "9.0"}
    for name, value in values.items():
        page.fill(f"#f_{name}", value)


def test_coordinator_and_monitor_workflow(live_server, chromium, shots):
    from playwright.sync_api import expect

    base = live_server
    # --- log in (the log-in page first)
    context = chromium.new_context(viewport={"width": 1366, "height": 900}, base_url=base, locale="en-GB")
    page = context.new_page()
    page.goto("/login")
    expect(page.locator("h1")).to_have_text("Log in")
    page.screenshot(path=shots / "login.png")
    page.fill("#username", "coord1")
    page.fill("#password", "wrong password")
    page.click("button[type=submit]")
    expect(page.locator(".flash.error")).to_contain_text("invalid username or password")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/subjects")
    expect(page.locator(".who")).to_contain_text("Cora Ordinator")

    # --- screen a new subject
    page.fill("#subject_code", "01-004")
    page.select_option("#site_code", "01")
    page.fill("#consent_date", "2025-11-28")
    page.fill("#screening_date", "2025-11-28")
    page.click("#screen-form button[type=submit]")
    page.wait_for_url("**/subjects/01-004")
    assert "registered for screening" in flash(page)

    # the other screening forms go in through the API of the same server
    coord_api = api(base, "coord1")
    first = True
    for form, data in eligible_screening_data().items():
        if form == "echo":
            continue
        body = {"data": data, "version": 0} | ({"visit_date": "2025-11-28"} if first else {})
        first = False
        assert coord_api.put(f"/api/subjects/01-004/forms/SCR/{form}", json=body).status_code == 200

    # --- baseline echo with an out-of-range LVEF: the message appears next to the field
    page.goto("/subjects/01-004/forms/SCR/echo")
    expect(page.locator("#visit_date")).to_have_value("2025-11-28")
    fill_echo(page, "95")
    page.click("#save")
    error = page.locator("[data-error-for=lvef_pct]")
    expect(error).to_contain_text("must be between 5 and 80 % (plausible range)")
    expect(error).to_contain_text("entered: 95")
    expect(page.locator("#row-lvef_pct")).to_have_class("field has-error")
    page.locator("#row-lvef_pct").scroll_into_view_if_needed()
    page.screenshot(path=shots / "form_error.png", full_page=True)
    # correct it
    page.fill("#f_lvef_pct", "27.0")
    page.click("#save")
    expect(page.locator(".flash.ok")).to_contain_text("Saved: version 1, complete")
    expect(page.locator("[data-error-for=lvef_pct]")).to_have_count(0)

    # --- eligibility and enrolment
    page.goto("/subjects/01-004")
    page.click("#evaluate-eligibility")
    expect(page.locator(".flash.ok")).to_contain_text("Eligible")
    page.fill("#enrolled_date", "2025-12-05")
    page.click("#enrol-form button[type=submit]")
    expect(page.locator(".flash.ok")).to_contain_text("Subject 01-004 enrolled")
    expect(page.locator(".subject-head h1")).to_contain_text("enrolled")

    # day 0 infusion and the in-hospital visits (API), then the casebook and the subject list
    body = {"data": CATH, "version": 0, "visit_date": "2025-12-10"}
    assert coord_api.put("/api/subjects/01-004/forms/D0/catheterization", json=body).status_code == 200
    for day, visit in enumerate(("D1", "D2", "D3", "D4", "D5"), start=11):
        assert coord_api.put(f"/api/subjects/01-004/visits/{visit}",
                             json={"visit_date": f"2025-12-{day}"}).status_code == 200
    vitals = {"sbp_mmhg": 112, "dbp_mmhg": 70, "heart_rate_bpm": 74, "temperature_c": 36.8}
    for visit in ("D1", "D2"):
        coord_api.put(f"/api/subjects/01-004/forms/{visit}/vital_signs", json={"data": vitals, "version": 0})
    coord_api.put("/api/subjects/01-004/forms/D1/cardiac_enzymes", json={"data": {"troponin_i_ng_l": 40.0},
                                                                          "version": 0, "complete": False})
    page.goto("/subjects")
    row = page.locator("tr", has=page.locator("a.subject-link", has_text="01-004"))
    # next visit = the first visit with required forms missing: baseline (day -14, window -30 to -1)
    expect(row).to_contain_text("SCR")
    expect(row).to_contain_text("8 of 13 forms missing")
    expect(row).to_contain_text("target 2025-11-26")
    expect(row).to_contain_text("2025-11-10 – 2025-12-09")
    page.screenshot(path=shots / "subjects.png", full_page=True)

    # --- edit the echo later: the reason prompt, then the change with a reason
    page.goto("/subjects/01-004/forms/SCR/echo")
    page.fill("#f_lvef_pct", "28.5")
    page.click("#save")
    expect(page.locator(".js-reason-needed")).to_be_visible()  # the browser asks for a reason first
    expect(page.locator("#row-reason")).to_have_class("field reason needed")
    page.fill("#reason", "transcription error: the echo report says 28.5 %")
    page.click("#save")
    expect(page.locator(".flash.ok")).to_contain_text("Saved: version 2, complete; changed lvef_pct")

    # --- the audit trail of the field shows the old and the new value
    page.click("#row-lvef_pct a.hist")
    page.wait_for_url("**/audit?visit=SCR&form=echo&field=lvef_pct")
    update = page.locator("#audit-table tr.act-update")
    expect(update).to_have_count(1)
    expect(update.locator("td.old")).to_have_text("27.0")
    expect(update.locator("td.new")).to_have_text("28.5")
    expect(update).to_contain_text("transcription error: the echo report says 28.5 %")
    expect(update).to_contain_text("coord1")
    page.screenshot(path=shots / "audit_trail.png", full_page=True)

    # --- a monitor raises a query on the field ...
    monitor = log_in(chromium, base, "mon1")
    monitor.goto("/subjects/01-004/forms/SCR/echo")
    expect(monitor.locator("#f_lvef_pct")).to_be_disabled()  # monitors never change clinical data
    monitor.select_option("#query-field", "lvef_pct")
    monitor.fill("#query-text", "LVEF was changed from 27.0 to 28.5 %: please confirm against the source report.")
    monitor.click("#open-query button[type=submit]")
    expect(monitor.locator(".flash.ok")).to_contain_text("Query 1 opened on lvef_pct")
    expect(monitor.locator("#row-lvef_pct .qmark")).to_have_text("?1")

    # ... the coordinator sees it in the casebook and answers it ...
    page.goto("/subjects/01-004")
    expect(page.locator("a.cell[data-visit=SCR][data-form=echo] .qmark")).to_have_text("?1")
    page.goto("/subjects/01-004/queries")
    query = page.locator("li.query[data-seq='1']")
    expect(query).to_have_attribute("data-status", "open")
    query.locator("textarea[name=text]").fill("Confirmed: the signed echo report (2025-11-28) gives 28.5 %.")
    query.locator("form.q-answer button").click()
    expect(page.locator(".flash.ok")).to_contain_text("Query 1 is now answered")

    # ... and the monitor reviews the answer, verifies the form and closes the query
    monitor.goto("/queries")
    answered = monitor.locator("li.query", has_text="01-004")
    expect(answered).to_have_attribute("data-status", "answered")
    expect(answered.locator("ol.thread li")).to_have_count(2)
    monitor.screenshot(path=shots / "query.png", full_page=True)
    answered.locator("form.q-close input[name=text]").fill("Source checked.")
    answered.locator("form.q-close button").click()
    expect(monitor.locator(".flash.ok")).to_contain_text("Query 1 is now closed")
    monitor.goto("/subjects/01-004/forms/SCR/echo")
    monitor.fill("#sdv-comment", "checked against the echo report")
    monitor.click("#verify")
    expect(monitor.locator(".flash.ok")).to_contain_text("Source data verified")

    # --- the investigator signs the verified form (password re-entered)
    investigator = log_in(chromium, base, "inv1")
    investigator.goto("/subjects/01-004/forms/SCR/echo")
    investigator.fill("#sign-password", PASSWORD)
    investigator.click("#sign")
    expect(investigator.locator(".flash.ok")).to_contain_text("Signed by Dr Ivan Vestigator")
    expect(investigator.locator("#signature")).to_contain_text("Approval: I have reviewed the data")
    investigator.screenshot(path=shots / "form_signed.png", full_page=True)

    page.goto("/subjects/01-004")
    expect(page.locator("a.cell[data-visit=SCR][data-form=echo]")).to_have_attribute("data-status", "verified")
    page.screenshot(path=shots / "casebook.png", full_page=True)
    for p in (page, monitor, investigator):
        p.context.close()


def test_tablet_layout_and_adverse_event_log(live_server, chromium, shots):
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "coord1", viewport=(820, 1180))
    page.goto("/subjects/01-001/adverse-events")
    page.fill("#f_term", "Fever after catheterization")
    page.select_option("#f_category", "FEVER")
    page.fill("#f_onset_date", "2025-01-25")
    page.fill("#f_stop_date", "2025-01-26")
    page.check("input[name=f_ctcae_grade][value='1']") if page.locator(
        "input[name=f_ctcae_grade]").count() else page.select_option("#f_ctcae_grade", "1")
    page.check("input[name=f_serious][value=N]")
    page.select_option("#f_related_product", "POSSIBLE")
    page.select_option("#f_related_procedure", "PROBABLE")
    page.select_option("#f_outcome", "RECOVERED")
    page.fill("#f_max_temperature_c", "37.2")
    page.click("#ae-form button[type=submit]")
    expect(page.locator("[data-error-for=max_temperature_c]")).to_contain_text("at least 38.0 C")
    page.fill("#f_max_temperature_c", "38.6")
    page.click("#ae-form button[type=submit]")
    expect(page.locator(".flash.ok")).to_contain_text("Adverse event 1 recorded")
    page.screenshot(path=shots / "adverse_events_tablet.png", full_page=True)
    page.goto("/subjects/01-001")
    page.screenshot(path=shots / "casebook_tablet.png", full_page=True)
    grid = page.locator(".grid-wrap")
    assert grid.evaluate("el => el.scrollWidth > el.clientWidth")  # the grid scrolls, the page does not
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.context.close()
