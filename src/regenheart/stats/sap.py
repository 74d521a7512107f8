"""Run a study's statistical analysis plan (``protocol.analysis_plan``) on its analysis datasets.

:func:`run_sap` returns one JSON-serializable dictionary holding every number the study report
shows (and ``results.json`` stores). The plan (:mod:`regenheart.protocol.sap`, the ``sap:`` section
of the protocol file) says what runs; nothing here names a study's parameters. Result keys:

- ``plan``: what the plan said (title, populations with their sizes, the MMRM model), for the report.
- ``flow``: CONSORT-style flow (screened, excluded with reasons, enrolled, treated, assessed at each
  follow-up visit of the plan's flow parameter, discontinued, analysed).
- ``baseline``: the plan's baseline variables in its baseline population.
- ``primary``: subjects with >= 1 primary-composite event, n/N (%) with the exact Clopper-Pearson CI.
- ``adverse_events``: by category, maximum CTCAE grade, seriousness and relatedness; deaths and SAEs.
- ``efficacy``: for each endpoint (and the supportive parameters) at each plan visit, observed
  cases: n, mean (SD), median (Q1, Q3) of value and change, 95% CI of the mean change, paired t
  and Wilcoxon signed-rank p; the geometric mean ratio where the plan asks for it.
- ``shift_tables``: ordinal endpoints, baseline x visit shift tables and the sign test of improvement.
- ``responders``: improvement by at least each of the plan's sourced thresholds, exact CI.
- ``proportions``: binary endpoints, n/N with exact CI per visit.
- ``mmrm``: the plan's MMRM per endpoint (LS means per visit; with several arms, per arm and the
  treatment differences).
- ``sensitivity``: per plan entry, MI under MAR, delta adjustment and tipping point (Rubin's rules).
- ``between_arms`` (randomized active protocol version only): see :mod:`regenheart.stats.between_arms`.
- ``descriptive``: the default plan's by-visit statistics of form fields (needs ``items``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from regenheart.derive.adam import SUPPORTIVE_PARAMETERS, AnalysisDatasets
from regenheart.protocol.models import Protocol
from regenheart.protocol.sap import BaselinePlan, EndpointPlan, MmrmModel, SapPlan, SensitivityPlan
from regenheart.stats import descriptive as ds
from regenheart.stats import missing

POSITIVE_RELATEDNESS = ("POSSIBLE", "PROBABLE", "DEFINITE")
DF_METHOD_TEXT = {"kenward-roger": "Kenward-Roger", "satterthwaite": "Satterthwaite", "residual": "Residual"}
COVARIANCE_TEXT = {"us": "unstructured", "cs": "compound symmetry", "csh": "heterogeneous compound symmetry",
                   "ar1": "AR(1)", "ar1h": "heterogeneous AR(1)", "toep": "Toeplitz", "toeph": "heterogeneous Toeplitz"}


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


def _plan(protocol: Protocol, plan: SapPlan | None) -> SapPlan:
    return plan if plan is not None else protocol.analysis_plan


def population_ids(plan: SapPlan, adsl: pd.DataFrame, name: str) -> set[str]:
    """SUBJIDs of the plan population ``name`` (ADSL flag = Y; empty if the flag is not derived)."""
    flag = plan.population(name).flag
    if flag not in adsl.columns:
        return set()
    return set(adsl.loc[adsl[flag] == "Y", "SUBJID"])


def _code_value(code: Any, numeric: bool) -> Any:
    """A code-list code as stored in the data: ADEFF values are floats, ADSL values as captured."""
    if not numeric:
        return code
    try:
        return float(code)
    except (TypeError, ValueError):
        return code


# ------------------------------------------------------------------ flow and baseline
def consort_flow(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan | None = None) -> dict[str, Any]:
    """Screened, excluded (reasons), enrolled, treated, assessed per visit, discontinued, analysed."""
    plan = _plan(protocol, plan)
    adsl, adeff = data.adsl, data.adeff
    criteria = {c.id: c.text for c in protocol.eligibility}
    failed = adsl[adsl["ELIGFL"] == "N"]
    reasons: dict[str, int] = {}
    for text in failed["IEFAIL"]:
        for code in [c.strip() for c in (text or "").split(",") if c.strip()]:
            key = code.split(" ")[0]
            label = f"{key}: {criteria.get(key, key)}" + (" (not assessed)" if "not assessed" in code else "")
            reasons[label] = reasons.get(label, 0) + 1
    treated_ids = population_ids(plan, adsl, plan.flow.population)
    treated = adsl[adsl["SUBJID"].isin(treated_ids)]
    assessed: dict[str, int] = {}
    endpoint = plan.endpoint(plan.flow.assessed_paramcd) if plan.flow.assessed_paramcd else None
    if endpoint is not None and not adeff.empty:
        rows = adeff[(adeff["PARAMCD"] == endpoint.paramcd) & (adeff["ANL01FL"] == "Y")
                     & adeff["SUBJID"].isin(treated_ids)]
        for visit in endpoint.visits:
            label = protocol.visit(visit).label
            assessed[label] = int((rows["AVISIT"] == label).sum())
    discontinued = treated[treated["EOSSTT"] == "DISCONTINUED"]
    efficacy = next((p for p in plan.populations if p.name == "efficacy"), None)
    return {
        "screened": len(adsl),
        "screen_failed": len(failed),
        "excluded_reasons": dict(sorted(reasons.items())),
        "eligible_not_enrolled": int(((adsl["ELIGFL"] == "Y") & (adsl["ENRLFL"] == "N")).sum()),
        "enrolled": int((adsl["ENRLFL"] == "Y").sum()),
        "infused": len(treated),
        "assessed_paramcd": endpoint.paramcd if endpoint is not None else None,
        "assessed": assessed,
        "discontinued": {str(k): int(v) for k, v in discontinued["DCSREAS"].value_counts().items()},
        "completed": int((treated["EOSSTT"] == "COMPLETED").sum()),
        "safety_population": len(treated),
        "efficacy_population": len(population_ids(plan, adsl, efficacy.name)) if efficacy else None,
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


def baseline_characteristics(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan | None = None,
                             subjects: set[str] | None = None) -> list[dict[str, Any]]:
    """The plan's baseline table (its population, optionally restricted to ``subjects``)."""
    plan = _plan(protocol, plan)
    spec: BaselinePlan | None = plan.baseline
    if spec is None:
        return []
    ids = population_ids(plan, data.adsl, spec.population)
    if subjects is not None:
        ids &= subjects
    adsl = data.adsl[data.adsl["SUBJID"].isin(ids)]
    base = data.adeff[(data.adeff["ABLFL"] == "Y") & data.adeff["SUBJID"].isin(ids)] if not data.adeff.empty \
        else pd.DataFrame(columns=["PARAMCD", "AVAL"])
    rows = []
    for var in spec.variables:
        if var.column is not None:
            values = adsl[var.column] if var.column in adsl else pd.Series([], dtype=object)
            label, unit = var.label or var.column, var.unit or ""
        else:
            param = protocol.parameter(var.paramcd or "")
            values = base[base["PARAMCD"] == var.paramcd]["AVAL"]
            label, unit = var.label or param.label, var.unit or param.unit
        if var.codelist is not None:
            order = [(_code_value(c.code, var.paramcd is not None), var.level_label.format(decode=c.decode))
                     for c in protocol.codelists[var.codelist]]
            rows.append(_categorical_rows(label, values, order))
        else:
            rows.append(_continuous_row(label, unit, values))
    return rows


