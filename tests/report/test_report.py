"""The study report: self-contained, labelled, complete, faithful to results, deterministic."""

from __future__ import annotations

import copy
import dataclasses
import re
from html.parser import HTMLParser

import pytest

from regenheart.report import SECTIONS, SYNTHETIC_BANNER, build_report, write_report
from regenheart.report import formatting as f

from .conftest import METHODS_NOTES


class _Collector(HTMLParser):
    """Collects ids, internal links, external references and the open/close balance of elements."""

    VOID = frozenset({"meta", "br", "hr", "img", "link", "input", "col", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.links: list[str] = []
        self.refs: list[tuple[str, str, str]] = []
        self.stack: list[str] = []
        self.mismatched: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "script":
            self.scripts += 1
        for name in ("src", "href", "xlink:href", "data", "poster", "action"):
            if attrs.get(name):
                self.refs.append((tag, name, attrs[name]))
        if tag == "a" and (attrs.get("href") or "").startswith("#"):
            self.links.append(attrs["href"][1:])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        for name in ("src", "href", "xlink:href"):
            if attrs.get(name):
                self.refs.append((tag, name, attrs[name]))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.mismatched.append(tag)


def parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector


# ------------------------------------------------------------------ self-contained
def test_no_external_references(report_html):
    doc = parse(report_html)
    for tag, name, value in doc.refs:
        assert value.startswith(("#", "data:")), f"<{tag} {name}={value!r}> is not inline"
    assert doc.scripts == 0
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", report_html, re.IGNORECASE)
    assert not re.search(r"<script[^>]*\bsrc\b", report_html, re.IGNORECASE)
    assert not re.search(r"<link\b", report_html, re.IGNORECASE)
    assert "@import" not in report_html
    assert not re.search(r"url\(\s*['\"]?(?!#)", report_html), "a CSS url() other than an in-page fragment"
    assert "@font-face" not in report_html


def test_well_formed_and_unique_ids(report_html):
    doc = parse(report_html)
    assert doc.mismatched == [], doc.mismatched[:5]
    assert doc.stack == []
    duplicates = {i for i in doc.ids if doc.ids.count(i) > 1}
    assert not duplicates, sorted(duplicates)[:10]
    missing = sorted(set(doc.links) - set(doc.ids))
    assert not missing, f"table-of-contents links without a target: {missing}"
    assert report_html.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in report_html


# ------------------------------------------------------------------ synthetic label
def test_synthetic_banner_everywhere(report_html):
    assert SYNTHETIC_BANNER == "SYNTHETIC DATA \u2014 generated for demonstration; not RegenHeart trial results"
    assert f'<div class="synthetic-banner" role="note" aria-label="synthetic data">{SYNTHETIC_BANNER}</div>' \
        in report_html
    # once per section, plus the sticky banner and the footer
    assert report_html.count(f'<p class="synthetic-tag">{SYNTHETIC_BANNER}</p>') == len(SECTIONS)
    # repeated on every printed page through the @page header margin box
    page_rule = re.search(r"@page\s*\{(.*?)\n\}", report_html, re.DOTALL).group(1)
    assert "@top-center" in page_rule and "SYNTHETIC DATA" in page_rule
    assert "<title>[SYNTHETIC]" in report_html
    assert "position: sticky" in report_html


def test_synthetic_subjects_force_the_banner(protocol, small_study):
    html = build_report(protocol, small_study.snapshot, small_study.data, small_study.results, synthetic=False)
    assert SYNTHETIC_BANNER in html


def test_no_banner_for_real_data(protocol, small_study):
    adsl = small_study.data.adsl.assign(SYNTHFL="N")
    data = dataclasses.replace(small_study.data, adsl=adsl)
    html = build_report(protocol, small_study.snapshot, data, small_study.results, synthetic=False)
    assert "SYNTHETIC" not in html
    assert "synthetic-banner" not in html.split("</style>", 1)[1]


# ------------------------------------------------------------------ sections and content
def test_every_section_anchor_and_toc_entry(report_html):
    ids = set(parse(report_html).ids)
    for anchor, title in SECTIONS:
        assert anchor in ids, anchor
        assert f'<a href="#{anchor}">{title}</a>' in report_html
    positions = [report_html.index('<section class="report-section' + ('' if a != 'methods' else ' methods')
                                   + f'" id="{a}">') for a, _ in SECTIONS]
    assert positions == sorted(positions), "sections out of the required order"
    assert report_html.index('id="contents"') < positions[0]
    for sub in ("efficacy-secondary", "eff-nyha-shift", "efficacy-exploratory", "efficacy-supportive",
                "eff-lvef", "eff-ntprobnp", "eff-ctivs", "supportive-kccq", "supportive-mlhfq", "supportive-echo",
                "fig-mean-change", "fig-trajectories", "fig-tipping-sens-lvef-m6", "primary-result", "sens-lvef-m6"):
        assert sub in ids, sub


def test_study_identity_and_protocol_versions(protocol, report_html):
    s = protocol.study
    for text in (s.nct_id, s.acronym, s.sponsor, s.phase, s.masking, s.org_study_id):
        assert text in report_html
    for v in protocol.protocol_versions:
        assert v.date.isoformat() in report_html
        assert f"<td>{v.version}" in report_html
    assert f"{protocol.active_protocol_version} (active)" in report_html


def test_snapshot_facts(small_study, report_html):
    snap = small_study.snapshot
    assert snap.taken_utc in report_html
    assert snap.audit_head_hash in report_html
    assert f"<td>{snap.audit_records}</td>" in report_html
    assert f"<td>{len(snap.subjects)}</td>" in report_html


def test_primary_numbers_as_formatted(small_study, report_html):
    p = small_study.results["primary"]
    headline = (f"<strong>{p['n_events']}/{p['n_total']} ({f.pct(p['percent'])}%)</strong>;\n"
                f"95% CI {f.pct(100 * p['lower'])}% to {f.pct(100 * p['upper'])}%")
    assert headline in report_html
    assert p["definition"][:80] in report_html


def test_flow_numbers(small_study, report_html):
    flow = small_study.results["flow"]
    assert f"Screened (consented): <span class=\"n\">n = {flow['screened']}</span>" in report_html
    assert f"Enrolled: <span class=\"n\">n = {flow['enrolled']}</span>" in report_html
    assert f"(Safety population): <span class=\"n\">n = {flow['infused']}</span>" in report_html
    assert "Follow-up assessed (LV ejection fraction within the visit window)" in report_html
    for label, n in flow["assessed"].items():
        assert f"{label}<br><span class=\"n\">n = {n}</span>" in report_html
    for reason, n in flow["excluded_reasons"].items():
        assert f"<li>{reason.replace('<', '&lt;').replace('>', '&gt;')}: {n}</li>" in report_html


def test_efficacy_numbers_come_from_results(small_study, report_html):
    block = next(b for b in small_study.results["efficacy"] if b["paramcd"] == "LVEF")
    for v in block["visits"]:
        if v.get("lower") is not None:
            assert f.ci(v["lower"], v["upper"], 1) in report_html
        assert f.mean_sd(v["change"]["mean"], v["change"]["sd"], 1) in report_html
    nt = next(b for b in small_study.results["efficacy"] if b["paramcd"] == "NTPROBNP")
    for v in nt["visits"]:
        if "gmr" in v and v["gmr"].get("gmr") is not None:
            assert f.estimate_ci(v["gmr"]["gmr"], v["gmr"]["lower"], v["gmr"]["upper"], 2) in report_html
    baseline_age = next(r for r in small_study.results["baseline"] if r["variable"] == "Age")
    assert f.mean_sd(baseline_age["mean"], baseline_age["sd"], 1) in report_html


def test_ae_and_listings(small_study, report_html):
    ae = small_study.results["adverse_events"]
    for label, v in ae["overview"].items():
        assert f"<td>{label.replace('>', '&gt;')}</td><td class=\"num\">{f.n_pct(v['subjects'], v['percent'])}</td>" \
            in report_html
    for death in ae["deaths"]:
        assert death["SUBJID"] in report_html
    for row in ae["serious_listing"]:
        assert row["AETERM"] in report_html


def test_nyha_shift_and_sign_test(small_study, report_html):
    for entry in small_study.results["shift_tables"]["NYHA"].values():
        assert f"Baseline \\ {entry['label']}" in report_html
        assert f.pvalue(entry["change"]["sign_test_p"]) in report_html


def test_methods_section(small_study, report_html):
    methods = report_html[report_html.index('id="methods"'):]
    for name, text in METHODS_NOTES.items():
        assert f'<span class="name">{name}</span>: {text}' in methods
    for phrase in ("Clopper-Pearson", "wilcox.test", "definition 5", "Rubin", "Barnard-Rubin", "sign test",
                   "Out of window", "Kenward-Roger", "REML", "delta"):
        assert phrase in methods, phrase
    if "mmrm" in small_study.results:
        assert small_study.results["mmrm"]["model"] in methods


def test_sensitivity_section(small_study, report_html):
    sens = small_study.results["sensitivity"]["lvef_m6"]
    section = report_html[report_html.index('id="sensitivity"'):report_html.index('id="deaths-saes"')]
    if sens.get("mar"):
        assert f.ci(sens["mar"]["lower"], sens["mar"]["upper"], 1) in section
    if sens.get("tipping_point", {}).get("found"):
        assert f.num(sens["tipping_point"]["tipping_delta"], 2) in section


# ------------------------------------------------------------------ figures
def test_figures_embedded_inline(report_html):
    figures = report_html[report_html.index('id="figures"'):report_html.index('id="sensitivity"')]
    svgs = re.findall(r"<svg\b[^>]*>", figures)
    assert len(svgs) >= 3
    for fig_id in ("fig-mean-change", "fig-trajectories", "fig-tipping-sens-lvef-m6"):
        block = figures[figures.index(f'id="{fig_id}"'):]
        assert block.lstrip().split(">", 1)[1].lstrip().startswith("<svg")
    assert "<?xml" not in report_html and "<!DOCTYPE svg" not in report_html
    assert 'width="100%"' in svgs[0]


def test_figures_drawn_apart_and_merged_give_the_same_report(protocol, small_study, report_html):
    from regenheart import forked
    from regenheart.report import draw_figures, merge_figures

    study = small_study
    # As the demo does: the largest figure in a child process, the others here.
    apart = forked.start("figure", draw_figures, protocol, study.data, study.results, ("mean_change",))
    here = draw_figures(protocol, study.data, study.results, ("trajectories", "tipping"))
    drawn = merge_figures(here, apart.result())
    assert drawn["mean_change"] and drawn["trajectories"] and drawn["tipping"]
    html = build_report(protocol, study.snapshot, study.data, study.results, methods_notes=METHODS_NOTES,
                        synthetic=True, figures_drawn=drawn)
    assert html == report_html


# ------------------------------------------------------------------ MMRM states
def _lvef_block(html: str) -> str:
    start = html.index('id="eff-lvef"')
    return html[start:html.index('class="param-block"', start + 10)]


def test_mmrm_error_is_shown(protocol, small_study):
    results = copy.deepcopy(small_study.results)
    results.setdefault("mmrm", {"model": "CHG ~ BASE", "method": "REML", "df": "Kenward-Roger", "results": {}})
    results["mmrm"]["results"]["LVEF"] = {"error": "MMRMError: the model <did not> converge"}
    html = build_report(protocol, small_study.snapshot, small_study.data, results, synthetic=True)
    block = _lvef_block(html)
    assert "MMRM failed for this parameter:" in block
    assert "MMRMError: the model &lt;did not&gt; converge" in block


def test_mmrm_zero_standard_error_gives_no_ci(protocol, small_study):
    results = copy.deepcopy(small_study.results)
    results["mmrm"] = {"model": "CHG ~ BASE", "method": "REML", "df": "Kenward-Roger", "results": {"LVEF": {
        "label": "LV ejection fraction", "unit": "%", "log_scale": False, "n_subjects": 6, "n_observations": 13,
        "converged": True, "warnings": [],
        "lsmeans": [{"visit": "Month 1", "estimate": 1.234, "std_error": 0.0, "df": 5.0, "lower": 1.234,
                     "upper": 1.234, "p_value": None}]}}}
    html = build_report(protocol, small_study.snapshot, small_study.data, results, synthetic=True)
    block = _lvef_block(html)
    assert "1.2 (CI not available)\u2020" in block
    assert "(1.2, 1.2)" not in block


def test_report_without_mmrm(protocol, small_study):
    results = {k: v for k, v in small_study.results.items() if k != "mmrm"}
    html = build_report(protocol, small_study.snapshot, small_study.data, results, synthetic=True)
    assert "The MMRM analysis is not part of these results" in html
    assert "MMRM was not run for this report." in html


def test_missing_values_render_as_dash(protocol, small_study):
    results = copy.deepcopy(small_study.results)
    block = next(b for b in results["efficacy"] if b["paramcd"] == "LVEF")
    block["visits"][0].update({"p_value_t": None, "lower": None, "upper": None})
    html = build_report(protocol, small_study.snapshot, small_study.data, results, synthetic=True)
    row = re.search(r"<tr><td>Month 1</td>.*?</tr>", _lvef_block(html)).group(0)
    assert row.count(f'<td class="num">{f.DASH}</td>') >= 2
    assert "None" not in row and "nan" not in row.lower()


def test_results_json_extra_keys_are_used(protocol, small_study):
    results = dict(small_study.results)
    results["snapshot"] = {"taken_utc": small_study.snapshot.taken_utc, "subjects": 7, "visits": 1, "forms": 99999,
                           "item_values": 1, "derived_scores": 1, "adverse_events": 1, "audit_records": 123456,
                           "audit_head_hash": small_study.snapshot.audit_head_hash}
    results["scoring_versions"] = {"kccq": "kccq/test-version"}
    html = build_report(protocol, small_study.snapshot, small_study.data, results, synthetic=True)
    assert "<td>99999</td>" in html and "<td>123456</td>" in html
    assert "kccq/test-version" in html


# ------------------------------------------------------------------ determinism and output
def test_deterministic(protocol, small_study, report_html):
    again = build_report(protocol, small_study.snapshot, small_study.data, small_study.results,
                         methods_notes=METHODS_NOTES, synthetic=True)
    assert again == report_html


def test_write_report(tmp_path, report_html):
    path = write_report(tmp_path / "out" / "report.html", report_html)
    assert path.read_text(encoding="utf-8") == report_html
    assert not list((tmp_path / "out").glob(".*.tmp"))


@pytest.mark.parametrize("value, expected", [
    (None, f.DASH), (float("nan"), f.DASH), (float("inf"), f.DASH), (-0.04, "0.0"), (1.25, "1.2"), (-3.456, "-3.5"),
])
def test_num(value, expected):
    assert f.num(value, 1) == expected


@pytest.mark.parametrize("value, expected", [
    (None, f.DASH), (0.0004, "<0.001"), (0.001, "0.001"), (0.04999, "0.050"), (0.5, "0.500"), (1.0, "1.000"),
])
def test_pvalue(value, expected):
    assert f.pvalue(value) == expected


def test_composite_formats():
    assert f.n_pct(3, 10.0) == "3 (10.0)"
    assert f.n_pct(0, None) == "0"
    assert f.mean_sd(24.41, 4.84, 1) == "24.4 (4.8)"
    assert f.median_iqr(5.3, 2.0, 9.1, 1) == "5.3 (2.0, 9.1)"
    assert f.ci(-0.91, 1.13, 1) == "(-0.9, 1.1)"
    assert f.estimate_ci(0.9086, 0.8153, 1.0125, 2) == "0.91 (0.82, 1.01)"
    assert f.estimate_ci(1.0, None, None, 1) == "1.0"
    assert f.decimals_for("NTPROBNP") == 0 and f.decimals_for("LVEF") == 1


def test_kccq_responders(small_study, report_html):
    responders = small_study.results.get("responders") or []
    if not responders:
        pytest.skip("the SAP results hold no responder analysis")
    section = report_html[report_html.index('id="efficacy-responders"'):report_html.index('id="efficacy-exploratory"')]
    for r in responders:
        assert f"{r['n_events']}/{r['n_total']}" in section
        if r.get("lower") is not None:
            assert f.ci(100 * r["lower"], 100 * r["upper"], 1) in section


def test_randomized_mmrm_shows_cell_arm_and_difference(protocol, small_study):
    results = copy.deepcopy(small_study.results)
    entry = {"visit": "Month 1", "std_error": 0.5, "df": 10.0, "p_value": 0.2}
    results["mmrm"] = {"model": "CHG ~ BASE + ARMCD*AVISIT", "method": "REML", "df": "Kenward-Roger", "results": {
        "LVEF": {"label": "LV ejection fraction", "unit": "%", "log_scale": False, "n_subjects": 6,
                 "n_observations": 13, "converged": True, "warnings": [],
                 "lsmeans": [dict(entry, arm="CTRL", estimate=9.87, lower=8.0, upper=11.0),
                             dict(entry, arm="MSC", estimate=4.56, lower=3.0, upper=6.0)],
                 "differences": [dict(entry, contrast="MSC - CTRL", estimate=-5.31, lower=-7.0, upper=-3.0)]}}}
    html = build_report(protocol, small_study.snapshot, small_study.data, results, synthetic=True)
    block = _lvef_block(html)
    assert "4.6 (3.0, 6.0)" in block and "9.9 (8.0, 11.0)" not in block
    assert "MSC - CTRL at Month 1: -5.3 (-7.0, -3.0), p = 0.200" in block


def test_plan_decimals_drive_the_tables(protocol, small_study):
    """Decimals come from the plan's endpoint entry (no parameter names in report code)."""
    endpoints = [e.model_copy(update={"decimals": 3}) if e.paramcd == "LVEF" else e
                 for e in protocol.analysis_plan.endpoints]
    plan = protocol.analysis_plan.model_copy(update={"endpoints": endpoints})
    html = build_report(protocol.model_copy(update={"sap": plan}), small_study.snapshot, small_study.data,
                        small_study.results, synthetic=True)
    v = next(b for b in small_study.results["efficacy"] if b["paramcd"] == "LVEF")["visits"][0]
    assert f.mean_sd(v["change"]["mean"], v["change"]["sd"], 3) in _lvef_block(html)
    assert "LVEF 3" in html[html.index('id="methods"'):]
