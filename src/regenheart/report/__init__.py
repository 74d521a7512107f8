"""The RegenHeart study report: one self-contained HTML file (inline CSS, inline SVG figures).

:func:`build_report` turns the protocol, the data snapshot, the analysis datasets and the SAP
results (:func:`regenheart.stats.analysis.run_sap`, i.e. ``results.json``) into HTML text;
:func:`write_report` writes it. The report opens offline (no external script, stylesheet, font or
image) and prints with the synthetic-data banner on every page.

Every number comes from ``results`` (or the snapshot/protocol): see
:mod:`regenheart.report.context`. Figures: :mod:`regenheart.report.figures`.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from regenheart.derive.adam import AnalysisDatasets
from regenheart.protocol.models import Protocol
from regenheart.report import context as ctx
from regenheart.report import figures
from regenheart.report.context import SECTIONS, SYNTHETIC_BANNER
from regenheart.report.missing_codes import missing_codes_html
from regenheart.store.snapshot import Snapshot

__all__ = ["FIGURES", "SECTIONS", "SYNTHETIC_BANNER", "build_report", "draw_figures", "merge_figures",
           "write_report"]


def css_string(value: object) -> Markup:
    """A CSS string literal (for ``content:``) safe inside a <style> element."""
    text = str(value)
    escaped = "".join(ch if ch.isalnum() or ch in " .,;:-_()/+=%#[]" or ord(ch) > 127 else f"\\{ord(ch):06x}"
                      for ch in text)
    return Markup(f'"{escaped}"')


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("regenheart.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
        keep_trailing_newline=True,
    )
    env.filters["css_string"] = css_string
    return env


def _css() -> str:
    return resources.files("regenheart.report").joinpath("templates/report.css").read_text(encoding="utf-8")


def _has_synthetic_subjects(data: AnalysisDatasets) -> bool:
    adsl = data.adsl
    return "SYNTHFL" in adsl.columns and bool((adsl["SYNTHFL"] == "Y").any())


FIGURES = ("mean_change", "trajectories", "tipping")


def draw_figures(protocol: Protocol, data: AnalysisDatasets, results: dict[str, Any],
                 which: tuple[str, ...] = FIGURES) -> dict[str, Any]:
    """The report's figures as inline SVG text: ``mean_change`` (secondary endpoints), ``trajectories``
    (with ``trajectories_label``) and ``tipping`` (one per sensitivity analysis), each None (or empty)
    when the results have nothing to draw or it is not in ``which``. Pure, as :func:`build_report`;
    figures drawn separately (say in two processes) and merged give what one call gives."""
    plan = protocol.analysis_plan
    figure_svgs: dict[str, Any] = {"mean_change": None, "trajectories": None, "trajectories_label": None,
                                   "tipping": {}}
    if "mean_change" in which and ctx.efficacy_context(protocol, results)["secondary"]:
        figure_svgs["mean_change"] = figures.to_svg(figures.mean_change_grid(protocol, results), "fig-mean-change",
                                                    "Mean change from baseline with 95% CI, secondary endpoints")
    headline = plan.headline or plan.flow.assessed_paramcd
    if "trajectories" in which and headline and plan.endpoint(headline) is not None and not data.adeff.empty:
        label = protocol.parameter(headline).label
        figure_svgs["trajectories"] = figures.to_svg(
            figures.trajectories(protocol, data.adeff, data.adsl, results, headline), "fig-trajectories",
            f"Individual {label} trajectories with the mean")
        figure_svgs["trajectories_label"] = label
    for entry in ctx.sensitivity_context(protocol, results) if "tipping" in which else ():
        fig = figures.tipping_point_plot((results.get("sensitivity") or {}).get(entry["key"]) or {},
                                         entry["what"], entry["unit"])
        if fig is not None:
            figure_svgs["tipping"][entry["key"]] = figures.to_svg(fig, f"fig-tipping-{entry['anchor']}",
                                                                  f"Tipping-point analysis: {entry['title']}")
    return figure_svgs


def merge_figures(*parts: dict[str, Any]) -> dict[str, Any]:
    """One figures dictionary from several :func:`draw_figures` calls over disjoint ``which``."""
    merged: dict[str, Any] = {"mean_change": None, "trajectories": None, "trajectories_label": None, "tipping": {}}
    for part in parts:
        for key, value in part.items():
            if key == "tipping":
                merged["tipping"].update(value)
            elif value is not None:
                merged[key] = value
    return merged


def build_report(protocol: Protocol, snapshot: Snapshot, data: AnalysisDatasets, results: dict[str, Any], *,
                 methods_notes: dict[str, str] | None = None, synthetic: bool,
                 figures_drawn: dict[str, Any] | None = None) -> str:
    """The study report as HTML text.

    ``results`` is the dictionary of :func:`regenheart.stats.analysis.run_sap` (extra keys such as
    ``snapshot`` and ``scoring_versions``, as stored in results.json, are used when present).
    ``methods_notes`` maps an instrument name to its scoring paragraph for the methods section.
    The synthetic-data banner is shown when ``synthetic`` is true, and also whenever a subject in
    the data carries the synthetic flag: synthetic data never leave without the label.

    Pure: no files are written, nothing depends on the clock (the only time shown is the
    snapshot's); the same inputs give the same text. ``figures_drawn``: the figures of
    :func:`draw_figures` for these results, drawn beforehand (elsewhere); drawn here when None.
    """
    synthetic = bool(synthetic) or _has_synthetic_subjects(data)
    efficacy = ctx.efficacy_context(protocol, results)
    sensitivity = ctx.sensitivity_context(protocol, results)
    figure_svgs = figures_drawn if figures_drawn is not None else draw_figures(protocol, data, results)
    from regenheart import __version__

    template = _environment().get_template("report.html.j2")
    html = template.render(
        synthetic=synthetic,
        banner=SYNTHETIC_BANNER,
        css=_css(),
        sections=SECTIONS,
        design_cost=results.get("design_cost"),  # design simulation summary: the appendix on the change of design
        study={**ctx.study_context(protocol), "acronym": protocol.study.acronym, "nct_id": protocol.study.nct_id or "not registered",
               "official_title": ctx._words(protocol.study.official_title or protocol.study.brief_title)},
        active_version=protocol.active_protocol_version,
        snapshot=ctx.snapshot_context(snapshot, results),
        flow=ctx.flow_context(protocol, results),
        baseline=ctx.baseline_context(protocol, results),
        primary=ctx.primary_context(results),
        ae=ctx.ae_context(protocol, results),
        efficacy=efficacy,
        figures=figure_svgs,
        sensitivity=sensitivity,
        listings=ctx.listings_context(protocol, results),
        between=ctx.between_arms_context(protocol, results),
        has_primary=bool(results.get("primary")),
        has_adverse_events=bool(results.get("adverse_events")),
        methods=ctx.methods_context(protocol, results, methods_notes),
        version=__version__,
        registry_preview=results.get("registry_preview"),  # ClinicalTrials.gov results preview file
        missing_codes=missing_codes_html(protocol, snapshot),  # counts of coded values (report/missing_codes.py)
    )
    return html


def write_report(path: str | os.PathLike[str], html: str) -> Path:
    """Write the report as UTF-8 (atomically: a temporary file renamed over ``path``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(html, encoding="utf-8", newline="\n")
    os.replace(tmp, target)
    return target