# ------------------------------------------------------------------ safety
def primary_endpoint(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan | None = None,
                     subjects: set[str] | None = None) -> dict[str, Any]:
    """Subjects with at least one primary-composite event (ADPSE), exact Clopper-Pearson CI."""
    plan = _plan(protocol, plan)
    spec = plan.primary
    if spec is None or protocol.endpoints is None:
        raise ValueError("the plan has no primary endpoint analysis")
    ids = population_ids(plan, data.adsl, spec.population)
    if subjects is not None:
        ids &= subjects
    events = data.adpse[data.adpse["SUBJID"].isin(ids)]
    summary = ds.binomial_summary(int(events["SUBJID"].nunique()), len(ids))
    components = []
    for component, rows in events.groupby("PSECOMP"):
        components.append({"component": component, "subjects": int(rows["SUBJID"].nunique()),
                           "events": len(rows), "percent": _pct(int(rows["SUBJID"].nunique()), len(ids))})
    primary = protocol.endpoints.primary
    return {
        "code": primary.code,
        "label": primary.label,
        "definition": " ".join(primary.definition.split()),
        **summary.to_dict(nan_as_none=True),
        "components": components,
        "events": events.drop(columns=["USUBJID"]).rename(columns={"PSECOMP": "COMPONENT"}).to_dict("records"),
    }


