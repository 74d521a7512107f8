"""The report's view model: the SAP results, snapshot and protocol turned into display rows.

Every number shown in the report is read here from ``results`` (the dictionary of
:func:`regenheart.stats.analysis.run_sap`, stored as ``results.json``), from the snapshot or from the
protocol, and formatted with :mod:`regenheart.report.formatting`. Nothing is recomputed: the
template only lays out the strings built here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from regenheart.derive.adam import SUPPORTIVE_PARAMETERS
from regenheart.protocol.models import Protocol
from regenheart.report import formatting as f
from regenheart.store.snapshot import Snapshot

SYNTHETIC_BANNER = "SYNTHETIC DATA \u2014 generated for demonstration; not RegenHeart trial results"

#: Section anchors, in report order (id, title). Tests and the table of contents use this list.
SECTIONS: list[tuple[str, str]] = [
    ("study", "Study identity and protocol version"),
    ("snapshot", "Data snapshot"),
    ("flow", "Patient flow"),
    ("baseline", "Baseline characteristics"),
    ("primary", "Primary safety endpoint"),
    ("adverse-events", "Adverse events"),
    ("efficacy", "Efficacy endpoints"),
    ("figures", "Figures"),
    ("sensitivity", "Missing-data sensitivity analysis"),
    ("deaths-saes", "Deaths and serious adverse events"),
    ("methods", "Methods"),
]

DESIGN_TEXT = {"single_arm": "Single arm", "randomized": "Randomized"}


@dataclass
class Table:
    """A display table: header cells, body rows of cells, optional caption and footnotes."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    row_classes: list[str] = field(default_factory=list)
    numeric_from: int = 1  # columns from this index on are right-aligned numbers


# ------------------------------------------------------------------ study and snapshot
def _words(text: str | None) -> str:
    """Whitespace-normalised text; an en dash for an identity field the protocol leaves out."""
    return " ".join(text.split()) if text else f.DASH


def study_context(protocol: Protocol) -> dict[str, Any]:
    s = protocol.study
    active = protocol.active_version
    versions = []
    for v in protocol.protocol_versions:
        versions.append([
            v.version + (" (active)" if v.version == active.version else ""),
            v.date.isoformat(),
            DESIGN_TEXT.get(v.design, v.design) + f"; {v.allocation}",
            str(v.planned_enrollment),
            "; ".join(a.label for a in v.arms),
            " ".join(v.summary.split()),
        ])
    identity = [
        ("ClinicalTrials.gov identifier", s.nct_id or "not registered"),
        ("Acronym", s.acronym),
        ("Sponsor protocol number", _words(s.org_study_id)),
        ("Brief title", _words(s.brief_title)),
        ("Official title", _words(s.official_title)),
        ("Sponsor", _words(s.sponsor)),
        ("Phase", _words(s.phase)),
        ("Study type", _words(s.study_type)),
        ("Design (active protocol)", f"{DESIGN_TEXT.get(active.design, active.design)}; {active.allocation}"),
        ("Masking", _words(s.masking)),
        ("Planned enrolment (active protocol)", str(active.planned_enrollment)),
        ("Conditions", "; ".join(s.conditions)),
        ("Intervention", _words(s.intervention)),
        ("Day 0", _words(s.day0_definition)),
        ("Sites", "; ".join(f"{site.code}: {site.name}" for site in s.sites)),
        ("Active protocol version", f"{active.version} ({active.date.isoformat()})"),
    ]
    return {
        "identity": identity,
        "versions": Table(["Version", "Date", "Design", "Planned N", "Arms", "Summary"], versions,
                          row_classes=["active" if v.version == active.version else ""
                                       for v in protocol.protocol_versions], numeric_from=99),
        "active_version": active.version,
    }


def snapshot_context(snapshot: Snapshot, results: dict[str, Any]) -> dict[str, Any]:
    """Counts from ``results['snapshot']`` when the caller stored them there (so the report and
    results.json agree), else from ``snapshot.counts``, else from the snapshot's tables."""
    stored = results.get("snapshot") if isinstance(results.get("snapshot"), dict) else {}
    counts_attr = getattr(snapshot, "counts", None)
    counts_attr = counts_attr if isinstance(counts_attr, dict) else {}

    def count(*keys: str, frame: Any = None) -> str:
        for source in (stored, counts_attr):
            for key in keys:
                if source.get(key) is not None:
                    return f.integer(source[key])
        return f.integer(len(frame)) if frame is not None else f.DASH

    rows = [
        ("Snapshot taken (UTC)", stored.get("taken_utc") or snapshot.taken_utc),
        ("Subjects screened", count("subjects", "subjects_screened", frame=snapshot.subjects)),
        ("Visits", count("visits", frame=snapshot.visits)),
        ("Case report forms", count("forms", frame=snapshot.forms)),
        ("Item values", count("item_values", "items", frame=snapshot.items)),
        ("Derived instrument scores", count("derived_scores", "derived", frame=snapshot.derived)),
        ("Adverse events", count("adverse_events", frame=snapshot.adverse_events)),
        ("Audit-trail records", count("audit_records", frame=None)
         if count("audit_records", frame=None) != f.DASH else f.integer(snapshot.audit_records)),
        ("Audit-chain head hash (SHA-256)", stored.get("audit_head_hash") or snapshot.audit_head_hash),
    ]
    meta = [(k, str(v)) for k, v in sorted(snapshot.meta.items())]
    scoring = results.get("scoring_versions") if isinstance(results.get("scoring_versions"), dict) else {}
    return {"rows": rows, "meta": meta, "scoring_versions": sorted(scoring.items()),
            "taken_utc": stored.get("taken_utc") or snapshot.taken_utc,
            "head_hash": stored.get("audit_head_hash") or snapshot.audit_head_hash}


