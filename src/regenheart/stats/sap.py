"""The statistical analysis plan of RegenHeart, run on the analysis datasets.

:func:`run_sap` returns one JSON-serializable dictionary holding every number the study report
shows (and ``results.json`` stores). Analyses:

- Populations and CONSORT-style flow (screened, excluded with reasons, enrolled, infused, assessed
  at each follow-up visit, analysed).
- Baseline characteristics of the safety population.
- Primary endpoint: subjects with >= 1 primary-safety-composite event in days 0-5, n/N (%) with the
  exact Clopper-Pearson 95% CI; the components.
- Adverse events by category, maximum CTCAE grade, seriousness and relatedness; deaths and SAEs.
- Each secondary/exploratory endpoint at each follow-up visit (efficacy population, observed cases):
  n, mean (SD), median (Q1, Q3) of value and change, 95% CI of the mean change, paired t-test and
  Wilcoxon signed-rank p; NT-proBNP also as a geometric mean ratio; NYHA as shift tables with the
  sign test of improvement; continuous endpoints also by MMRM (change ~ baseline + visit +
  baseline:visit, unstructured covariance over the follow-up visits, REML, Kenward-Roger df).
- Missing-data sensitivity for the month-6 LVEF change: multiple imputation under MAR and a
  delta-adjusted tipping-point analysis, combined by Rubin's rules.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from regenheart.derive.adam import SUPPORTIVE_PARAMETERS, AnalysisDatasets
from regenheart.protocol.models import Protocol
from regenheart.stats import descriptive as ds
from regenheart.stats import missing

POSITIVE_RELATEDNESS = ("POSSIBLE", "PROBABLE", "DEFINITE")
MI_IMPUTATIONS = 50
MI_SEED = 20200301


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: NaN/inf -> None, numpy scalars -> Python, dates -> ISO text."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _pct(n: int, total: int) -> float | None:
    return None if total == 0 else 100.0 * n / total


# ------------------------------------------------------------------ flow and baseline
def consort_flow(protocol: Protocol, data: AnalysisDatasets) -> dict[str, Any]:
    adsl, adeff = data.adsl, data.adeff
    criteria = {c.id: c.text for c in protocol.eligibility}
    failed = adsl[adsl["ELIGFL"] == "N"]
    reasons: dict[str, int] = {}
    for text in failed["IEFAIL"]:
        for code in [c.strip() for c in text.split(",") if c.strip()]:
            key = code.split(" ")[0]
            label = f"{key}: {criteria.get(key, key)}" + (" (not assessed)" if "not assessed" in code else "")
            reasons[label] = reasons.get(label, 0) + 1
    safety = adsl[adsl["SAFFL"] == "Y"]
    lvef = adeff[(adeff["PARAMCD"] == "LVEF") & (adeff["ANL01FL"] == "Y") & adeff["SUBJID"].isin(safety["SUBJID"])]
    assessed = {}
    for visit in protocol.endpoints.secondary.visits:
        label = protocol.visit(visit).label
        assessed[label] = int((lvef["AVISIT"] == label).sum())
    discontinued = safety[safety["EOSSTT"] == "DISCONTINUED"]
    return {
        "screened": len(adsl),
        "screen_failed": len(failed),
        "excluded_reasons": dict(sorted(reasons.items())),
        "eligible_not_enrolled": int(((adsl["ELIGFL"] == "Y") & (adsl["ENRLFL"] == "N")).sum()),
        "enrolled": int((adsl["ENRLFL"] == "Y").sum()),
        "infused": len(safety),
        "assessed_lvef": assessed,
        "discontinued": {str(k): int(v) for k, v in discontinued["DCSREAS"].value_counts().items()},
        "completed": int((safety["EOSSTT"] == "COMPLETED").sum()),
        "safety_population": len(safety),
        "efficacy_population": int((adsl["EFFFL"] == "Y").sum()),
    }


def _continuous_row(label: str, unit: str, values: pd.Series) -> dict[str, Any]:
    s = ds.summarize(pd.to_numeric(values, errors="coerce"))
    return {"variable": label, "unit": unit, "type": "continuous", **s.to_dict(nan_as_none=True)}


def _categorical_rows(label: str, values: pd.Series, order: list[tuple[Any, str]]) -> dict[str, Any]:
    present = values.dropna()
    total = len(present)
    levels = [{"level": text, "n": int((present == code).sum()), "percent": _pct(int((present == code).sum()), total)}
              for code, text in order]
    return {"variable": label, "type": "categorical", "n": total, "levels": levels}


def baseline_characteristics(protocol: Protocol, data: AnalysisDatasets) -> list[dict[str, Any]]:
    adsl = data.adsl[data.adsl["SAFFL"] == "Y"]
    base = data.adeff[(data.adeff["ABLFL"] == "Y") & data.adeff["SUBJID"].isin(adsl["SUBJID"])]
    rows = [
        _continuous_row("Age", "years", adsl["AGE"]),
        _categorical_rows("Sex", adsl["SEX"], [("M", "Male"), ("F", "Female")]),
        _continuous_row("Body-mass index", "kg/m2", adsl["BMIBL"]),
        _categorical_rows("Heart-failure etiology", adsl["HFETIOL"],
                          [(c.code, c.decode) for c in protocol.codelists["hf_etiology"]]),
        _categorical_rows("ICD implanted", adsl["ICDFL"], [("Y", "Yes"), ("N", "No")]),
    ]
    nyha = base[base["PARAMCD"] == "NYHA"]["AVAL"]
    rows.append(_categorical_rows("NYHA class", nyha, [(float(c.code), f"Class {c.decode}")
                                                       for c in protocol.codelists["nyha"]]))
    for paramcd in ("LVEF", "LVEDV", "LVESV", "LVEDD", "LVESD", "NTPROBNP", "SIXMWD", "KCCQOS", "KCCQCS",
                    "SF12PCS", "SF12MCS", "MLHFQTOT", "CTIVS", "CTLVPW"):
        p = protocol.parameter(paramcd)
        rows.append(_continuous_row(p.label, p.unit, base[base["PARAMCD"] == paramcd]["AVAL"]))
    return rows


# ------------------------------------------------------------------ safety
def primary_endpoint(protocol: Protocol, data: AnalysisDatasets) -> dict[str, Any]:
    safety = data.adsl[data.adsl["SAFFL"] == "Y"]
    events = data.adpse
    subjects = sorted(set(events["SUBJID"]))
    summary = ds.binomial_summary(len(subjects), len(safety))
    components = []
    for component, rows in events.groupby("PSECOMP"):
        components.append({"component": component, "subjects": int(rows["SUBJID"].nunique()),
                           "events": len(rows), "percent": _pct(int(rows["SUBJID"].nunique()), len(safety))})
    return {
        "code": protocol.endpoints.primary.code,
        "label": protocol.endpoints.primary.label,
        "definition": " ".join(protocol.endpoints.primary.definition.split()),
        **summary.to_dict(nan_as_none=True),
        "components": components,
        "events": events.drop(columns=["USUBJID"]).rename(columns={"PSECOMP": "COMPONENT"}).to_dict("records"),
    }


def adverse_event_tables(protocol: Protocol, data: AnalysisDatasets) -> dict[str, Any]:
    safety = data.adsl[data.adsl["SAFFL"] == "Y"]
    n = len(safety)
    ae = data.adae[(data.adae["TRTEMFL"] == "Y") & data.adae["SUBJID"].isin(safety["SUBJID"])]

    def subjects(mask: pd.Series) -> dict[str, Any]:
        k = int(ae.loc[mask, "SUBJID"].nunique())
        return {"subjects": k, "percent": _pct(k, n), "events": int(mask.sum())}

    overview = {
        "Any adverse event": subjects(pd.Series(True, index=ae.index)),
        "Any event with onset on days 0-5": subjects(ae["PERIFL"] == "Y"),
        "Any serious adverse event": subjects(ae["AESER"] == "Y"),
        "Any CTCAE grade >= 3 event": subjects(ae["AETOXGR"] >= 3),
        "Any event related to the cell product": subjects(ae["AREL"].isin(POSITIVE_RELATEDNESS)),
        "Any event related to the procedure": subjects(ae["ARELPR"].isin(POSITIVE_RELATEDNESS)),
        "Fatal adverse event": subjects(ae["AEOUT"] == "FATAL"),
    }
    by_category = []
    for code in [c.code for c in protocol.codelists["ae_category"]]:
        rows = ae[ae["AECAT"] == code]
        if rows.empty:
            continue
        k = int(rows["SUBJID"].nunique())
        by_category.append({
            "category": protocol.decode("ae_category", code), "subjects": k, "percent": _pct(k, n),
            "events": len(rows), "peri_subjects": int(rows.loc[rows["PERIFL"] == "Y", "SUBJID"].nunique()),
            "serious": int((rows["AESER"] == "Y").sum()),
            "related_product": int(rows["AREL"].isin(POSITIVE_RELATEDNESS).sum()),
            "related_procedure": int(rows["ARELPR"].isin(POSITIVE_RELATEDNESS).sum()),
        })
    max_grade = ae.groupby("SUBJID")["AETOXGR"].max()
    by_grade = [{"grade": g, "subjects": int((max_grade == g).sum()), "percent": _pct(int((max_grade == g).sum()), n)}
                for g in range(1, 6)]
    relatedness = []
    for code in [c.code for c in protocol.codelists["relatedness"]]:
        relatedness.append({"relatedness": protocol.decode("relatedness", code),
                            "product_events": int((ae["AREL"] == code).sum()),
                            "procedure_events": int((ae["ARELPR"] == code).sum())})
    serious = ae[(ae["AESER"] == "Y") | (ae["AEOUT"] == "FATAL")]
    listing = serious[["SUBJID", "AESEQ", "AETERM", "AECATDC", "ASTDT", "PDAY", "AETOXGR", "SAECRIT", "AREL",
                       "ARELPR", "AEOUT"]].to_dict("records")
    deaths = data.adsl[data.adsl["DTHFL"] == "Y"][["SUBJID", "DTHDT", "DCSREASP"]].to_dict("records")
    return {"n_safety": n, "overview": overview, "by_category": by_category, "by_max_grade": by_grade,
            "relatedness": relatedness, "serious_listing": listing, "deaths": deaths}


# ------------------------------------------------------------------ efficacy
def _pairs(adeff: pd.DataFrame, paramcd: str, label: str, population: set[str]) -> pd.DataFrame:
    rows = adeff[(adeff["PARAMCD"] == paramcd) & (adeff["ANL01FL"] == "Y") & (adeff["AVISIT"] == label)
                 & adeff["SUBJID"].isin(population) & adeff["BASE"].notna() & adeff["AVAL"].notna()]
    return rows


def efficacy_tables(protocol: Protocol, data: AnalysisDatasets) -> list[dict[str, Any]]:
    population = set(data.adsl.loc[data.adsl["EFFFL"] == "Y", "SUBJID"])
    out = []
    groups = [("secondary", protocol.endpoints.secondary), ("exploratory", protocol.endpoints.exploratory)]
    params: list[tuple[str, Any, list[str]]] = [(kind, p, g.visits) for kind, g in groups for p in g.parameters]
    supportive = [(s.paramcd, s.label, s.unit, s.direction) for s in SUPPORTIVE_PARAMETERS]
    for kind, p, visits in params:
        out.append(_parameter_block(protocol, data.adeff, p.paramcd, p.label, p.unit, p.direction, kind, visits,
                                    population, log_scale=p.log_scale))
    for paramcd, label, unit, direction in supportive:
        out.append(_parameter_block(protocol, data.adeff, paramcd, label, unit, direction, "supportive",
                                    protocol.endpoints.secondary.visits, population))
    return out


def _parameter_block(protocol: Protocol, adeff: pd.DataFrame, paramcd: str, label: str, unit: str,
                     direction: str, kind: str, visits: list[str], population: set[str],
                     log_scale: bool = False) -> dict[str, Any]:
    base = adeff[(adeff["PARAMCD"] == paramcd) & (adeff["ABLFL"] == "Y") & adeff["SUBJID"].isin(population)]
    block: dict[str, Any] = {"paramcd": paramcd, "label": label, "unit": unit, "direction": direction, "kind": kind,
                             "baseline": ds.summarize(base["AVAL"]).to_dict(nan_as_none=True), "visits": []}
    for visit in visits:
        vlabel = protocol.visit(visit).label
        rows = _pairs(adeff, paramcd, vlabel, population)
        paired = ds.paired_change(rows["BASE"].to_numpy(float), rows["AVAL"].to_numpy(float))
        entry = {"visit": visit, "label": vlabel, "n": int(paired.n),
                 **{k: v for k, v in paired.to_dict(nan_as_none=True).items() if k != "n"}}
        if log_scale and len(rows) >= 2:
            entry["gmr"] = ds.geometric_mean_ratio(rows["BASE"].to_numpy(float),
                                                   rows["AVAL"].to_numpy(float)).to_dict(nan_as_none=True)
        block["visits"].append(entry)
    return block


def nyha_analysis(protocol: Protocol, data: AnalysisDatasets) -> dict[str, Any]:
    population = set(data.adsl.loc[data.adsl["EFFFL"] == "Y", "SUBJID"])
    labels = [f"Class {c.decode}" for c in protocol.codelists["nyha"]]
    codes = [float(c.code) for c in protocol.codelists["nyha"]]
    out = {}
    for visit in protocol.endpoints.secondary.visits:
        vlabel = protocol.visit(visit).label
        rows = _pairs(data.adeff, "NYHA", vlabel, population)
        table = ds.shift_table(rows["BASE"], rows["AVAL"], codes, include_missing=False)
        table.index = labels
        table.columns = labels
        change = ds.ordinal_change(rows["BASE"], rows["AVAL"], lower_is_better=True)
        out[visit] = {"label": vlabel, "shift": {"rows": labels, "columns": labels,
                                                 "counts": table.to_numpy().tolist()},
                      "change": change.to_dict(nan_as_none=True)}
    return out


# Responder definitions: analysis parameter -> (instrument, score) with sourced thresholds.
RESPONDER_PARAMETERS = {"KCCQOS": ("kccq", "overall_summary"), "KCCQCS": ("kccq", "clinical_summary")}


def responder_analyses(protocol: Protocol, data: AnalysisDatasets) -> list[dict[str, Any]]:
    """Patients improving by at least the published clinically important difference (observed cases).

    Thresholds come from :mod:`regenheart.instruments.interpretation` (KCCQ: 5 / 10 / 20 points =
    small / moderate / large), each proportion with its exact Clopper-Pearson 95% CI.
    """
    from regenheart.instruments import interpretation

    population = set(data.adsl.loc[data.adsl["EFFFL"] == "Y", "SUBJID"])
    out = []
    for paramcd, (instrument, score) in RESPONDER_PARAMETERS.items():
        table = interpretation.thresholds(instrument, score)
        for visit in protocol.endpoints.secondary.visits:
            label = protocol.visit(visit).label
            change = _pairs(data.adeff, paramcd, label, population)["CHG"].to_numpy(float)
            for level, definition in table.items():
                hits = int(interpretation.responder(instrument, score, change, level=level).sum())
                summary = ds.binomial_summary(hits, len(change)) if len(change) else None
                out.append({"paramcd": paramcd, "visit": visit, "label": label, "level": level,
                            "threshold": definition.threshold, "source": definition.source,
                            **(summary.to_dict(nan_as_none=True) if summary else {"n_events": 0, "n_total": 0})})
    return out


# ------------------------------------------------------------------ MMRM
MMRM_MODEL = "CHG ~ BASE + AVISIT + BASE:AVISIT + us(AVISIT | USUBJID)"
MMRM_MODEL_RANDOMIZED = "CHG ~ BASE + ARMCD*AVISIT + BASE:AVISIT + us(AVISIT | USUBJID)"


def mmrm_analyses(protocol: Protocol, data: AnalysisDatasets) -> dict[str, Any]:
    """MMRM for each continuous secondary endpoint: LS mean change at each visit (95% CI).

    Single-arm protocol: change ~ baseline + visit + baseline:visit. Randomized protocol
    (several arms, e.g. protocol version 1.0): the same model with arm, visit and arm:visit, and
    the treatment difference (cell arm minus control arm) at each visit.
    Unstructured covariance over the follow-up visits, REML, Kenward-Roger df.
    """
    from regenheart.stats.mmrm import fit_mmrm

    population = set(data.adsl.loc[data.adsl["EFFFL"] == "Y", "SUBJID"])
    visits = protocol.endpoints.secondary.visits
    labels = [protocol.visit(v).label for v in visits]
    # The control arm (no cells) is the reference level, so differences read 'cells - control'.
    arms = [a.code for a in sorted(protocol.active_version.arms, key=lambda a: a.receives_cells)]
    randomized = len(arms) > 1
    model = MMRM_MODEL_RANDOMIZED if randomized else MMRM_MODEL
    out: dict[str, Any] = {"model": model, "method": "REML", "df": "Kenward-Roger",
                           "covariance": "unstructured over " + ", ".join(labels), "results": {}}
    if randomized:
        out["arms"] = arms
        arm_of = data.adsl.set_index("SUBJID")["ARMCD"]
    for p in protocol.endpoints.secondary.parameters:
        if p.ordinal:
            continue
        rows = data.adeff[(data.adeff["PARAMCD"] == p.paramcd) & (data.adeff["ANL01FL"] == "Y")
                          & data.adeff["AVISIT"].isin(labels) & data.adeff["SUBJID"].isin(population)
                          & data.adeff["BASE"].notna()].copy()
        if p.log_scale:  # model the log ratio; report back-transformed ratios
            rows["CHG"] = np.log(rows["AVAL"]) - np.log(rows["BASE"])
            rows["BASE"] = np.log(rows["BASE"])
        rows["AVISIT"] = pd.Categorical(rows["AVISIT"], categories=labels, ordered=True)
        columns = ["USUBJID", "AVISIT", "BASE", "CHG"]
        if randomized:
            rows["ARMCD"] = pd.Categorical(rows["SUBJID"].map(arm_of), categories=arms)
            columns.append("ARMCD")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fit = fit_mmrm(rows[columns], model, df="kenward-roger")
                lsm = fit.lsmeans(["ARMCD", "AVISIT"] if randomized else "AVISIT")
                diffs = fit.pairwise("ARMCD", by="AVISIT") if randomized else None
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:  # reported in the results, never hidden
            out["results"][p.paramcd] = {"label": p.label, "error": f"{type(exc).__name__}: {exc}"}
            continue
        result = {"label": p.label, "unit": p.unit, "log_scale": p.log_scale, "n_subjects": fit.n_subjects,
                  "n_observations": fit.n_observations, "converged": bool(fit.converged),
                  "lsmeans": [_lsmean_entry(r, p.log_scale, randomized) for _, r in lsm.iterrows()],
                  "warnings": [str(w.message) for w in caught]}
        if diffs is not None:
            result["differences"] = [dict(_lsmean_entry(r, p.log_scale, False), contrast=r["contrast"])
                                     for _, r in diffs.iterrows()]
        out["results"][p.paramcd] = result
    return out


def _lsmean_entry(r: pd.Series, log_scale: bool, with_arm: bool) -> dict[str, Any]:
    entry = {"visit": str(r["AVISIT"]), "estimate": r["estimate"], "std_error": r["std_error"], "df": r["df"],
             "lower": r["lower"], "upper": r["upper"], "p_value": r["p_value"]}
    if with_arm:
        entry["arm"] = str(r["ARMCD"])
    if log_scale:
        entry.update({"ratio": math.exp(r["estimate"]), "ratio_lower": math.exp(r["lower"]),
                      "ratio_upper": math.exp(r["upper"])})
    return entry


# ------------------------------------------------------------------ sensitivity
def lvef_sensitivity(protocol: Protocol, data: AnalysisDatasets) -> dict[str, Any]:
    """Month-6 LVEF change: MI under MAR and delta-adjusted tipping point (Rubin's rules)."""
    population = data.adsl[data.adsl["EFFFL"] == "Y"][["SUBJID"]]
    m6 = protocol.visit(protocol.endpoints.secondary.visits[-1]).label
    lvef = data.adeff[(data.adeff["PARAMCD"] == "LVEF") & (data.adeff["ANL01FL"] == "Y")]
    base = lvef[lvef["ABLFL"] == "Y"].set_index("SUBJID")["AVAL"].rename("BASE")
    change = lvef[lvef["AVISIT"] == m6].set_index("SUBJID")["CHG"].rename("CHG")
    frame = population.join(base, on="SUBJID").join(change, on="SUBJID")
    frame = frame[frame["BASE"].notna()].reset_index(drop=True)
    n_missing = int(frame["CHG"].isna().sum())
    result: dict[str, Any] = {"visit": m6, "n": len(frame), "n_missing": n_missing,
                              "imputations": MI_IMPUTATIONS, "seed": MI_SEED,
                              "imputation_model": "CHG ~ BASE (Bayesian normal linear regression)"}
    complete = frame.dropna()
    result["complete_case"] = ds.mean_ci(complete["CHG"]).to_dict(nan_as_none=True)
    if n_missing == 0:
        result["note"] = "no missing month-6 LVEF values: multiple imputation not needed"
        return result
    try:
        table = missing.delta_adjusted_analysis(frame[["BASE", "CHG"]], "CHG", ["BASE"], [0.0], MI_IMPUTATIONS,
                                                MI_SEED)
        result["mar"] = table.iloc[0].to_dict()
        tipping = missing.tipping_point(frame[["BASE", "CHG"]], "CHG", ["BASE"], MI_IMPUTATIONS, MI_SEED)
        result["tipping_point"] = tipping.to_dict()
    except ValueError as exc:  # too few complete cases for the imputation model: say so, do not guess
        result["note"] = f"multiple imputation not estimable: {exc}"
    return result


# ------------------------------------------------------------------ all
def run_sap(protocol: Protocol, data: AnalysisDatasets, *, with_mmrm: bool = True) -> dict[str, Any]:
    """Every analysis of the SAP; a JSON-serializable dictionary."""
    results: dict[str, Any] = {
        "flow": consort_flow(protocol, data),
        "baseline": baseline_characteristics(protocol, data),
        "primary": primary_endpoint(protocol, data),
        "adverse_events": adverse_event_tables(protocol, data),
        "efficacy": efficacy_tables(protocol, data),
        "nyha": nyha_analysis(protocol, data),
        "responders": responder_analyses(protocol, data),
        "sensitivity_lvef_m6": lvef_sensitivity(protocol, data),
    }
    if with_mmrm:
        results["mmrm"] = mmrm_analyses(protocol, data)
    return _clean(results)
