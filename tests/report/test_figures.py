"""Report figures: inline SVG / PNG, deterministic bytes, drawn from the results."""

from __future__ import annotations

import base64
import copy
import re

from regenheart.report import figures


def test_svg_is_inline_and_deterministic(protocol, small_study):
    first = figures.to_svg(figures.mean_change_grid(protocol, small_study.results), "fig-a", "Mean change")
    second = figures.to_svg(figures.mean_change_grid(protocol, small_study.results), "fig-a", "Mean change")
    assert first == second
    assert first.startswith("<svg ")
    assert "<?xml" not in first and "DOCTYPE" not in first and "http" not in first
    assert "<title>Mean change</title>" in first
    ids = re.findall(r'\bid="([^"]+)"', first)
    assert ids and all(i.startswith("fig-a-") for i in ids)
    refs = re.findall(r'href="#([^"]+)"', first) + re.findall(r"url\(#([^)]+)\)", first)
    assert refs and set(refs) <= set(ids)
    assert "<metadata" not in first  # no creation date or creator


def test_png_is_deterministic(protocol, small_study):
    fig = figures.trajectories(protocol, small_study.data.adeff, small_study.data.adsl, small_study.results, "LVEF")
    a = figures.to_png_base64(fig, dpi=60)
    b = figures.to_png_base64(figures.trajectories(protocol, small_study.data.adeff, small_study.data.adsl,
                                                   small_study.results, "LVEF"), dpi=60)
    assert a == b
    assert base64.b64decode(a).startswith(b"\x89PNG")


def test_mean_change_grid_has_a_panel_per_secondary_endpoint(protocol, small_study):
    fig = figures.mean_change_grid(protocol, small_study.results)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    secondary = [b for b in small_study.results["efficacy"] if b["kind"] == "secondary"]
    assert len(visible) == len(secondary) + 1  # + NT-proBNP geometric mean
    lvef = next(b for b in secondary if b["paramcd"] == "LVEF")
    ax = visible[0]
    y = ax.lines[1].get_ydata()  # lines[0] is the zero reference
    assert y[0] == 0.0
    expected = [v["mean_change"] for v in lvef["visits"]]
    assert [round(float(v), 9) for v in y[1:]] == [round(float(v), 9) for v in expected]


def test_tipping_point_plot(small_study):
    results = small_study.results
    sens = results["sensitivity"]["lvef_m6"]
    tp = sens.get("tipping_point")
    fig = figures.tipping_point_plot(sens, "LV ejection fraction", "%")
    if tp and tp.get("grid"):
        assert fig is not None
        if tp.get("found"):
            ax = fig.axes[0]
            vlines = [line for line in ax.lines if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2]
            assert any(abs(line.get_xdata()[0] - tp["tipping_delta"]) < 1e-9 for line in vlines)
    without = copy.deepcopy(sens)
    without.pop("tipping_point", None)
    assert figures.tipping_point_plot(without) is None


def test_trajectories_refuse_a_parameter_outside_the_plan(protocol, small_study):
    import pytest

    with pytest.raises(ValueError, match="not an endpoint"):
        figures.trajectories(protocol, small_study.data.adeff, small_study.data.adsl, small_study.results, "KCCQPL")


def test_bad_figure_key_refused(protocol, small_study):
    import pytest

    with pytest.raises(ValueError):
        figures.to_svg(figures.mean_change_grid(protocol, small_study.results), "Bad Key", "x")


def test_svg_draws_what_matplotlib_draws_without_its_bare_groups(protocol, small_study):
    """The groups matplotlib wraps each artist in (nothing but an id) are dropped; every drawn element and
    every group with a clip path, transform or style stays, in the same order, with the same attributes
    (ids prefixed; the font family given its fallbacks)."""
    import io

    import matplotlib
    from lxml import etree
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    fig = figures.mean_change_grid(protocol, small_study.results)
    raw = io.StringIO()
    with matplotlib.rc_context(figures._RC):
        FigureCanvasSVG(fig)
        fig.savefig(raw, format="svg", metadata=figures._NO_METADATA)
    ours = figures.to_svg(fig, "fig-a", "Mean change")
    before = etree.fromstring(raw.getvalue().encode())
    after = etree.fromstring(ours.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" '
                                          'xmlns:xlink="http://www.w3.org/1999/xlink" ', 1).encode())

    def elements(tree) -> list[tuple]:
        out = []
        for e in tree.iter():
            name = etree.QName(e).localname if isinstance(e.tag, str) else None
            if name in {"path", "use", "text", "rect", "g"} and not (name == "g" and set(e.attrib) == {"id"}):
                # clip-path ids are hashes that differ between two savefig calls: compared by presence
                attrib = {k: re.sub(r"url\(#[^)]*\)", "url(#)", v.replace(figures.FONT_FALLBACKS, "'DejaVu Sans'")
                                 .replace("#fig-a-", "#"))
                          for k, v in e.attrib.items() if k != "id"}
                out.append((name, attrib, (e.text or "").strip()))
        return out

    drawn_before, drawn_after = elements(before), elements(after)
    assert drawn_after == drawn_before and len(drawn_before) > 100
    assert len([g for g in before.iter("{http://www.w3.org/2000/svg}g") if set(g.attrib) == {"id"}]) > 50
    assert not [g for g in after.iter("{http://www.w3.org/2000/svg}g") if set(g.attrib) == {"id"}]


def test_the_efficacy_results_handed_out_early_are_those_returned_and_draw_the_same_figure(protocol, small_study):
    """run_sap hands the flow and efficacy results out before its other analyses (the demo draws the
    largest figure meanwhile): they equal the returned entries, and the figure drawn from them is the one
    drawn from the whole results."""
    from regenheart.report import draw_figures
    from regenheart.stats.analysis import run_sap

    early: list[dict] = []
    results = run_sap(protocol, small_study.data, efficacy_ready=early.append)
    assert len(early) == 1 and set(early[0]) == {"flow", "efficacy"}
    assert early[0]["flow"] == results["flow"] and early[0]["efficacy"] == results["efficacy"] and results["efficacy"]
    whole = draw_figures(protocol, small_study.data, results, ("mean_change",))["mean_change"]
    assert whole and draw_figures(protocol, small_study.data, early[0], ("mean_change",))["mean_change"] == whole
