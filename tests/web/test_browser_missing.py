"""Missing-data codes and "specify" boxes on the form page in real headless Chromium (Playwright), at
1366x900 (laptop) and 768x1024 (tablet): a code with its reason completes a form, a code without its
required reason is refused at the field keeping what was typed, the code shows again when the form is
reopened and is replaced by a value with a reason for change, "Other" shows its specify box (refused
when empty, cleared when hidden), the control is reached with Alt+M and stays out of the Tab order
between values, and the page does not scroll sideways with inputs at least 200 px wide.

Screenshot for the README (docs/screenshots when $REGENHEART_SCREENSHOTS is set): missing_code.png.
"""

from __future__ import annotations

import pytest

from .conftest import PASSWORD
from .test_browser import CHROMIUM, chromium, live_server, log_in, shots  # noqa: F401 (fixtures)
from .test_browser_entry import min_width, no_sideways_scroll

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                                     "(apt-get install -y chromium); CI installs it"),
]
VIEWPORTS = [pytest.param((1366, 900), id="laptop"), pytest.param((768, 1024), id="tablet")]
LABS = "/subjects/01-002/forms/SCR/labs"
HISTORY = "/subjects/01-002/forms/SCR/medical_history"
# the entry form's text inputs, selects and text boxes, the missing-data controls' included (hidden rows are
# left out by min_width); numeric inputs are narrower by design (9rem, right-aligned) and measured apart
ENTRY_INPUTS = ("#ecrf .field .control input[type=text]:not(.num), #ecrf .field .control select, "
                "#ecrf .field .control input[type=date], #ecrf .field .control textarea")
NUMBERS = "#ecrf .field .control input.num"


def layout_ok(page) -> None:
    """No sideways scroll; text inputs and selects at least 200 px wide; numbers kept at their 9rem."""
    no_sideways_scroll(page)
    assert min_width(page, ENTRY_INPUTS) >= 200
    if page.locator(NUMBERS).count():
        assert min_width(page, NUMBERS) >= 9 * 15 - 0.5  # 9rem at the 15 px root font size


