"""Fast, safe data entry, layout and administration in real headless Chromium (Playwright), at 1366x900
(laptop) and 768x1024 (tablet): save and next, questionnaire radio rows, Tab order, the leave prompt,
values kept across an expired session, the conflict view, standing soft-check warnings, withdrawal at
screening, first use on an empty database, the audit trail; the adverse-event form and /admin/users laid
out from 768 to 1920 px wide, measured in the page (no sideways scroll, inputs at least 200 px wide).

Screenshots for the README (docs/screenshots when $REGENHEART_SCREENSHOTS is set): form_entry.png,
ae_form.png, audit_trail_filtered.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from regenheart.store.db import create_study_database
from regenheart.web import create_app

from ..conftest import eligible_screening_data
from .conftest import FAST_HASHER, PASSWORD, TODAY, no_scorer
from .test_browser import CHROMIUM, api, chromium, live_server, log_in, serving, shots  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                                     "(apt-get install -y chromium); CI installs it"),
]
VIEWPORTS = [pytest.param((1366, 900), id="laptop"), pytest.param((768, 1024), id="tablet")]
WIDTHS = (768, 1024, 1200, 1366, 1680, 1920)


def no_sideways_scroll(page) -> None:
    sizes = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert sizes[0] <= sizes[1], f"page scrolls sideways: scrollWidth {sizes[0]} > innerWidth {sizes[1]}"


def min_width(page, selector: str) -> float:
    """The narrowest visible element matching ``selector`` (px)."""
    return page.evaluate("""sel => Math.min(...Array.from(document.querySelectorAll(sel))
        .filter(el => el.offsetParent !== null).map(el => el.getBoundingClientRect().width))""", selector)


# ---------------------------------------------------------------------------------------------- fast entry
@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_questionnaire_radio_rows_tab_order_leave_prompt_and_save_and_next(live_server, chromium, viewport, shots):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "coord1", viewport=viewport)
    page.goto("/subjects/01-002/forms/SCR/kccq")
    expect(page.locator("#f_q1a label.scale-opt")).to_have_count(7)
    expect(page.locator("#f_q1a label.scale-opt").first).to_contain_text("1 lowest")
    # Tab from the visit date goes to the first item's answers, never to a "history" link
    page.focus("#visit_date")
    for _ in range(4):  # a date input's day, month and year parts are Tab stops of their own
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.name") != "visit_date":
            break
    assert page.evaluate("document.activeElement.name") == "f_q1a"
    page.keyboard.press("ArrowRight")  # arrow keys move within the radio row
    assert page.evaluate("document.activeElement.name") == "f_q1a"
    page.locator("#f_q1b label.scale-opt", has_text="3").click()
    assert page.locator("input[name=f_q1b][value='3']").is_checked()
    no_sideways_scroll(page)
    # leaving a changed form asks first (dismiss: stay on the page)
    dialogs: list[str] = []

    def on_dialog(dialog):
        dialogs.append(dialog.type)
        dialog.dismiss()
    page.on("dialog", on_dialog)
    page.locator("#row-q1a a.hist").click()
    page.wait_for_timeout(300)
    assert dialogs == ["beforeunload"] and page.url.endswith("/forms/SCR/kccq")
    page.remove_listener("dialog", on_dialog)
    if viewport[0] == 1366:
        page.screenshot(path=shots / "form_entry.png", full_page=False)
    # save and next: the next form of the visit opens
    page.click("#save-next")
    page.wait_for_url("**/forms/SCR/sf12")
    expect(page.locator(".flash.ok")).to_contain_text("Saved: version 1")
    expect(page.locator("#save-next")).to_contain_text("Save and next: MLHFQ")
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_values_and_reason_survive_an_expired_session(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "coord1", viewport=viewport)
    page.goto("/subjects/01-002/forms/SCR/echo")
    page.fill("#f_lvedd_mm", "71")
    page.fill("#reason", "echo report re-read")
    page.context.clear_cookies()  # the session expired while the user was typing
    page.click("#save")
    page.wait_for_url("**/login?next=**")
    page.fill("#username", "coord1")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/subjects/01-002/forms/SCR/echo")
    expect(page.locator("#restored-note")).to_be_visible()
    expect(page.locator("#f_lvedd_mm")).to_have_value("71")
    expect(page.locator("#reason")).to_have_value("echo report re-read")
    page.click("#save")
    expect(page.locator(".flash.ok")).to_contain_text("changed lvedd_mm")
    page.reload()  # saved: nothing is restored any more
    expect(page.locator("#restored-note")).to_have_count(0)
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_conflict_shows_saved_values_beside_the_users_own(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    mine = log_in(chromium, live_server, "coord1", viewport=viewport)
    mine.goto("/subjects/01-002/forms/SCR/echo")
    other = api(live_server, "inv1")
    echo = eligible_screening_data()["echo"]
    assert other.put("/api/subjects/01-002/forms/SCR/echo", json={
        "data": {**echo, "lvedd_mm": 70}, "version": 1, "reason": "other user"}).status_code == 200
    mine.fill("#f_lvedd_mm", "72")
    mine.fill("#reason", "my correction")
    mine.click("#save")
    expect(mine.locator("#conflict")).to_be_visible()
    row = mine.locator("#conflict tr", has_text="LV end-diastolic diameter")
    expect(row.locator("td.current")).to_have_text("70")
    expect(row.locator("td.yours")).to_have_text("72")
    expect(mine.locator("#f_lvedd_mm")).to_have_value("72")
    expect(mine.locator("#reason")).to_have_value("my correction")
    no_sideways_scroll(mine)
    mine.click("#save")  # the user decided: theirs stands, against the current version
    expect(mine.locator(".flash.ok")).to_contain_text("Saved: version 3")
    mine.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_soft_check_warning_stays_until_acknowledged(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    coord = api(live_server, "coord1")
    assert coord.put("/api/subjects/01-002/forms/SCR/echo", json={"data": {"lvef_pct": 40.0}, "version": 1,
                                                                   "reason": "re-read"}).status_code == 200
    page = log_in(chromium, live_server, "coord1", viewport=viewport)
    page.goto("/subjects/01-002/forms/SCR/echo")
    expect(page.locator("#standing-warnings")).to_contain_text("check ECHO03")
    page.reload()
    expect(page.locator("#standing-warnings")).to_contain_text("check ECHO03")
    assert min_width(page, "#standing-warnings input[name=ack_reason]") >= 200
    page.fill("#ack-ECHO03", "confirmed with the echo lab")
    page.click("#standing-warnings button[type=submit]")
    expect(page.locator(".flash.ok")).to_contain_text("Warning ECHO03 acknowledged")
    expect(page.locator("#standing-warnings")).to_have_count(0)
    page.goto("/subjects/01-002/audit?field=ECHO03")
    expect(page.locator("#audit-table tbody tr")).to_contain_text("confirmed with the echo lab")
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_wrong_subject_code_is_refused_and_a_screened_subject_withdrawn(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "coord1", viewport=viewport)
    page.fill("#subject_code", "1-38")
    page.select_option("#site_code", "01")
    page.fill("#consent_date", "2025-11-28")
    page.fill("#screening_date", "2025-11-28")
    page.click("#screen-form button[type=submit]")
    expect(page.locator("[data-error-for=subject_code]")).to_contain_text("subject code rule")
    page.goto("/subjects/01-002")
    page.locator("#withdraw-form").locator("xpath=..").locator("summary").click()
    page.fill("#withdraw_reason", "registered under a wrong code; re-screened as 01-038")
    page.click("#withdraw")
    expect(page.locator(".flash.ok")).to_contain_text("withdrawn at screening")
    expect(page.locator(".subject-head h1")).to_contain_text("screen failed")
    page.context.close()


# ---------------------------------------------------------------------------------------------- layout
def test_adverse_event_form_and_users_page_layout_from_768_to_1920(live_server, chromium, shots):  # noqa: F811
    page = log_in(chromium, live_server, "coord1", viewport=(1366, 900))
    page.goto("/subjects/01-001/adverse-events")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 1000})
        no_sideways_scroll(page)
        term = page.locator("#f_term").evaluate("el => el.getBoundingClientRect().width")
        assert term >= 200, f"verbatim term box {term:.0f} px wide at {width} px"
        narrowest = min_width(page, "#ae-form input[type=text], #ae-form input[type=date], #ae-form select")
        assert narrowest >= 200, f"an AE input is {narrowest:.0f} px wide at {width} px"
        if width == 1366:
            page.screenshot(path=shots / "ae_form.png", full_page=True)
    page.context.close()
    admin = log_in(chromium, live_server, "admin1", viewport=(1366, 900))
    admin.goto("/admin/users")
    for width in WIDTHS:
        admin.set_viewport_size({"width": width, "height": 1000})
        no_sideways_scroll(admin)
        narrowest = min_width(admin, "#new-account input, #new-account select")
        assert narrowest >= 200, f"a new-account input is {narrowest:.0f} px wide at {width} px"
    # the edit form of an account opens inside its table row; the page still does not scroll sideways
    admin.set_viewport_size({"width": 1200, "height": 1000})
    admin.locator(".users-list details summary").first.click()
    no_sideways_scroll(admin)
    admin.context.close()


# ---------------------------------------------------------------------------------------------- audit trail
@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_audit_trail_filters_pages_and_csv(live_server, chromium, viewport, shots):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "dm1", viewport=viewport)
    page.goto("/subjects/01-001/audit")
    rows = page.locator("#audit-table tbody tr")
    expect(rows).to_have_count(50)
    seqs = [int(x) for x in rows.locator("td[data-label='#']").all_inner_texts()]
    assert seqs == sorted(seqs, reverse=True)
    page.click("#page-next")
    page.wait_for_url("**page=2**")
    assert max(int(x) for x in rows.locator("td[data-label='#']").all_inner_texts()) < min(seqs)
    page.select_option("#a-form", "echo")
    page.select_option("#a-field", "lvef_pct")
    page.click("#audit-apply")
    page.wait_for_url("**field=lvef_pct**")
    expect(rows.first.locator("td[data-label=Field]")).to_have_text("LV ejection fraction (biplane Simpson)")
    no_sideways_scroll(page)
    if viewport[0] == 1366:
        page.screenshot(path=shots / "audit_trail_filtered.png", full_page=True)
    with page.expect_download() as download:
        page.click("#audit-csv")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("seq,ts_utc,username") and "lvef_pct" in text
    assert all(",echo," in line for line in text.splitlines()[1:])
    page.context.close()


# ---------------------------------------------------------------------------------------------- first use
@pytest.fixture
def empty_server(tmp_path, web_protocol) -> Iterator[str]:
    path = tmp_path / "empty.db"
    create_study_database(path, {"study": web_protocol.study.nct_id}).dispose()
    with serving(create_app(path, web_protocol, scorer=no_scorer, today=lambda: TODAY, hasher=FAST_HASHER)) as url:
        yield url


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_first_use_creates_the_first_administrator_in_the_browser(empty_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    context = chromium.new_context(viewport={"width": viewport[0], "height": viewport[1]}, base_url=empty_server)
    page = context.new_page()
    page.goto("/")
    page.wait_for_url("**/setup")
    page.fill("#s-username", "ada")
    page.fill("#s-full_name", "Ada Admin")
    page.fill("#s-password", PASSWORD)
    page.fill("#s-password2", PASSWORD)
    no_sideways_scroll(page)
    page.click("#create-admin")
    page.wait_for_url("**/admin/users")
    expect(page.locator(".flash.ok")).to_contain_text("Administrator ada created")
    expect(page.locator(".who")).to_contain_text("Ada Admin")
    # add a coordinator of site 01 in the page
    page.fill("#nu-username", "cora")
    page.fill("#nu-name", "Cora Ordinator")
    page.select_option("#nu-role", "coordinator")
    page.select_option("#nu-site", "01")
    page.fill("#nu-password", PASSWORD)
    page.click("#new-account button[type=submit]")
    expect(page.locator(".flash.ok")).to_contain_text("Account cora created (coordinator)")
    # change her site and deactivate her (lock-out), then reset her password: each with a reason
    row = page.locator(".users-list tr", has_text="Cora Ordinator")
    row.locator("summary").click()
    update = row.locator("form", has=page.locator("button[value=update]"))
    update.locator("select[name=site]").select_option("02")
    update.locator("select[name=active]").select_option("0")
    update.locator("input[name=reason]").fill("moved to site 02; on leave")
    no_sideways_scroll(page)
    update.locator("button[value=update]").click()
    expect(page.locator(".flash.ok")).to_contain_text("Account cora updated")
    row = page.locator(".users-list tr", has_text="Cora Ordinator")
    expect(row.locator("td[data-label=Site]")).to_have_text("02")
    expect(row.locator("td[data-label=Active]")).to_have_text("no")
    row.locator("summary").click()
    reset = row.locator("form", has=page.locator("button[value=password]"))
    reset.locator("input[name=password]").fill(PASSWORD + " new")
    reset.locator("input[name=reason]").fill("forgotten")
    reset.locator("button[value=password]").click()
    expect(page.locator(".flash.ok")).to_contain_text("Password of cora reset")
    page.goto("/setup")
    expect(page.locator("#setup-refused")).to_contain_text("already has accounts")
    context.close()