# ------------------------------------------------------------------ flow
def flow_context(protocol: Protocol, results: dict[str, Any]) -> dict[str, Any]:
    flow = results.get("flow") or {}
    reasons = [(text, f.integer(n)) for text, n in (flow.get("excluded_reasons") or {}).items()]
    discontinued = [(protocol.decode("disposition", code), f.integer(n))
                    for code, n in (flow.get("discontinued") or {}).items()]
    assessed = [(label, f.integer(n)) for label, n in (flow.get("assessed") or {}).items()]
    paramcd = flow.get("assessed_paramcd")
    assessed_label = paramcd or ""
    if paramcd:
        try:
            assessed_label = protocol.parameter(paramcd).label
        except KeyError:
            pass
    treated = protocol.analysis_plan.flow.population
    try:
        treated_label = protocol.analysis_plan.population(treated).label
    except KeyError:
        treated_label = treated
    return {
        "assessed_label": assessed_label,
        "treated_label": treated_label,
        "screened": f.integer(flow.get("screened")),
        "screen_failed": f.integer(flow.get("screen_failed")),
        "reasons": reasons,
        "eligible_not_enrolled": f.integer(flow.get("eligible_not_enrolled")),
        "has_eligible_not_enrolled": bool(flow.get("eligible_not_enrolled")),
        "enrolled": f.integer(flow.get("enrolled")),
        "infused": f.integer(flow.get("infused")),
        "assessed": assessed,
        "discontinued": discontinued,
        "n_discontinued": f.integer(sum((flow.get("discontinued") or {}).values())),
        "completed": f.integer(flow.get("completed")),
        "safety": f.integer(flow.get("safety_population")),
        "efficacy": f.integer(flow.get("efficacy_population")),
    }


# ------------------------------------------------------------------ baseline
def _decimals(protocol: Protocol, paramcd: str) -> int:
    """Decimals of a parameter's means, SDs and CIs: the plan's, else the report's default rules."""
    endpoint = protocol.analysis_plan.endpoint(paramcd)
    if endpoint is not None and endpoint.decimals is not None:
        return endpoint.decimals
    return f.decimals_for(paramcd)


def _decimals_for_label(protocol: Protocol, label: str) -> int:
    for p in protocol.all_parameters:
        if p.label == label:
            return _decimals(protocol, p.paramcd)
    return f.DEFAULT_DECIMALS


def baseline_context(protocol: Protocol, results: dict[str, Any]) -> Table:
    rows: list[list[str]] = []
    classes: list[str] = []
    for item in results.get("baseline") or []:
        if item.get("type") == "categorical":
            rows.append([item["variable"], "n", f.integer(item.get("n"))])
            classes.append("group-start")
            for level in item.get("levels", []):
                rows.append(["", level["level"], f.n_pct(level.get("n"), level.get("percent"))])
                classes.append("")
        else:
            d = _decimals_for_label(protocol, item["variable"])
            label = item["variable"] + (f" ({item['unit']})" if item.get("unit") else "")
            rows += [
                [label, "n", f.integer(item.get("n"))],
                ["", "Mean (SD)", f.mean_sd(item.get("mean"), item.get("sd"), d)],
                ["", "Median (Q1, Q3)", f.median_iqr(item.get("median"), item.get("q1"), item.get("q3"), d)],
                ["", "Min, max", f.summary_range(item, d)],
            ]
            classes += ["group-start", "", "", ""]
    flow = results.get("flow") or {}
    caption = f"Safety population (N = {f.integer(flow.get('safety_population'))}). Categorical: n (%)."
    return Table(["Characteristic", "Statistic", "Value"], rows, caption=caption, row_classes=classes,
                 numeric_from=2)


# ------------------------------------------------------------------ safety
def primary_context(results: dict[str, Any]) -> dict[str, Any]:
    p = results.get("primary") or {}
    n, total = p.get("n_events"), p.get("n_total")
    conf = p.get("conf") or 0.95
    lower = None if p.get("lower") is None else 100.0 * p["lower"]
    upper = None if p.get("upper") is None else 100.0 * p["upper"]
    headline = {
        "n_over_N": f"{f.integer(n)}/{f.integer(total)}",
        "percent": f.pct(p.get("percent")),
        "ci": f"{f.pct(lower)}% to {f.pct(upper)}%" if lower is not None and upper is not None else f.DASH,
        "conf": f"{100 * conf:g}",
        "method": p.get("method") or "Clopper-Pearson exact",
    }
    headline["text"] = (f"{headline['n_over_N']} ({headline['percent']}%); {headline['conf']}% CI "
                        f"{headline['ci']}")
    components = Table(
        ["Component", "Subjects n (%)", "Events"],
        [[c["component"], f.n_pct(c.get("subjects"), c.get("percent")), f.integer(c.get("events"))]
         for c in p.get("components", [])],
        caption=f"Subjects with at least one event of each component (denominator N = {f.integer(total)}); "
                "a subject may have events of several components.")
    events = Table(
        ["Subject", "Protocol day", "Component", "Source", "Detail"],
        [[f.text(e.get("SUBJID")), f.text(e.get("PDAY")), f.text(e.get("COMPONENT")), f.text(e.get("SOURCE")),
          f.text(e.get("DETAIL"))] for e in p.get("events", [])],
        caption="Every primary-composite event, days 0-5 (protocol day 0 = infusion).", numeric_from=99)
    return {"label": p.get("label") or "", "code": p.get("code") or "", "definition": p.get("definition") or "",
            "headline": headline, "components": components, "events": events}