def choose_code(page, field: str, code: str) -> None:
    """Open the field's missing-data control with the mouse and choose ``code``."""
    page.click(f"#missing-{field} > summary")
    page.select_option(f"#missing__{field}", code)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_not_done_with_a_reason_completes_the_form_and_shows_again(live_server, chromium, viewport, shots):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "coord1", viewport=viewport)
    page.goto(LABS)
    page.fill("#f_ntprobnp_pg_ml", "1200")  # typed first, then found to be haemolysed
    page.fill("#f_creatinine_mg_dl", "1.1")
    expect(page.locator("#missing__ntprobnp_pg_ml")).to_be_hidden()  # closed until asked for
    choose_code(page, "ntprobnp_pg_ml", "ND")
    expect(page.locator("#f_ntprobnp_pg_ml")).to_be_disabled()
    expect(page.locator("#f_ntprobnp_pg_ml")).to_have_value("")
    expect(page.locator("#row-ntprobnp_pg_ml .reason-note")).to_have_text("(required)")
    expect(page.locator("#missing_reason__ntprobnp_pg_ml")).to_have_attribute("aria-required", "true")
    # no code again: the value typed comes back; then the code for good
    page.select_option("#missing__ntprobnp_pg_ml", "")
    expect(page.locator("#f_ntprobnp_pg_ml")).to_be_enabled()
    expect(page.locator("#f_ntprobnp_pg_ml")).to_have_value("1200")
    page.select_option("#missing__ntprobnp_pg_ml", "ND")
    page.fill("#missing_reason__ntprobnp_pg_ml", "sample haemolysed")
    layout_ok(page)
    if viewport[0] == 1366:
        page.screenshot(path=shots / "missing_code.png", full_page=False)
    page.click("#save")
    expect(page.locator(".flash.ok")).to_contain_text("Saved: version 1, complete")
    expect(page.locator(".card-head .badge.st-complete")).to_be_visible()
    # reopened: the code, its label and reason are shown, the value input stays empty and disabled
    page.reload()
    expect(page.locator("#missing-ntprobnp_pg_ml > summary")).to_have_text("ND")
    expect(page.locator("#missing__ntprobnp_pg_ml")).to_be_visible()
    expect(page.locator("#missing__ntprobnp_pg_ml")).to_have_value("ND")
    expect(page.locator("#missing__ntprobnp_pg_ml option:checked")).to_have_text("ND · Not done")
    expect(page.locator("#missing_reason__ntprobnp_pg_ml")).to_have_value("sample haemolysed")
    expect(page.locator("#f_ntprobnp_pg_ml")).to_be_disabled()
    layout_ok(page)
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_code_without_its_reason_is_refused_at_the_field_keeping_the_entries(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "coord1", viewport=viewport)
    page.goto(LABS)
    page.fill("#f_creatinine_mg_dl", "1.13")
    choose_code(page, "ntprobnp_pg_ml", "NASK")
    page.click("#save")
    expect(page.locator(".flash.error")).to_contain_text("Not saved: 1 problem")
    error = page.locator("#row-ntprobnp_pg_ml .error-msg")
    expect(error).to_contain_text("missing-data code NASK (Not asked) needs a reason")
    expect(page.locator("#missing__ntprobnp_pg_ml")).to_be_visible()  # the control is open on the error
    expect(page.locator("#missing__ntprobnp_pg_ml")).to_have_value("NASK")
    expect(page.locator("#f_creatinine_mg_dl")).to_have_value("1.13")
    expect(page.locator("#f_ntprobnp_pg_ml")).to_be_disabled()
    no_sideways_scroll(page)
    page.fill("#missing_reason__ntprobnp_pg_ml", "patient left before the blood draw")
    page.click("#save")
    expect(page.locator(".flash.ok")).to_contain_text("complete")
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_code_is_replaced_by_a_value_with_a_reason_for_change(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "coord1", viewport=viewport)
    page.goto(LABS)
    page.fill("#f_creatinine_mg_dl", "1.1")
    choose_code(page, "ntprobnp_pg_ml", "UNK")
    page.click("#save")
    expect(page.locator(".flash.ok")).to_contain_text("complete")
    page.select_option("#missing__ntprobnp_pg_ml", "")
    expect(page.locator("#missing-ntprobnp_pg_ml > summary")).to_have_text("missing")
    page.fill("#f_ntprobnp_pg_ml", "1850")
    page.click("#save")  # saved data changed without a reason: the page asks first
    expect(page.locator(".js-reason-needed")).to_be_visible()
    page.fill("#reason", "result received from the central lab")
    page.click("#save")
    expect(page.locator(".flash.ok")).to_contain_text("Saved: version 2, complete; changed ntprobnp_pg_ml")
    expect(page.locator("#f_ntprobnp_pg_ml")).to_have_value("1850")
    expect(page.locator("#missing__ntprobnp_pg_ml")).to_have_value("")
    page.goto("/subjects/01-002/audit?form=labs&field=ntprobnp_pg_ml")
    expect(page.locator("table.audit td.old").first).to_have_text("UNK - Unknown")
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_other_shows_the_specify_box_and_an_empty_one_is_refused(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "coord1", viewport=viewport)
    page.goto(HISTORY)
    specify = page.locator("#row-hf_etiology_other")
    expect(specify).to_be_hidden()  # IDCM saved: no box
    page.check("input[name=f_hf_etiology][value=OTHER]")
    expect(specify).to_be_visible()
    # right after its code field on the page
    rows = page.eval_on_selector_all("#ecrf .field[id^=row-]", "rows => rows.map(r => r.id)")
    assert rows[rows.index("row-hf_etiology") + 1] == "row-hf_etiology_other"
    page.fill("#reason", "etiology revised after MRI")
    page.click("#save")
    expect(page.locator("#row-hf_etiology_other .error-msg")).to_contain_text("is required when hf_etiology is OTHER")
    expect(specify).to_be_visible()
    expect(page.locator("input[name=f_hf_etiology][value=OTHER]")).to_be_checked()
    expect(page.locator("#reason")).to_have_value("etiology revised after MRI")
    layout_ok(page)
    # another answer hides and clears the box; Other again shows it empty
    page.fill("#f_hf_etiology_other", "cardiac sarcoidosis")
    page.check("input[name=f_hf_etiology][value=FAMILIAL]")
    expect(specify).to_be_hidden()
    page.check("input[name=f_hf_etiology][value=OTHER]")
    expect(page.locator("#f_hf_etiology_other")).to_have_value("")
    page.fill("#f_hf_etiology_other", "cardiac sarcoidosis")
    page.click("#save")
    expect(page.locator(".flash.ok")).to_contain_text("changed hf_etiology, hf_etiology_other")
    page.reload()
    expect(specify).to_be_visible()
    expect(page.locator("#f_hf_etiology_other")).to_have_value("cardiac sarcoidosis")
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_code_and_its_reason_survive_an_expired_session(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "coord1", viewport=viewport)
    page.goto(LABS)
    page.fill("#f_creatinine_mg_dl", "0.95")
    choose_code(page, "ntprobnp_pg_ml", "ND")
    page.fill("#missing_reason__ntprobnp_pg_ml", "tube broken in transit")
    page.context.clear_cookies()  # the session expired while the user was typing
    page.click("#save")
    page.wait_for_url("**/login?next=**")
    page.fill("#username", "coord1")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**" + LABS)
    expect(page.locator("#restored-note")).to_be_visible()
    expect(page.locator("#missing__ntprobnp_pg_ml")).to_be_visible()
    expect(page.locator("#missing__ntprobnp_pg_ml")).to_have_value("ND")
    expect(page.locator("#missing_reason__ntprobnp_pg_ml")).to_have_value("tube broken in transit")
    expect(page.locator("#f_ntprobnp_pg_ml")).to_be_disabled()
    page.click("#save")
    expect(page.locator(".flash.ok")).to_contain_text("Saved: version 1, complete")
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_keyboard_alt_m_opens_the_control_and_tab_skips_the_toggles(live_server, chromium, viewport):  # noqa: F811
    from playwright.sync_api import expect

    page = log_in(chromium, live_server, "coord1", viewport=viewport)
    page.goto(LABS)
    page.focus("#f_ntprobnp_pg_ml")
    page.keyboard.press("Tab")  # from one value straight to the next: no "missing" toggle between them
    assert page.evaluate("document.activeElement.id") == "f_creatinine_mg_dl"
    page.focus("#f_ntprobnp_pg_ml")
    page.keyboard.press("Alt+m")
    assert page.evaluate("document.activeElement.id") == "missing__ntprobnp_pg_ml"
    expect(page.locator("#missing-ntprobnp_pg_ml")).to_have_attribute("open", "")
    # the control is labelled for screen readers
    expect(page.locator("#missing__ntprobnp_pg_ml")).to_have_attribute("aria-label", "Missing-data code for NT-proBNP")
    expect(page.locator("#missing_reason__ntprobnp_pg_ml")).to_have_accessible_name(
        "Reason for the missing-data code of NT-proBNP")
    page.keyboard.press("Escape")  # no code chosen: closes and goes back to the value
    assert page.evaluate("document.activeElement.id") == "f_ntprobnp_pg_ml"
    expect(page.locator("#missing-ntprobnp_pg_ml")).not_to_have_attribute("open", "")
    page.keyboard.press("Alt+m")
    page.keyboard.press("ArrowDown")  # keyboard choice of a code in the select
    assert page.input_value("#missing__ntprobnp_pg_ml") == "ND"
    expect(page.locator("#f_ntprobnp_pg_ml")).to_be_disabled()
    page.keyboard.press("Tab")  # on to the reason
    assert page.evaluate("document.activeElement.id") == "missing_reason__ntprobnp_pg_ml"
    page.context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_layout_with_every_missing_control_open(live_server, chromium, viewport):  # noqa: F811
    page = log_in(chromium, live_server, "coord1", viewport=viewport)
    for url in ("/subjects/01-002/forms/SCR/echo", "/subjects/01-002/forms/SCR/kccq", LABS):
        page.goto(url)
        page.evaluate("document.querySelectorAll('details.missing-ctl').forEach(d => d.open = true)")
        layout_ok(page)
        assert min_width(page, "#ecrf .missing-reason input") >= 200, url
    page.context.close()
