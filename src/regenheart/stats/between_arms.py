"""Between-arm analyses of a randomized protocol version, as the plan's ``between_arms`` says.

- ``arms``: each arm of the active version (reference arm first) with its population sizes.
- ``allocation``: subjects allocated to each arm, overall and by randomization stratum (ADSL
  ``stratum_column``, when derived).
- ``flow``: CONSORT flow per arm: allocated, treated, discontinued (reasons), completed, assessed
  at each follow-up visit of the flow parameter, analysed.
- ``baseline``: the plan's baseline table per arm.
- ``efficacy``: within-arm change from baseline of each endpoint per visit (n, mean, 95% CI, paired t p).
- ``primary``: the primary endpoint per arm and the risk difference (each arm minus the reference)
  with the Newcombe hybrid score CI (method 10) and/or the exact unconditional CI.
- ``ordinal``: per ordinal endpoint and visit, the shift table of each arm and the
  Wilcoxon-Mann-Whitney test of the change (each arm against the reference).

The MMRM treatment differences (LS-mean difference per visit) are in ``results['mmrm']`` (the
plan's between-arm model is the MMRM fitted for a randomized version).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from regenheart.derive.adam import AnalysisDatasets
from regenheart.protocol.models import Protocol
from regenheart.protocol.sap import SapPlan
from regenheart.stats import sap
from regenheart.stats.two_sample import mann_whitney, risk_difference


def _arm_subjects(data: AnalysisDatasets, column: str, arm: str) -> set[str]:
    if column not in data.adsl.columns:
        return set()
    return set(data.adsl.loc[data.adsl[column] == arm, "SUBJID"])


def allocation_table(data: AnalysisDatasets, arms: list[str], arm_column: str, stratum_column: str) -> dict[str, Any]:
    """Subjects allocated to each arm (ADSL arm set and enrolled), overall and by stratum."""
    adsl = data.adsl
    if arm_column not in adsl.columns:
        return {"by_arm": {a: 0 for a in arms}, "stratum_column": None, "by_stratum": [],
                "note": f"ADSL has no {arm_column} column"}
    allocated = adsl[adsl[arm_column].isin(arms) & (adsl.get("ENRLFL", "Y") == "Y")]
    out: dict[str, Any] = {"by_arm": {a: int((allocated[arm_column] == a).sum()) for a in arms},
                           "total": len(allocated), "stratum_column": None, "by_stratum": []}
    if stratum_column in adsl.columns:
        out["stratum_column"] = stratum_column
        strata = allocated[stratum_column].fillna("(not recorded)").astype(str)
        for stratum in sorted(strata.unique()):
            rows = allocated[strata == stratum]
            out["by_stratum"].append({"stratum": stratum, "total": len(rows),
                                      **{a: int((rows[arm_column] == a).sum()) for a in arms}})
    return out


def arm_flow(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan, ids: set[str]) -> dict[str, Any]:
    """The CONSORT boxes below allocation for the subjects ``ids`` of one arm."""
    adsl = data.adsl[data.adsl["SUBJID"].isin(ids)]
    treated_ids = sap.population_ids(plan, data.adsl, plan.flow.population) & ids
    treated = adsl[adsl["SUBJID"].isin(treated_ids)]
    assessed: dict[str, int] = {}
    endpoint = plan.endpoint(plan.flow.assessed_paramcd) if plan.flow.assessed_paramcd else None
    if endpoint is not None and not data.adeff.empty:
        adeff = data.adeff
        rows = adeff[(adeff["PARAMCD"] == endpoint.paramcd) & (adeff["ANL01FL"] == "Y")
                     & adeff["SUBJID"].isin(treated_ids)]
        for visit in endpoint.visits:
            label = protocol.visit(visit).label
            assessed[label] = int((rows["AVISIT"] == label).sum())
    discontinued = treated[treated["EOSSTT"] == "DISCONTINUED"]
    return {
        "allocated": len(adsl),
        "treated": len(treated),
        "not_treated": len(adsl) - len(treated),
        "discontinued": {str(k): int(v) for k, v in discontinued["DCSREAS"].value_counts().items()},
        "completed": int((treated["EOSSTT"] == "COMPLETED").sum()),
        "assessed": assessed,
        "populations": {p.name: len(sap.population_ids(plan, data.adsl, p.name) & ids) for p in plan.populations},
    }


def primary_by_arm(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan, arms: list[str],
                   subjects: dict[str, set[str]]) -> dict[str, Any]:
    """Primary endpoint per arm and the risk difference of each arm against the reference arm."""
    spec = plan.between_arms
    assert spec is not None
    by_arm = {}
    for arm in arms:
        entry = sap.primary_endpoint(protocol, data, plan, subjects=subjects[arm])
        by_arm[arm] = {k: entry[k] for k in ("n_events", "n_total", "proportion", "percent", "lower", "upper",
                                             "conf", "method")}
    reference = by_arm[arms[0]]
    differences = []
    for arm in arms[1:]:
        a = by_arm[arm]
        if a["n_total"] == 0 or reference["n_total"] == 0:
            differences.append({"arm": arm, "reference": arms[0], "note": "an arm has no subjects in the population"})
            continue
        rd = risk_difference(a["n_events"], a["n_total"], reference["n_events"], reference["n_total"],
                             methods=list(spec.risk_difference.methods))
        differences.append({"arm": arm, "reference": arms[0], "contrast": f"{arm} - {arms[0]}", **rd.to_dict()})
    return {"label": protocol.endpoints.primary.label if protocol.endpoints else None,
            "by_arm": by_arm, "risk_differences": differences,
            "methods": {"newcombe": "Newcombe hybrid score interval (Wilson, method 10; Newcombe 1998)",
                        "exact": "exact unconditional interval (Santner-Snell 1980)"}}


def ordinal_by_arm(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan, arms: list[str],
                   subjects: dict[str, set[str]]) -> dict[str, Any]:
    """Ordinal endpoints: shift tables per arm and the Mann-Whitney test of change against the reference."""
    per_arm = {arm: sap.shift_tables(protocol, data, plan, subjects=subjects[arm]) for arm in arms}
    out: dict[str, Any] = {}
    for endpoint in plan.endpoints:
        if endpoint.analysis("shift_table") is None:
            continue
        population = sap.population_ids(plan, data.adsl, endpoint.population)
        visits = {}
        for visit in endpoint.visits:
            label = protocol.visit(visit).label
            changes = {arm: sap._pairs(data.adeff, endpoint.paramcd, label, population & subjects[arm])["CHG"]
                       for arm in arms}
            tests = []
            for arm in arms[1:]:
                test = mann_whitney(changes[arm].to_numpy(float), changes[arms[0]].to_numpy(float))
                tests.append({"arm": arm, "reference": arms[0], "contrast": f"{arm} vs {arms[0]}",
                              "mean_change": _mean(changes[arm]), "mean_change_reference": _mean(changes[arms[0]]),
                              **test.to_dict()})
            visits[visit] = {"label": label, "shift_by_arm": {arm: per_arm[arm][endpoint.paramcd][visit]
                                                              for arm in arms},
                             "tests": tests}
        out[endpoint.paramcd] = visits
    return out


def change_by_arm(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan, ids: set[str]) -> list[dict[str, Any]]:
    """Within-arm change from baseline of each plan endpoint (observed cases): n, mean change with
    its 95% CI and the paired t p-value per visit (the full paired analysis restricted to one arm)."""
    keep = ("visit", "label", "n", "mean_change", "lower", "upper", "p_value_t")
    return [{"paramcd": b["paramcd"], "label": b["label"], "unit": b["unit"], "kind": b["kind"],
             "visits": [{k: v.get(k) for k in keep} for v in b["visits"]]}
            for b in sap.efficacy_tables(protocol, data, plan.model_copy(update={"supportive": None}), subjects=ids)]


def _mean(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None


def between_arm_analyses(protocol: Protocol, data: AnalysisDatasets, plan: SapPlan) -> dict[str, Any]:
    """Every between-arm analysis of the plan for the active (randomized) protocol version."""
    spec = plan.between_arms
    if spec is None:
        raise ValueError("the plan has no between-arm comparisons")
    arms = sap._arm_order(protocol, plan)
    labels = {a.code: a.label for a in protocol.active_version.arms}
    subjects = {arm: _arm_subjects(data, spec.arm_column, arm) for arm in arms}
    out: dict[str, Any] = {
        "arm_column": spec.arm_column,
        "reference_arm": arms[0],
        "arms": [{"code": arm, "label": labels[arm], "reference": i == 0} for i, arm in enumerate(arms)],
        "allocation": allocation_table(data, arms, spec.arm_column, spec.stratum_column),
        "flow": {arm: arm_flow(protocol, data, plan, subjects[arm]) for arm in arms},
    }
    if plan.baseline is not None:
        out["baseline"] = {arm: sap.baseline_characteristics(protocol, data, plan, subjects=subjects[arm])
                           for arm in arms}
    if plan.primary is not None and protocol.endpoints is not None:
        out["primary"] = primary_by_arm(protocol, data, plan, arms, subjects)
    if plan.endpoints:
        out["efficacy"] = {arm: change_by_arm(protocol, data, plan, subjects[arm]) for arm in arms}
    ordinal = ordinal_by_arm(protocol, data, plan, arms, subjects)
    if ordinal:
        out["ordinal"] = ordinal
        out["ordinal_test"] = ("Wilcoxon-Mann-Whitney test of the change from baseline, two-sided (exact without "
                               "ties and n < 50 per arm, else normal approximation with tie correction and "
                               "continuity correction, as R wilcox.test)")
    return out