def adverse_event_tables(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan | None = None) -> dict[str, Any]:
    """Treatment-emergent adverse events: overview, by category, by maximum grade, relatedness, listings."""
    plan = _plan(protocol, plan)
    safety = data.adsl[data.adsl["SUBJID"].isin(population_ids(plan, data.adsl, plan.adverse_events_population
                                                                or "safety"))]
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
    for code in [c.code for c in protocol.codelists.get("ae_category", [])]:
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
    for code in [c.code for c in protocol.codelists.get("relatedness", [])]:
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
    """Analysed records of ``paramcd`` at analysis visit ``label`` with both a baseline and a value."""
    if adeff.empty:
        return pd.DataFrame(columns=["SUBJID", "USUBJID", "BASE", "AVAL", "CHG"])
    return adeff[(adeff["PARAMCD"] == paramcd) & (adeff["ANL01FL"] == "Y") & (adeff["AVISIT"] == label)
                 & adeff["SUBJID"].isin(population) & adeff["BASE"].notna() & adeff["AVAL"].notna()]


def efficacy_tables(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan | None = None,
                    subjects: set[str] | None = None) -> list[dict[str, Any]]:
    """Paired change (and geometric mean ratio) of each plan endpoint, then the supportive parameters."""
    plan = _plan(protocol, plan)
    out = []
    for endpoint in plan.endpoints:
        if endpoint.analysis("paired_change") is None and endpoint.analysis("geometric_mean_ratio") is None:
            continue
        p = protocol.parameter(endpoint.paramcd)
        ids = population_ids(plan, data.adsl, endpoint.population)
        if subjects is not None:
            ids &= subjects
        block = _parameter_block(protocol, data.adeff, p.paramcd, p.label, p.unit, p.direction, endpoint.group,
                                 endpoint.visits, ids, log_scale=endpoint.analysis("geometric_mean_ratio") is not None)
        if endpoint.decimals is not None:
            block["decimals"] = endpoint.decimals
        out.append(block)
    if plan.supportive is not None:
        ids = population_ids(plan, data.adsl, plan.supportive.population)
        if subjects is not None:
            ids &= subjects
        gmr = any(a.type == "geometric_mean_ratio" for a in plan.supportive.analyses)
        for s in SUPPORTIVE_PARAMETERS:
            out.append(_parameter_block(protocol, data.adeff, s.paramcd, s.label, s.unit, s.direction, "supportive",
                                        plan.supportive.visits, ids, log_scale=gmr))
    return out


def _parameter_block(protocol: Protocol, adeff: pd.DataFrame, paramcd: str, label: str, unit: str,
                     direction: str, kind: str, visits: list[str], population: set[str],
                     log_scale: bool = False) -> dict[str, Any]:
    if not adeff.empty:  # the parameter's records once (each visit below selects from them)
        adeff = adeff[adeff["PARAMCD"] == paramcd]
    base = adeff[(adeff["ABLFL"] == "Y") & adeff["SUBJID"].isin(population)] \
        if not adeff.empty else pd.DataFrame(columns=["AVAL"])
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


def _shift_levels(protocol: Protocol, codelist: str, level_label: str) -> tuple[list[float], list[str]]:
    items = protocol.codelists[codelist]
    return [_code_value(c.code, True) for c in items], [level_label.format(decode=c.decode) for c in items]


