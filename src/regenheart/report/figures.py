"""Figures of the study report, drawn with matplotlib into in-memory buffers.

Every function returns either inline SVG text (:func:`to_svg`) or a base64 PNG (:func:`to_png_base64`).
SVG text stays text (``svg.fonttype: none``): labels can be selected, searched and read aloud, and the PDF
renderer lays out one text run where glyphs drawn as paths were one element per glyph (a third of its
time for the report's figures). Their font is DejaVu Sans, matplotlib's own, with fallbacks of similar
metrics for a viewer that lacks it (labels are anchored at their start, middle or end, so a wider font
does not move them). Output is deterministic: the same
input gives the same bytes (fixed ``svg.hashsalt``, no date/creator metadata, ids prefixed per
figure so several figures can share one HTML page). Figures are built on
:class:`matplotlib.figure.Figure` objects with the Agg/SVG canvases directly: no pyplot state, no
files, no display.

The plotted summary numbers (means, confidence limits, tipping-point grid) are read from the
``results`` dictionary of :func:`regenheart.stats.analysis.run_sap`, the same numbers the tables show;
only the individual trajectories are read from the analysis dataset ADEFF.
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from lxml import etree
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from regenheart.protocol.models import Protocol

__all__ = ["mean_change_grid", "tipping_point_plot", "to_png_base64", "to_svg", "trajectories"]

HASH_SALT = "regenheart-report"
# The figures' text font, then fonts of similar width for a viewer without it (Verdana is DejaVu's model).
FONT_FALLBACKS = "'DejaVu Sans', 'Bitstream Vera Sans', Verdana, Arial, sans-serif"
MEAN_COLOR = "#1f4e79"
CI_COLOR = "#6c8ebf"
SUBJECT_COLOR = "#9aa5b1"
ALERT_COLOR = "#b03a2e"
_RC = {
    "svg.hashsalt": HASH_SALT,
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.titlesize": 9,
    "axes.labelsize": 8.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "path.simplify": False,
}
_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}


# ------------------------------------------------------------------ output
def _new_figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), dpi=100, layout="constrained")


def to_svg(fig: Figure, key: str, title: str) -> str:
    """Inline SVG text of ``fig``: no XML prolog, no DOCTYPE, ids prefixed with ``key``."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", key):
        raise ValueError(f"figure key {key!r} must be lower-case letters, digits and hyphens")
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC):
        FigureCanvasSVG(fig)
        fig.savefig(buffer, format="svg", metadata=_NO_METADATA)
    svg = _without_bare_groups(buffer.getvalue())
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'\sxmlns(:xlink)?="[^"]*"', "", svg)
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{key}-{m.group(1)}"', svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{key}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{key}-{m.group(1)})", svg)
    svg = svg.replace("font-family: 'DejaVu Sans'", f"font-family: {FONT_FALLBACKS}")
    head = re.match(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg)
    if head:
        svg = svg.replace(head.group(0), f'<svg class="figure-svg" role="img" width="100%" '
                          f'style="max-width:{head.group(1)}pt"', 1)
    safe_title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    svg = re.sub(r"(<svg[^>]*>)", lambda m: m.group(1) + f"\n <title>{safe_title}</title>", svg, count=1)
    return svg.strip() + "\n"


_SVG_GROUP = "{http://www.w3.org/2000/svg}g"


def _without_bare_groups(svg: str) -> str:
    """The SVG with every group that carries nothing but an unreferenced ``id`` replaced by its children.

    matplotlib wraps each artist in such a ``<g id="line2d_3">``; they change nothing drawn, but the PDF
    renderer styles and walks every element of an inline SVG (the report's figures had 900 of them: a
    sixth of the PDF's rendering time).
    """
    root = etree.fromstring(svg.encode("utf-8"))
    referenced = set(re.findall(r'(?:href="#|url\(#)([^")]+)', svg))
    for group in list(root.iter(_SVG_GROUP)):
        parent = group.getparent()
        if parent is None or set(group.attrib) != {"id"} or group.get("id") in referenced:
            continue
        position = parent.index(group)
        parent[position:position + 1] = list(group)
    return etree.tostring(root, encoding="unicode")


def to_png_base64(fig: Figure, dpi: int = 150) -> str:
    """Base64 PNG of ``fig`` (no timestamp or software chunk), for a ``data:image/png`` URI."""
    buffer = io.BytesIO()
    with matplotlib.rc_context(_RC):
        FigureCanvasAgg(fig)
        fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# ------------------------------------------------------------------ helpers
def _visit_months(protocol: Protocol, visit_code: str) -> float:
    return protocol.visit(visit_code).day / 30.0


def _direction_arrow(direction: str) -> str:
    return "\u2191 better" if direction == "higher_better" else "\u2193 better"


