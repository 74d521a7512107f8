"""Review in the browser (headless Chromium at 1366x900 and 768x1024): a visit signed with one password entry,
a visit locked after confirming the incomplete forms listed, and a query on an adverse event from opening to
closing. Layout is measured in the page (the confirm controls stay inside the viewport's width)."""

from __future__ import annotations

import pytest

from .conftest import PASSWORD
from .test_browser import CHROMIUM, api, chromium, live_server, log_in  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt-get install -y "
                                                     "chromium); CI installs it"),
]
VIEWPORTS = [(1366, 900), (768, 1024)]
FEVER = {"term": "Fever", "category": "FEVER", "onset_date": "2025-01-26", "stop_date": "2025-01-27",
         "ctcae_grade": 1, "serious": "N", "related_product": "POSSIBLE", "related_procedure": "NOT",
         "outcome": "RECOVERED", "max_temperature_c": 38.4}


def api_call(base: str, username: str, method: str, path: str, **kw):
    """One API call as ``username`` (a bearer token of its own)."""
    client = api(base, username)
    try:
        return client.request(method, path, **kw)
    finally:
        client.close()


def inside_width(page, selector: str) -> bool:
    """The element is laid out within the viewport's width (no control pushed off-screen)."""
    box = page.locator(selector).bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"] + 1


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=lambda v: f"{v[0]}x{v[1]}")
def test_sign_a_visit_with_one_password_entry(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "inv1", viewport)
    page.goto("/subjects/01-001")
    page.locator("#casebook-grid a.review-link[href$='/visits/SCR/review/sign']").click()
    expect(page.locator("#review-bulk h2")).to_contain_text("visit SCR")
    listed = page.locator("#review-items tr[data-acts='1']")
    expect(listed).to_have_count(5)  # every complete SCR form is listed before signing
    keys = [k for k in listed.evaluate_all("rows => rows.map(r => r.dataset.key)")]
    assert "SCR/echo" in keys and "SCR/nyha" in keys
    assert inside_width(page, "#bulk-submit")
    page.fill("#sign-password", "wrong password")
    page.click("#bulk-submit")
    expect(page.locator(".flash.error")).to_contain_text("password")
    page.fill("#sign-password", PASSWORD)
    page.select_option("#meaning", "responsibility")
    page.click("#bulk-submit")
    page.wait_for_url("**/subjects/01-001")
    expect(page.locator(".flash.ok")).to_contain_text("5 items of visit SCR signed by Dr Ivan Vestigator")
    for form in ("demographics", "echo", "nyha"):
        expect(page.locator(f"a.cell[data-visit=SCR][data-form={form}] .sig")).to_have_count(1)
    sigs = api_call(live_server, "inv1", "GET", "/api/subjects/01-001/forms/SCR/echo/signatures").json()
    log = api_call(live_server, "inv1", "GET", "/api/subjects/01-001/audit", params={"field": "signed"}).json()
    assert len(sigs) == 1 and sigs[0]["meaning"].startswith("Responsibility")
    assert len([r for r in log if r["action"] == "sign"]) == 5


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=lambda v: f"{v[0]}x{v[1]}")
def test_lock_a_visit_after_confirming_the_incomplete_forms(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    saved = api_call(live_server, "coord1", "PUT", "/api/subjects/01-001/forms/D0/vital_signs", json={
        "data": {"sbp_mmhg": 120}, "version": 0, "complete": False, "visit_date": "2025-01-24"})
    assert saved.status_code == 200, saved.text
    page = log_in(chromium, live_server, "dm1", viewport)
    page.goto("/subjects/01-001/visits/D0/review/lock")
    warnings = page.locator("#lock-warnings li")
    expect(warnings).to_have_count(2)
    expect(page.locator("#lock-warnings li[data-key='D0/vital_signs']")).to_contain_text("incomplete")
    expect(page.locator("#lock-warnings li[data-key='D0/catheterization']")).to_contain_text("not source-data verified")
    assert inside_width(page, "#confirm") and inside_width(page, "#bulk-submit")
    page.click("#bulk-submit")  # without confirming: refused, the list shown again
    expect(page.locator("#confirm-list li")).to_have_count(2)
    expect(page.locator("#confirm-list")).to_contain_text("D0/vital_signs")
    page.check("#confirm")
    page.fill("#lock-reason", "interim data cut")
    page.click("#bulk-submit")
    page.wait_for_url("**/subjects/01-001")
    expect(page.locator(".flash.ok")).to_contain_text("2 items of visit D0 locked")
    cell = page.locator("a.cell[data-visit=D0][data-form=vital_signs]")
    expect(cell).to_contain_text("locked")
    expect(cell.locator(".under")).to_have_text("incomplete")  # the lock does not hide the entry status
    expect(page.locator("a.cell[data-visit=D0][data-form=catheterization] .under")).to_have_text("not verified")


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=lambda v: f"{v[0]}x{v[1]}")
def test_query_on_an_adverse_event_round_trip(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    assert api_call(live_server, "coord1", "POST", "/api/subjects/01-001/adverse-events",
                    json={"data": FEVER}).status_code == 201
    monitor = log_in(chromium, live_server, "mon1", viewport)
    monitor.goto("/subjects/01-001/adverse-events/1")
    monitor.select_option("#ae-query-field", "ctcae_grade")
    monitor.fill("#ae-query-text", "Grade 1 with a peak of 38.4 C: please confirm the grade.")
    assert inside_width(monitor, "#ae-open-query button")
    monitor.click("#ae-open-query button")
    expect(monitor.locator(".flash.ok")).to_contain_text("on ctcae_grade of adverse event 1")
    expect(monitor.locator("#ae-queries li.query[data-status=open]")).to_have_count(1)

    site = log_in(chromium, live_server, "coord1", viewport)
    site.goto("/queries")
    item = site.locator("li.query", has_text="ctcae_grade")
    expect(item).to_have_count(1)
    item.locator("a[href*='/forms/ae/AE1']").click()  # the worklist link leads to the adverse event
    site.wait_for_url("**/subjects/01-001/adverse-events/1*")
    site.fill("#ae-queries textarea[name=text]", "Grade 1 confirmed from the nursing chart.")
    site.locator("#ae-queries .q-answer button").click()
    expect(site.locator(".flash.ok")).to_contain_text("answered")

    monitor.goto("/subjects/01-001/adverse-events/1")
    monitor.locator("#ae-queries .q-close button").click()
    expect(monitor.locator(".flash.ok")).to_contain_text("closed")
    trail = api_call(live_server, "mon1", "GET", "/api/subjects/01-001/audit").json()
    actions = [r["action"] for r in trail if r["entity"] == "query" and r["form"] == "AE1"]
    assert actions == ["query_open", "query_answer", "query_close"]
