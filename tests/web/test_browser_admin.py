"""Administration in real headless Chromium (Playwright) at 1366x900 and 768x1024: an administrator adds a
site, renames and deactivates it on /admin/sites; a data manager corrects a subject code entered wrongly at
screening on the casebook; a data manager's lock of one unverified form asks for confirmation; the data-quality
page lists an acknowledged soft-check warning apart from the standing ones. Layout is
measured in the page (no sideways scroll, inputs at least 200 px wide)."""

from __future__ import annotations

import pytest

from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.store.db import open_study_database

from ..conftest import eligible_screening_data
from .conftest import TODAY, no_scorer
from .test_browser import CHROMIUM, api, chromium, live_server, log_in, shots  # noqa: F401 (fixtures)
from .test_browser_entry import VIEWPORTS, min_width, no_sideways_scroll

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                                     "(apt-get install -y chromium); CI installs it"),
]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_admin_adds_renames_and_deactivates_a_site(live_server, chromium, viewport, shots):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "admin1", viewport=viewport)
    page.goto("/admin/users")
    page.click("#manage-sites")
    page.wait_for_url("**/admin/sites")
    expect(page.locator("#site-01")).to_contain_text("protocol file")
    no_sideways_scroll(page)
    assert min_width(page, "#new-site-form input:not([type=hidden])") >= 200
    page.fill("#ns-code", "7")
    page.fill("#ns-name", "Almaty clinic")
    page.click("#add-site")
    expect(page.locator("#new-site-form")).to_contain_text("must be 2 digits")
    page.fill("#ns-code", "07")
    page.click("#add-site")
    expect(page.locator(".flash.ok")).to_contain_text("Site 07 (Almaty clinic) added.")
    row = page.locator("#site-07")
    expect(row).to_contain_text("added here")
    row.locator("summary").click()
    row.locator("input[name=name]").fill("Almaty")
    row.locator("select[name=active]").select_option("0")
    row.locator("input[name=reason]").fill("centre closed")
    no_sideways_scroll(page)
    row.locator("button[type=submit]").click()
    expect(page.locator(".flash.ok")).to_contain_text("inactive")
    expect(page.locator("#site-07 .site-status")).to_have_text("inactive")
    expect(page.locator("#site-07 .site-name")).to_have_text("Almaty")
    if viewport[0] == 1366:  # README screenshot (docs/screenshots when $REGENHEART_SCREENSHOTS is set)
        page.screenshot(path=shots / "sites.png", full_page=False)
    # the new-account form no longer offers the closed site; the site table shows it inactive
    page.goto("/admin/users")
    assert page.locator("#nu-site option[value='07']").count() == 0
    expect(page.locator("#sites-table")).to_contain_text("inactive")
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_data_manager_corrects_a_wrongly_screened_subject_code(live_server, chromium, viewport, db_path,  # noqa: F811
                                                                web_protocol):
    from playwright.sync_api import expect

    # "1-38" at site 01, registered before the rule was stated (a protocol copy without it)
    engine = open_study_database(db_path)
    loose = web_protocol.model_copy(update={"study": web_protocol.study.model_copy(update={"subject_code": None})})
    capture = CaptureService(engine, loose, scorer=no_scorer, today=lambda: TODAY)
    coord = Actor("coord1", "coordinator", "01")
    capture.screen_subject(coord, "1-38", "01", "2025-01-10", "2025-01-09")
    capture.save_form(coord, "1-38", "SCR", "demographics", eligible_screening_data()["demographics"],
                      visit_date="2025-01-10")
    engine.dispose()
    page = log_in(chromium, live_server, "dm1", viewport=viewport)
    page.goto("/subjects/1-38")
    page.locator("#subject-code-form").locator("xpath=..").locator("summary").click()
    no_sideways_scroll(page)
    assert min_width(page, "#subject-code-form input:not([type=hidden])") >= 200
    page.fill("#new_subject_code", "01-38")
    page.fill("#code_reason", "typed 1-38 at screening")
    page.click("#correct-code")
    expect(page.locator("#subject-code-form")).to_contain_text("does not follow the protocol")
    page.fill("#new_subject_code", "01-038")
    page.click("#correct-code")
    page.wait_for_url("**/subjects/01-038")
    expect(page.locator(".flash.ok")).to_contain_text("1-38 is now 01-038")
    page.goto("/subjects/01-038/audit?field=subject_code")
    expect(page.locator("#audit-table tbody tr").first).to_contain_text("typed 1-38 at screening")
    page.goto("/subjects/01-038/forms/SCR/demographics")
    expect(page.locator("#f_age_years")).not_to_have_value("")
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_single_form_lock_asks_before_locking_an_unverified_form(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "dm1", viewport=viewport)
    page.goto("/subjects/01-001/forms/SCR/demographics")
    expect(page.locator("#lock-warning")).to_contain_text("not source-data verified")
    page.click("#lock")  # the required box stops the submit in the browser
    assert page.url.endswith("/forms/SCR/demographics")
    expect(page.locator(".flash.ok")).to_have_count(0)
    page.check("#lock-confirm")
    page.click("#lock")
    expect(page.locator(".flash.ok")).to_contain_text("Form locked.")
    no_sideways_scroll(page)
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_data_quality_lists_an_acknowledged_warning_apart(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    coord = api(live_server, "coord1")
    assert coord.put("/api/subjects/01-002/forms/SCR/echo", json={"data": {"lvef_pct": 40.0}, "version": 1,
                                                                   "reason": "re-read"}).status_code == 200
    page = log_in(chromium, live_server, "mon1", viewport=viewport)
    page.goto("/data-quality")
    expect(page.locator(".dq-count[data-kind=soft_check] strong")).to_have_text("1")
    expect(page.locator(".dq-count[data-kind=soft_check_acknowledged] strong")).to_have_text("0")
    assert coord.post("/api/subjects/01-002/forms/SCR/echo/warnings/ECHO03/acknowledge",
                      json={"reason": "confirmed with the echo lab"}).status_code == 200
    page.reload()
    expect(page.locator(".dq-count[data-kind=soft_check] strong")).to_have_text("0")
    expect(page.locator(".dq-count[data-kind=soft_check_acknowledged] strong")).to_have_text("1")
    page.click(".dq-count[data-kind=soft_check_acknowledged]")
    row = page.locator("#dq-table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("confirmed with the echo lab")
    no_sideways_scroll(page)
    page.context.close()
