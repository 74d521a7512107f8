"""Trial design domains from the protocol: TE, TA (elements per arm), TV (visits and windows), TI (criteria)
and TS (trial summary parameters with CDISC codes where CT applies)."""

from __future__ import annotations

import pandas as pd

from regenheart.derive.datasets import Dataset
from regenheart.derive.sdtm.common import CT_VERSION, SDTM_VERSION, SDTMIG_VERSION, Context, build_dataset
from regenheart.derive.sdtm.special import FOLLOWUP_ELEMENT, SCREENING_ELEMENT, arm_element

# CDISC CT (2025-03-28) codes of the TS values this module derives from protocol concepts.
_PHASE = {"PHASE1": ("PHASE I TRIAL", "C15600"), "PHASE2": ("PHASE II TRIAL", "C15601"),
          "PHASE1/PHASE2": ("PHASE I/II TRIAL", "C15693"), "PHASE2/PHASE3": ("PHASE II/III TRIAL", "C15694"),
          "PHASE3": ("PHASE III TRIAL", "C15602"), "PHASE4": ("PHASE IV TRIAL", "C15603"),
          "NA": ("NOT APPLICABLE", "C48660"), "EARLY_PHASE1": ("EARLY PHASE I", "C54721")}
_STYPE = {"INTERVENTIONAL": ("INTERVENTIONAL", "C98388"), "OBSERVATIONAL": ("OBSERVATIONAL", "C16084")}
_INTMODEL = {"single_arm": ("SINGLE GROUP", "C82640"), "randomized": ("PARALLEL", "C82639")}
_BLIND = {"OPEN LABEL": ("OPEN LABEL", "C49659"), "NONE": ("OPEN LABEL", "C49659"),
          "SINGLE": ("SINGLE BLIND", "C28233"), "DOUBLE": ("DOUBLE BLIND", "C15228")}
_NY = {"Y": "C49488", "N": "C49487"}
_SEXPOP = {"ALL": ("BOTH", "C49636"), "FEMALE": ("F", "C16576"), "MALE": ("M", "C20197")}
_TINDTP = {"TREATMENT": ("TREATMENT", "C49656"), "PREVENTION": ("PREVENTION", "C49657"),
           "DIAGNOSTIC": ("DIAGNOSIS", "C49653"), "SUPPORTIVE_CARE": ("SUPPORTIVE CARE", "C71486"),
           "SCREENING": ("SCREENING", "C71485"), "HEALTH_SERVICES_RESEARCH": ("HEALTH SERVICES RESEARCH", "C15245"),
           "BASIC_SCIENCE": ("BASIC SCIENCE", "C15714"), "DEVICE_FEASIBILITY": ("DEVICE FEASIBILITY", "C139174")}
_INTTYPE = {"BIOLOGICAL": ("BIOLOGIC", "C307"), "DRUG": ("DRUG", "C1909"), "DEVICE": ("DEVICE", "C16830"),
            "PROCEDURE": ("PROCEDURE", "C98769"), "RADIATION": ("RADIATION", "C15313"),
            "BEHAVIORAL": ("BEHAVIORAL THERAPY", "C15184"), "GENETIC": ("GENETIC", "C15238"),
            "DIETARY_SUPPLEMENT": ("DIETARY SUPPLEMENT", "C1505"),
            "COMBINATION_PRODUCT": ("COMBINATION PRODUCT", "C54696"), "DIAGNOSTIC_TEST": ("DIAGNOSTIC TEST", "C18020")}