def _float(value: Any) -> float:
    return np.nan if value is None else float(value)


def _series(block: dict[str, Any], gmr: bool = False) -> tuple[list[float], list[float], list[float], list[int]]:
    """Baseline (0, no CI) then per visit: mean change and its CI, or the geometric-mean % change."""
    means, lowers, uppers, ns = [0.0], [np.nan], [np.nan], [int(block["baseline"].get("n") or 0)]
    for visit in block["visits"]:
        source = (visit.get("gmr") or {}) if gmr else visit
        keys = ("percent_change", "percent_change_lower", "percent_change_upper") if gmr else \
            ("mean_change", "lower", "upper")
        means.append(_float(source.get(keys[0])))
        lowers.append(_float(source.get(keys[1])))
        uppers.append(_float(source.get(keys[2])))
        ns.append(int(source.get("n") or 0))
    return means, lowers, uppers, ns


# ------------------------------------------------------------------ figures
def mean_change_grid(protocol: Protocol, results: dict[str, Any], columns: int = 5) -> Figure:
    """Small multiples: mean change from baseline (95% CI) at each visit, baseline at 0, for each
    secondary endpoint (observed cases), plus the geometric-mean percent change of the endpoints
    the plan also analyses on the log scale."""
    secondary = [b for b in results.get("efficacy", []) if b.get("kind") == "secondary"]
    panels: list[tuple[str, dict[str, Any]]] = [("mean", b) for b in secondary]
    panels += [("gmr", b) for b in secondary if any("gmr" in v for v in b["visits"])]
    rows = max(1, -(-len(panels) // columns))
    fig = _new_figure(2.3 * columns, 2.25 * rows)
    with matplotlib.rc_context(_RC):
        axes = fig.subplots(rows, columns, squeeze=False)
        for index, ax in enumerate(axes.flat):
            if index >= len(panels):
                ax.set_visible(False)
                continue
            kind, block = panels[index]
            months = [_visit_months(protocol, v["visit"]) for v in block["visits"]]
            x = [0.0] + months
            means, lowers, uppers, ns = _series(block, gmr=kind == "gmr")
            if kind == "mean":
                unit = block.get("unit") or ""
                title = block["label"] if unit in ("", "class") else f"{block['label']} ({unit})"
                ylabel = "Mean change"
            else:
                title = f"{block['label']}: geometric mean % change"
                ylabel = "% change"
            m, lo, hi = np.array(means), np.array(lowers), np.array(uppers)
            ax.axhline(0.0, color="#444444", linewidth=0.6, linestyle=(0, (3, 2)))
            ax.plot(x, m, color=MEAN_COLOR, linewidth=1.3, marker="o", markersize=3.5, zorder=3)
            err_lo, err_hi = m - lo, hi - m
            has_ci = ~np.isnan(lo)
            ax.errorbar(np.array(x)[has_ci], m[has_ci], yerr=[err_lo[has_ci], err_hi[has_ci]], fmt="none",
                        ecolor=MEAN_COLOR, elinewidth=1.0, capsize=2.5, zorder=2)
            ax.set_xticks(x)
            ax.set_xticklabels([f"BL\nn={ns[0]}"] + [f"M{m:g}\nn={n}" for m, n in zip(months, ns[1:])],
                               fontsize=6.5)
            ax.set_xlim(-0.5, max(months) + 0.5)
            ax.set_title(f"{_wrap(title, 28)}\n{_direction_arrow(block['direction'])}", loc="left",
                         fontsize=7.5)
            ax.set_ylabel(ylabel)
            ax.tick_params(length=2.5)
            ax.grid(axis="y", color="#e5e5e5", linewidth=0.5)
            ax.set_axisbelow(True)
    return fig


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)


def trajectories(protocol: Protocol, adeff: pd.DataFrame, adsl: pd.DataFrame, results: dict[str, Any],
                 paramcd: str) -> Figure:
    """Individual values of ``paramcd`` over its plan visits (its plan population) with the
    observed-case mean.

    Records analysed at a visit (ANL01FL = Y) are joined by lines at their analysis visit; an
    out-of-window assessment is drawn at its own study month as a hollow marker and is not joined
    (it is excluded from by-visit analyses). The mean line uses the numbers of the efficacy table."""
    plan = protocol.analysis_plan
    endpoint = plan.endpoint(paramcd)
    if endpoint is None:
        raise ValueError(f"{paramcd} is not an endpoint of the analysis plan")
    flag = plan.population(endpoint.population).flag
    population = set(adsl.loc[adsl[flag] == "Y", "SUBJID"]) if flag in adsl.columns else set()
    rows = adeff[(adeff["PARAMCD"] == paramcd) & adeff["SUBJID"].isin(population)]
    analysed = rows[rows["ANL01FL"] == "Y"].sort_values(["SUBJID", "AVISITN"])
    outside = rows[(rows["ANL01FL"] != "Y") & rows["PDAY"].notna() & rows["AVAL"].notna()]
    block = next((b for b in results.get("efficacy", []) if b.get("paramcd") == paramcd), None)
    visits = endpoint.visits
    months = [_visit_months(protocol, v) for v in visits]
    param = protocol.parameter(paramcd)
    fig = _new_figure(7.2, 4.4)
    with matplotlib.rc_context(_RC):
        ax = fig.add_subplot()
        for _, subject in analysed.groupby("SUBJID", sort=True):
            x = subject["AVISITN"].to_numpy(float) / 30.0
            ax.plot(x, subject["AVAL"].to_numpy(float), color=SUBJECT_COLOR, linewidth=0.7, alpha=0.85,
                    marker="o", markersize=2, zorder=1)
        if not outside.empty:
            ax.scatter(outside["PDAY"].to_numpy(float) / 30.0, outside["AVAL"].to_numpy(float), s=22,
                       facecolors="none", edgecolors=ALERT_COLOR, linewidths=1.0, zorder=4,
                       label="Out-of-window assessment (not analysed)")
        if block is not None:
            means = [block["baseline"].get("mean")] + [v.get("follow_up", {}).get("mean") for v in block["visits"]]
            xm = [0.0] + [_visit_months(protocol, v["visit"]) for v in block["visits"]]
            ym = [np.nan if m is None else float(m) for m in means]
            ax.plot(xm, ym, color=MEAN_COLOR, linewidth=2.4, marker="s", markersize=5, zorder=5,
                    label="Mean (observed cases)")
        ax.plot([], [], color=SUBJECT_COLOR, linewidth=0.7, marker="o", markersize=2, label="Individual patient")
        ax.set_xticks([0.0] + months)
        ax.set_xticklabels(["Baseline"] + [protocol.visit(v).label for v in visits])
        ax.set_xlim(-0.4, max(months) + 0.6)
        ax.set_xlabel("Analysis visit (positioned at target study month)")
        ax.set_ylabel(f"{param.label} ({param.unit})")
        ax.grid(axis="y", color="#e5e5e5", linewidth=0.5)
        ax.set_axisbelow(True)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    return fig


def tipping_point_plot(sens: dict[str, Any], what: str = "", unit: str = "") -> Figure | None:
    """Pooled mean change (95% CI) of one sensitivity analysis (an entry of results['sensitivity'])
    against the delta added to imputed values, with the tipping delta marked. ``None`` when it
    holds no tipping-point analysis. ``what``/``unit`` label the axes (the parameter)."""
    tipping = sens.get("tipping_point") or {}
    grid = [g for g in tipping.get("grid", []) if g.get("delta") is not None and g.get("estimate") is not None]
    if not grid:
        return None
    grid = sorted(grid, key=lambda g: g["delta"])
    delta = np.array([g["delta"] for g in grid], float)
    est = np.array([g["estimate"] for g in grid], float)
    lo = np.array([np.nan if g.get("lower") is None else g["lower"] for g in grid], float)
    hi = np.array([np.nan if g.get("upper") is None else g["upper"] for g in grid], float)
    fig = _new_figure(7.2, 4.0)
    with matplotlib.rc_context(_RC):
        ax = fig.add_subplot()
        ax.fill_between(delta, lo, hi, color=CI_COLOR, alpha=0.28, linewidth=0, label="95% CI (Rubin's rules)")
        ax.plot(delta, est, color=MEAN_COLOR, linewidth=1.6, label="Pooled mean change")
        ax.axhline(0.0, color="#444444", linewidth=0.7, linestyle=(0, (3, 2)))
        mar = sens.get("mar") or {}
        if mar.get("estimate") is not None:
            ax.plot([0.0], [mar["estimate"]], marker="o", color=MEAN_COLOR, markersize=5, linestyle="none",
                    label="MAR (delta = 0)")
        if tipping.get("found") and tipping.get("tipping_delta") is not None:
            td = float(tipping["tipping_delta"])
            ax.axvline(td, color=ALERT_COLOR, linewidth=1.1, label=f"Tipping delta = {td:.2f}")
            ax.annotate(f"tipping point\ndelta = {td:.2f}", (td, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(4, -4), textcoords="offset points", ha="left", va="top", fontsize=7.5,
                        color=ALERT_COLOR)
        ax.set_xlabel(f"Delta added to each imputed {sens.get('visit', '')} {what} change ({unit})")
        ax.set_ylabel(f"{sens.get('visit', '')} {what} change ({unit})")
        ax.grid(color="#e5e5e5", linewidth=0.5)
        ax.set_axisbelow(True)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, frameon=False)
    return fig
