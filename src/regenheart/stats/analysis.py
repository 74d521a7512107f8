"""Run a study's statistical analysis plan: every analysis the plan names, in one JSON-safe dictionary.

The analyses themselves live in :mod:`regenheart.stats.sap` (single-arm and pooled analyses),
:mod:`regenheart.stats.between_arms` (randomized comparisons) and :mod:`regenheart.stats.by_visit`
(descriptive statistics by visit); this module only decides, from the plan, which of them run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from regenheart.derive.adam import AnalysisDatasets
from regenheart.protocol.models import Protocol
from regenheart.protocol.sap import SapPlan
from regenheart.stats import between_arms as between
from regenheart.stats import by_visit
from regenheart.stats.sap import (
    _clean,
    _plan,
    adverse_event_tables,
    baseline_characteristics,
    consort_flow,
    efficacy_tables,
    is_randomized,
    mmrm_analyses,
    population_ids,
    primary_endpoint,
    proportion_analyses,
    responder_analyses,
    sensitivity_analysis,
    shift_tables,
)


def run_sap(protocol: Protocol, data: AnalysisDatasets, *, with_mmrm: bool = True,
            items: pd.DataFrame | None = None, plan: SapPlan | None = None,
            efficacy_ready: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every analysis of the plan (``protocol.analysis_plan`` unless ``plan`` is given); a
    JSON-serializable dictionary. ``items`` (the snapshot's long item table) feeds the plan's
    descriptive by-visit statistics. ``efficacy_ready`` is called, before the other analyses, with the
    results' ``flow`` and ``efficacy`` entries as they will be returned: a caller can draw the efficacy
    figures meanwhile."""
    plan = _plan(protocol, plan)
    results: dict[str, Any] = {"plan": plan_summary(protocol, plan, data)}
    results["flow"] = consort_flow(protocol, data, plan)
    # Computed first (for efficacy_ready); stored below in its place among the results.
    efficacy = efficacy_tables(protocol, data, plan) if plan.endpoints or plan.supportive is not None else None
    if efficacy_ready is not None:
        efficacy_ready(_clean({"flow": results["flow"], "efficacy": efficacy or []}))
    if plan.baseline is not None:
        results["baseline"] = baseline_characteristics(protocol, data, plan)
    if plan.primary is not None and protocol.endpoints is not None:
        results["primary"] = primary_endpoint(protocol, data, plan)
    if plan.adverse_events_population is not None and protocol.adverse_events is not None:
        results["adverse_events"] = adverse_event_tables(protocol, data, plan)
    if efficacy is not None:
        results["efficacy"] = efficacy
        results["shift_tables"] = shift_tables(protocol, data, plan)
        results["responders"] = responder_analyses(protocol, data, plan)
        proportions = proportion_analyses(protocol, data, plan)
        if proportions:
            results["proportions"] = proportions
    if plan.sensitivity:
        results["sensitivity"] = {s.id: sensitivity_analysis(protocol, data, s, plan) for s in plan.sensitivity}
    if with_mmrm:
        mmrm = mmrm_analyses(protocol, data, plan)
        if mmrm:
            results["mmrm"] = mmrm
    if is_randomized(protocol, plan):
        results["between_arms"] = between.between_arm_analyses(protocol, data, plan)
    if plan.descriptive is not None and items is not None:
        results["descriptive"] = by_visit.descriptive_by_visit(protocol, plan, data.adsl, items)
    return _clean(results)


def plan_summary(protocol: Protocol, plan: SapPlan, data: AnalysisDatasets) -> dict[str, Any]:
    """What the plan said, for the report's methods: title, populations (with sizes), headline endpoint."""
    return {
        "title": plan.title,
        "source": "protocol" if protocol.sap is not None else "default",
        "design": protocol.active_version.design,
        "randomized": is_randomized(protocol, plan),
        "headline": plan.headline,
        "populations": [{"name": p.name, "label": p.label, "flag": p.flag, "definition": " ".join(p.definition.split()),
                         "n": len(population_ids(plan, data.adsl, p.name)), "flag_derived": p.flag in data.adsl.columns}
                        for p in plan.populations],
    }