_TTYPE = {"SAFETY": "C49667", "EFFICACY": "C49666"}
_TSPARM = {
    "TITLE": "Trial Title", "TPHASE": "Trial Phase Classification", "STYPE": "Study Type",
    "INTMODEL": "Intervention Model", "NARMS": "Planned Number of Arms", "PLANSUB": "Planned Number of Subjects",
    "ACTSUB": "Actual Number of Subjects", "RANDOM": "Trial is Randomized", "TBLIND": "Trial Blinding Schema",
    "TCNTRL": "Control Type", "AGEMIN": "Planned Minimum Age of Subjects", "AGEMAX": "Planned Maximum Age of Subjects",
    "SEXPOP": "Sex of Participants", "HLTSUBJI": "Healthy Subject Indicator", "TRT": "Investigational Therapy or Treatment",
    "ADDON": "Added on to Existing Treatments", "OBJPRIM": "Trial Primary Objective",
    "OUTMSPRI": "Primary Outcome Measure", "OUTMSSEC": "Secondary Outcome Measure", "SSTDTC": "Study Start Date",
    "SENDTC": "Study End Date", "SPONSOR": "Clinical Study Sponsor", "SDTIGVER": "SDTM IG Version",
    "SDTMVER": "SDTM Version", "REGID": "Registry Identifier", "FCNTRY": "Planned Country of Investigational Sites",
    "INDIC": "Trial Disease/Condition Indication", "TTYPE": "Trial Type", "INTTYPE": "Intervention Type",
    "ROUTE": "Route of Administration", "DOSU": "Dose Units", "DOSE": "Dose per Administration",
    "TINDTP": "Trial Intent Type",
}


def _arms(ctx: Context):
    return ctx.protocol.active_version.arms


def build_te(ctx: Context) -> Dataset:
    rows = [SCREENING_ELEMENT + ("Informed consent", "Day 0 treatment, or end of screening", None)]
    for arm in _arms(ctx):
        code, label, _ = arm_element(arm)
        rows.append((code, label, None, "Day 0 treatment (" + arm.day0 + ")", "1 day after start of Element", "P1D"))
    rows.append(FOLLOWUP_ELEMENT + ("1 day after day 0", "End of study (completion or discontinuation)", None))
    frame = pd.DataFrame([r[:2] + r[3:] for r in rows], columns=["ETCD", "ELEMENT", "TESTRL", "TEENRL", "TEDUR"])
    frame.insert(0, "DOMAIN", "TE")
    frame.insert(0, "STUDYID", ctx.studyid)
    specific = {"ETCD": ("Element Code", "text", "Topic", "Req"),
                "ELEMENT": ("Description of Element", "text", "Synonym Qualifier", "Req"),
                "TESTRL": ("Rule for Start of Element", "text", "Rule", "Req"),
                "TEENRL": ("Rule for End of Element", "text", "Rule", "Perm"),
                "TEDUR": ("Planned Duration of Element", "text", "Timing", "Perm")}
    return build_dataset("TE", frame, ["STUDYID", "DOMAIN", "ETCD", "ELEMENT", "TESTRL", "TEENRL", "TEDUR"],
                         keys=["STUDYID", "ETCD"], specific=specific, structure="One record per planned Element",
                         origins={k: ("Protocol", None) for k in specific})


def build_ta(ctx: Context) -> Dataset:
    rows = []
    for arm in _arms(ctx):
        code, label, _ = arm_element(arm)
        for order, (etcd, element, epoch_) in enumerate((SCREENING_ELEMENT, (code, label, "TREATMENT"),
                                                         FOLLOWUP_ELEMENT), start=1):
            rows.append({"ARMCD": arm.code, "ARM": arm.label, "TAETORD": order, "ETCD": etcd, "ELEMENT": element,
                         "TABRANCH": "Enrolment into " + arm.label if order == 1 and len(_arms(ctx)) > 1 else None,
                         "EPOCH": epoch_})
    frame = pd.DataFrame(rows)
    frame.insert(0, "DOMAIN", "TA")
    frame.insert(0, "STUDYID", ctx.studyid)
    specific = {"ARMCD": ("Planned Arm Code", "text", "Topic", "Req"),
                "ARM": ("Description of Planned Arm", "text", "Synonym Qualifier", "Req"),
                "TAETORD": ("Planned Order of Element within Arm", "integer", "Timing", "Req"),
                "ETCD": ("Element Code", "text", "Record Qualifier", "Req"),
                "ELEMENT": ("Description of Element", "text", "Synonym Qualifier", "Perm"),
                "TABRANCH": ("Branch", "text", "Rule", "Exp"),
                "EPOCH": ("Epoch", "text", "Timing", "Req")}
    return build_dataset("TA", frame, ["STUDYID", "DOMAIN", "ARMCD", "ARM", "TAETORD", "ETCD", "ELEMENT", "TABRANCH",
                                       "EPOCH"], keys=["STUDYID", "ARMCD", "TAETORD"], specific=specific,
                         structure="One record per planned Element per Arm",
                         origins={k: ("Protocol", None) for k in specific}, codelists={"ARMCD": "SPONSOR:ARMCD"})


