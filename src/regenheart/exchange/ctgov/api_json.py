"""The results record in the ClinicalTrials.gov API v2 ``resultsSection`` structure (``ctgov_results.json``).

The machine-readable twin of the PRS upload XML: the same :class:`ResultsRecord`, laid out as
ClinicalTrials.gov publishes posted results (``participantFlowModule``, ``baselineCharacteristicsModule``,
``outcomeMeasuresModule``, ``adverseEventsModule``, ``moreInfoModule``; field names and enumerations of
the API v2 model, ``ctg-oas-v2.yaml``). Group ids use the module prefixes FG/BG/OG/EG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from regenheart.exchange.ctgov.results import TOTAL, Measure, ResultsRecord


def _ids(record: ResultsRecord, prefix: str, total: bool = False) -> dict[str, str]:
    keys = record.group_keys + ([TOTAL] if total else [])
    return {key: f"{prefix}{i:03d}" for i, key in enumerate(keys)}


def _groups(record: ResultsRecord, ids: dict[str, str]) -> list[dict[str, Any]]:
    out = [{"id": ids[g.key], "title": g.title, "description": g.description} for g in record.groups]
    if TOTAL in ids:
        out.append({"id": ids[TOTAL], "title": "Total", "description": "Total of all reporting groups"})
    return out


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _measure(measure: Measure, ids: dict[str, str]) -> dict[str, Any]:
    classes = []
    for cls in measure.classes:
        entry: dict[str, Any] = {}
        if cls.title is not None:
            entry["title"] = cls.title
        if cls.analyzed is not None:
            entry["denoms"] = [{"units": "Participants", "counts": [
                {"groupId": ids[k], "value": str(n)} for k, n in cls.analyzed.items() if k in ids]}]
        entry["categories"] = [_clean({"title": cat.title, "measurements": [_clean({
            "groupId": ids[k], "value": v.value, "spread": v.spread, "lowerLimit": v.lower, "upperLimit": v.upper,
            "comment": v.na_comment}) for k, v in cat.values.items() if k in ids]}) for cat in cls.categories]
        classes.append(entry)
    return _clean({
        "title": measure.title, "description": measure.description, "populationDescription": measure.population,
        "paramType": measure.param_type, "dispersionType": measure.dispersion if measure.dispersion != "NA" else None,
        "unitOfMeasure": measure.unit,
        "denoms": [{"units": "Participants", "counts": [{"groupId": ids[k], "value": str(n)}
                                                        for k, n in measure.analyzed.items() if k in ids]}],
        "classes": classes,
    })


def results_section(record: ResultsRecord) -> dict[str, Any]:
    """The API v2 ``resultsSection`` of ``record``."""
    fg = _ids(record, "FG")
    periods = []
    for period in record.flow.periods:
        milestones = [{"type": m.title if m.kind != "NOT_COMPLETED" else "NOT COMPLETED", "achievements": [
            {"groupId": fg[k], "numSubjects": str(m.counts.get(k, 0))} for k in record.group_keys]}
            for m in period.milestones]
        drops = [_clean({"type": r.other_name if r.reason_type == "Other" and r.other_name else r.reason_type,
                         "reasons": [{"groupId": fg[k], "numSubjects": str(r.counts.get(k, 0))}
                                     for k in record.group_keys]}) for r in period.drop_reasons]
        periods.append({"title": period.title, "milestones": milestones, "dropWithdraws": drops})
    bg = _ids(record, "BG", total=TOTAL in record.baseline_participants)
    baseline = _clean({
        "populationDescription": record.baseline_population, "groups": _groups(record, bg),
        "denoms": [{"units": "Participants", "counts": [{"groupId": bg[k], "value": str(n)}
                                                        for k, n in record.baseline_participants.items()]}],
        "measures": [_measure(m, bg) for m in record.baseline],
    })
    outcomes = []
    for measure in record.outcomes:
        og = _ids(record, "OG")
        entry = _measure(measure, og)
        entry.update(_clean({"type": measure.outcome_type, "timeFrame": measure.time_frame,
                             "reportingStatus": "POSTED", "groups": _groups(record, og)}))
        entry["analyses"] = [_clean({
            "groupIds": [og[k] for k in a.group_keys], "groupDescription": a.group_description,
            "paramType": a.other_param_name if a.param_type == "Other" and a.other_param_name else a.param_type,
            "paramValue": a.param_value, "ciPctValue": a.ci_pct, "ciNumSides": a.ci_sides,
            "ciLowerLimit": a.ci_lower, "ciUpperLimit": a.ci_upper, "pValue": a.p_value,
            "statisticalMethod": a.method, "statisticalComment": a.method_comment, "nonInferiorityType": a.test_type,
            "estimateComment": a.estimate_comment}) for a in measure.analyses]
        outcomes.append(entry)
    ae = record.adverse_events
    eg = _ids(record, "EG")

    def events(items: list) -> list[dict[str, Any]]:
        return [_clean({"term": e.term, "organSystem": e.organ_system, "sourceVocabulary": ae.source_vocabulary,
                        "assessmentType": ae.assessment_type, "stats": [
                            {"groupId": eg[k], "numEvents": s.events, "numAffected": s.affected, "numAtRisk": s.at_risk}
                            for k, s in e.stats.items()]}) for e in items]

    adverse = _clean({
        "frequencyThreshold": f"{ae.threshold_pct:g}", "timeFrame": ae.time_frame, "description": ae.description,
        "allCauseMortalityComment": ae.mortality_comment,
        "eventGroups": [{"id": eg[g.key], "title": g.title, "description": g.description,
                         "deathsNumAffected": ae.groups[g.key].deaths, "deathsNumAtRisk": ae.groups[g.key].deaths_at_risk,
                         "seriousNumAffected": ae.groups[g.key].serious_affected,
                         "seriousNumAtRisk": ae.groups[g.key].serious_at_risk,
                         "otherNumAffected": ae.groups[g.key].other_affected,
                         "otherNumAtRisk": ae.groups[g.key].other_at_risk} for g in record.groups],
        "seriousEvents": events(ae.serious), "otherEvents": events(ae.other),
    })
    poc = record.point_of_contact
    more = _clean({
        "limitationsAndCaveats": None if record.limitations is None else {"description": record.limitations},
        "certainAgreement": _clean({"piSponsorEmployee": record.pi_sponsor_employee,
                                    "restrictionType": record.restriction_type,
                                    "restrictiveAgreement": record.restrictive_agreement,
                                    "otherDetails": record.agreement_details}),
        "pointOfContact": None if poc is None else _clean({"title": poc.name, "organization": poc.organization,
                                                           "email": poc.email, "phone": poc.phone,
                                                           "phoneExt": poc.phone_ext}),
    })
    return {
        "participantFlowModule": _clean({"recruitmentDetails": record.flow.recruitment_details,
                                         "preAssignmentDetails": record.flow.pre_assignment_details,
                                         "groups": _groups(record, fg), "periods": periods}),
        "baselineCharacteristicsModule": baseline,
        "outcomeMeasuresModule": {"outcomeMeasures": outcomes},
        "adverseEventsModule": adverse,
        "moreInfoModule": more,
    }


def results_document(record: ResultsRecord) -> dict[str, Any]:
    """``{"nctId", "note", "resultsSection"}``: what ``ctgov_results.json`` holds."""
    note = "Built by regenheart from the SAP results and the analysis datasets; twin of the PRS upload XML."
    if record.mark:
        note = f"{record.mark} {note}"
    return {"nctId": record.nct_id, "synthetic": record.synthetic, "draft": record.draft, "note": note,
            "resultsSection": results_section(record)}


def write_results_json(record: ResultsRecord, path: Path) -> Path:
    """Write ``ctgov_results.json`` (UTF-8, indented)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results_document(record), indent=1, ensure_ascii=False), encoding="utf-8")
    return path
