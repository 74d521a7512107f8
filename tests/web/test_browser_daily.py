"""The daily-work pages in real headless Chromium (Playwright): record status dashboard, data quality,
queries worklist, export, subject list filters; at 1366x900 (laptop) and 768x1024 (tablet), with
layout measured in the page (no horizontal page scroll; text filter inputs at least 200 px wide).

The README screenshots docs/screenshots/dashboard.png and data_quality.png are taken on the
35-subject synthetic cohort (set $REGENHEART_SCREENSHOTS=docs/screenshots to refresh them).
"""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import pytest

from regenheart.capture.accounts import AccountService
from regenheart.capture.service import CaptureService
from regenheart.protocol import load_protocol
from regenheart.store.db import create_study_database
from regenheart.synth import enter_cohort, generate_cohort
from regenheart.web import create_app

from .conftest import FAST_HASHER, PASSWORD, SETUP
from .test_browser import CHROMIUM, api, chromium, live_server, log_in, serving, shots  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                                     "(apt-get install -y chromium); CI installs it"),
]
VIEWPORTS = [pytest.param((1366, 900), id="laptop"), pytest.param((768, 1024), id="tablet")]


def assert_layout(page, text_inputs: list[str]) -> None:
    """No horizontal scroll of the page; every text filter input at least 200 px wide."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]")
    for selector in text_inputs:
        width = page.locator(selector).evaluate("el => el.getBoundingClientRect().width")
        assert width >= 200, f"{selector} is {width:.0f} px wide"


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_dashboard_filters_and_sorting(live_server, chromium, shots, viewport):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "dm1", viewport=viewport)
    page.goto("/dashboard")
    expect(page.locator("h1")).to_contain_text("Record status")
    expect(page.locator("#dashboard-table tbody tr[data-subject]")).to_have_count(4)
    expect(page.locator(".site-count[data-site='01'] [data-count=overdue]")).to_have_text("42 overdue")
    assert_layout(page, ["#f-q"])
    # one visit's forms, overdue only (the select applies at once)
    page.select_option("#f-visit", "SCR")
    page.wait_for_url("**visit=SCR**")
    page.select_option("#f-state", "overdue")
    page.wait_for_url("**state=overdue**")
    rows = page.locator("#dashboard-table tbody tr[data-subject]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-subject", "01-001")
    expect(rows.first.locator("a.dcell[data-form=kccq]")).to_have_attribute("data-state", "overdue")
    expect(rows.first.locator("a.dcell[data-form=nyha]")).to_have_attribute("data-state", "locked")
    assert_layout(page, ["#f-q"])
    page.screenshot(path=shots / f"dashboard_visit_{viewport[0]}.png", full_page=True)
    # search and sort
    page.goto("/dashboard")
    page.fill("#f-q", "02-")
    page.click("#dashboard-filters button[type=submit]")
    expect(page.locator("#dashboard-table tbody tr[data-subject]")).to_have_count(1)
    page.goto("/dashboard")
    page.click("a.sort[aria-label='sort by site']")
    page.click("a.sort[aria-label='sort by site']")  # second click: descending
    expect(page.locator("#dashboard-table tbody tr[data-subject]").first).to_have_attribute("data-subject", "02-001")
    # a cell leads to its form
    page.goto("/dashboard?visit=SCR")
    page.click("tr[data-subject='01-001'] a.dcell[data-form=echo]")
    page.wait_for_url("**/subjects/01-001/forms/SCR/echo")
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_data_quality_page(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    coord = api(live_server, "coord1")
    response = coord.put("/api/subjects/01-002/forms/SCR/echo", json={"data": {"lvef_pct": 40.0}, "version": 1,
                                                                       "reason": "re-read"})
    assert response.status_code == 200, response.text
    page = log_in(chromium, live_server, "mon1", viewport=viewport)
    page.goto("/data-quality")
    expect(page.locator(".dq-count[data-kind=soft_check] strong")).to_have_text("1")
    assert_layout(page, ["#dq-q"])
    page.click(".dq-count[data-kind=soft_check]")
    row = page.locator("#dq-table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("ECHO03")
    expect(row).to_contain_text("01-002")
    assert_layout(page, ["#dq-q"])
    row.locator("td[data-label=Form] a", has_text="Echocardiography").click()
    page.wait_for_url("**/subjects/01-002/forms/SCR/echo#row-lvef_pct")
    page.goto("/data-quality?kind=missing_form")
    expect(page.locator("#dq-table tbody tr", has_text="01-001").first).to_contain_text("not entered")
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_queries_worklist(live_server, chromium, shots, viewport):  # noqa: F811
    from playwright.sync_api import expect

    monitor_api = api(live_server, "mon1")
    response = monitor_api.post("/api/subjects/02-001/queries", json={"visit": "SCR", "form": "nyha",
                                                                     "field": "nyha_class", "text": "Class?"})
    assert response.status_code in (200, 201), response.text
    page = log_in(chromium, live_server, "mon1", viewport=viewport)
    expect(page.locator("#nav-queries .count")).to_have_text("2")
    page.click("#nav-queries")
    page.wait_for_url("**/queries")
    expect(page.locator("li.query")).to_have_count(2)
    assert_layout(page, ["#qf-subject"])
    page.fill("#qf-subject", "02-")
    page.click("#query-filters button[type=submit]")
    only = page.locator("li.query")
    expect(only).to_have_count(1)
    expect(only.locator(".qnum")).to_have_text("Q-2")
    with page.expect_download() as download:
        page.click("#queries-csv")
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith("number,subject_code,site") and "Q-2,02-001,02" in text
    assert "01-001" not in text
    assert_layout(page, ["#qf-subject"])
    page.screenshot(path=shots / f"queries_worklist_{viewport[0]}.png", full_page=True)
    page.context.close()
    site1 = log_in(chromium, live_server, "coord1", viewport=viewport)
    expect(site1.locator("#nav-queries .count")).to_have_text("1")
    site1.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_export_download_and_refusal(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "dm1", viewport=viewport)
    page.click("nav.mainnav a[href='/export']")
    page.wait_for_url("**/export")
    assert_layout(page, [])
    page.check("input[name=format][value=csv]")
    page.select_option("#export-site", "01")
    page.check("input[name=values][value=labels]")
    with page.expect_download() as download:
        page.click("#export-submit")
    assert download.value.suggested_filename.startswith("RegenHeart_csv_site01_")
    with zipfile.ZipFile(download.value.path()) as zf:
        names = [n.split("/", 1)[1] for n in zf.namelist()]
    assert "echo.csv" in names and "EXPORT_README.txt" in names
    page.context.close()
    coord = log_in(chromium, live_server, "coord1", viewport=viewport)
    expect(coord.locator("nav.mainnav a[href='/export']")).to_have_count(0)
    response = coord.goto("/export")
    assert response.status == 403
    expect(coord.locator("h1")).to_have_text("Not allowed")
    coord.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_subject_list_search_filter_sort(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "dm1", viewport=viewport)
    assert_layout(page, ["#sq"])
    page.fill("#sq", "01-00")
    page.click("#subject-filters button[type=submit]")
    expect(page.locator("a.subject-link")).to_have_count(3)
    page.select_option("#ssite", "02")
    page.wait_for_url("**site=02**")
    expect(page.locator("a.subject-link")).to_have_count(0)  # search 01-00 and site 02
    page.goto("/subjects?sort=next")
    first = page.locator("table.subjects tbody tr").first
    expect(first).to_contain_text("01-001")
    expect(first).to_contain_text("8 of 13 forms missing")
    assert_layout(page, ["#sq"])
    page.context.close()


# ---------------------------------------------------------------------------------------------- README screenshots
@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    protocol = load_protocol()
    path = tmp_path_factory.mktemp("demo") / "study.db"
    engine = create_study_database(path, {"study": protocol.study.nct_id, "synthetic": "true"}, durable=False)
    enter_cohort(CaptureService(engine, protocol, today=lambda: dt.date(2026, 1, 1)), generate_cohort(protocol))
    AccountService(engine, protocol, hasher=FAST_HASHER).create_user(SETUP, "dm1", "data_manager", PASSWORD,
                                                                     full_name="Dana Manager")
    engine.dispose()
    with serving(create_app(path, protocol, today=lambda: dt.date(2026, 1, 1), hasher=FAST_HASHER)) as url:
        yield url


def test_screenshots_of_the_synthetic_cohort(demo_server, chromium, shots):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, demo_server, "dm1")
    page.goto("/dashboard")
    expect(page.locator("#dashboard-table tbody tr[data-subject]")).to_have_count(35)
    assert_layout(page, ["#f-q"])
    page.screenshot(path=shots / "dashboard.png")
    page.goto("/data-quality?kind=missing_form")
    expect(page.locator("#dq-table tbody tr").first).to_be_visible()
    assert_layout(page, ["#dq-q"])
    page.screenshot(path=shots / "data_quality.png")
    page.context.close()