def build_tv(ctx: Context) -> Dataset:
    """TV: planned visits with VISITDY in the SDTM convention and the protocol windows as start/end rules."""
    rows = []
    for n, v in enumerate(ctx.protocol.visits, start=1):
        lo, hi = v.window
        for arm in _arms(ctx):
            rows.append({"VISITNUM": float(n), "VISIT": v.label, "VISITDY": v.day + 1 if v.day >= 0 else v.day,
                         "ARMCD": arm.code if len(_arms(ctx)) > 1 else None,
                         "TVSTRL": f"Protocol day {lo} (day 0 = {arm.day0})",
                         "TVENRL": f"Protocol day {hi} (window {lo} to {hi})"})
    frame = pd.DataFrame(rows).drop_duplicates(["VISITNUM", "ARMCD"])
    frame.insert(0, "DOMAIN", "TV")
    frame.insert(0, "STUDYID", ctx.studyid)
    specific = {"VISITNUM": ("Visit Number", "float", "Topic", "Req"),
                "VISIT": ("Visit Name", "text", "Synonym Qualifier", "Perm"),
                "VISITDY": ("Planned Study Day of Visit", "integer", "Timing", "Perm"),
                "ARMCD": ("Planned Arm Code", "text", "Record Qualifier", "Exp"),
                "TVSTRL": ("Visit Start Rule", "text", "Rule", "Req"),
                "TVENRL": ("Visit End Rule", "text", "Rule", "Perm")}
    return build_dataset("TV", frame, ["STUDYID", "DOMAIN", "VISITNUM", "VISIT", "VISITDY", "ARMCD", "TVSTRL",
                                       "TVENRL"], keys=["STUDYID", "VISITNUM", "ARMCD"], specific=specific,
                         structure="One record per planned Visit per Arm",
                         origins={k: ("Protocol", None) for k in specific}, methods=["MT.VISITDY"])


def build_ti(ctx: Context) -> Dataset | None:
    crit = ctx.protocol.eligibility
    if not crit:
        return None
    frame = pd.DataFrame({"STUDYID": ctx.studyid, "DOMAIN": "TI", "IETESTCD": [c.id for c in crit],
                          "IETEST": [c.text[:200] for c in crit], "IECAT": [c.kind.upper() for c in crit],
                          "TIRL": [c.rule for c in crit], "TIVERS": ctx.protocol.active_protocol_version})
    specific = {"IETESTCD": ("Incl/Excl Criterion Short Name", "text", "Topic", "Req"),
                "IETEST": ("Inclusion/Exclusion Criterion", "text", "Synonym Qualifier", "Req"),
                "IECAT": ("Inclusion/Exclusion Category", "text", "Grouping Qualifier", "Req"),
                "TIRL": ("Inclusion/Exclusion Criterion Rule", "text", "Rule", "Perm"),
                "TIVERS": ("Protocol Criteria Versions", "text", "Record Qualifier", "Perm")}
    return build_dataset("TI", frame, ["STUDYID", "DOMAIN", "IETESTCD", "IETEST", "IECAT", "TIRL", "TIVERS"],
                         keys=["STUDYID", "IETESTCD"], specific=specific,
                         structure="One record per I/E criterion", origins={k: ("Protocol", None) for k in specific},
                         codelists={"IETESTCD": "SPONSOR:IETESTCD"})