def ae_context(protocol: Protocol, results: dict[str, Any]) -> dict[str, Any]:
    ae = results.get("adverse_events") or {}
    n = f.integer(ae.get("n_safety"))
    overview = Table(
        ["", "Subjects n (%)", "Events"],
        [[label, f.n_pct(v.get("subjects"), v.get("percent")), f.integer(v.get("events"))]
         for label, v in (ae.get("overview") or {}).items()],
        caption=f"Treatment-emergent adverse events, safety population (N = {n}).")
    by_category = Table(
        ["Category", "Subjects n (%)", "Events", "Subjects with onset days 0-5", "Serious events",
         "Events related to product", "Events related to procedure"],
        [[c["category"], f.n_pct(c.get("subjects"), c.get("percent")), f.integer(c.get("events")),
          f.integer(c.get("peri_subjects")), f.integer(c.get("serious")), f.integer(c.get("related_product")),
          f.integer(c.get("related_procedure"))] for c in ae.get("by_category", [])],
        caption=f"By event category (N = {n}). Related = possibly, probably or definitely related.")
    by_grade = Table(
        ["Maximum CTCAE grade", "Subjects n (%)"],
        [[protocol.decode("ctcae_grade", g["grade"]), f.n_pct(g.get("subjects"), g.get("percent"))]
         for g in ae.get("by_max_grade", [])],
        caption=f"Each subject counted once, at the highest grade of any event (N = {n}).")
    relatedness = Table(
        ["Relatedness", "Events: to the cell product", "Events: to the procedure"],
        [[r["relatedness"], f.integer(r.get("product_events")), f.integer(r.get("procedure_events"))]
         for r in ae.get("relatedness", [])],
        caption="Investigator assessment of causality, number of events.")
    return {"overview": overview, "by_category": by_category, "by_grade": by_grade, "relatedness": relatedness}


def listings_context(protocol: Protocol, results: dict[str, Any]) -> dict[str, Any]:
    ae = results.get("adverse_events") or {}
    deaths = Table(
        ["Subject", "Date of death", "Cause / reason"],
        [[f.text(d.get("SUBJID")), f.text(d.get("DTHDT")), f.text(d.get("DCSREASP"))]
         for d in ae.get("deaths", [])],
        caption="All deaths (ADSL DTHFL = Y).", numeric_from=99)
    serious = Table(
        ["Subject", "AE no.", "Term", "Category", "Onset date", "Protocol day", "CTCAE grade",
         "Seriousness criteria", "Related to product", "Related to procedure", "Outcome"],
        [[f.text(r.get("SUBJID")), f.text(r.get("AESEQ")), f.text(r.get("AETERM")), f.text(r.get("AECATDC")),
          f.text(r.get("ASTDT")), f.text(r.get("PDAY")), f.text(r.get("AETOXGR")), f.text(r.get("SAECRIT")),
          protocol.decode("relatedness", r["AREL"]) if r.get("AREL") else f.DASH,
          protocol.decode("relatedness", r["ARELPR"]) if r.get("ARELPR") else f.DASH,
          protocol.decode("ae_outcome", r["AEOUT"]) if r.get("AEOUT") else f.DASH]
         for r in ae.get("serious_listing", [])],
        caption="Treatment-emergent serious adverse events and fatal events.", numeric_from=99)
    return {"deaths": deaths, "serious": serious}


# ------------------------------------------------------------------ efficacy
def _mmrm_lookup(results: dict[str, Any], paramcd: str) -> tuple[str, dict[str, Any] | None]:
    """(status, entry): status 'absent' (MMRM not run), 'none' (no MMRM for this parameter),
    'error' or 'ok'."""
    mmrm = results.get("mmrm")
    if not isinstance(mmrm, dict):
        return "absent", None
    entry = (mmrm.get("results") or {}).get(paramcd)
    if entry is None:
        return "none", None
    if "error" in entry:
        return "error", entry
    return "ok", entry


def _se_unusable(value: Any) -> bool:
    return f.is_missing(value) or float(value) <= 0.0