def shift_tables(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan | None = None,
                 subjects: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Ordinal endpoints: baseline x visit shift table and the improvement test, per endpoint and visit."""
    plan = _plan(protocol, plan)
    out: dict[str, dict[str, Any]] = {}
    for endpoint in plan.endpoints:
        spec = endpoint.analysis("shift_table")
        if spec is None:
            continue
        population = population_ids(plan, data.adsl, endpoint.population)
        if subjects is not None:
            population &= subjects
        codes, labels = _shift_levels(protocol, spec.codelist, spec.level_label)
        visits = {}
        for visit in endpoint.visits:
            vlabel = protocol.visit(visit).label
            rows = _pairs(data.adeff, endpoint.paramcd, vlabel, population)
            table = ds.shift_table(rows["BASE"], rows["AVAL"], codes, include_missing=False)
            table.index = labels
            table.columns = labels
            change = ds.ordinal_change(rows["BASE"], rows["AVAL"], lower_is_better=spec.improvement == "lower")
            visits[visit] = {"label": vlabel, "shift": {"rows": labels, "columns": labels,
                                                        "counts": table.to_numpy().tolist()},
                             "change": change.to_dict(nan_as_none=True)}
        out[endpoint.paramcd] = visits
    return out


def responder_analyses(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan | None = None) -> list[dict[str, Any]]:
    """Subjects improving by at least each of the plan's thresholds (observed cases), exact CI.

    Improvement is in the parameter's better direction: ``change >= threshold`` when higher is
    better, ``change <= -threshold`` when lower is better (the responder convention of
    :mod:`regenheart.instruments.interpretation`).
    """
    plan = _plan(protocol, plan)
    out = []
    for endpoint in plan.endpoints:
        spec = endpoint.analysis("responder")
        if spec is None:
            continue
        sign = 1.0 if protocol.parameter(endpoint.paramcd).direction == "higher_better" else -1.0
        population = population_ids(plan, data.adsl, endpoint.population)
        for visit in endpoint.visits:
            label = protocol.visit(visit).label
            change = _pairs(data.adeff, endpoint.paramcd, label, population)["CHG"].to_numpy(float)
            for threshold in spec.thresholds:
                with np.errstate(invalid="ignore"):
                    hits = int((sign * change >= threshold.change).sum())
                summary = ds.binomial_summary(hits, len(change)) if len(change) else None
                out.append({"paramcd": endpoint.paramcd, "visit": visit, "label": label, "level": threshold.level,
                            "threshold": float(threshold.change), "source": " ".join(threshold.source.split()),
                            **(summary.to_dict(nan_as_none=True) if summary else {"n_events": 0, "n_total": 0})})
    return out


def proportion_analyses(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan | None = None) -> list[dict[str, Any]]:
    """Binary endpoints: subjects whose analysed value equals the plan's event value, per visit,
    n/N with the exact Clopper-Pearson CI (denominator: subjects with a value at the visit)."""
    plan = _plan(protocol, plan)
    out = []
    for endpoint in plan.endpoints:
        spec = endpoint.analysis("proportion")
        if spec is None:
            continue
        population = population_ids(plan, data.adsl, endpoint.population)
        event = _code_value(spec.event, True)
        for visit in endpoint.visits:
            label = protocol.visit(visit).label
            rows = data.adeff[(data.adeff["PARAMCD"] == endpoint.paramcd) & (data.adeff["ANL01FL"] == "Y")
                              & (data.adeff["AVISIT"] == label) & data.adeff["SUBJID"].isin(population)
                              & data.adeff["AVAL"].notna()]
            hits = int((rows["AVAL"] == event).sum())
            summary = ds.binomial_summary(hits, len(rows))
            out.append({"paramcd": endpoint.paramcd, "visit": visit, "label": label, "event": spec.event,
                        **summary.to_dict(nan_as_none=True)})
    return out


# ------------------------------------------------------------------ MMRM
def _arm_order(protocol: Protocol, plan: SapPlan) -> list[str]:
    """Arms of the active version, the plan's reference arm first (differences read 'arm - reference')."""
    arms = [a.code for a in protocol.active_version.arms]
    if plan.between_arms is not None and plan.between_arms.reference_arm in arms:
        ref = plan.between_arms.reference_arm
        return [ref] + [a for a in arms if a != ref]
    return arms


def is_randomized(protocol: Protocol, plan: SapPlan | None = None) -> bool:
    """True when the active protocol version is randomized and the plan has between-arm comparisons."""
    plan = _plan(protocol, plan)
    return protocol.active_version.design == "randomized" and plan.between_arms is not None


def mmrm_model(protocol: Protocol, plan: SapPlan | None = None) -> MmrmModel | None:
    """The MMRM the plan fits: the between-arm model for a randomized version, else ``plan.mmrm``."""
    plan = _plan(protocol, plan)
    if is_randomized(protocol, plan):
        return plan.between_arms.mmrm  # type: ignore[union-attr]
    return plan.mmrm


def mmrm_analyses(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan | None = None) -> dict[str, Any]:
    """The plan's MMRM for each endpoint that asks for one: LS mean change at each visit (95% CI).

    Single-arm version: ``plan.mmrm`` (e.g. change ~ baseline + visit + baseline:visit).
    Randomized version: ``plan.between_arms.mmrm`` (e.g. with arm, visit and arm:visit); LS means
    per arm and visit and the treatment differences (each arm minus the reference arm) at each visit.
    ``scale: log`` models log(value) - log(baseline) with log baseline as covariate.
    """
    from regenheart.stats.mmrm import fit_mmrm

    plan = _plan(protocol, plan)
    model = mmrm_model(protocol, plan)
    endpoints = [e for e in plan.endpoints if e.analysis("mmrm") is not None]
    if model is None or not endpoints:
        return {}
    randomized = is_randomized(protocol, plan)
    first_visits = [protocol.visit(v).label for v in endpoints[0].visits]
    out: dict[str, Any] = {"model": model.formula, "method": model.method, "df": DF_METHOD_TEXT[model.df],
                           "covariance": f"{COVARIANCE_TEXT[model.covariance]} over " + ", ".join(first_visits),
                           "results": {}}
    arms = _arm_order(protocol, plan)
    arm_column = plan.between_arms.arm_column if randomized else None  # type: ignore[union-attr]
    if randomized:
        out["arms"] = arms
    for endpoint in endpoints:
        p = protocol.parameter(endpoint.paramcd)
        log = endpoint.analysis("mmrm").scale == "log"
        out["results"][p.paramcd] = _fit_one(fit_mmrm, protocol, data, plan, endpoint, model, log, arm_column, arms)
    return out


def _fit_one(fit_mmrm: Any, protocol: Protocol, data: AnalysisDatasets, plan: SapPlan, endpoint: EndpointPlan,
             model: MmrmModel, log: bool, arm_column: str | None, arms: list[str]) -> dict[str, Any]:
    p = protocol.parameter(endpoint.paramcd)
    population = population_ids(plan, data.adsl, endpoint.population)
    labels = [protocol.visit(v).label for v in endpoint.visits]
    adeff = data.adeff
    rows = adeff[(adeff["PARAMCD"] == p.paramcd) & (adeff["ANL01FL"] == "Y") & adeff["AVISIT"].isin(labels)
                 & adeff["SUBJID"].isin(population) & adeff["BASE"].notna()].copy()
    if log:  # model the log ratio; report back-transformed ratios
        rows["CHG"] = np.log(rows["AVAL"]) - np.log(rows["BASE"])
        rows["BASE"] = np.log(rows["BASE"])
        rows["AVAL"] = np.log(rows["AVAL"])
    rows["AVISIT"] = pd.Categorical(rows["AVISIT"], categories=labels, ordered=True)
    columns = ["USUBJID", "AVISIT", model.response]
    subject_columns = [c for c in model.columns if c not in ("AVISIT", "BASE") and c not in rows.columns]
    if subject_columns:  # subject-level covariates (arm, stratum, ...) from ADSL
        missing_columns = [c for c in subject_columns if c not in data.adsl.columns]
        if missing_columns:
            return {"label": p.label, "error": f"ValueError: ADSL has no column {', '.join(missing_columns)} "
                                              f"named in the model {model.formula}"}
        rows = rows.join(data.adsl.set_index("SUBJID")[subject_columns], on="SUBJID")
    if arm_column is not None:
        rows[arm_column] = pd.Categorical(rows[arm_column], categories=arms)
    columns += [c for c in model.columns if c not in columns]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = fit_mmrm(rows[columns], model.formula, df=model.df, method=model.method.lower())
            lsm = fit.lsmeans([arm_column, "AVISIT"] if arm_column else "AVISIT")
            diffs = fit.pairwise(arm_column, by="AVISIT") if arm_column else None
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:  # reported in the results, never hidden
        return {"label": p.label, "error": f"{type(exc).__name__}: {exc}"}
    result = {"label": p.label, "unit": p.unit, "log_scale": log, "n_subjects": fit.n_subjects,
              "n_observations": fit.n_observations, "converged": bool(fit.converged),
              "lsmeans": [_lsmean_entry(r, log, arm_column) for _, r in lsm.iterrows()],
              "warnings": [str(w.message) for w in caught]}
    if diffs is not None:
        result["differences"] = [dict(_lsmean_entry(r, log, None), contrast=r["contrast"]) for _, r in diffs.iterrows()]
    return result


def _lsmean_entry(r: pd.Series, log_scale: bool, arm_column: str | None) -> dict[str, Any]:
    entry = {"visit": str(r["AVISIT"]), "estimate": r["estimate"], "std_error": r["std_error"], "df": r["df"],
             "lower": r["lower"], "upper": r["upper"], "p_value": r["p_value"]}
    if arm_column is not None:
        entry["arm"] = str(r[arm_column])
    if log_scale:
        entry.update({"ratio": _exp(r["estimate"]), "ratio_lower": _exp(r["lower"]), "ratio_upper": _exp(r["upper"])})
    return entry


def _exp(value: float) -> float:
    """exp() that gives inf (reported as not estimable) instead of overflowing, e.g. for the CI
    limit of a degenerate fit with almost no degrees of freedom."""
    return math.exp(value) if value < 709.0 else math.inf


# ------------------------------------------------------------------ sensitivity
def sensitivity_analysis(protocol: Protocol, data: AnalysisDatasets, spec: SensitivityPlan,
                         plan: SapPlan | None = None) -> dict[str, Any]:
    """Change at the plan's target visit: MI under MAR and delta-adjusted tipping point (Rubin's rules)."""
    plan = _plan(protocol, plan)
    population = pd.DataFrame({"SUBJID": sorted(population_ids(plan, data.adsl, spec.population),
                                                key=list(data.adsl["SUBJID"]).index)})
    target = protocol.visit(spec.visit).label
    rows = data.adeff[(data.adeff["PARAMCD"] == spec.paramcd) & (data.adeff["ANL01FL"] == "Y")]
    base = rows[rows["ABLFL"] == "Y"].set_index("SUBJID")["AVAL"].rename("BASE")
    change = rows[rows["AVISIT"] == target].set_index("SUBJID")["CHG"].rename("CHG")
    frame = population.join(base, on="SUBJID").join(change, on="SUBJID")
    frame = frame[frame["BASE"].notna()].reset_index(drop=True)
    n_missing = int(frame["CHG"].isna().sum())
    predictors = list(spec.predictors)
    result: dict[str, Any] = {"id": spec.id, "label": spec.label, "paramcd": spec.paramcd, "visit": target,
                              "n": len(frame), "n_missing": n_missing,
                              "imputations": spec.imputations, "seed": spec.seed,
                              "imputation_model": f"CHG ~ {' + '.join(predictors)} (Bayesian normal linear regression)"}
    complete = frame.dropna()
    result["complete_case"] = ds.mean_ci(complete["CHG"]).to_dict(nan_as_none=True)
    if n_missing == 0:
        result["note"] = f"no missing {spec.paramcd} values at {target}: multiple imputation not needed"
        return result
    try:
        table = missing.delta_adjusted_analysis(frame[["BASE", "CHG"]], "CHG", predictors, [0.0],
                                                spec.imputations, spec.seed)
        result["mar"] = table.iloc[0].to_dict()
        if spec.delta_adjustment and spec.tipping_point:
            tipping = missing.tipping_point(frame[["BASE", "CHG"]], "CHG", predictors, spec.imputations, spec.seed,
                                            alpha=spec.alpha)
            result["tipping_point"] = tipping.to_dict()
    except ValueError as exc:  # too few complete cases for the imputation model: say so, do not guess
        result["note"] = f"multiple imputation not estimable: {exc}"
    return result


# ------------------------------------------------------------------ all