def _age_limit(ctx: Context, which: str) -> str | None:
    """AGEMIN/AGEMAX as ISO 8601 durations from an 'age >= N' style criterion rule, if any."""
    import re
    for c in ctx.protocol.eligibility:
        m = re.search(r"\bage\w*\s*(>=|<=)\s*(\d+)", c.rule)
        if m and ((which == "min") == (m.group(1) == ">=")) and c.kind == "inclusion":
            return f"P{m.group(2)}Y"
    return None


def _iso_age(text: str | None) -> str | None:
    """'18 Years' -> 'P18Y' (ISO 8601 duration); 'N/A' or None -> None."""
    if not text or text == "N/A":
        return None
    number, unit = text.split()
    return f"P{number}{unit[0].upper() if unit != 'Minutes' else 'TM'}"


def build_ts(ctx: Context, actual_subjects: int, first_date: str | None, last_date: str | None) -> Dataset:
    """TS: trial summary parameters derived from the protocol (and ACTSUB/SSTDTC/SENDTC from the data)."""
    p, study, version = ctx.protocol, ctx.protocol.study, ctx.protocol.active_version
    rows: list[tuple[str, str | None, str | None, str | None]] = []  # parmcd, value, code, code system

    def add(parm: str, value, code: str | None = None, ref: str | None = "CDISC CT") -> None:
        if value is not None and value != "":
            rows.append((parm, str(value), code, ref if code else None))

    add("TITLE", study.official_title or study.brief_title)
    if study.phase and study.phase.upper() in _PHASE:
        add("TPHASE", *_PHASE[study.phase.upper()])
    if study.study_type and study.study_type.upper() in _STYPE:
        add("STYPE", *_STYPE[study.study_type.upper()])
    add("INTMODEL", *_INTMODEL[version.design])
    add("NARMS", len(version.arms))
    add("PLANSUB", version.planned_enrollment)
    add("ACTSUB", actual_subjects)
    random = "Y" if version.design == "randomized" else "N"
    add("RANDOM", random, _NY[random])
    masking = (study.masking or "").upper()
    blind = next((v for k, v in _BLIND.items() if k in masking), None)
    if blind:
        add("TBLIND", *blind)
    if version.design == "single_arm":
        add("TCNTRL", "NONE", "C41132")
    registry = p.registry
    age_min, age_max = _age_limit(ctx, "min"), _age_limit(ctx, "max")
    if registry is not None:
        age_min = _iso_age(registry.eligibility.minimum_age) or age_min
        age_max = _iso_age(registry.eligibility.maximum_age) or age_max
        add("SEXPOP", *_SEXPOP[registry.eligibility.sex])
        healthy = "Y" if registry.eligibility.healthy_volunteers else "N"
        add("HLTSUBJI", healthy, _NY[healthy])
        if registry.primary_purpose in _TINDTP:
            add("TINDTP", *_TINDTP[registry.primary_purpose])
        for kind in dict.fromkeys(i.type for i in registry.interventions):
            if kind in _INTTYPE:
                add("INTTYPE", *_INTTYPE[kind])
        for intervention in registry.interventions:
            add("TRT", intervention.name[:200])
    elif study.intervention:
        add("TRT", study.intervention.strip()[:200])
    add("AGEMIN", age_min, age_min, "ISO 8601")
    add("AGEMAX", age_max, age_max, "ISO 8601")
    if p.endpoints is not None:  # a primary safety composite, secondary efficacy parameters
        add("TTYPE", "SAFETY", _TTYPE["SAFETY"])
        if p.endpoints.secondary.parameters:
            add("TTYPE", "EFFICACY", _TTYPE["EFFICACY"])
    for condition in study.conditions:
        add("INDIC", condition)
    if p.endpoints is not None:
        add("OUTMSPRI", p.endpoints.primary.label)
        for param in p.endpoints.secondary.parameters:
            add("OUTMSSEC", param.label)
    add("SSTDTC", first_date, first_date, "ISO 8601")
    add("SENDTC", last_date, last_date, "ISO 8601")
    add("SPONSOR", study.sponsor)
    add("SDTIGVER", SDTMIG_VERSION)
    add("SDTMVER", SDTM_VERSION)
    if study.nct_id:
        add("REGID", study.nct_id, study.nct_id, "ClinicalTrials.gov")
    for country in sorted({s.country for s in study.sites if s.country}):
        add("FCNTRY", country, country, "ISO 3166-1 alpha-3")
    for parm, value in _from_protocol_fixed(ctx):
        add(parm, value[0], value[1])
    frame = pd.DataFrame(rows, columns=["TSPARMCD", "TSVAL", "TSVALCD", "TSVCDREF"])
    frame["TSPARM"] = frame["TSPARMCD"].map(_TSPARM)
    frame["TSSEQ"] = frame.groupby("TSPARMCD").cumcount() + 1
    frame["TSVCDVER"] = frame["TSVCDREF"].map(lambda r: CT_VERSION.removeprefix("SDTM CT ") if r == "CDISC CT"
                                              else None)
    frame["STUDYID"], frame["DOMAIN"] = ctx.studyid, "TS"
    # A value longer than 200 characters continues in TSVAL1, TSVAL2, ... (SDTMIG 3.4, TS assumptions).
    overflow = int((frame["TSVAL"].str.len().max() - 1) // 200) if len(frame) else 0
    for k in range(1, overflow + 1):
        frame[f"TSVAL{k}"] = frame["TSVAL"].str.slice(200 * k, 200 * (k + 1)).replace("", None)
    frame["TSVAL"] = frame["TSVAL"].str.slice(0, 200)
    specific = {"TSSEQ": ("Sequence Number", "integer", "Identifier", "Req"),
                "TSPARMCD": ("Trial Summary Parameter Short Name", "text", "Topic", "Req"),
                "TSPARM": ("Trial Summary Parameter", "text", "Synonym Qualifier", "Req"),
                "TSVAL": ("Parameter Value", "text", "Result Qualifier", "Exp"),
                "TSVALCD": ("Parameter Value Code", "text", "Result Qualifier", "Exp"),
                "TSVCDREF": ("Name of the Reference Terminology", "text", "Result Qualifier", "Exp"),
                "TSVCDVER": ("Version of the Reference Terminology", "text", "Result Qualifier", "Exp")}
    extra = [f"TSVAL{k}" for k in range(1, overflow + 1)]
    specific.update({c: (f"Parameter Value {c[5:]}", "text", "Result Qualifier", "Perm") for c in extra})
    return build_dataset("TS", frame, ["STUDYID", "DOMAIN", "TSSEQ", "TSPARMCD", "TSPARM", "TSVAL", *extra,
                                       "TSVALCD", "TSVCDREF", "TSVCDVER"], keys=["STUDYID", "TSPARMCD", "TSSEQ"],
                         specific=specific, structure="One record per trial summary parameter value",
                         origins={k: ("Protocol", None) for k in specific})


def _from_protocol_fixed(ctx: Context):
    """TS values read from the forms' fixed SDTM values of the treatment record (route, dose unit)."""
    out = []
    for form in ctx.protocol.forms.values():
        fixed = form.sdtm.fixed if form.sdtm else {}
        if "EXROUTE" in fixed:
            out.append(("ROUTE", (fixed["EXROUTE"], None)))
        if "EXDOSU" in fixed:
            out.append(("DOSU", (fixed["EXDOSU"], None)))
    return out
