"""The registration record (``ProtocolRecordSchema.xsd``, namespace ``http://clinicaltrials.gov/prs``).

:func:`protocol_xml` writes a ``<study_collection>`` with one ``<clinical_study>`` from the protocol
file alone: identifiers, titles, acronym, sponsor and responsible party, oversight, summary and
description, status and dates, design (from the active protocol version: allocation, model, number
of arms), outcome measures as registered, enrolment, conditions, keywords, arms and interventions,
eligibility (criteria text from the protocol's criteria, ages and sex from the registry section),
officials and locations (the sites). The NCT number is assigned by PRS and has no element of its
own in the upload schema; it is stated in a comment of the record.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from regenheart.exchange.ctgov.results import CtgovError
from regenheart.protocol.models import Protocol

PRS_NS = "http://clinicaltrials.gov/prs"
STATUS = {"NOT_YET_RECRUITING": "Not yet recruiting", "RECRUITING": "Recruiting",
          "ENROLLING_BY_INVITATION": "Enrolling by invitation", "ACTIVE_NOT_RECRUITING": "Active, not recruiting",
          "SUSPENDED": "Suspended", "TERMINATED": "Terminated", "COMPLETED": "Completed", "WITHDRAWN": "Withdrawn"}
PHASES = {"EARLY_PHASE1": "Early Phase 1", "PHASE1": "Phase 1", "PHASE1/PHASE2": "Phase 1/Phase 2",
          "PHASE2": "Phase 2", "PHASE2/PHASE3": "Phase 2/Phase 3", "PHASE3": "Phase 3", "PHASE4": "Phase 4",
          "NA": "N/A"}
PURPOSE = {"TREATMENT": "Treatment", "PREVENTION": "Prevention", "DIAGNOSTIC": "Diagnostic",
           "SUPPORTIVE_CARE": "Supportive Care", "SCREENING": "Screening",
           "HEALTH_SERVICES_RESEARCH": "Health Services Research", "BASIC_SCIENCE": "Basic Science",
           "DEVICE_FEASIBILITY": "Device Feasibility", "OTHER": "Other"}
ARM_TYPES = {"EXPERIMENTAL": "Experimental", "ACTIVE_COMPARATOR": "Active Comparator",
             "PLACEBO_COMPARATOR": "Placebo Comparator", "SHAM_COMPARATOR": "Sham Comparator",
             "NO_INTERVENTION": "No Intervention", "OTHER": "Other"}
INTERVENTION_TYPES = {"DRUG": "Drug", "DEVICE": "Device", "BIOLOGICAL": "Biological/Vaccine",
                      "PROCEDURE": "Procedure/Surgery", "RADIATION": "Radiation", "BEHAVIORAL": "Behavioral",
                      "GENETIC": "Genetic", "DIETARY_SUPPLEMENT": "Dietary Supplement",
                      "COMBINATION_PRODUCT": "Combination Product", "DIAGNOSTIC_TEST": "Diagnostic Test",
                      "OTHER": "Other"}
RESP_PARTY = {"SPONSOR": "Sponsor", "PRINCIPAL_INVESTIGATOR": "Principal Investigator",
              "SPONSOR_INVESTIGATOR": "Sponsor-Investigator"}
OUTCOME_TAGS = {"PRIMARY": "primary_outcome", "SECONDARY": "secondary_outcome", "OTHER_PRE_SPECIFIED": "other_outcome"}
ROLES = {"PRINCIPAL_INVESTIGATOR": "Principal Investigator", "STUDY_CHAIR": "Study Chair",
         "STUDY_DIRECTOR": "Study Director"}


def _sub(parent: etree._Element, tag: str, text: object = None) -> etree._Element:
    element = etree.SubElement(parent, tag)
    if text is not None:
        element.text = str(text)
    return element


def _block(parent: etree._Element, tag: str, text: str | None) -> None:
    if text:
        _sub(_sub(parent, tag), "textblock", text)


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else ("Yes" if value else "No")


def _one_line(text: str | None) -> str | None:
    return None if text is None else " ".join(text.split())


def criteria_text(protocol: Protocol) -> str:
    """The eligibility criteria as PRS lays them out (inclusion then exclusion, one bullet each)."""
    parts = []
    for kind, title in (("inclusion", "Inclusion Criteria"), ("exclusion", "Exclusion Criteria")):
        items = [c.text for c in protocol.eligibility if c.kind == kind]
        if items:
            parts.append(f"{title}:\n\n" + "\n".join(f"* {t}" for t in items))
    return "\n\n".join(parts) or "No eligibility criteria stated."


def protocol_xml(protocol: Protocol) -> etree._ElementTree:
    """The registration record of ``protocol`` (valid against ProtocolRecordSchema.xsd)."""
    registry, study = protocol.registry, protocol.study
    if registry is None:
        raise CtgovError("the protocol has no 'registry' section: status, dates, enrolment and the outcome "
                         "measures as registered are needed for the registration record")
    if not study.org_study_id or not study.sponsor:
        raise CtgovError("study.org_study_id and study.sponsor are needed for the registration record")
    version = protocol.active_version
    root = etree.Element(f"{{{PRS_NS}}}study_collection", nsmap={"prs": PRS_NS})
    cs = _sub(root, "clinical_study")
    if study.nct_id:
        cs.append(etree.Comment(f" ClinicalTrials.gov identifier: {study.nct_id} "))
    ids = _sub(cs, "id_info")
    _sub(ids, "org_name", registry.org_name)
    _sub(ids, "org_study_id", study.org_study_id)
    _sub(cs, "brief_title", _one_line(study.brief_title))
    _sub(cs, "acronym", study.acronym)
    if study.official_title:
        _sub(cs, "official_title", _one_line(study.official_title))
    sponsors = _sub(cs, "sponsors")
    _sub(_sub(sponsors, "lead_sponsor"), "agency", study.sponsor)
    rp = _sub(sponsors, "resp_party")
    _sub(rp, "resp_party_type", RESP_PARTY[registry.responsible_party.type])
    for tag, value in (("investigator_title", registry.responsible_party.investigator_title),
                       ("investigator_affiliation", registry.responsible_party.investigator_affiliation)):
        if value:
            _sub(rp, tag, value)
    oversight = _sub(cs, "oversight_info")
    for tag, value in (("has_dmc", registry.oversight.has_dmc), ("fda_regulated_drug", registry.oversight.fda_regulated_drug),
                       ("fda_regulated_device", registry.oversight.fda_regulated_device),
                       ("exported_from_us", registry.oversight.us_export)):
        if value is not None:
            _sub(oversight, tag, _yes_no(value))
    _block(cs, "brief_summary", _one_line(registry.brief_summary))
    _block(cs, "detailed_description", registry.detailed_description)
    _sub(cs, "overall_status", STATUS[registry.overall_status])
    if registry.why_stopped:
        _sub(cs, "why_stopped", registry.why_stopped)
    _sub(cs, "verification_date", registry.status_verified)
    _sub(cs, "start_date", registry.start.date)
    _sub(cs, "start_date_type", registry.start.type.title())
    _sub(cs, "last_follow_up_date", registry.completion.date)
    _sub(cs, "last_follow_up_date_type", "Actual" if registry.completion.type == "ACTUAL" else "Anticipated")
    _sub(cs, "primary_compl_date", registry.primary_completion.date)
    _sub(cs, "primary_compl_date_type", "Actual" if registry.primary_completion.type == "ACTUAL" else "Anticipated")
    design = _sub(cs, "study_design")
    _sub(design, "study_type", "Interventional")
    inter = _sub(design, "interventional_design")
    _sub(inter, "interventional_subtype", PURPOSE[registry.primary_purpose])
    phase = (study.phase or "NA").upper().replace(" ", "")
    if phase not in PHASES:
        raise CtgovError(f"study.phase: '{study.phase}' is not a registry phase ({', '.join(PHASES)})")
    _sub(inter, "phase", PHASES[phase])
    randomized = version.design == "randomized"
    _sub(inter, "assignment", "Parallel Assignment" if len(version.arms) > 1 else "Single Group Assignment")
    _block(inter, "model_description", _one_line(version.summary))
    _sub(inter, "allocation", "Randomized" if randomized else ("Non-Randomized" if len(version.arms) > 1 else "N/A"))
    _sub(inter, "no_masking", "Yes" if registry.masking == "NONE" else "No")
    _sub(inter, "number_of_arms", len(version.arms))
    visible = {"PRIMARY", "SECONDARY", "OTHER_PRE_SPECIFIED"}
    for kind in ("PRIMARY", "SECONDARY", "OTHER_PRE_SPECIFIED"):
        for outcome in (o for o in registry.outcomes if o.type == kind and o.type in visible):
            element = _sub(cs, OUTCOME_TAGS[kind])
            _sub(element, "outcome_measure", outcome.title)
            _sub(element, "outcome_time_frame", outcome.time_frame)
            _block(element, "outcome_description", _one_line(outcome.description))
    _sub(cs, "enrollment", registry.enrollment)
    _sub(cs, "enrollment_type", "Actual" if registry.enrollment_type == "ACTUAL" else "Anticipated")
    for condition in study.conditions:
        _sub(cs, "condition", condition)
    for keyword in registry.keywords:
        _sub(cs, "keyword", keyword)
    for arm in version.arms:
        element = _sub(cs, "arm_group")
        _sub(element, "arm_group_label", arm.label)
        _sub(element, "arm_type", ARM_TYPES[registry.arm_type(arm.code, arm.receives_cells)])
        _block(element, "arm_group_description", _one_line(arm.description))
    labels = {a.code: a.label for a in version.arms}
    for intervention in registry.interventions:
        arms = [labels[a] for a in intervention.arms if a in labels]
        if not arms:  # an intervention of arms the active version does not have
            continue
        element = _sub(cs, "intervention")
        _sub(element, "intervention_type", INTERVENTION_TYPES[intervention.type])
        _sub(element, "intervention_name", intervention.name)
        _block(element, "intervention_description", _one_line(intervention.description))
        for label in arms:
            _sub(element, "arm_group_label", label)
        for name in intervention.other_names:
            _sub(element, "intervention_other_name", name)
    elig = _sub(cs, "eligibility")
    _block(elig, "criteria", criteria_text(protocol))
    _sub(elig, "healthy_volunteers", _yes_no(registry.eligibility.healthy_volunteers))
    _sub(elig, "gender", registry.eligibility.sex.title())
    _sub(elig, "minimum_age", registry.eligibility.minimum_age)
    _sub(elig, "maximum_age", registry.eligibility.maximum_age)
    for official in registry.officials:
        element = _sub(cs, "overall_official")
        _sub(element, "last_name", official.name)
        _sub(element, "role", ROLES[official.role])
        if official.affiliation:
            _sub(element, "affiliation", official.affiliation)
    for site in study.sites:
        location = _sub(cs, "location")
        facility = _sub(location, "facility")
        _sub(facility, "name", site.name)
        address = _sub(facility, "address")
        if site.city:
            _sub(address, "city", site.city)
        if site.country_name:
            _sub(address, "country", site.country_name)
        if registry.overall_status == "COMPLETED":
            _sub(location, "status", "Completed")
    return etree.ElementTree(root)


def write_protocol_xml(protocol: Protocol, path: Path) -> Path:
    """Write the registration record atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(etree.tostring(protocol_xml(protocol), xml_declaration=True, encoding="UTF-8", pretty_print=True))
    tmp.replace(path)
    return path
