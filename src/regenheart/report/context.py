"""The report's view model: the SAP results, snapshot and protocol turned into display rows.

Every number shown in the report is read here from ``results`` (the dictionary of
:func:`regenheart.stats.sap.run_sap`, stored as ``results.json``), from the snapshot or from the
protocol, and formatted with :mod:`regenheart.report.formatting`. Nothing is recomputed: the
template only lays out the strings built here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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

SUPPORTIVE_GROUPS: list[tuple[str, str, tuple[str, ...]]] = [
    ("kccq-domains", "KCCQ domains", ("KCCQPL", "KCCQSS", "KCCQSF", "KCCQSB", "KCCQTS", "KCCQSE", "KCCQQL",
                                      "KCCQSL")),
    ("mlhfq-dimensions", "MLHFQ dimensions", ("MLHFQPHY", "MLHFQEMO")),
    ("sixmwd-predicted", "Six-minute walk distance, % predicted", ("SIXMWDPP",)),
    ("echo-derived", ("Echo-derived LV geometry (LV mass, LV mass index, relative wall thickness, "
                      "fractional shortening)"), ("LVMASS", "LVMI", "RWT", "LVFS")),
    ("renal", "Renal function (eGFR)", ("EGFR",)),
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
        ("ClinicalTrials.gov identifier", s.nct_id),
        ("Acronym", s.acronym),
        ("Sponsor protocol number", s.org_study_id),
        ("Brief title", " ".join(s.brief_title.split())),
        ("Official title", " ".join(s.official_title.split())),
        ("Sponsor", s.sponsor),
        ("Phase", s.phase),
        ("Study type", s.study_type),
        ("Design (active protocol)", f"{DESIGN_TEXT.get(active.design, active.design)}; {active.allocation}"),
        ("Masking", s.masking),
        ("Planned enrolment (active protocol)", str(active.planned_enrollment)),
        ("Conditions", "; ".join(s.conditions)),
        ("Intervention", " ".join(s.intervention.split())),
        ("Day 0", s.day0_definition),
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
    assessed = [(label, f.integer(n)) for label, n in (flow.get("assessed_lvef") or {}).items()]
    return {
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
def _decimals_for_label(protocol: Protocol, label: str) -> int:
    for p in protocol.all_parameters:
        if p.label == label:
            return f.decimals_for(p.paramcd)
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
    d = f.decimals_for(paramcd)
    log_scale = any("gmr" in v for v in block["visits"])
    status, mmrm = _mmrm_lookup(results, paramcd)
    show_mmrm = block.get("kind") == "secondary" and paramcd != "NYHA" or status in ("ok", "error")
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
        notes.append("GMR: geometric mean ratio, follow-up / baseline (paired t on log values); "
                     "the MMRM models the log ratio and is back-transformed.")
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
        "title": block["label"] if block["unit"] in ("class", "") else f"{block['label']} ({block['unit']})",
        "direction": "higher is better" if block.get("direction") == "higher_better" else "lower is better",
        "table": Table(columns, rows, notes=notes),
        "mmrm_note": mmrm_note,
        "mmrm_error": mmrm_error,
        "mmrm_alert": mmrm_alert,
    }


def nyha_context(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for code, entry in (results.get("nyha") or {}).items():
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
            notes=[(f"Improved = at least one class lower than baseline. Sign test: exact two-sided binomial test on "
                    f"the {f.integer(ch.get('sign_test_n'))} subjects whose class changed. Improved CI: "
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
    """KCCQ responder analyses (improvement >= a published threshold), one table per parameter."""
    by_param: dict[str, list[dict[str, Any]]] = {}
    for r in results.get("responders") or []:
        by_param.setdefault(r["paramcd"], []).append(r)
    labels = {b["paramcd"]: b["label"] for b in results.get("efficacy") or []}
    out = []
    for paramcd, rows in by_param.items():
        sources: list[str] = []
        body = []
        for r in rows:
            if r.get("source") and r["source"] not in sources:
                sources.append(r["source"])
            lower = None if r.get("lower") is None else 100 * r["lower"]
            upper = None if r.get("upper") is None else 100 * r["upper"]
            body.append([r.get("label") or r.get("visit"), (f"{str(r.get('level', '')).capitalize()} "
                         f"(\u2265 {f.num(r.get('threshold'), 0)} points)"),
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
    supportive_blocks = {b["paramcd"]: b for b in blocks if b.get("kind") == "supportive"}
    supportive = []
    used: set[str] = set()
    for anchor, title, codes in SUPPORTIVE_GROUPS:
        members = [efficacy_block(protocol, results, supportive_blocks[c]) for c in codes if c in supportive_blocks]
        used.update(c for c in codes if c in supportive_blocks)
        if members:
            supportive.append({"anchor": anchor, "title": title, "blocks": members})
    rest = [efficacy_block(protocol, results, b) for code, b in supportive_blocks.items() if code not in used]
    if rest:
        supportive.append({"anchor": "other-supportive", "title": "Other supportive parameters", "blocks": rest})
    efficacy_n = f.integer((results.get("flow") or {}).get("efficacy_population"))
    mmrm = results.get("mmrm")
    return {"secondary": secondary, "exploratory": exploratory, "supportive": supportive,
            "nyha": nyha_context(results), "responders": responders_context(protocol, results),
            "efficacy_n": efficacy_n,
            "mmrm_absent": not isinstance(mmrm, dict)}


# ------------------------------------------------------------------ sensitivity
def sensitivity_context(results: dict[str, Any]) -> dict[str, Any]:
    s = results.get("sensitivity_lvef_m6")
    if not s:
        return {"present": False}
    d = f.decimals_for("LVEF")
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
                    caption=f"Month-6 LVEF change from baseline (%), efficacy population. {s.get('visit', '')}.")
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
        conclusion = (f"Under MAR the month-6 LVEF change is {'statistically significant' if tp.get('significant_under_mar') else 'not statistically significant'}"
                      f" at alpha = {tp.get('alpha')}. Shifting every imputed value by delta = "
                      f"{f.num(tp.get('tipping_delta'), 2)} percentage points makes it reach the criterion "
                      f"\u201c{tp.get('criterion')}\u201d (pooled mean {f.num(tp.get('estimate_at_tipping'), d)}, "
                      f"p = {f.pvalue(tp.get('p_value_at_tipping'))}).")
    elif tp:
        conclusion = f"No tipping point was found within the delta range searched (criterion: {tp.get('criterion')})."
    else:
        conclusion = s.get("note") or "No tipping-point analysis in the results."
    return {
        "present": True,
        "visit": s.get("visit"),
        "n": f.integer(s.get("n")), "n_missing": f.integer(s.get("n_missing")),
        "imputations": f.integer(s.get("imputations")), "seed": f.text(s.get("seed")),
        "model": s.get("imputation_model") or f.DASH,
        "note": s.get("note"),
        "summary": summary, "grid": grid_table, "conclusion": conclusion,
    }


# ------------------------------------------------------------------ methods
def methods_context(protocol: Protocol, results: dict[str, Any], methods_notes: dict[str, str] | None) -> dict[str, Any]:
    mmrm = results.get("mmrm") if isinstance(results.get("mmrm"), dict) else None
    windows = Table(["Visit", "Target day", "Window (days)"],
                    [[v.label, str(v.day), f"{v.window[0]} to {v.window[1]}"] for v in protocol.visits
                     if v.baseline or v.code in protocol.endpoints.secondary.visits
                     or v.code in protocol.endpoints.exploratory.visits],
                    numeric_from=1)
    sens = results.get("sensitivity_lvef_m6") or {}
    notes = [(name, text) for name, text in (methods_notes or {}).items()]
    decimals = ", ".join(f"{code} {n}" for code, n in sorted(f.PARAMETER_DECIMALS.items()))
    return {
        "mmrm_model": (mmrm or {}).get("model"),
        "mmrm_method": (mmrm or {}).get("method"),
        "mmrm_df": (mmrm or {}).get("df"),
        "mmrm_covariance": (mmrm or {}).get("covariance"),
        "windows": windows,
        "day0": protocol.study.day0_definition,
        "mi_imputations": f.integer(sens.get("imputations")) if sens else f.DASH,
        "mi_seed": f.text(sens.get("seed")) if sens else f.DASH,
        "mi_model": sens.get("imputation_model") if sens else None,
        "notes": notes,
        "decimals": decimals,
        "default_decimals": f.DEFAULT_DECIMALS,
    }
