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
from dataclasses import dataclass

import numpy as np
import pandas as pd

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
    return f"{protocol.study.nct_id}-{subject_code}"


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
        "STUDYID": protocol.study.nct_id,
        "USUBJID": [usubjid(protocol, c) for c in subjects["subject_code"]],
        "SUBJID": subjects["subject_code"],
        "SITEID": subjects["site_code"],
        "AGE": subjects.get("age_years"),
        "AGEU": "YEARS",
        "SEX": subjects.get("sex"),
        "HEIGHTBL": subjects.get("height_cm"),
        "WEIGHTBL": subjects.get("weight_kg"),
        "ARMCD": subjects["arm_code"],
        "ARM": subjects["arm_code"].map(arms),
        "TRT01A": subjects["arm_code"].map(arms),
        "RFICDT": subjects["consent_date"],
        "SCRNDT": subjects["screening_date"],
        "ENRLDT": subjects["enrolled_date"],
        "TRTSDT": subjects["infusion_date"],
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


def derive_adeff(protocol: Protocol, snap: Snapshot, adsl: pd.DataFrame) -> pd.DataFrame:
    """Efficacy BDS dataset: every endpoint and supportive parameter at baseline and follow-up."""
    if protocol.endpoints is None:  # no parameters to analyse (e.g. a protocol drafted from a REDCap project)
        return pd.DataFrame(columns=["USUBJID", "SUBJID", "PARAMCD", "PARAM", "PARAMN", "AVAL", "AVISIT", "AVISITN",
                                     "VISIT", "ADT", "ADY", "PDAY", "ABLFL", "BASE", "CHG", "PCHG", "ANL01FL",
                                     "SYNTHFL"])
    followup = protocol.endpoints.secondary.visits
    candidates = sorted(set(followup) | set(protocol.endpoints.exploratory.visits),
                        key=protocol.visit_codes.index)
    baseline_visit = protocol.baseline_visit.code
    visits = snap.visits.set_index(["subject_code", "visit_code"])
    trtsdt = adsl.set_index("SUBJID")["TRTSDT"]
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
            adt = visits["visit_date"].get(key)
            pday = visits["study_day"].get(key)
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
            })
    adeff = pd.DataFrame(rows)
    if adeff.empty:
        return adeff
    windows = {protocol.visit(c).day: protocol.visit(c) for c in candidates}
    adeff["AWTARGET"] = adeff["AVISITN"].map(lambda d: d if d in windows else None)
    adeff["AWLO"] = adeff["AVISITN"].map(lambda d: windows[d].window[0] if d in windows else None)
    adeff["AWHI"] = adeff["AVISITN"].map(lambda d: windows[d].window[1] if d in windows else None)
    adeff["ABLFL"] = np.where((adeff["AVISIT"] == "Baseline") & adeff["AVAL"].notna(), "Y", "")
    base = adeff[adeff["ABLFL"] == "Y"].set_index(["SUBJID", "PARAMCD"])["AVAL"]
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
    return adeff.sort_values(["PARAMN", "SUBJID", "AVISITN"], na_position="last").reset_index(drop=True)


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


def derive_all(protocol: Protocol, snap: Snapshot) -> AnalysisDatasets:
    """Derive every analysis dataset from a snapshot."""
    adsl = derive_adsl(protocol, snap)
    adeff = derive_adeff(protocol, snap, adsl)
    adsl = add_efficacy_flag(adsl, adeff, protocol)
    adae = derive_adae(protocol, snap, adsl)
    adpse = derive_adpse(protocol, snap, adsl, adae)
    return AnalysisDatasets(adsl, adeff, adae, adpse)