def efficacy_block(protocol: Protocol, results: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    paramcd = block["paramcd"]
    d = _decimals(protocol, paramcd)
    log_scale = any("gmr" in v for v in block["visits"])
    status, mmrm = _mmrm_lookup(results, paramcd)
    planned = protocol.analysis_plan.endpoint(paramcd)
    show_mmrm = (planned is not None and planned.analysis("mmrm") is not None) or status in ("ok", "error")
    lsm_by_visit: dict[str, dict[str, Any]] = {}
    cell_arms = {a.code for a in protocol.active_version.arms if a.receives_cells}
    for e in (mmrm or {}).get("lsmeans", []) if status == "ok" else []:
        if "arm" in e and e["arm"] not in cell_arms:  # randomized protocol: the table shows the cell arm
            continue
        lsm_by_visit[e.get("visit")] = e
    columns = ["Visit", "n", "Baseline mean (SD)", "Value mean (SD)", "Change mean (SD)",
               "Change median (Q1, Q3)", "Mean change 95% CI", "Paired t p", "Wilcoxon p"]
    if log_scale:
        columns += ["GMR (95% CI)", "GMR p"]
    if show_mmrm:
        columns.append("MMRM ratio (95% CI)" if log_scale else "MMRM LS mean change (95% CI)")
    rows = []
    se_flag = False
    methods: list[tuple[str, Any]] = []
    zeros: list[str] = []
    excluded: list[str] = []
    for v in block["visits"]:
        row = [v["label"], f.integer(v.get("n")), f.summary_mean_sd(v.get("baseline"), d),
               f.summary_mean_sd(v.get("follow_up"), d), f.summary_mean_sd(v.get("change"), d),
               f.summary_median_iqr(v.get("change"), d), f.ci(v.get("lower"), v.get("upper"), d),
               f.pvalue(v.get("p_value_t")), f.pvalue(v.get("p_value_wilcoxon"))]
        if log_scale:
            g = v.get("gmr") or {}
            row += [f.estimate_ci(g.get("gmr"), g.get("lower"), g.get("upper"), f.RATIO_DECIMALS),
                    f.pvalue(g.get("p_value"))]
        if show_mmrm:
            e = lsm_by_visit.get(v["label"])
            if e is None:
                row.append(f.DASH)
            elif _se_unusable(e.get("std_error")):
                se_flag = True
                est = e.get("ratio") if log_scale else e.get("estimate")
                row.append(f"{f.num(est, f.RATIO_DECIMALS if log_scale else d)} (CI not available)\u2020")
            elif log_scale:
                row.append(f.estimate_ci(e.get("ratio"), e.get("ratio_lower"), e.get("ratio_upper"), f.RATIO_DECIMALS))
            else:
                row.append(f.estimate_ci(e.get("estimate"), e.get("lower"), e.get("upper"), d))
        rows.append(row)
        methods.append((v["label"], v.get("wilcoxon_method")))
        if v.get("n_zero_changes"):
            zeros.append(f"{v['label']} {v['n_zero_changes']}")
        if v.get("n_excluded"):
            excluded.append(f"{v['label']} {v['n_excluded']}")
    notes = []
    base = block.get("baseline") or {}
    notes.append(f"All efficacy-population subjects with a baseline value: n = {f.integer(base.get('n'))}, "
                 f"mean (SD) {f.summary_mean_sd(base, d)}, median (Q1, Q3) {f.summary_median_iqr(base, d)}. "
                 "Rows: subjects with both a baseline and an in-window value at the visit (observed cases).")
    distinct = {m for _, m in methods if m}
    if len(distinct) == 1:
        notes.append(f"Wilcoxon signed-rank p: {distinct.pop()} at every visit.")
    elif distinct:
        notes.append("Wilcoxon signed-rank p: " + "; ".join(f"{label}: {m or f.DASH}" for label, m in methods) + ".")
    if zeros:
        notes.append("Zero changes (dropped from the Wilcoxon test): " + ", ".join(zeros) + ".")
    if excluded:
        notes.append("Subjects without a baseline/visit pair excluded: " + ", ".join(excluded) + ".")
    if log_scale:
        notes.append("GMR: geometric mean ratio, follow-up / baseline (paired t on log values)"
                     + ("; the MMRM models the log ratio and is back-transformed." if show_mmrm else "."))
    mmrm_note, mmrm_error, mmrm_alert = None, None, False
    if show_mmrm:
        if status == "absent":
            mmrm_note = "MMRM was not run for this report."
        elif status == "none":
            mmrm_note = "No MMRM result for this parameter."
        elif status == "error":
            mmrm_error = str(mmrm.get("error"))
        else:
            warn = "; ".join(mmrm.get("warnings") or []) or "none"
            mmrm_alert = not mmrm.get("converged") or bool(mmrm.get("warnings"))
            mmrm_note = (f"MMRM: {f.integer(mmrm.get('n_subjects'))} subjects, "
                         f"{f.integer(mmrm.get('n_observations'))} observations, "
                         f"{'converged' if mmrm.get('converged') else 'NOT CONVERGED'}; warnings: {warn}.")
            diffs = mmrm.get("differences") or []
            if diffs:
                dd = f.RATIO_DECIMALS if log_scale else d
                mmrm_note += " Treatment difference " + "; ".join(
                    f"{e.get('contrast', '')} at {e.get('visit')}: "
                    + (f.estimate_ci(e.get("ratio"), e.get("ratio_lower"), e.get("ratio_upper"), dd) if log_scale
                       else f.estimate_ci(e.get("estimate"), e.get("lower"), e.get("upper"), dd))
                    + f", p = {f.pvalue(e.get('p_value'))}" for e in diffs) + "."
        if se_flag:
            notes.append("\u2020 The MMRM standard error is reported as 0 or missing, so no confidence interval "
                         "can be given; the LS mean is shown without inference.")
    return {
        "anchor": f"eff-{paramcd.lower()}",
        "paramcd": paramcd,
        "shift": shift_context(results, paramcd),
        "title": block["label"] if block["unit"] in ("class", "") else f"{block['label']} ({block['unit']})",
        "direction": "higher is better" if block.get("direction") == "higher_better" else "lower is better",
        "table": Table(columns, rows, notes=notes),
        "mmrm_note": mmrm_note,
        "mmrm_error": mmrm_error,
        "mmrm_alert": mmrm_alert,
    }


def shift_context(results: dict[str, Any], paramcd: str) -> list[dict[str, Any]]:
    """Shift tables and the improvement test of one ordinal endpoint, one entry per visit."""
    out = []
    for code, entry in ((results.get("shift_tables") or {}).get(paramcd) or {}).items():
        shift = entry.get("shift") or {}
        counts = shift.get("counts") or []
        rows = []
        for label, line in zip(shift.get("rows", []), counts):
            rows.append([label] + [f.integer(c) for c in line] + [f.integer(sum(line))])
        col_totals = [sum(col) for col in zip(*counts)] if counts else []
        rows.append(["Total"] + [f.integer(c) for c in col_totals] + [f.integer(sum(col_totals))])
        ch = entry.get("change") or {}
        conf = ch.get("conf") or 0.95
        lower = None if ch.get("improved_lower") is None else 100 * ch["improved_lower"]
        upper = None if ch.get("improved_upper") is None else 100 * ch["improved_upper"]
        change = Table(
            ["n", "Improved n (%)", "Unchanged n", "Worsened n", f"Improved {100 * conf:g}% CI (%)",
             "Sign test p", "Wilcoxon p"],
            [[f.integer(ch.get("n")),
              f.n_pct(ch.get("n_improved"), ch.get("percent_improved")),
              f.integer(ch.get("n_unchanged")),
              f.integer(ch.get("n_worsened")),
              f.ci(lower, upper, f.PERCENT_DECIMALS), f.pvalue(ch.get("sign_test_p")), f.pvalue(ch.get("wilcoxon_p"))]],
            numeric_from=0,
            notes=[(f"Improved = at least one level better than baseline. Sign test: exact two-sided binomial test "
                    f"on the {f.integer(ch.get('sign_test_n'))} subjects whose level changed. Improved CI: "
                    f"{ch.get('ci_method') or 'Clopper-Pearson exact'}. "
                    f"Wilcoxon: {ch.get('wilcoxon_method') or f.DASH}.")])
        out.append({
            "visit": code, "label": entry.get("label") or code,
            "shift": Table(["Baseline \\ " + (entry.get("label") or code)] + list(shift.get("columns", [])) + ["Total"],
                           rows, row_classes=[""] * (len(rows) - 1) + ["total"]),
            "change": change,
        })
    return out


def responders_context(protocol: Protocol, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Responder analyses (improvement >= each sourced threshold of the plan), one table per parameter."""
    by_param: dict[str, list[dict[str, Any]]] = {}
    for r in results.get("responders") or []:
        by_param.setdefault(r["paramcd"], []).append(r)
    labels = {b["paramcd"]: b["label"] for b in results.get("efficacy") or []}
    out = []
    for paramcd, rows in by_param.items():
        sources: list[str] = []
        body = []
        try:
            unit = protocol.parameter(paramcd).unit
        except KeyError:
            unit = ""
        for r in rows:
            if r.get("source") and r["source"] not in sources:
                sources.append(r["source"])
            lower = None if r.get("lower") is None else 100 * r["lower"]
            upper = None if r.get("upper") is None else 100 * r["upper"]
            body.append([r.get("label") or r.get("visit"), (f"{str(r.get('level', '')).capitalize()} "
                         f"(\u2265 {f.num(r.get('threshold'), 0)} {unit})"),
                         f"{f.integer(r.get('n_events'))}/{f.integer(r.get('n_total'))}", f.pct(r.get("percent")),
                         f.ci(lower, upper, f.PERCENT_DECIMALS)])
        notes = [("Responder: improvement from baseline of at least the threshold (observed cases). "
                 "95% CI: Clopper-Pearson exact.")] + [f"Threshold source: {src}" for src in sources]
        out.append({"anchor": f"resp-{paramcd.lower()}", "title": labels.get(paramcd, paramcd),
                    "table": Table(["Visit", "Improvement", "Responders n/N", "%", "95% CI (%)"], body,
                                   notes=notes, numeric_from=2)})
    return out


def efficacy_context(protocol: Protocol, results: dict[str, Any]) -> dict[str, Any]:
    blocks = results.get("efficacy") or []
    secondary = [efficacy_block(protocol, results, b) for b in blocks if b.get("kind") == "secondary"]
    exploratory = [efficacy_block(protocol, results, b) for b in blocks if b.get("kind") == "exploratory"]
    # Supportive parameters are grouped by the form they are derived from (instrument domains,
    # derived clinical values), in the order the analysis datasets define them.
    form_of = {s.paramcd: s.form for s in SUPPORTIVE_PARAMETERS}
    groups: dict[str, list[dict[str, Any]]] = {}
    for b in blocks:
        if b.get("kind") == "supportive":
            groups.setdefault(form_of.get(b["paramcd"], "other"), []).append(efficacy_block(protocol, results, b))
    supportive = []
    for form, members in groups.items():
        title = protocol.forms[form].label if form in protocol.forms else "Other supportive parameters"
        supportive.append({"anchor": f"supportive-{form.replace('_', '-')}", "title": title, "blocks": members})
    efficacy_n = f.integer((results.get("flow") or {}).get("efficacy_population"))
    mmrm = results.get("mmrm")
    planned_mmrm = any(e.analysis("mmrm") is not None for e in protocol.analysis_plan.endpoints)
    return {"secondary": secondary, "exploratory": exploratory, "supportive": supportive,
            "responders": responders_context(protocol, results),
            "shift_params": [b for b in secondary + exploratory if b["shift"]],
            "efficacy_n": efficacy_n,
            "mmrm_absent": planned_mmrm and not isinstance(mmrm, dict),
            "descriptive": descriptive_context(results)}


def descriptive_context(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The default plan's by-visit statistics of form fields: one table per field."""
    out = []
    for var in results.get("descriptive") or []:
        title = f"{var['label']} ({var['unit']})" if var.get("unit") else var["label"]
        if var.get("kind") == "numeric":
            rows = [[v["label"], f.integer(v.get("n")), f.mean_sd(v.get("mean"), v.get("sd"), f.DEFAULT_DECIMALS),
                     f.median_iqr(v.get("median"), v.get("q1"), v.get("q3"), f.DEFAULT_DECIMALS),
                     f.summary_range(v, f.DEFAULT_DECIMALS)] for v in var["visits"]]
            table = Table(["Visit", "n", "Mean (SD)", "Median (Q1, Q3)", "Min, max"], rows)
        else:
            codes = [lvl["decode"] for lvl in (var["visits"][0]["levels"] if var["visits"] else [])]
            rows = [[v["label"], f.integer(v.get("n"))] + [f.n_pct(lvl.get("n"), lvl.get("percent"))
                                                          for lvl in v["levels"]] + [f.integer(v.get("n_missing"))]
                    for v in var["visits"]]
            table = Table(["Visit", "n"] + codes + ["Missing"], rows)
        out.append({"anchor": f"desc-{var['form']}-{var['field']}".replace("_", "-"),
                    "title": f"{title} [{var['form']}.{var['field']}]", "table": table})
    return out


# ------------------------------------------------------------------ sensitivity
def sensitivity_context(protocol: Protocol, results: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per missing-data sensitivity analysis of the plan (results['sensitivity'])."""
    return [_sensitivity_entry(protocol, key, s) for key, s in (results.get("sensitivity") or {}).items()]


def _sensitivity_entry(protocol: Protocol, key: str, s: dict[str, Any]) -> dict[str, Any]:
    paramcd = s.get("paramcd") or ""
    try:
        param = protocol.parameter(paramcd)
        what, unit = param.label, param.unit
    except KeyError:
        what, unit = paramcd, ""
    d = _decimals(protocol, paramcd)
    cc = s.get("complete_case") or {}
    rows = [["Observed cases (complete case)", f.integer(cc.get("n")), f.num(cc.get("mean"), d),
             f.num(cc.get("se"), 2), f.ci(cc.get("lower"), cc.get("upper"), d), f.num(cc.get("df"), 1), f.DASH,
             f.DASH]]
    mar = s.get("mar") or {}
    if mar:
        rows.append([f"Multiple imputation under MAR ({f.integer(mar.get('m'))} imputations)",
                     f.integer(mar.get("n_total")), f.num(mar.get("estimate"), d), f.num(mar.get("se"), 2),
                     f.ci(mar.get("lower"), mar.get("upper"), d), f.num(mar.get("df"), 1),
                     f.pvalue(mar.get("p_value")), f.num(mar.get("fmi"), 3)])
    tp = s.get("tipping_point") or {}
    if tp:
        grid = tp.get("grid") or []
        at = min(grid, key=lambda g: abs(g["delta"] - tp["tipping_delta"])) \
            if grid and tp.get("tipping_delta") is not None else {}
        if tp.get("found"):
            rows.append([f"Delta-adjusted MI at the tipping point (delta = {f.num(tp.get('tipping_delta'), 2)})",
                         f.integer(at.get("n_total")), f.num(tp.get("estimate_at_tipping"), d),
                         f.num(at.get("se"), 2), f.ci(at.get("lower"), at.get("upper"), d), f.num(at.get("df"), 1),
                         f.pvalue(tp.get("p_value_at_tipping")), f.num(at.get("fmi"), 3)])
    summary = Table(["Analysis", "n", "Mean change", "SE", "95% CI", "df", "p", "FMI"], rows,
                    caption=f"{what}: change from baseline ({unit}) at {s.get('visit', '')}.")
    grid_table = None
    if tp.get("grid"):
        seen: dict[float, dict[str, Any]] = {}
        for g in sorted(tp["grid"], key=lambda g: -g["delta"]):
            seen.setdefault(round(g["delta"], 1), g)
        grid_rows, classes = [], []
        for g in seen.values():
            is_tip = tp.get("tipping_delta") is not None and abs(g["delta"] - tp["tipping_delta"]) < 0.05
            grid_rows.append([f.num(g["delta"], 2), f.num(g.get("estimate"), d), f.ci(g.get("lower"), g.get("upper"), d),
                              f.pvalue(g.get("p_value"))])
            classes.append("highlight" if is_tip else "")
        grid_table = Table(["Delta", "Pooled mean change", "95% CI", "p"], grid_rows, row_classes=classes,
                           numeric_from=0,
                           caption="Delta grid (one row per delta rounded to 0.1; the search refines near the "
                                   "tipping point). Highlighted: tipping point.")
    if tp.get("found"):
        significance = "statistically significant" if tp.get("significant_under_mar") else \
            "not statistically significant"
        conclusion = (f"Under MAR the {s.get('visit', '')} {what} change is {significance}"
                      f" at alpha = {tp.get('alpha')}. Shifting every imputed value by delta = "
                      f"{f.num(tp.get('tipping_delta'), 2)} {unit} makes it reach the criterion "
                      f"\u201c{tp.get('criterion')}\u201d (pooled mean {f.num(tp.get('estimate_at_tipping'), d)}, "
                      f"p = {f.pvalue(tp.get('p_value_at_tipping'))}).")
    elif tp:
        conclusion = f"No tipping point was found within the delta range searched (criterion: {tp.get('criterion')})."
    else:
        conclusion = s.get("note") or "No tipping-point analysis in the results."
    return {
        "present": True,
        "key": key,
        "anchor": f"sens-{key.replace('_', '-')}",
        "title": s.get("label") or f"{what} at {s.get('visit', '')}",
        "what": what,
        "unit": unit,
        "visit": s.get("visit"),
        "n": f.integer(s.get("n")), "n_missing": f.integer(s.get("n_missing")),
        "imputations": f.integer(s.get("imputations")), "seed": f.text(s.get("seed")),
        "model": s.get("imputation_model") or f.DASH,
        "note": s.get("note"),
        "summary": summary, "grid": grid_table, "conclusion": conclusion,
    }


# ------------------------------------------------------------------ methods
def methods_context(protocol: Protocol, results: dict[str, Any], methods_notes: dict[str, str] | None) -> dict[str, Any]:
    """What the plan did, for the methods section: populations, windows, models, sensitivity settings."""
    plan = protocol.analysis_plan
    mmrm = results.get("mmrm") if isinstance(results.get("mmrm"), dict) else None
    planned_visits = {v for e in plan.endpoints for v in e.visits} | set(plan.supportive.visits if plan.supportive else [])
    windows = Table(["Visit", "Target day", "Window (days)"],
                    [[v.label, str(v.day), f"{v.window[0]} to {v.window[1]}"] for v in protocol.visits
                     if v.baseline or v.code in planned_visits or (not planned_visits and plan.descriptive)],
                    numeric_from=1)
    populations = [(p["label"], p["flag"], p["definition"] + ("" if p.get("flag_derived", True) else
                                                              f" (ADSL has no {p['flag']} flag: no subjects)"),
                    f.integer(p.get("n"))) for p in (results.get("plan") or {}).get("populations", [])]

    def labels(kind: str, **match: Any) -> list[str]:
        out = []
        for e in plan.endpoints:
            a = e.analysis(kind)
            if a is not None and all(getattr(a, k) == v for k, v in match.items()):
                try:
                    out.append(protocol.parameter(e.paramcd).label)
                except KeyError:
                    out.append(e.paramcd)
        return out

    sensitivity = []
    for key, sens in (results.get("sensitivity") or {}).items():
        sensitivity.append({"title": sens.get("label") or key, "visit": sens.get("visit"),
                            "imputations": f.integer(sens.get("imputations")), "seed": f.text(sens.get("seed")),
                            "model": sens.get("imputation_model")})
    notes = [(name, text) for name, text in (methods_notes or {}).items()]
    stated = {**f.PARAMETER_DECIMALS, **{e.paramcd: e.decimals for e in plan.endpoints if e.decimals is not None}}
    decimals = ", ".join(f"{code} {n}" for code, n in sorted(stated.items()))
    primary = results.get("primary") or {}
    return {
        "plan_title": (results.get("plan") or {}).get("title") or plan.title,
        "plan_source": (results.get("plan") or {}).get("source"),
        "populations": populations,
        "primary_label": primary.get("label"),
        "has_primary": bool(primary),
        "has_efficacy": bool(results.get("efficacy")),
        "log_scale": labels("mmrm", scale="log"),
        "gmr": labels("geometric_mean_ratio"),
        "ordinal": labels("shift_table"),
        "mmrm_model": (mmrm or {}).get("model"),
        "mmrm_method": (mmrm or {}).get("method"),
        "mmrm_df": (mmrm or {}).get("df"),
        "mmrm_covariance": (mmrm or {}).get("covariance"),
        "windows": windows,
        "day0": protocol.study.day0_definition,
        "sensitivity": sensitivity,
        "randomized": bool(results.get("between_arms")),
        "notes": notes,
        "decimals": decimals,
        "default_decimals": f.DEFAULT_DECIMALS,
    }


# ------------------------------------------------------------------ between arms (randomized versions)
def _shift_table(shift: dict[str, Any], label: str) -> Table:
    counts = shift.get("counts") or []
    rows = [[row] + [f.integer(c) for c in line] + [f.integer(sum(line))]
            for row, line in zip(shift.get("rows", []), counts)]
    col_totals = [sum(col) for col in zip(*counts)] if counts else []
    rows.append(["Total"] + [f.integer(c) for c in col_totals] + [f.integer(sum(col_totals))])
    return Table(["Baseline \\ " + label] + list(shift.get("columns", [])) + ["Total"], rows,
                 row_classes=[""] * (len(rows) - 1) + ["total"])


def between_arms_context(protocol: Protocol, results: dict[str, Any]) -> dict[str, Any] | None:
    """Tables of the between-arm analyses (results['between_arms'] and the MMRM differences);
    None for a single-arm analysis."""
    between = results.get("between_arms")
    if not isinstance(between, dict):
        return None
    arms = [a["code"] for a in between.get("arms", [])]
    arm_label = {a["code"]: f"{a['label']} ({a['code']})" for a in between.get("arms", [])}
    heads = [arm_label[a] for a in arms]
    allocation = between.get("allocation") or {}
    by_arm = allocation.get("by_arm") or {}
    strata = Table([f"Stratum ({allocation.get('stratum_column') or 'not derived'})"] + heads + ["Total"],
                   [[r["stratum"]] + [f.integer(r.get(a)) for a in arms] + [f.integer(r.get("total"))]
                    for r in allocation.get("by_stratum", [])]
                   + [["All strata"] + [f.integer(by_arm.get(a)) for a in arms] + [f.integer(allocation.get("total"))]],
                   caption="Subjects allocated (randomized and enrolled) by arm and randomization stratum.")
    flows = between.get("flow") or {}
    flow_rows: list[list[str]] = [["Allocated"] + [f.integer(flows.get(a, {}).get("allocated")) for a in arms],
                                  ["Received treatment"] + [f.integer(flows.get(a, {}).get("treated")) for a in arms],
                                  ["Did not receive treatment"] + [f.integer(flows.get(a, {}).get("not_treated"))
                                                                   for a in arms]]
    reasons = sorted({r for a in arms for r in (flows.get(a, {}).get("discontinued") or {})})
    flow_rows.append(["Discontinued the study"] + [f.integer(sum((flows.get(a, {}).get("discontinued") or {}).values()))
                                                   for a in arms])
    flow_rows += [[f"\u2003{protocol.decode('disposition', r)}"] + [f.integer((flows.get(a, {}).get("discontinued")
                                                                              or {}).get(r, 0)) for a in arms]
                  for r in reasons]
    flow_rows.append(["Completed the study"] + [f.integer(flows.get(a, {}).get("completed")) for a in arms])
    visits = list((flows.get(arms[0], {}) if arms else {}).get("assessed") or {})
    flow_rows += [[f"Assessed at {v}"] + [f.integer((flows.get(a, {}).get("assessed") or {}).get(v)) for a in arms]
                  for v in visits]
    for p in (results.get("plan") or {}).get("populations", []):
        flow_rows.append([f"Analysed: {p['label']}"] + [f.integer((flows.get(a, {}).get("populations") or {})
                                                                  .get(p["name"])) for a in arms])
    flow = Table(["Stage"] + heads, flow_rows, caption="CONSORT flow by arm.")

    baseline = None
    if between.get("baseline"):
        rows, classes = [], []
        per_arm = [between["baseline"].get(a) or [] for a in arms]
        for items in zip(*per_arm):
            first = items[0]
            if first.get("type") == "categorical":
                rows.append([first["variable"], "n"] + [f.integer(i.get("n")) for i in items])
                classes.append("group-start")
                for k, level in enumerate(first.get("levels", [])):
                    rows.append(["", level["level"]] + [f.n_pct(i["levels"][k].get("n"), i["levels"][k].get("percent"))
                                                        for i in items])
                    classes.append("")
            else:
                d = _decimals_for_label(protocol, first["variable"])
                label = first["variable"] + (f" ({first['unit']})" if first.get("unit") else "")
                rows += [[label, "n"] + [f.integer(i.get("n")) for i in items],
                         ["", "Mean (SD)"] + [f.mean_sd(i.get("mean"), i.get("sd"), d) for i in items],
                         ["", "Median (Q1, Q3)"] + [f.median_iqr(i.get("median"), i.get("q1"), i.get("q3"), d)
                                                   for i in items]]
                classes += ["group-start", "", ""]
        baseline = Table(["Characteristic", "Statistic"] + heads, rows, row_classes=classes, numeric_from=2,
                         caption="Baseline characteristics by arm. Categorical: n (%).")

    primary = None
    if between.get("primary"):
        bp = between["primary"]
        arm_rows = [[arm_label[a], f"{f.integer(v.get('n_events'))}/{f.integer(v.get('n_total'))}",
                     f.pct(v.get("percent")),
                     f.ci(None if v.get("lower") is None else 100 * v["lower"],
                          None if v.get("upper") is None else 100 * v["upper"], f.PERCENT_DECIMALS)]
                    for a, v in (bp.get("by_arm") or {}).items()]
        rd_rows = []
        for r in bp.get("risk_differences", []):
            pct = (lambda x: None if x is None else 100 * x)
            rd_rows.append([r.get("contrast") or f"{r.get('arm')} - {r.get('reference')}",
                            f.num(pct(r.get("estimate")), f.PERCENT_DECIMALS),
                            f.ci(pct(r.get("newcombe_lower")), pct(r.get("newcombe_upper")), f.PERCENT_DECIMALS),
                            f.ci(pct(r.get("exact_lower")), pct(r.get("exact_upper")), f.PERCENT_DECIMALS)])
        methods = bp.get("methods") or {}
        primary = {
            "by_arm": Table(["Arm", "n/N", "%", "95% CI (%), Clopper-Pearson"], arm_rows,
                            caption=f"{bp.get('label') or 'Primary endpoint'} by arm."),
            "risk_difference": Table(["Contrast", "Risk difference (percentage points)", "95% CI, Newcombe",
                                      "95% CI, exact unconditional"], rd_rows,
                                     notes=[f"Newcombe: {methods.get('newcombe', '')}.",
                                            f"Exact: {methods.get('exact', '')}."]),
        }

    diff_rows = []
    mmrm = results.get("mmrm") if isinstance(results.get("mmrm"), dict) else {}
    for paramcd, entry in (mmrm.get("results") or {}).items():
        if "error" in entry:
            diff_rows.append([entry.get("label") or paramcd, f.DASH, f"MMRM failed: {entry['error']}", f.DASH, f.DASH,
                              f.DASH])
            continue
        d = _decimals(protocol, paramcd)
        log = bool(entry.get("log_scale"))
        for e in entry.get("differences") or []:
            estimate = f.estimate_ci(e.get("ratio"), e.get("ratio_lower"), e.get("ratio_upper"), f.RATIO_DECIMALS) \
                if log else f.estimate_ci(e.get("estimate"), e.get("lower"), e.get("upper"), d)
            diff_rows.append([(entry.get("label") or paramcd) + (" (ratio)" if log else ""), e.get("visit") or "",
                              f"{e.get('contrast', '')}: {estimate}", f.num(e.get("std_error"), 2),
                              f.num(e.get("df"), 1), f.pvalue(e.get("p_value"))])
    differences = Table(["Endpoint", "Visit", "LS-mean difference (95% CI)", "SE", "df", "p"], diff_rows,
                        caption=f"MMRM treatment differences: {mmrm.get('model', '')}; {mmrm.get('method', '')}, "
                                f"{mmrm.get('df', '')} df, {mmrm.get('covariance', '')}.", numeric_from=3,
                        notes=[("Log-scale endpoints (ratio): ratio of geometric LS means (the back-transformed "
                               "difference of log LS means); their SE is on the log scale.")])

    change_rows = []
    per_arm = {a: {blk["paramcd"]: blk for blk in (between.get("efficacy") or {}).get(a, [])} for a in arms}
    for blk in (between.get("efficacy") or {}).get(arms[0] if arms else "", []):
        d = _decimals(protocol, blk["paramcd"])
        title = blk["label"] + (f" ({blk['unit']})" if blk.get("unit") not in (None, "", "class") else "")
        for k, v in enumerate(blk["visits"]):
            cells = []
            for a in arms:
                other = per_arm[a].get(blk["paramcd"], {}).get("visits", [])
                w = other[k] if k < len(other) else {}
                cells += [f.integer(w.get("n")), f.estimate_ci(w.get("mean_change"), w.get("lower"), w.get("upper"), d)]
            change_rows.append([title if k == 0 else "", v.get("label") or v.get("visit")] + cells)
    change = Table(["Endpoint", "Visit"] + [h for a in heads for h in (f"n, {a}", f"Mean change (95% CI), {a}")],
                   change_rows, numeric_from=2,
                   caption="Within-arm change from baseline, observed cases (paired analysis in each arm).")

    ordinal = []
    for paramcd, visits in (between.get("ordinal") or {}).items():
        try:
            title = protocol.parameter(paramcd).label
        except KeyError:
            title = paramcd
        for code, v in visits.items():
            tests = Table(["Contrast", "n (arm)", "n (reference)", "Mean change (arm)", "Mean change (reference)",
                           "Mann-Whitney U", "p", "Method"],
                          [[t.get("contrast", ""), f.integer(t.get("n_x")), f.integer(t.get("n_y")),
                            f.num(t.get("mean_change"), 2), f.num(t.get("mean_change_reference"), 2),
                            f.num(t.get("u_statistic"), 1), f.pvalue(t.get("p_value")), t.get("method") or f.DASH]
                           for t in v.get("tests", [])], numeric_from=1)
            ordinal.append({"anchor": f"arms-{paramcd.lower()}-{code.lower()}", "title": f"{title}, {v['label']}",
                            "shifts": [(arm_label.get(a, a), _shift_table(s.get("shift") or {}, v["label"]))
                                       for a, s in (v.get("shift_by_arm") or {}).items()],
                            "tests": tests})
    return {"arms": heads, "reference": arm_label.get(between.get("reference_arm"), ""), "strata": strata,
            "flow": flow, "baseline": baseline, "primary": primary, "differences": differences, "ordinal": ordinal,
            "change": change if change_rows else None,
            "ordinal_test": between.get("ordinal_test")}
