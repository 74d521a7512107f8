"""An HTML preview of the results section, laid out as ClinicalTrials.gov shows posted results.

Participant flow, baseline characteristics, outcome measures (with their statistical analyses) and
the adverse-event tables (all-cause mortality, serious, other), plus the PRS check findings, so a
person reviews the record before uploading the XML. One self-contained file (inline CSS, no
script); a synthetic or draft record carries a banner on every screen.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from regenheart.exchange.ctgov.checks import Finding
from regenheart.exchange.ctgov.prs_xml import DISPERSION_TYPES, PARAM_TYPES
from regenheart.exchange.ctgov.results import TOTAL, Measure, ResultsRecord


def _pct(n: int, total: int) -> str:
    return "-" if not total else f"{100.0 * n / total:.2f}%"


def _cell(measure: Measure, value) -> str:
    if value is None:
        return ""
    text = value.value if value.value is not None else ""
    if value.spread is not None:
        text += f" ({value.spread})"
    elif value.lower is not None or value.upper is not None:
        text += f" ({value.lower} to {value.upper})"
    if value.na_comment:
        text += f" [{value.na_comment}]" if text else value.na_comment
    return text


def _measure_rows(measure: Measure, columns: list[tuple[str, str]]) -> Markup:
    """Table rows of one measure: its title with type and unit, then one row per class x category."""
    spec = PARAM_TYPES.get(measure.param_type, measure.param_type)
    if measure.dispersion != "NA":
        spec += f" ({DISPERSION_TYPES.get(measure.dispersion, measure.dispersion)})"
    head = (f'<tr><th class="rowhead" colspan="{len(columns) + 1}">{escape(measure.title)}'
            f'<br><span class="muted">{escape(spec)}; Unit of measure: {escape(measure.unit)}</span></th></tr>')
    rows = [head]
    for cls in measure.classes:
        if cls.title is not None:
            analyzed = "".join(f'<td class="num">{escape(str(cls.analyzed.get(k, "")))}</td>' for k, _ in columns) \
                if cls.analyzed else "".join("<td></td>" for _ in columns)
            rows.append(f"<tr><th>{escape(cls.title)}{' (number analyzed)' if cls.analyzed else ''}</th>{analyzed}</tr>")
        for category in cls.categories:
            label = category.title if category.title is not None else ""
            cells = "".join(f'<td class="num">{escape(_cell(measure, category.values.get(k)))}</td>' for k, _ in columns)
            rows.append(f"<tr><td>&nbsp;&nbsp;{escape(label)}</td>{cells}</tr>")
    return Markup("\n".join(rows))


def preview_html(record: ResultsRecord, findings: list[Finding]) -> str:
    """The preview page as HTML text (pure)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("regenheart.exchange.ctgov", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    titles = {g.key: g.title for g in record.groups}
    env.filters["title_of"] = lambda key: titles.get(key, key)
    group_table = env.from_string(
        "<table><thead><tr><th>{{ head }}</th><th>Description</th></tr></thead><tbody>"
        "{% for g in groups %}<tr><th class='rowhead'>{{ g.title }}</th><td>{{ g.description }}</td></tr>{% endfor %}"
        "</tbody></table>")
    baseline_columns = [(g.key, g.title) for g in record.groups]
    if TOTAL in record.baseline_participants:
        baseline_columns.append((TOTAL, "Total"))
    return env.get_template("preview.html.j2").render(
        r=record, findings=findings, pct=_pct, measure_rows=_measure_rows,
        group_table=lambda groups, head: Markup(group_table.render(groups=groups, head=head)),
        baseline_columns=baseline_columns, outcome_columns=[(g.key, g.title) for g in record.groups])


def write_preview(record: ResultsRecord, findings: list[Finding], path: Path) -> Path:
    """Write the preview page (UTF-8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(preview_html(record, findings), encoding="utf-8")
    return path
