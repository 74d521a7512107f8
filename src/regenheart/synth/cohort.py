"""A synthetic RegenHeart cohort, deterministic from a seed. SYNTHETIC DATA, NOT TRIAL RESULTS.

:func:`generate_cohort` is pure: it returns a plan of everything a site would record (screening
forms, visits, questionnaires as item answers, safety events, corrections, disposition).
:func:`regenheart.synth.entry.enter_cohort` then types that plan into the capture service as named
site users, so the synthetic data travel exactly the validation and audit path of real data.

Distributions follow shared/reference/clinical.md section 3.3 (baseline) and the change table
(M1/M3/M6), missing data section 3.4, peri-procedural event rates section 4.1. A per-subject latent
"response" couples the changes across endpoints and visits (a patient whose LVEF improves also
tends to walk further and report better quality of life), as in real cohorts.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from regenheart.protocol.models import Protocol
from regenheart.synth.model import (
    BACKGROUND_SHARE,
    DEFAULT_LVEF_MODEL,
    LVEF_BASELINE_MEAN,
    LVEF_BASELINE_MIN,
    LVEF_BASELINE_SD,
    LVEF_INCLUSION_MAX,
    LVEF_NOISE_SD,
    LVEF_RANGE,
    LVEF_RESPONSE_MEAN,
    LVEF_RESPONSE_SD,
)

FOLLOW_UP = ("M1", "M3", "M6")
# Mean change from baseline at M1, M3, M6 (clinical.md 3.3, mid-points of the suggested ranges).
LVEF_CHANGE = DEFAULT_LVEF_MODEL.treated_change  # points: (1.0, 4.0, 5.5) = background + cell effect (model.py)
LVEDV_CHANGE = (-3.0, -9.0, -14.0)     # mL
LVEDD_CHANGE = (-0.5, -1.5, -2.5)      # mm
NTPROBNP_LOG_CHANGE = (math.log(0.90), math.log(0.80), math.log(0.70))
SIXMWD_CHANGE = (15.0, 40.0, 60.0)     # m
KCCQ_CHANGE = (3.0, 5.0, 8.0)          # points
MLHFQ_CHANGE = (-5.0, -10.0, -15.0)    # points
NYHA_IMPROVE_P = (0.10, 0.35, 0.45)

# Day 0-5 event probabilities per infused patient (clinical.md 4.1).
PERIPROCEDURAL = (
    # category, term, probability, grade, related to product, related to procedure
    ("NSVT", "Non-sustained ventricular tachycardia on monitoring", 0.22, 1, "UNLIKELY", "POSSIBLE"),
    ("ACCESS_SITE", "Radial access-site haematoma", 0.07, 1, "NOT", "DEFINITE"),
    ("TROPONIN_RISE", "Troponin I rise after infusion", 0.05, 1, "POSSIBLE", "POSSIBLE"),
    ("FEVER", "Transient fever after cell infusion", 0.05, 1, "PROBABLE", "UNLIKELY"),
    ("NO_REFLOW", "Slow flow (TIMI 2) after infusion", 0.02, 2, "POSSIBLE", "PROBABLE"),
    ("ALLERGIC", "Urticarial rash after infusion", 0.02, 2, "POSSIBLE", "POSSIBLE"),
    ("CORONARY_INJURY", "Coronary dissection at catheter tip", 0.01, 3, "NOT", "DEFINITE"),
)
LATER_EVENTS = (
    ("HF_WORSENING", "Worsening heart failure requiring hospitalization", 0.15, 3, "UNLIKELY", "NOT", True),
    ("INFECTION", "Upper respiratory tract infection", 0.12, 1, "NOT", "NOT", False),
    ("SVT_AF", "Paroxysmal atrial fibrillation", 0.07, 2, "UNLIKELY", "NOT", False),
    ("CONTRAST_NEPHROPATHY", "Creatinine rise after contrast", 0.03, 1, "NOT", "PROBABLE", False),
)

# The coder's MedDRA preferred term and system organ class of each synthetic verbatim term (SYNTHETIC
# coding for the demonstration; a real study codes with its licensed MedDRA version).
SYNTHETIC_CODING = {
    "Non-sustained ventricular tachycardia on monitoring": ("Ventricular tachycardia", "Cardiac disorders"),
    "Radial access-site haematoma": ("Vascular access site haematoma",
                                     "Injury, poisoning and procedural complications"),
    "Troponin I rise after infusion": ("Troponin I increased", "Investigations"),
    "Transient fever after cell infusion": ("Pyrexia", "General disorders and administration site conditions"),
    "Slow flow (TIMI 2) after infusion": ("Coronary no-reflow phenomenon", "Cardiac disorders"),
    "Urticarial rash after infusion": ("Urticaria", "Skin and subcutaneous tissue disorders"),
    "Coronary dissection at catheter tip": ("Coronary artery dissection", "Cardiac disorders"),
    "Worsening heart failure requiring hospitalization": ("Cardiac failure", "Cardiac disorders"),
    "Upper respiratory tract infection": ("Upper respiratory tract infection", "Infections and infestations"),
    "Paroxysmal atrial fibrillation": ("Atrial fibrillation", "Cardiac disorders"),
    "Creatinine rise after contrast": ("Blood creatinine increased", "Investigations"),
    "Sudden cardiac death": ("Sudden cardiac death", "Cardiac disorders"),
}


@dataclass
class FormEntry:
    visit: str
    form: str
    data: dict[str, Any]


@dataclass
class Correction:
    """A later data correction, entered with a reason as a site would after a monitoring visit."""

    visit: str
    form: str
    data: dict[str, Any]
    reason: str


@dataclass
class SubjectPlan:
    code: str
    site: str
    consent_date: dt.date
    screening_date: dt.date
    enrol: bool
    visit_dates: dict[str, dt.date] = field(default_factory=dict)
    forms: list[FormEntry] = field(default_factory=list)
    adverse_events: list[dict[str, Any]] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)
    disposition: dict[str, Any] | None = None
    enrolled_date: dt.date | None = None
    # Randomized protocol: the whole plan for each arm the subject may be allocated to (the screening
    # part is identical); entry continues with the arm the concealed list assigns at enrolment.
    by_arm: dict[str, SubjectPlan] | None = None


@dataclass
class CohortPlan:
    seed: int
    subjects: list[SubjectPlan]
    label: str = "SYNTHETIC DATA: generated by regenheart.synth, not RegenHeart trial results"

    @property
    def n_enrolled(self) -> int:
        return sum(s.enrol for s in self.subjects)


def _clip(x: float, lo: float, hi: float) -> float:
    return float(min(max(x, lo), hi))


def _round(x: float, decimals: int = 0) -> float:
    return float(round(x, decimals))


# ---------------------------------------------------------------- questionnaires from latent levels
def _level_to_code(level: float, codes: list[int], rng: np.random.Generator, noise: float = 0.6) -> int:
    """Map a latent level in [0, 1] (1 = best) to one of ``codes`` ordered worst -> best."""
    position = level * (len(codes) - 1) + rng.normal(0.0, noise)
    return codes[int(_clip(round(position), 0, len(codes) - 1))]


def kccq_items(overall: float, rng: np.random.Generator, self_efficacy: float = 0.75) -> dict[str, int]:
    """KCCQ-23 answers whose overall summary is near ``overall`` (0-100, higher = better)."""
    level = _clip(overall / 100.0, 0.0, 1.0)
    items: dict[str, int] = {}
    for key in ("q1a", "q1b", "q1c", "q1d", "q1e", "q1f"):
        # 'limited for other reasons / did not do' (code 6) now and then, mostly for hurrying/jogging
        items[key] = 6 if rng.random() < (0.15 if key == "q1f" else 0.03) else _level_to_code(level, [1, 2, 3, 4, 5], rng)
    items["q2"] = _level_to_code(_clip(0.5 + rng.normal(0, 0.15), 0, 1), [1, 2, 3, 4, 5], rng)
    items["q3"] = _level_to_code(level + 0.1, [1, 2, 3, 4, 5], rng)
    items["q4"] = _level_to_code(level + 0.1, [1, 2, 3, 4, 5], rng)
    items["q5"] = _level_to_code(level, [1, 2, 3, 4, 5, 6, 7], rng, 0.8)
    items["q6"] = _level_to_code(level, [1, 2, 3, 4, 5], rng)
    items["q7"] = _level_to_code(level, [1, 2, 3, 4, 5, 6, 7], rng, 0.8)
    items["q8"] = _level_to_code(level, [1, 2, 3, 4, 5], rng)
    items["q9"] = _level_to_code(level + 0.15, [1, 2, 3, 4, 5], rng)
    items["q10"] = _level_to_code(self_efficacy, [1, 2, 3, 4, 5], rng)
    items["q11"] = _level_to_code(self_efficacy, [1, 2, 3, 4, 5], rng)
    for key in ("q12", "q13", "q14"):
        items[key] = _level_to_code(level, [1, 2, 3, 4, 5], rng)
    for key in ("q15a", "q15b", "q15c", "q15d"):
        items[key] = 6 if rng.random() < (0.2 if key == "q15d" else 0.03) else _level_to_code(level, [1, 2, 3, 4, 5], rng)
    return items


def sf12v1_items(physical: float, mental: float, rng: np.random.Generator) -> dict[str, int]:
    """SF-12 v1 answers (raw form codes) from latent physical and mental levels in [0, 1]."""
    p, m = _clip(physical, 0, 1), _clip(mental, 0, 1)
    return {
        "gh1": _level_to_code(0.7 * p + 0.3 * m, [5, 4, 3, 2, 1], rng),     # 1 = excellent
        "pf02": _level_to_code(p, [1, 2, 3], rng, 0.4),                    # 3 = not limited
        "pf04": _level_to_code(p - 0.1, [1, 2, 3], rng, 0.4),
        "rp2": _level_to_code(p, [1, 2], rng, 0.3),                        # 2 = no
        "rp3": _level_to_code(p, [1, 2], rng, 0.3),
        "re2": _level_to_code(m, [1, 2], rng, 0.3),
        "re3": _level_to_code(m + 0.1, [1, 2], rng, 0.3),
        "bp2": _level_to_code(p + 0.2, [5, 4, 3, 2, 1], rng),              # 1 = not at all
        "mh3": _level_to_code(m, [6, 5, 4, 3, 2, 1], rng),                 # 1 = all of the time calm
        "vt2": _level_to_code(0.5 * p + 0.5 * m, [6, 5, 4, 3, 2, 1], rng),
        "mh4": _level_to_code(m, [1, 2, 3, 4, 5, 6], rng),                 # 6 = never downhearted
        "sf2": _level_to_code(0.5 * p + 0.5 * m, [1, 2, 3, 4, 5], rng),    # 5 = none of the time
    }


def mlhfq_items(total: float, rng: np.random.Generator) -> dict[str, int]:
    """MLHFQ answers (0-5, higher = worse) whose total is near ``total`` (0-105)."""
    level = 1.0 - _clip(total / 105.0, 0, 1)  # latent: 1 = best
    return {f"q{i}": _level_to_code(level, [5, 4, 3, 2, 1, 0], rng, 0.7) for i in range(1, 22)}


# ---------------------------------------------------------------- the cohort
def _baseline(rng: np.random.Generator) -> dict[str, Any]:
    age = round(_clip(rng.normal(50, 12), 18, 75))
    sex = "M" if rng.random() < 0.8 else "F"
    nyha = 4 if rng.random() < 0.13 else 3
    lvef = _clip(rng.normal(LVEF_BASELINE_MEAN, LVEF_BASELINE_SD), LVEF_BASELINE_MIN, LVEF_INCLUSION_MAX)
    while lvef >= LVEF_INCLUSION_MAX:  # truncated normal at <= 35 (inclusion)
        lvef = _clip(rng.normal(LVEF_BASELINE_MEAN, LVEF_BASELINE_SD), LVEF_BASELINE_MIN, LVEF_INCLUSION_MAX)
    lvedv = _clip(math.exp(rng.normal(math.log(250), 0.31)), 120, 600)
    lvedd = _clip(69 + 7 * (math.log(lvedv / 250) / 0.31) * 0.7 + rng.normal(0, 7 * 0.71), 52, 95)
    fs = _clip(rng.normal(0.16, 0.04), 0.06, 0.28)
    ivs = _clip(rng.normal(9.8, 2.0), 6, 15)
    height = _clip(rng.normal(176 if sex == "M" else 163, 7), 150, 200)
    bmi = _clip(rng.normal(28, 4.5), 19, 42)
    ntprobnp = _clip(math.exp(rng.normal(math.log(2000) + (0.5 if nyha == 4 else 0.0), 1.05)), 150, 35000)
    kccq = _clip(rng.normal(48 - (12 if nyha == 4 else 0), 18), 5, 95)
    return {
        "age": age, "sex": sex, "nyha": nyha, "lvef": lvef, "lvedv": lvedv, "lvedd": lvedd, "fs": fs,
        "ivs": ivs, "lvpw": _clip(ivs + rng.normal(0, 0.8), 6, 15), "height": height,
        "weight": bmi * (height / 100) ** 2, "ntprobnp": ntprobnp,
        "sixmwd": _clip(rng.normal(350 - (60 if nyha == 4 else 0), 100), 60, 650),
        "kccq": kccq, "mlhfq": _clip(rng.normal(50, 15) + (48 - kccq) * 0.3, 5, 100),
        "phys": _clip(rng.normal(0.35, 0.15), 0.02, 0.95), "ment": _clip(rng.normal(0.5, 0.18), 0.02, 0.98),
        "creatinine": _clip(rng.normal(1.05 if sex == "M" else 0.85, 0.2), 0.5, 2.2),
    }


def _echo(lvef: float, lvedv: float, lvedd: float, fs: float, ivs: float, lvpw: float,
          rng: np.random.Generator) -> dict[str, Any]:
    # LVESV from LVEDV and LVEF keeps the three consistent (clinical.md 3.3), with reader rounding.
    lvesv = lvedv * (1 - lvef / 100)
    return {
        "modality": "TTE", "lvef_pct": _round(lvef, 1), "lvedv_ml": _round(lvedv), "lvesv_ml": _round(lvesv),
        "lvedd_mm": _round(lvedd), "lvesd_mm": _round(lvedd * (1 - fs)),
        "ivsd_mm": _round(ivs + rng.normal(0, 0.3), 1), "lvpwd_mm": _round(lvpw + rng.normal(0, 0.3), 1),
    }


def _eligibility_answers(fail: str | None) -> dict[str, str]:
    answers = {
        "registered_at_center": "Y", "nidcm_diagnosis": "Y", "nonischemic_confirmed": "Y",
        "nonischemic_method": "ANGIO", "icd_indication": "Y", "organ_dysfunction": "N", "malignancy_5y": "N",
        "consent_signed": "Y", "ischemic_or_cardiac_surgery": "N", "structural_exclusion": "N", "stroke_2y": "N",
        "autoimmune_immunodeficiency": "N", "polyvalent_allergy": "N", "decompensated_comorbidity": "N",
        "immunosuppressants_4w": "N", "hepatitis_positive": "N",
    }
    if fail in answers:
        answers[fail] = "Y" if answers[fail] == "N" else "N"
    return answers


# Reasons for screen failure, cycled: (criterion field to flip, or the LVEF/ischemia route)
SCREEN_FAIL_ROUTES = ("lvef", "ischemic_or_cardiac_surgery", "hepatitis_positive", "structural_exclusion",
                      "nyha", "immunosuppressants_4w")


DEFAULT_ENROLLED, DEFAULT_SCREEN_FAILURES = 30, 5


def cohort_sizes(n_subjects: int) -> dict[str, int]:
    """``n_enrolled`` and ``n_screen_failures`` for a cohort of ``n_subjects`` screened (the trial's 30:5 mix)."""
    if n_subjects < 1:
        raise ValueError(f"a cohort needs at least one subject, not {n_subjects}")
    failures = round(n_subjects * DEFAULT_SCREEN_FAILURES / (DEFAULT_ENROLLED + DEFAULT_SCREEN_FAILURES))
    failures = min(failures, max(0, n_subjects - 3))  # screen-failure slots start at the third subject
    return {"n_enrolled": n_subjects - failures, "n_screen_failures": failures}


def generate_cohort(protocol: Protocol, seed: int = 20200301, n_enrolled: int = 30,
                    n_screen_failures: int = 5, first_screening: dt.date = dt.date(2020, 3, 2)) -> CohortPlan:
    """Plan a synthetic cohort of ``n_enrolled`` infused patients plus ``n_screen_failures``.

    Deterministic: the same protocol, seed and sizes give the same plan. Three subjects follow the
    missing-data pattern of clinical.md 3.4 (a death before month 6, a loss to follow-up after month 1,
    a missed month-3 visit); one month-6 echo is read out of window.

    Under a randomized active protocol version every enrolled subject gets a plan per arm
    (``SubjectPlan.by_arm``): the arm comes from the concealed allocation list at enrolment. An arm
    without cells has no catheterization (day 0 = randomization date) and the background share of
    every change (:mod:`regenheart.synth.model`). The single-arm path draws exactly the numbers it
    always drew.
    """
    rng = np.random.default_rng(seed)
    randomized = protocol.active_version.randomization is not None
    total = n_enrolled + n_screen_failures
    fail_slots = set(rng.choice(np.arange(2, total), size=n_screen_failures, replace=False).tolist()) \
        if n_screen_failures else set()
    site = protocol.study.sites[0].code
    subjects: list[SubjectPlan] = []
    enrolled_index = 0
    # Which enrolled patients carry the missing-data patterns (fixed by seed).
    patterns = rng.choice(np.arange(n_enrolled), size=min(4, n_enrolled), replace=False).tolist()
    pattern_of = dict(zip(patterns, ("death", "lost", "missed_m3", "late_m6")))
    day = first_screening
    # A cohort larger than the trial's is recruited proportionally faster (several subjects a day),
    # so that its dates stay in the past; the trial-sized cohort keeps its dates exactly.
    pace = min(1.0, (DEFAULT_ENROLLED + DEFAULT_SCREEN_FAILURES) / total)
    for index in range(total):
        gap = int(rng.integers(10, 28))
        day = day + dt.timedelta(days=gap if pace == 1.0 else round(gap * pace))
        code = f"{site}-{index + 1:03d}"
        consent = day - dt.timedelta(days=int(rng.integers(0, 3)))
        fail_route = SCREEN_FAIL_ROUTES[len([s for s in subjects if not s.enrol]) % len(SCREEN_FAIL_ROUTES)] \
            if index in fail_slots else None
        plan = SubjectPlan(code=code, site=site, consent_date=consent, screening_date=day, enrol=fail_route is None)
        if randomized and plan.enrol:
            _plan_arms(protocol, plan, int(rng.integers(2**63)), pattern_of.get(enrolled_index))
        else:
            _plan_subject(protocol, plan, rng, fail_route, pattern_of.get(enrolled_index) if plan.enrol else None)
        if plan.enrol:
            enrolled_index += 1
        subjects.append(plan)
    _record_missing_codes(protocol, subjects, seed)
    return CohortPlan(seed=seed, subjects=subjects)


# Missing-data codes a site records (issue 12): about one haemolysed follow-up NT-proBNP sample per 15
# enrolled subjects, one unknown KCCQ answer per 30; so the trial-sized cohort shows a few and a small
# test cohort none. Drawn from their own generator after the plan, so every other value is unchanged.
MISSING_CODE_RATES = {"ND": 15, "UNK": 30}


def _record_missing_codes(protocol: Protocol, subjects: list[SubjectPlan], seed: int) -> None:
    """Replace a few planned values by missing-data codes (ND with its reason, UNK), every arm's plan alike."""
    declared = {m.code for m in protocol.missing_codes}
    enrolled = [s for s in subjects if s.enrol]
    rng = np.random.default_rng([seed, 12])  # issue 12: separate from the cohort's own draws

    def candidates(form: str, field_name: str) -> list[tuple[int, str]]:
        found = []
        for i, plan in enumerate(enrolled):
            plans = list(plan.by_arm.values()) if plan.by_arm else [plan]
            corrected = {(c.visit, c.form) for p in plans for c in p.corrections if field_name in c.data}
            planned = [{e.visit for e in p.forms if e.form == form and e.data.get(field_name) is not None}
                       for p in plans]  # a visit every arm's plan has, so the subject is coded whatever the arm
            for visit in sorted(set.intersection(*planned), key=protocol.visit_codes.index):
                if visit != protocol.baseline_visit.code and (visit, form) not in corrected:
                    found.append((i, visit))
        return found

    def code(i: int, visit: str, form: str, field_name: str, value: dict[str, Any]) -> None:
        plan = enrolled[i]
        for p in list(plan.by_arm.values()) if plan.by_arm else [plan]:
            for entry in p.forms:
                if entry.visit == visit and entry.form == form:
                    entry.data[field_name] = value

    for missing, form, field_name, reason in (("ND", "labs", "ntprobnp_pg_ml", "SYNTHETIC: sample haemolysed"),
                                              ("UNK", "kccq", "q1a", None)):
        count = len(enrolled) // MISSING_CODE_RATES[missing]
        pool = candidates(form, field_name) if missing in declared and count else []
        for k in sorted(rng.choice(len(pool), size=min(count, len(pool)), replace=False).tolist() if pool else []):
            code(*pool[k], form, field_name, {"missing": missing, "reason": reason})


def _plan_arms(protocol: Protocol, plan: SubjectPlan, subject_seed: int, pattern: str | None) -> None:
    """One full plan per arm from the same subject seed: same screening data, arm-specific follow-up."""
    plan.by_arm = {}
    for arm in protocol.active_version.arms:
        arm_plan = SubjectPlan(code=plan.code, site=plan.site, consent_date=plan.consent_date,
                               screening_date=plan.screening_date, enrol=True)
        scale = (1.0,) * len(FOLLOW_UP) if arm.receives_cells else BACKGROUND_SHARE
        _plan_subject(protocol, arm_plan, np.random.default_rng(subject_seed), None, pattern,
                      effect_scale=scale, receives_cells=arm.receives_cells)
        plan.by_arm[arm.code] = arm_plan
    first = next(iter(plan.by_arm.values()))
    baseline = protocol.baseline_visit.code
    plan.forms = [f for f in first.forms if f.visit == baseline]
    plan.visit_dates = {baseline: first.visit_dates[baseline]}
    plan.enrolled_date = first.enrolled_date


def _plan_subject(protocol: Protocol, plan: SubjectPlan, rng: np.random.Generator, fail_route: str | None,
                  pattern: str | None, effect_scale: tuple[float, ...] = (1.0, 1.0, 1.0),
                  receives_cells: bool = True) -> None:
    """Plan one subject. ``effect_scale`` multiplies every mean change per follow-up visit (1 = treated);
    ``receives_cells`` False: no catheterization, day 0 is the enrolment (randomization) date."""
    b = _baseline(rng)
    if fail_route == "lvef":
        b["lvef"] = _clip(rng.normal(41, 3), 36.5, 48)
    elif fail_route == "nyha":
        b["nyha"] = 2
    scr = plan.screening_date
    plan.visit_dates["SCR"] = scr
    forms = plan.forms
    forms += [
        FormEntry("SCR", "demographics", {"age_years": b["age"], "sex": b["sex"], "height_cm": _round(b["height"]),
                                          "weight_kg": _round(b["weight"], 1)}),
        FormEntry("SCR", "medical_history", {
            "hf_etiology": (etiology := str(rng.choice(["IDCM", "IDCM", "IDCM", "FAMILIAL", "MYOCARDITIS", "OTHER"]))),
            # "Other" needs its free text (protocol: specify_for); no random draw, so the cohort is unchanged
            "hf_etiology_other": "SYNTHETIC: other non-ischemic cardiomyopathy" if etiology == "OTHER" else None,
            "hf_duration_months": int(rng.integers(6, 120)), "hf_hospitalizations_12m": int(rng.poisson(1.0)),
            "atrial_fibrillation": "Y" if rng.random() < 0.2 else "N",
            "hypertension": "Y" if rng.random() < 0.35 else "N", "diabetes": "Y" if rng.random() < 0.2 else "N",
            "icd_implanted": "Y" if rng.random() < 0.35 else "N", "crt_implanted": "Y" if rng.random() < 0.1 else "N",
            "raas_inhibitor": str(rng.choice(["ACEI", "ARB", "ARNI", "ARNI"])), "beta_blocker": "Y",
            "mra": "Y" if rng.random() < 0.85 else "N", "sglt2i": "Y" if rng.random() < 0.4 else "N",
            "loop_diuretic": "Y" if rng.random() < 0.9 else "N"}),
        FormEntry("SCR", "eligibility", _eligibility_answers(fail_route)),
        FormEntry("SCR", "nyha", {"nyha_class": b["nyha"]}),
        FormEntry("SCR", "echo", _echo(b["lvef"], b["lvedv"], b["lvedd"], b["fs"], b["ivs"], b["lvpw"], rng)),
    ]
    if fail_route is not None:
        return  # screen failures stop after the eligibility data
    url_tn, url_ck = 26.0, 5.0
    forms += [
        FormEntry("SCR", "vital_signs", _vitals(rng, 36.6)),
        FormEntry("SCR", "cardiac_ct", {"ct_ivs_mm": _round(b["ivs"] + rng.normal(0, 0.4), 1),
                                        "ct_lvpw_mm": _round(b["lvpw"] + rng.normal(0, 0.4), 1)}),
        FormEntry("SCR", "labs", {"ntprobnp_pg_ml": _round(b["ntprobnp"]), "creatinine_mg_dl": _round(b["creatinine"], 2)}),
        FormEntry("SCR", "cardiac_enzymes", {"troponin_i_ng_l": _round(abs(rng.normal(12, 6)), 1),
                                             "troponin_i_url_ng_l": url_tn, "ckmb_ng_ml": _round(abs(rng.normal(2, 1)), 1),
                                             "ckmb_url_ng_ml": url_ck}),
        FormEntry("SCR", "sixmwt", {"performed": "Y", "distance_m": _round(b["sixmwd"])}),
        FormEntry("SCR", "kccq", kccq_items(b["kccq"], rng)),
        FormEntry("SCR", "sf12", sf12v1_items(b["phys"], b["ment"], rng)),
        FormEntry("SCR", "mlhfq", mlhfq_items(b["mlhfq"], rng)),
    ]
    day0 = scr + dt.timedelta(days=int(rng.integers(7, 25)))
    plan.enrolled_date = scr + dt.timedelta(days=int(rng.integers(1, (day0 - scr).days)))
    if not receives_cells:
        day0 = plan.enrolled_date  # no procedure: day 0 is the randomization date (protocol arm day0)
        plan.visit_dates["D0"] = day0
        forms.append(FormEntry("D0", "vital_signs", _vitals(rng, 36.7)))
    else:
        plan.visit_dates["D0"] = day0

        # Day 0-5: peri-procedural events and the records that show them.
        events = [e for e in PERIPROCEDURAL if rng.random() < e[2]]
        categories = {e[0] for e in events}
        forms.append(FormEntry("D0", "catheterization", {
            "access_site": "RADIAL" if rng.random() < 0.8 else "FEMORAL", "vessel": "LMCA", "timi_before": 3,
            "timi_after": 2 if "NO_REFLOW" in categories else 3, "dose_cells_1e6": 10.0,
            "infusion_completed": "Y", "infusion_duration_min": _round(rng.uniform(10, 25)),
            "contrast_ml": _round(rng.uniform(60, 180))}))
        fever_day = int(rng.integers(1, 3)) if "FEVER" in categories else None
        fever_temp = _round(rng.uniform(38.1, 38.9), 1)
        for k in range(6):
            code = f"D{k}"
            plan.visit_dates[code] = day0 + dt.timedelta(days=k)
            forms.append(FormEntry(code, "vital_signs", _vitals(rng, fever_temp if k == fever_day else 36.7)))
        for k in (1, 2):
            rise = "TROPONIN_RISE" in categories and k == 1
            forms.append(FormEntry(f"D{k}", "cardiac_enzymes", {
                "troponin_i_ng_l": _round(url_tn * rng.uniform(3.5, 4.8) if rise else abs(rng.normal(18, 8)), 1),
                "troponin_i_url_ng_l": url_tn,
                "ckmb_ng_ml": _round(url_ck * rng.uniform(1.2, 1.8) if rise else abs(rng.normal(2.5, 1)), 1),
                "ckmb_url_ng_ml": url_ck}))
        forms.append(FormEntry("D5", "labs", {"ntprobnp_pg_ml": _round(b["ntprobnp"] * rng.uniform(0.8, 1.1)),
                                              "creatinine_mg_dl": _round(b["creatinine"] * rng.uniform(0.95, 1.15), 2)}))
        for category, term, _p, grade, rel_prod, rel_proc in events:
            onset_day = fever_day if category == "FEVER" else (0 if category in ("NO_REFLOW", "CORONARY_INJURY", "ALLERGIC", "ACCESS_SITE") else int(rng.integers(0, 3)))
            ae = _ae(term, category, day0 + dt.timedelta(days=onset_day), grade, rel_prod, rel_proc,
                     serious=grade >= 3, duration=int(rng.integers(1, 4)))
            if category == "FEVER":
                ae["max_temperature_c"] = fever_temp
            plan.adverse_events.append(ae)

    # Follow-up: latent response couples the endpoints across visits.
    response = rng.normal(LVEF_RESPONSE_MEAN, LVEF_RESPONSE_SD)
    last_visit = "M6"
    if pattern == "death":
        last_visit = "M3"
    elif pattern == "lost":
        last_visit = "M1"
    lvef, lvedv, lvedd, fs = b["lvef"], b["lvedv"], b["lvedd"], b["fs"]
    nyha = b["nyha"]
    thickening = rng.random() < 0.4
    for t, visit in enumerate(FOLLOW_UP):
        if FOLLOW_UP.index(last_visit) < t:
            break
        effect = response * effect_scale[t]  # the arm's share of the treated patient's changes
        target = protocol.visit(visit).day
        jitter = int(rng.integers(-5, 6))
        if pattern == "late_m6" and visit == "M6":
            jitter = 17  # read outside the [166, 194] window: flagged, excluded from by-visit analysis
        date = day0 + dt.timedelta(days=target + jitter)
        if pattern == "missed_m3" and visit == "M3":
            continue
        plan.visit_dates[visit] = date
        v_lvef = _clip(lvef + LVEF_CHANGE[t] * effect + rng.normal(0, LVEF_NOISE_SD), *LVEF_RANGE)
        v_lvedv = _clip(lvedv + LVEDV_CHANGE[t] * effect + rng.normal(0, 12), 90, 650)
        v_lvedd = _clip(lvedd + LVEDD_CHANGE[t] * effect + rng.normal(0, 1.5), 45, 100)
        v_fs = _clip(fs + 0.01 * LVEF_CHANGE[t] * effect / 2 + rng.normal(0, 0.01), 0.05, 0.35)
        improve = rng.random() < NYHA_IMPROVE_P[t] * _clip(effect, 0.2, 1.8)
        worsen = not improve and rng.random() < 0.05
        v_nyha = int(_clip(nyha - (1 if improve else 0) + (1 if worsen else 0) - (1 if improve and nyha == 4 and rng.random() < 0.3 else 0), 1, 4))
        nyha = min(nyha, v_nyha) if t < 2 else v_nyha  # improvements tend to persist
        forms += [
            FormEntry(visit, "vital_signs", _vitals(rng, 36.6)),
            FormEntry(visit, "nyha", {"nyha_class": v_nyha}),
            FormEntry(visit, "echo", _echo(v_lvef, v_lvedv, v_lvedd, v_fs, b["ivs"], b["lvpw"], rng)),
            FormEntry(visit, "labs", {
                "ntprobnp_pg_ml": _round(_clip(b["ntprobnp"] * math.exp(NTPROBNP_LOG_CHANGE[t] * effect + rng.normal(0, 0.3)), 30, 60000)),
                "creatinine_mg_dl": _round(b["creatinine"] * rng.uniform(0.9, 1.1), 2)}),
        ]
        if pattern == "lost" and visit == "M1":
            forms.append(FormEntry(visit, "sixmwt", {"performed": "N", "not_done_reason": "UNABLE"}))
        else:
            forms.append(FormEntry(visit, "sixmwt", {"performed": "Y", "distance_m": _round(_clip(
                b["sixmwd"] + SIXMWD_CHANGE[t] * effect + rng.normal(0, 45), 40, 750))}))
        kccq = _clip(b["kccq"] + KCCQ_CHANGE[t] * effect + rng.normal(0, 9), 2, 100)
        qol_gain = (kccq - b["kccq"]) / 100
        forms += [
            FormEntry(visit, "kccq", kccq_items(kccq, rng)),
            FormEntry(visit, "sf12", sf12v1_items(b["phys"] + qol_gain * 0.8, b["ment"] + qol_gain * 0.5, rng)),
            FormEntry(visit, "mlhfq", mlhfq_items(_clip(b["mlhfq"] + MLHFQ_CHANGE[t] * effect + rng.normal(0, 8), 0, 105), rng)),
        ]
        if visit == "M6":
            gain = rng.uniform(0.5, 1.5) if thickening else rng.normal(0, 0.3)
            forms.append(FormEntry(visit, "cardiac_ct", {"ct_ivs_mm": _round(b["ivs"] + gain + rng.normal(0, 0.3), 1),
                                                         "ct_lvpw_mm": _round(b["lvpw"] + gain + rng.normal(0, 0.3), 1)}))

    # Later adverse events (after day 5) until the end of follow-up.
    end = plan.visit_dates.get(last_visit, day0) if pattern != "death" else day0 + dt.timedelta(days=int(rng.integers(120, 160)))
    for category, term, p, grade, rel_prod, rel_proc, serious in LATER_EVENTS:
        if rng.random() < p and (end - day0).days > 10:
            onset = day0 + dt.timedelta(days=int(rng.integers(8, max(9, (end - day0).days))))
            plan.adverse_events.append(_ae(term, category, onset, grade, rel_prod, rel_proc, serious=serious,
                                           duration=int(rng.integers(2, 10))))
    if pattern == "death":
        plan.adverse_events.append(_ae("Sudden cardiac death", "DEATH", end, 5, "UNLIKELY", "NOT", serious=True,
                                       duration=0, outcome="FATAL", criteria=("sae_death",)))
        plan.disposition = {"status": "DEATH", "date": end, "reason": "Sudden cardiac death (see adverse event log)"}
    elif pattern == "lost":
        plan.disposition = {"status": "LOST", "date": end + dt.timedelta(days=60),
                            "reason": "No contact after month 1 despite three documented attempts"}
    else:
        plan.disposition = {"status": "COMPLETED", "date": plan.visit_dates["M6"]}
    # A correction after source-data verification, with its reason (exercises the audit trail).
    if rng.random() < 0.25:
        echo = next(f for f in forms if f.visit == "SCR" and f.form == "echo")
        plan.corrections.append(Correction("SCR", "echo", {"lvedd_mm": echo.data["lvedd_mm"] + 1},
                                           "Transcription error found at source-data verification"))


def _vitals(rng: np.random.Generator, temperature: float) -> dict[str, Any]:
    sbp = int(_clip(rng.normal(112, 14), 85, 160))
    return {"sbp_mmhg": sbp, "dbp_mmhg": int(_clip(rng.normal(70, 9), 45, sbp - 15)),
            "heart_rate_bpm": int(_clip(rng.normal(74, 11), 50, 120)), "temperature_c": _round(temperature, 1),
            "spo2_pct": int(_clip(rng.normal(96, 1.5), 90, 100))}


def _ae(term: str, category: str, onset: dt.date, grade: int, rel_prod: str, rel_proc: str, *, serious: bool,
        duration: int, outcome: str = "RECOVERED", criteria: tuple[str, ...] = ("sae_hospitalization",)) -> dict[str, Any]:
    ae: dict[str, Any] = {
        "term": term, "category": category, "onset_date": onset, "ctcae_grade": grade,
        "serious": "Y" if serious else "N", "related_product": rel_prod, "related_procedure": rel_proc,
        "outcome": outcome,
    }
    if term in SYNTHETIC_CODING:
        ae["coded_term"], ae["coded_soc"] = SYNTHETIC_CODING[term]
    if outcome != "FATAL":
        ae["stop_date"] = onset + dt.timedelta(days=duration)
    if serious:
        for c in criteria:
            ae[c] = "Y"
    return ae
