"""Analysis datasets in CDISC ADaM style, derived from a :class:`~regenheart.store.snapshot.Snapshot`.

- ADSL: one row per screened subject, with population flags (SCRNFL, ENRLFL, SAFFL, EFFFL),
  baseline characteristics, treatment start (TRTSDT = infusion date), end of study, death.
- ADEFF (BDS): one row per subject x parameter x assessment: AVAL, BASE, CHG, PCHG, ABLFL,
  AVISIT/AVISITN from the protocol windows, ANL01FL (the record analysed at that visit), ADY.
- ADAE (OCCDS): one row per adverse event with TRTEMFL, PERIFL (protocol day 0-5), relatedness.
- ADPSE: one row per primary-safety-composite event (from the AE log, the catheterization TIMI
  flow and in-hospital temperatures), with its source.

All functions are pure: the same snapshot gives the same datasets.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from regenheart.derive.datasets import Dataset, Method, ValueLevel, Variable
from regenheart.derive.sdtm import SdtmAnnotationError, build_sdtm_traced, check_annotations
from regenheart.derive.sdtm.common import studyid_of
from regenheart.instruments import derive as formulas
from regenheart.protocol.models import Protocol
from regenheart.protocol.schedule import assign_analysis_visit
from regenheart.store.snapshot import Snapshot


@dataclass(frozen=True)
class SupportiveParameter:
    """A parameter analysed beside the protocol endpoints (instrument domain or derived value)."""

    paramcd: str
    label: str
    unit: str
    form: str
    source: str           # a score name, or a formula key computed in :func:`_formula_values`
    direction: str
    formula: bool = False


SUPPORTIVE_PARAMETERS = (
    SupportiveParameter("KCCQPL", "KCCQ physical limitation", "points", "kccq", "physical_limitation", "higher_better"),
    SupportiveParameter("KCCQSS", "KCCQ symptom stability", "points", "kccq", "symptom_stability", "higher_better"),
    SupportiveParameter("KCCQSF", "KCCQ symptom frequency", "points", "kccq", "symptom_frequency", "higher_better"),
    SupportiveParameter("KCCQSB", "KCCQ symptom burden", "points", "kccq", "symptom_burden", "higher_better"),
    SupportiveParameter("KCCQTS", "KCCQ total symptom score", "points", "kccq", "total_symptom", "higher_better"),
    SupportiveParameter("KCCQSE", "KCCQ self-efficacy", "points", "kccq", "self_efficacy", "higher_better"),
    SupportiveParameter("KCCQQL", "KCCQ quality of life", "points", "kccq", "quality_of_life", "higher_better"),
    SupportiveParameter("KCCQSL", "KCCQ social limitation", "points", "kccq", "social_limitation", "higher_better"),
    SupportiveParameter("MLHFQPHY", "MLHFQ physical dimension", "points", "mlhfq", "physical", "lower_better"),
    SupportiveParameter("MLHFQEMO", "MLHFQ emotional dimension", "points", "mlhfq", "emotional", "lower_better"),
    SupportiveParameter("SIXMWDPP", "6MWD, % predicted (Enright-Sherrill)", "%", "sixmwt", "sixmwd_pct_pred",
                        "higher_better", formula=True),
    SupportiveParameter("LVFS", "LV fractional shortening", "%", "echo", "lvfs", "higher_better", formula=True),
    SupportiveParameter("LVMASS", "LV mass (ASE cube formula)", "g", "echo", "lv_mass", "lower_better", formula=True),
    SupportiveParameter("LVMI", "LV mass index (Mosteller BSA)", "g/m2", "echo", "lvmi", "lower_better", formula=True),
    SupportiveParameter("RWT", "Relative wall thickness", "ratio", "echo", "rwt", "higher_better", formula=True),
    SupportiveParameter("EGFR", "eGFR (CKD-EPI 2021)", "mL/min/1.73m2", "labs", "egfr", "higher_better", formula=True),
)


def usubjid(protocol: Protocol, subject_code: str) -> str:
    """USUBJID as in SDTM DM: STUDYID (registry number, else acronym) + subject code."""
    return f"{studyid_of(protocol)}-{subject_code}"


def cdisc_day(date: dt.date | None, reference: dt.date | None) -> int | None:
    """CDISC --DY: date - reference + 1 on/after the reference day, date - reference before (no day 0)."""
    if date is None or reference is None or pd.isna(date) or pd.isna(reference):
        return None
    delta = (date - reference).days
    return delta + 1 if delta >= 0 else delta


def derive_adsl(protocol: Protocol, snap: Snapshot) -> pd.DataFrame:
    """Subject-level analysis dataset (one row per screened subject)."""
    subjects = snap.subjects.copy()
    demo = snap.wide("demographics")
    demo = demo[demo["visit_code"] == protocol.baseline_visit.code].drop(columns="visit_code")
    subjects = subjects.merge(demo, on="subject_code", how="left")
    mh = snap.wide("medical_history")
    if not mh.empty:
        mh = mh[mh["visit_code"] == protocol.baseline_visit.code].drop(columns="visit_code")
        subjects = subjects.merge(mh, on="subject_code", how="left")
    arms = {a.code: a.label for a in protocol.active_version.arms}
    out = pd.DataFrame({
        "STUDYID": studyid_of(protocol),
        "USUBJID": [usubjid(protocol, c) for c in subjects["subject_code"]],
        "SUBJID": subjects["subject_code"],
        "SITEID": subjects["site_code"],
        "AGE": subjects.get("age_years"),
        "AGEU": "YEARS",
        "SEX": subjects.get("sex"),
        "RACE": None,  # not collected by the study's forms (DM.RACE is null too)
        "HEIGHTBL": subjects.get("height_cm"),
        "WEIGHTBL": subjects.get("weight_kg"),
        "ARMCD": subjects["arm_code"],
        "ARM": subjects["arm_code"].map(arms),
        "TRT01P": subjects["arm_code"].map(arms),
        "TRT01A": subjects["arm_code"].map(arms).where(subjects["infusion_date"].notna()),
        "RFICDT": subjects["consent_date"],
        "SCRNDT": subjects["screening_date"],
        "ENRLDT": subjects["enrolled_date"],
        "TRTSDT": subjects["infusion_date"],
        "TRTEDT": subjects["infusion_date"],  # one infusion: first = last exposure
        "SCRNFL": "Y",
        "ELIGFL": np.where(subjects["eligible"].astype("boolean").fillna(False), "Y", "N"),
        "IEFAIL": subjects["eligibility_failed"].map(lambda x: ", ".join(x) if x else ""),
        "ENRLFL": np.where(subjects["enrolled_date"].notna(), "Y", "N"),
        "SAFFL": np.where(subjects["infusion_date"].notna(), "Y", "N"),
        "EOSSTT": subjects["disposition"].map(lambda d: None if d is None else
                                              ("COMPLETED" if d == "COMPLETED" else "DISCONTINUED")),
        "DCSREAS": subjects["disposition"].where(subjects["disposition"] != "COMPLETED"),
        "DCSREASP": subjects["disposition_reason"],
        "EOSDT": subjects["disposition_date"],
        "DTHFL": np.where(subjects["disposition"] == "DEATH", "Y", ""),
        "DTHDT": subjects["disposition_date"].where(subjects["disposition"] == "DEATH"),
        "SYNTHFL": np.where(subjects["synthetic"], "Y", "N"),
    })
    for column in ("HFETIOL", "ICDFL"):
        out[column] = None
    if "hf_etiology" in subjects:
        out["HFETIOL"] = subjects["hf_etiology"].values
        out["ICDFL"] = subjects["icd_implanted"].values
    if protocol.active_version.randomization is not None:  # randomized design: population and strata
        strata = [s if isinstance(s, str) else None for s in subjects.get("stratum", [None] * len(subjects))]
        out["RANDFL"] = ["Y" if s else "N" for s in strata]
        # enrolment takes the allocation slot: its date is the randomization date
        out["RANDDT"] = pd.Series([d if s else None for s, d in zip(strata, subjects["enrolled_date"], strict=True)],
                                  index=out.index, dtype=object)
        out["STRATAR"] = pd.Series(strata, index=out.index, dtype=object)
    out["BMIBL"] = formulas.bmi(out["HEIGHTBL"].astype(float).to_numpy(), out["WEIGHTBL"].astype(float).to_numpy())
    out["BSABL"] = formulas.bsa_mosteller(out["HEIGHTBL"].astype(float).to_numpy(),
                                          out["WEIGHTBL"].astype(float).to_numpy())
    for column in ("BMIBL", "BSABL"):
        out[column] = out[column].astype(float)
    return out


def _formula_values(frame: pd.DataFrame, adsl: pd.DataFrame) -> pd.DataFrame:
    """Derived clinical values per record, using baseline height/weight/age/sex from ADSL."""
    base = adsl.set_index("SUBJID")[["SEX", "HEIGHTBL", "WEIGHTBL", "AGE", "BSABL"]]
    f = frame.join(base, on="subject_code")
    out = pd.DataFrame(index=frame.index)
    num = lambda col: pd.to_numeric(f[col], errors="coerce").to_numpy(dtype=float) if col in f else \
        np.full(len(f), np.nan)
    sex = f["SEX"].fillna("M").to_numpy()
    if "distance_m" in f:
        out["sixmwd_pct_pred"] = formulas.sixmwd_percent_predicted_enright(
            num("distance_m"), sex, num("HEIGHTBL"), num("WEIGHTBL"), num("AGE"))
    if "lvedd_mm" in f:
        lvedd_cm, lvesd_cm = num("lvedd_mm") / 10, num("lvesd_mm") / 10
        ivs_cm, pw_cm = num("ivsd_mm") / 10, num("lvpwd_mm") / 10
        out["lvfs"] = formulas.fractional_shortening(lvedd_cm, lvesd_cm)
        out["lv_mass"] = formulas.lv_mass_ase(ivs_cm, lvedd_cm, pw_cm)
        out["lvmi"] = formulas.lv_mass_index(out["lv_mass"].to_numpy(), num("BSABL"))
        out["rwt"] = formulas.relative_wall_thickness(pw_cm, lvedd_cm)
    if "creatinine_mg_dl" in f:
        out["egfr"] = formulas.egfr_ckd_epi_2021(num("creatinine_mg_dl"), num("AGE"), sex)
    return out


def derive_adeff(protocol: Protocol, snap: Snapshot, adsl: pd.DataFrame,
                 trace: pd.DataFrame | None = None) -> pd.DataFrame:
    """Efficacy BDS dataset: every endpoint and supportive parameter at baseline and follow-up.

    ``trace`` (from :func:`regenheart.derive.sdtm.build_sdtm_traced`) links each record read from a form
    field or instrument score to its SDTM record: SRCDOM, SRCVAR and SRCSEQ (null for values computed
    here from several records, e.g. LV mass). Without it, the SDTM is built from the same snapshot.
    """
    if trace is None:
        trace = build_sdtm_traced(snap, protocol)[1]
    adeff, sources = _adeff_untraced(protocol, snap, adsl)
    return _trace_to_sdtm(adeff, sources, trace)


_NO_ADEFF = ["USUBJID", "SUBJID", "PARAMCD", "PARAM", "PARAMN", "AVAL", "AVISIT", "AVISITN", "VISIT", "ADT", "ADY",
             "PDAY", "ABLFL", "BASE", "CHG", "PCHG", "ANL01FL", "SYNTHFL"]
_TRACE_COLUMNS = ["SRCDOM", "SRCSEQ", "SRCVAR", "AVALC"]  # placed after SYNTHFL


def _adeff_untraced(protocol: Protocol, snap: Snapshot, adsl: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ADEFF without its SDTM trace columns (:data:`_TRACE_COLUMNS`), and beside it (same index) the form
    and item each record was read from (``_form``, ``_item``; null for values computed from several)."""
    if protocol.endpoints is None:  # no parameters to analyse (e.g. a protocol drafted from a REDCap project)
        return pd.DataFrame(columns=_NO_ADEFF), pd.DataFrame(columns=["_form", "_item"])
    followup = protocol.endpoints.secondary.visits
    candidates = sorted(set(followup) | set(protocol.endpoints.exploratory.visits),
                        key=protocol.visit_codes.index)
    baseline_visit = protocol.baseline_visit.code
    # Plain dictionaries for the lookups of the row loop (a pandas lookup per value cost most of the derivation).
    visits = snap.visits.set_index(["subject_code", "visit_code"])
    visit_dates, study_days = visits["visit_date"].to_dict(), visits["study_day"].to_dict()
    trtsdt = adsl.set_index("SUBJID")["TRTSDT"].to_dict()
    specs: list[tuple[str, str, str, str, str, bool, int]] = []  # paramcd, label, unit, form, source, formula, n
    for n, p in enumerate(protocol.all_parameters, start=1):
        specs.append((p.paramcd, p.label, p.unit, p.form, p.item, False, n))
    for n, s in enumerate(SUPPORTIVE_PARAMETERS, start=101):
        specs.append((s.paramcd, s.label, s.unit, s.form, s.source, s.formula, n))

    cache: dict[str, pd.DataFrame] = {}

    def form_frame(form: str) -> pd.DataFrame:
        if form not in cache:
            frame = snap.wide(form)
            scores = snap.scores(form)
            if not scores.empty and len(scores.columns) > 2:
                frame = frame.merge(scores, on=["subject_code", "visit_code"], how="left")
            if not frame.empty:
                frame = pd.concat([frame, _formula_values(frame, adsl)], axis=1)
            cache[form] = frame
        return cache[form]

    rows = []
    for paramcd, label, unit, form, source, _formula, paramn in specs:
        frame = form_frame(form)
        if frame.empty or source not in frame:
            continue
        for subject_code, visit_code, value in zip(frame["subject_code"], frame["visit_code"], frame[source]):
            if visit_code != baseline_visit and visit_code not in candidates:
                continue
            key = (subject_code, visit_code)
            adt = visit_dates.get(key)
            pday = study_days.get(key)
            if visit_code == baseline_visit:
                avisit, avisitn = "Baseline", 0
            else:
                assigned = None if pday is None or pd.isna(pday) else \
                    assign_analysis_visit(protocol, int(pday), candidates)
                avisit = protocol.visit(assigned).label if assigned else "Out of window"
                avisitn = protocol.visit(assigned).day if assigned else None
            rows.append({
                "USUBJID": usubjid(protocol, subject_code), "SUBJID": subject_code, "PARAMCD": paramcd,
                "PARAM": f"{label} ({unit})", "PARAMN": paramn, "AVAL": np.nan if value is None else float(value),
                "AVISIT": avisit, "AVISITN": avisitn, "VISIT": visit_code, "ADT": adt,
                "ADY": cdisc_day(adt, trtsdt.get(subject_code)), "PDAY": pday,
                "_form": None if _formula else form, "_item": None if _formula else source,
            })
    adeff = pd.DataFrame(rows)
    if adeff.empty:
        return adeff, pd.DataFrame(columns=["_form", "_item"])
    windows = {protocol.visit(c).day: protocol.visit(c) for c in candidates}
    adeff["AWTARGET"] = adeff["AVISITN"].map(lambda d: d if d in windows else None)
    adeff["AWLO"] = adeff["AVISITN"].map(lambda d: windows[d].window[0] if d in windows else None)
    adeff["AWHI"] = adeff["AVISITN"].map(lambda d: windows[d].window[1] if d in windows else None)
    adeff["ABLFL"] = np.where((adeff["AVISIT"] == "Baseline") & adeff["AVAL"].notna(), "Y", "")
    base = adeff[adeff["ABLFL"] == "Y"].set_index(["SUBJID", "PARAMCD"])["AVAL"].to_dict()
    adeff["BASE"] = [base.get((s, p), np.nan) for s, p in zip(adeff["SUBJID"], adeff["PARAMCD"])]
    post = adeff["AVISITN"].fillna(0) > 0
    adeff["CHG"] = np.where(post, adeff["AVAL"] - adeff["BASE"], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        adeff["PCHG"] = np.where(post & (adeff["BASE"] != 0), 100 * adeff["CHG"] / adeff["BASE"], np.nan)
    # ANL01FL: the one record analysed per subject, parameter and analysis visit (nearest the target day).
    adeff["ANL01FL"] = ""
    eligible = adeff["AVAL"].notna() & (adeff["AVISITN"].notna())
    ranked = adeff[eligible].assign(_dist=lambda d: (d["PDAY"].astype(float) - d["AVISITN"].astype(float)).abs()
                                    .where(d["AVISITN"] > 0, 0))
    chosen = ranked.sort_values("_dist").groupby(["SUBJID", "PARAMCD", "AVISITN"]).head(1).index
    adeff.loc[chosen, "ANL01FL"] = "Y"
    adeff["SYNTHFL"] = adeff["SUBJID"].map(adsl.set_index("SUBJID")["SYNTHFL"])
    adeff.insert(0, "STUDYID", studyid_of(protocol))
    treatment = adsl.set_index("SUBJID")
    adeff["TRTP"] = adeff["SUBJID"].map(treatment["TRT01P"])
    adeff["TRTA"] = adeff["SUBJID"].map(treatment["TRT01A"])
    adeff = adeff.sort_values(["PARAMN", "SUBJID", "AVISITN"], na_position="last").reset_index(drop=True)
    return adeff.drop(columns=["_form", "_item"]), adeff[["_form", "_item"]]


def _trace_to_sdtm(adeff: pd.DataFrame, sources: pd.DataFrame, trace: pd.DataFrame) -> pd.DataFrame:
    """ADEFF with SRCDOM/SRCVAR/SRCSEQ from the SDTM trace, found by subject, visit and the form and item
    of each record (``sources``, same index), and AVALC: the SDTM character result where it is not a number."""
    if adeff.empty:
        return adeff
    links = trace.rename(columns={"subject_code": "SUBJID", "visit_code": "VISIT", "form": "_form",
                                  "item": "_item", "DOMAIN": "SRCDOM", "SEQ": "SRCSEQ", "SRCVAR": "SRCVAR"})
    links = links.drop_duplicates(["SUBJID", "VISIT", "_form", "_item"])[
        ["SUBJID", "VISIT", "_form", "_item", "SRCDOM", "SRCSEQ", "SRCVAR", "STRESC"]]
    keys = pd.concat([adeff[["SUBJID", "VISIT"]], sources], axis=1)
    found = keys.merge(links, on=["SUBJID", "VISIT", "_form", "_item"], how="left")  # keeps the rows' order
    found.index = adeff.index
    found["SRCSEQ"] = pd.to_numeric(found["SRCSEQ"], errors="coerce").astype("Int64")
    # A coded result (NYHA class) is text in SDTM (--STRESC); ADaM keeps that text in AVALC beside the number.
    text = found["SRCVAR"].fillna("").str.endswith("STRESC")
    found["AVALC"] = found["STRESC"].where(text, None)
    at = adeff.columns.get_loc("SYNTHFL") + 1
    return pd.concat([adeff.iloc[:, :at], found[_TRACE_COLUMNS], adeff.iloc[:, at:]], axis=1)


def add_efficacy_flag(adsl: pd.DataFrame, adeff: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """EFFFL: infused, with a baseline and at least one post-baseline value of a secondary endpoint."""
    secondary = {p.paramcd for p in protocol.endpoints.secondary.parameters} if protocol.endpoints else set()
    analysed = adeff[adeff["PARAMCD"].isin(secondary) & (adeff["ANL01FL"] == "Y")]
    has_base = set(analysed.loc[analysed["ABLFL"] == "Y", "SUBJID"])
    post = analysed[(analysed["AVISITN"] > 0) & analysed["BASE"].notna()]
    has_post = set(post["SUBJID"])
    adsl = adsl.copy()
    adsl["EFFFL"] = np.where((adsl["SAFFL"] == "Y") & adsl["SUBJID"].isin(has_base & has_post), "Y", "N")
    return adsl


def derive_adae(protocol: Protocol, snap: Snapshot, adsl: pd.DataFrame) -> pd.DataFrame:
    """Adverse-event analysis dataset with treatment-emergent and peri-procedural flags."""
    columns = ["USUBJID", "SUBJID", "AESEQ", "AETERM", "AECAT", "AECATDC", "ASTDT", "AENDT", "ASTDY", "PDAY",
               "AETOXGR", "AESER", "SAECRIT", "AREL", "ARELPR", "AEOUT", "TRTEMFL", "PERIFL", "PRIMFL"]
    aes = snap.adverse_events
    if aes.empty:
        return pd.DataFrame(columns=columns)
    trtsdt = adsl.set_index("SUBJID")["TRTSDT"]
    primary = protocol.endpoints.primary if protocol.endpoints is not None else None
    lo, hi = primary.window_days if primary is not None else (1, 0)  # no primary window: nothing peri-procedural
    out = pd.DataFrame({
        "USUBJID": [usubjid(protocol, s) for s in aes["subject_code"]],
        "SUBJID": aes["subject_code"],
        "AESEQ": aes["ae_seq"],
        "AETERM": aes["term"],
        "AECAT": aes["category"],
        "AECATDC": aes["category"].map(lambda c: protocol.decode("ae_category", c)),
        "ASTDT": aes["onset_date"],
        "AENDT": aes.get("stop_date"),
        "ASTDY": [cdisc_day(d, trtsdt.get(s)) for d, s in zip(aes["onset_date"], aes["subject_code"])],
        "PDAY": aes["study_day"],
        "AETOXGR": aes["ctcae_grade"].astype(int),
        "AESER": aes["serious"],
        "SAECRIT": aes["sae_criteria"].map(lambda c: ", ".join(x.removeprefix("sae_") for x in c)),
        "AREL": aes["related_product"],
        "ARELPR": aes["related_procedure"],
        "AEOUT": aes["outcome"],
    })
    pday = pd.to_numeric(out["PDAY"], errors="coerce")
    out["TRTEMFL"] = np.where(pday >= 0, "Y", "")
    out["PERIFL"] = np.where((pday >= lo) & (pday <= hi), "Y", "")
    in_composite = (out["AECAT"].isin(primary.ae_categories) | (out["AETOXGR"] >= primary.min_ctcae_grade)) \
        if primary is not None else False
    out["PRIMFL"] = np.where((out["PERIFL"] == "Y") & in_composite, "Y", "")
    return out[columns]


def derive_adpse(protocol: Protocol, snap: Snapshot, adsl: pd.DataFrame, adae: pd.DataFrame) -> pd.DataFrame:
    """Primary-safety-composite events, one row each, from every source the protocol names."""
    if protocol.endpoints is None:  # no primary endpoint: no composite events
        return pd.DataFrame(columns=["USUBJID", "SUBJID", "SOURCE", "PSECOMP", "PDAY", "DETAIL"])
    primary = protocol.endpoints.primary
    lo, hi = primary.window_days
    rows = []
    for _, ae in adae[adae["PRIMFL"] == "Y"].iterrows():
        component = ae["AECATDC"] if ae["AECAT"] in primary.ae_categories else f"CTCAE grade {ae['AETOXGR']} event"
        rows.append({"SUBJID": ae["SUBJID"], "SOURCE": "Adverse event log", "PSECOMP": component,
                     "PDAY": ae["PDAY"], "DETAIL": ae["AETERM"]})
    cath = snap.wide("catheterization")
    if not cath.empty and "timi_after" in cath:
        for _, r in cath[pd.to_numeric(cath["timi_after"]) <= primary.timi_after_max].iterrows():
            rows.append({"SUBJID": r["subject_code"], "SOURCE": "Catheterization record",
                         "PSECOMP": protocol.decode("ae_category", "NO_REFLOW"), "PDAY": 0,
                         "DETAIL": f"TIMI flow {r['timi_before']} before, {r['timi_after']} after infusion"})
    vitals = snap.wide("vital_signs")
    if not vitals.empty:
        vitals = vitals.merge(snap.visits, on=["subject_code", "visit_code"], how="left")
        day = pd.to_numeric(vitals["study_day"], errors="coerce")
        fever = vitals[(day >= lo) & (day <= hi) & (pd.to_numeric(vitals["temperature_c"]) >= primary.fever_threshold_c)]
        for _, r in fever.iterrows():
            rows.append({"SUBJID": r["subject_code"], "SOURCE": "Vital signs",
                         "PSECOMP": protocol.decode("ae_category", "FEVER"), "PDAY": int(r["study_day"]),
                         "DETAIL": f"temperature {r['temperature_c']} C on day {int(r['study_day'])}"})
    out = pd.DataFrame(rows, columns=["SUBJID", "SOURCE", "PSECOMP", "PDAY", "DETAIL"])
    out.insert(0, "USUBJID", [usubjid(protocol, s) for s in out["SUBJID"]])
    safety = set(adsl.loc[adsl["SAFFL"] == "Y", "SUBJID"])
    return out[out["SUBJID"].isin(safety)].reset_index(drop=True)


@dataclass(frozen=True)
class AnalysisDatasets:
    adsl: pd.DataFrame
    adeff: pd.DataFrame
    adae: pd.DataFrame
    adpse: pd.DataFrame


@dataclass(frozen=True)
class Untraced:
    """The analysis datasets before ADEFF is traced to the SDTM (:func:`derive_untraced`): everything an
    analysis reads, without ADEFF's SRCDOM, SRCSEQ, SRCVAR and AVALC; :func:`traced` completes them."""

    data: AnalysisDatasets
    sources: pd.DataFrame  # the form and item each ADEFF record was read from (ADEFF's index)


def derive_all(protocol: Protocol, snap: Snapshot) -> AnalysisDatasets:
    """Derive every analysis dataset from a snapshot."""
    return _derive_with_sdtm(protocol, snap)[0]


def derive_with_sdtm(protocol: Protocol, snap: Snapshot) -> tuple[AnalysisDatasets, dict[str, Dataset]]:
    """The analysis datasets and the SDTM tabulations, built once, for a caller that needs both
    (the analysis and then the submission package of the same snapshot)."""
    return _derive_with_sdtm(protocol, snap)


def derive_untraced(protocol: Protocol, snap: Snapshot) -> Untraced:
    """The analysis datasets without building the SDTM first: for an analysis whose results are wanted
    sooner (the SDTM is most of the derivation's time); :func:`traced` then gives exactly what
    :func:`derive_with_sdtm` gives. A protocol whose SDTM annotations :func:`traced` would refuse is
    refused here (SdtmAnnotationError), before anything is analysed or written."""
    if problems := check_annotations(protocol):
        raise SdtmAnnotationError(problems)
    adsl = derive_adsl(protocol, snap)
    adeff, sources = _adeff_untraced(protocol, snap, adsl)
    adsl = add_efficacy_flag(adsl, adeff, protocol)
    adae = derive_adae(protocol, snap, adsl)
    adpse = derive_adpse(protocol, snap, adsl, adae)
    return Untraced(AnalysisDatasets(adsl, adeff, adae, adpse), sources)


def traced(protocol: Protocol, snap: Snapshot, untraced: Untraced) -> tuple[AnalysisDatasets, dict[str, Dataset]]:
    """The SDTM tabulations of ``snap``, and the analysis datasets of :func:`derive_untraced` with ADEFF
    traced to them (as :func:`derive_with_sdtm`)."""
    sdtm, trace = build_sdtm_traced(snap, protocol)
    data = untraced.data
    return replace(data, adeff=_trace_to_sdtm(data.adeff, untraced.sources, trace)), sdtm


def _derive_with_sdtm(protocol: Protocol, snap: Snapshot) -> tuple[AnalysisDatasets, dict[str, Dataset]]:
    """The analysis datasets and the SDTM tabulations they trace to (built once)."""
    return traced(protocol, snap, derive_untraced(protocol, snap))


# ---- ADaM datasets with metadata (ADaMIG 1.3) -------------------------------------------------------
_T, _F, _I, _D = "text", "float", "integer", "date"
# name: (label <= 40, type, origin, source)
_ADAM_VARIABLES: dict[str, tuple[str, str, str, str | None]] = {
    "STUDYID": ("Study Identifier", _T, "Predecessor", "DM.STUDYID"),
    "USUBJID": ("Unique Subject Identifier", _T, "Predecessor", "DM.USUBJID"),
    "SUBJID": ("Subject Identifier for the Study", _T, "Predecessor", "DM.SUBJID"),
    "SITEID": ("Study Site Identifier", _T, "Predecessor", "DM.SITEID"),
    "AGE": ("Age", _I, "Predecessor", "DM.AGE"), "AGEU": ("Age Units", _T, "Predecessor", "DM.AGEU"),
    "SEX": ("Sex", _T, "Predecessor", "DM.SEX"), "RACE": ("Race", _T, "Predecessor", "DM.RACE"),
    "HEIGHTBL": ("Baseline Height (cm)", _F, "Predecessor", "VS.VSSTRESN"),
    "WEIGHTBL": ("Baseline Weight (kg)", _F, "Predecessor", "VS.VSSTRESN"),
    "BMIBL": ("Baseline BMI (kg/m2)", _F, "Derived", "MT.BMIBL"),
    "BSABL": ("Baseline BSA, Mosteller (m2)", _F, "Derived", "MT.BSABL"),
    "ARMCD": ("Planned Arm Code", _T, "Predecessor", "DM.ARMCD"),
    "ARM": ("Description of Planned Arm", _T, "Predecessor", "DM.ARM"),
    "TRT01P": ("Planned Treatment for Period 01", _T, "Derived", "MT.TRT01"),
    "TRT01A": ("Actual Treatment for Period 01", _T, "Derived", "MT.TRT01"),
    "TRTP": ("Planned Treatment", _T, "Predecessor", "ADSL.TRT01P"),
    "TRTA": ("Actual Treatment", _T, "Predecessor", "ADSL.TRT01A"),
    "RFICDT": ("Date of Informed Consent", _D, "Derived", "DM.RFICDTC"),
    "SCRNDT": ("Date of Screening", _D, "Derived", "DM.DMDTC"),
    "ENRLDT": ("Date of Enrollment", _D, "Collected", "enrolment"),
    "TRTSDT": ("Date of First Exposure to Treatment", _D, "Derived", "EX.EXSTDTC"),
    "TRTEDT": ("Date of Last Exposure to Treatment", _D, "Derived", "EX.EXENDTC"),
    "SCRNFL": ("Screened Population Flag", _T, "Derived", "MT.POP"),
    "ELIGFL": ("Eligible Flag", _T, "Derived", "MT.POP"),
    "IEFAIL": ("Eligibility Criteria Not Met", _T, "Derived", "IE.IETESTCD"),
    "ENRLFL": ("Enrolled Population Flag", _T, "Derived", "MT.POP"),
    "SAFFL": ("Safety Population Flag", _T, "Derived", "MT.POP"),
    "EFFFL": ("Efficacy Population Flag", _T, "Derived", "MT.EFFFL"),
    "EOSSTT": ("End of Study Status", _T, "Derived", "DS.DSDECOD"),
    "DCSREAS": ("Reason for Discontinuation from Study", _T, "Derived", "DS.DSDECOD"),
    "DCSREASP": ("Reason Spec for Discont from Study", _T, "Derived", "DS.DSTERM"),
    "EOSDT": ("End of Study Date", _D, "Derived", "DS.DSSTDTC"),
    "DTHFL": ("Subject Death Flag", _T, "Derived", "DM.DTHFL"),
    "DTHDT": ("Date of Death", _D, "Derived", "DS.DSSTDTC"),
    "SYNTHFL": ("Synthetic Data Flag", _T, "Assigned", None),
    "RANDFL": ("Randomized Population Flag", _T, "Derived", "MT.POP"),
    "RANDDT": ("Date of Randomization", _D, "Derived", "MT.RANDDT"),
    "STRATAR": ("Strata Used for Randomization", _T, "Derived", "MT.STRATAR"),
    "HFETIOL": ("Heart Failure Etiology", _T, "Predecessor", "MH.MHTERM"),
    "ICDFL": ("ICD Implanted Flag", _T, "Predecessor", "PR.PROCCUR"),
    "PARAMCD": ("Parameter Code", _T, "Assigned", None), "PARAM": ("Parameter", _T, "Assigned", None),
    "PARAMN": ("Parameter (N)", _I, "Assigned", None),
    "AVAL": ("Analysis Value", _F, "Derived", "MT.AVAL"), "AVALC": ("Analysis Value (C)", _T, "Predecessor", None),
    "AVISIT": ("Analysis Visit", _T, "Derived", "MT.AVISIT"), "AVISITN": ("Analysis Visit (N)", _F, "Derived", "MT.AVISIT"),
    "VISIT": ("Visit Code", _T, "Collected", "visit"), "ADT": ("Analysis Date", _D, "Derived", "MT.ADT"),
    "ADY": ("Analysis Relative Day", _I, "Derived", "MT.ADY"),
    "PDAY": ("Protocol Day (Day 0 = Infusion)", _I, "Derived", "MT.PDAY"),
    "AWTARGET": ("Analysis Window Target", _I, "Derived", "MT.AVISIT"),
    "AWLO": ("Analysis Window Beginning Timepoint", _I, "Derived", "MT.AVISIT"),
    "AWHI": ("Analysis Window Ending Timepoint", _I, "Derived", "MT.AVISIT"),
    "ABLFL": ("Baseline Record Flag", _T, "Derived", "MT.ABLFL"), "BASE": ("Baseline Value", _F, "Derived", "MT.ABLFL"),
    "CHG": ("Change from Baseline", _F, "Derived", "MT.CHG"), "PCHG": ("Percent Change from Baseline", _F, "Derived", "MT.CHG"),
    "ANL01FL": ("Analysis Flag 01", _T, "Derived", "MT.ANL01FL"),
    "SRCDOM": ("Source Data", _T, "Derived", "MT.SRC"), "SRCVAR": ("Source Variable", _T, "Derived", "MT.SRC"),
    "SRCSEQ": ("Source Sequence Number", _I, "Derived", "MT.SRC"),
    "AESEQ": ("Sequence Number", _I, "Predecessor", "AE.AESEQ"),
    "AETERM": ("Reported Term for the Adverse Event", _T, "Predecessor", "AE.AETERM"),
    "AECAT": ("Category for Adverse Event (Code)", _T, "Collected", "adverse_events.category"),
    "AECATDC": ("Category for Adverse Event", _T, "Predecessor", "AE.AECAT"),
    "ASTDT": ("Analysis Start Date", _D, "Derived", "AE.AESTDTC"), "AENDT": ("Analysis End Date", _D, "Derived", "AE.AEENDTC"),
    "ASTDY": ("Analysis Start Relative Day", _I, "Derived", "MT.ADY"),
    "AETOXGR": ("Standard Toxicity Grade", _I, "Predecessor", "AE.AETOXGR"),
    "AESER": ("Serious Event", _T, "Predecessor", "AE.AESER"),
    "SAECRIT": ("Serious Criteria Met", _T, "Derived", "AE.AESDTH-AESMIE"),
    "AREL": ("Analysis Causality (Cell Product)", _T, "Collected", "adverse_events.related_product"),
    "ARELPR": ("Analysis Causality (Procedure)", _T, "Predecessor", "SUPPAE.QVAL (AERELPRC)"),
    "AEOUT": ("Outcome of Adverse Event", _T, "Predecessor", "AE.AEOUT"),
    "AEREL": ("Causality", _T, "Predecessor", "AE.AEREL"),
    "AEBODSYS": ("Body System or Organ Class", _T, "Predecessor", "AE.AEBODSYS"),
    "TRTEMFL": ("Treatment Emergent Analysis Flag", _T, "Derived", "MT.TRTEMFL"),
    "PERIFL": ("Peri-procedural (Day 0-5) Flag", _T, "Derived", "MT.PERIFL"),
    "PRIMFL": ("Primary Safety Composite Flag", _T, "Derived", "MT.PRIMFL"),
    "SOURCE": ("Source of Event", _T, "Derived", "MT.ADPSE"),
    "PSECOMP": ("Primary Safety Composite Component", _T, "Derived", "MT.ADPSE"),
    "DETAIL": ("Event Detail", _T, "Derived", "MT.ADPSE"),
}
_RECORD_FLAGS = ("ABLFL", "ANL01FL", "TRTEMFL", "PERIFL", "PRIMFL", "DTHFL")  # Y or null (ADaMIG 1.3)
_ADAM_METHODS = {
    "MT.POP": "SCRNFL = Y for every screened subject; ELIGFL from the eligibility evaluation; ENRLFL = Y when "
              "enrolled; SAFFL = Y when the subject reached day 0: the cells were infused, or, in an arm without "
              "a procedure (day 0 = randomization), randomized (Y/N); RANDFL = Y when the subject took a "
              "slot of the concealed allocation list (randomized designs).",
    "MT.RANDDT": "The enrolment date of a randomized subject: enrolment takes the allocation slot.",
    "MT.STRATAR": "The stratum of the allocation slot the subject took, factors as 'name=level' joined by '; ' "
                  "(from the site and the screening data, by the protocol's stratification rules).",
    "MT.EFFFL": "EFFFL = Y: infused, with a baseline and at least one analysed post-baseline value of a "
                "secondary endpoint.",
    "MT.TRT01": "TRT01P = the planned arm; TRT01A = the arm when the subject was treated (infused), else null.",
    "MT.BMIBL": "Weight (kg) / height (m)^2 at baseline.",
    "MT.BSABL": "Mosteller: sqrt(height (cm) x weight (kg) / 3600) at baseline.",
    "MT.AVAL": "The SDTM standardized numeric result (SRCDOM.SRCVAR at SRCSEQ); for a coded result the class "
               "number (AVALC = the SDTM text); for LVFS, LV mass, LVMI, RWT, eGFR and 6MWD % predicted the "
               "formula in the methods of the report (no single source record).",
    "MT.AVISIT": "The protocol window containing the protocol day (PDAY); the baseline visit is 'Baseline'; "
                 "outside every window 'Out of window' (AVISITN null).",
    "MT.ADT": "The visit date of the source record.",
    "MT.ADY": "ADT - TRTSDT + 1 on or after TRTSDT, ADT - TRTSDT before it (no day 0).",
    "MT.PDAY": "ADT - TRTSDT (the protocol's day-0 convention).",
    "MT.ABLFL": "Y on the baseline-visit record with a value; BASE = its AVAL per subject and parameter.",
    "MT.CHG": "CHG = AVAL - BASE and PCHG = 100 x CHG / BASE on post-baseline records.",
    "MT.ANL01FL": "Y on the one record per subject, parameter and analysis visit nearest the target day.",
    "MT.SRC": "The SDTM record the value was read from (domain, variable, --SEQ).",
    "MT.TRTEMFL": "Y when the onset is on or after day 0 (the infusion).",
    "MT.PERIFL": "Y when the onset is within the primary endpoint's window (protocol days 0-5).",
    "MT.PRIMFL": "Y for a peri-procedural event in the primary composite categories or of CTCAE grade >= 3.",
    "MT.ADPSE": "One record per primary-composite event: adverse events with PRIMFL = Y, catheterization "
                "TIMI flow after infusion at or below the protocol threshold, and in-hospital temperatures at "
                "or above the fever threshold within the window.",
}
_ADAM_SPECS = {
    "ADSL": ("Subject-Level Analysis Dataset", "SUBJECT LEVEL ANALYSIS DATASET", "One record per subject",
             ["STUDYID", "USUBJID"]),
    "ADEFF": ("Efficacy Analysis Dataset", "BASIC DATA STRUCTURE",
              "One record per subject per parameter per assessment", ["STUDYID", "USUBJID", "PARAMCD", "ADT",
                                                                      "AVISITN"]),
    "ADAE": ("Adverse Events Analysis Dataset", "OCCURRENCE DATA STRUCTURE", "One record per adverse event",
             ["STUDYID", "USUBJID", "AESEQ"]),
    "ADPSE": ("Primary Safety Composite Events", "ADAM OTHER",
              "One record per primary safety composite event per subject", ["STUDYID", "USUBJID", "SOURCE", "PDAY"]),
}


def _adam_dataset(name: str, frame: pd.DataFrame, protocol: Protocol) -> Dataset:
    label, klass, structure, keys = _ADAM_SPECS[name]
    frame = frame.copy()
    if "STUDYID" not in frame:
        frame.insert(0, "STUDYID", studyid_of(protocol))
    variables = []
    for column in frame.columns:
        vlabel, typ, origin, source = _ADAM_VARIABLES[column]
        if column in _RECORD_FLAGS:
            frame[column] = frame[column].where(frame[column] == "Y", None)
        if typ == _I:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
        elif typ == _F:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        elif typ == _T:
            frame[column] = frame[column].astype(object).where(frame[column].notna() & (frame[column] != ""), None)
        codelist = {"SEX": "C66731", "AGEU": "C66781", "AESER": "C66742", "AEOUT": "C66768", "SAFFL": "C66742", "ENRLFL": "C66742",
                    "SCRNFL": "C66742", "EFFFL": "C66742", "ELIGFL": "C66742"}.get(column)
        if column in _RECORD_FLAGS:
            codelist = "C66742"
        variables.append(Variable(name=column, label=vlabel, type=typ, origin=origin, source=source,
                                  core="Req" if column in keys or column in ("PARAMCD", "PARAM", "AVAL") else "Perm",
                                  codelist=codelist, display_format="DATE9." if typ == _D else None))
    methods = sorted({v.source for v in variables if v.source and v.source.startswith("MT.")})
    value_level = []
    if name == "ADEFF" and not frame.empty:
        firsts = frame.drop_duplicates("PARAMCD")
        for _, row in firsts.iterrows():
            traced = isinstance(row.get("SRCDOM"), str)
            value_level.append(ValueLevel(
                variable="AVAL", where_variable="PARAMCD", where_value=row["PARAMCD"], label=row["PARAM"][:40],
                type="float", unit=row["PARAM"].rsplit("(", 1)[-1].rstrip(")") if "(" in row["PARAM"] else None,
                origin="Predecessor" if traced else "Derived",
                source=f"{row['SRCDOM']}.{row['SRCVAR']}" if traced else "MT.AVAL"))
    comment = ("Synthetic data: generated by regenheart.synth, not trial results." if
               "SYNTHFL" in frame and (frame["SYNTHFL"] == "Y").any() else None)
    return Dataset(name=name, label=label, standard="ADaM", structure=structure, klass=klass, keys=keys,
                   variables=variables, records=frame.reset_index(drop=True), value_level=value_level,
                   methods=[Method(m, m.removeprefix("MT."), _ADAM_METHODS[m]) for m in methods if m in _ADAM_METHODS],
                   comment=comment)


def adam_datasets(snapshot: Snapshot, protocol: Protocol) -> dict[str, Dataset]:
    """ADSL, ADEFF, ADAE and ADPSE as :class:`Dataset` objects with ADaM metadata (names <= 8, labels <= 40,
    origins, methods, value-level metadata of AVAL per PARAMCD); record flags are Y or null."""
    return adam_datasets_from(*_derive_with_sdtm(protocol, snapshot), protocol)


def adam_datasets_from(data: AnalysisDatasets, sdtm: dict[str, Dataset], protocol: Protocol) -> dict[str, Dataset]:
    """:func:`adam_datasets` of analysis datasets and tabulations already derived (:func:`derive_with_sdtm`)."""
    adae = data.adae.copy()
    if "AE" in sdtm and not adae.empty:
        # The submitted ADAE carries the SDTM AE values (CDISC CT) beside the analysis codes AREL/ARELPR.
        ae = sdtm["AE"].records.set_index(["USUBJID", "AESEQ"])
        keys = pd.MultiIndex.from_arrays([adae["USUBJID"], adae["AESEQ"].astype(int)])
        for column in ("AEBODSYS", "AEREL", "AEOUT"):
            if column in ae:
                adae[column] = ae[column].reindex(keys).to_numpy()
    return {"ADSL": _adam_dataset("ADSL", data.adsl, protocol),
            "ADEFF": _adam_dataset("ADEFF", data.adeff, protocol),
            "ADAE": _adam_dataset("ADAE", adae, protocol),
            "ADPSE": _adam_dataset("ADPSE", data.adpse, protocol)}
