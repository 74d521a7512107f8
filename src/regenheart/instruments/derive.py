"""Derived clinical values: BSA, echocardiographic indices, 6-minute-walk reference values, eGFR.

Every function accepts scalars or numpy arrays (broadcast together, vectorized) and returns a
``float`` (``str`` for :func:`lv_geometry`) when all inputs are scalars, a numpy array otherwise.
NaN (or None) inputs propagate as missing (NaN / None). Non-positive, non-numeric or physically
impossible inputs are refused with a ``ValueError`` naming the argument and the first offending
value; the plausibility limits (``LIMITS``) also catch typical unit slips (m for cm, mm for cm,
umol/L for mg/dL). Sex is coded "M" or "F" (case-insensitive; None/NaN = missing).

Formulas and sources are in shared/reference/instruments.md sections 7-9 (source tags [S..]).
No rounding is applied: round only for display, once.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CREATININE_UMOL_PER_MG_DL",
    "GEOMETRY_CONCENTRIC_HYPERTROPHY",
    "GEOMETRY_CONCENTRIC_REMODELING",
    "GEOMETRY_ECCENTRIC_HYPERTROPHY",
    "GEOMETRY_NORMAL",
    "LIMITS",
    "LVMI_UPPER_NORMAL_G_M2",
    "METHODS_NOTES",
    "RWT_UPPER_NORMAL",
    "SIXMWD_LLN_OFFSET_M",
    "bmi",
    "bsa_dubois",
    "bsa_mosteller",
    "creatinine_umol_l_to_mg_dl",
    "egfr_ckd_epi_2021",
    "ejection_fraction",
    "fractional_shortening",
    "lv_geometry",
    "lv_mass_ase",
    "lv_mass_index",
    "relative_wall_thickness",
    "sixmwd_lln_enright",
    "sixmwd_percent_predicted",
    "sixmwd_percent_predicted_enright",
    "sixmwd_predicted_enright",
    "sixmwd_predicted_enright_bmi",
    "teichholz_volume",
]

#: Creatinine unit conversion: umol/L / 88.4 = mg/dL (kidney.epi [S71]; 88.42 is used elsewhere).
CREATININE_UMOL_PER_MG_DL = 88.4

#: Plausibility limits (low, high, low_inclusive): values outside are refused as impossible.
LIMITS: Mapping[str, tuple[float, float, bool]] = MappingProxyType({
    "height_cm": (30.0, 300.0, True),
    "weight_kg": (1.0, 700.0, True),
    "bmi_kg_m2": (5.0, 250.0, True),
    "age_years": (18.0, 130.0, True),        # adult equations only (CKD-EPI 2021 [S70b]; Enright [S50])
    "diameter_cm": (0.0, 12.0, False),       # LV internal diameters; mm values (e.g. 50) are refused
    "wall_cm": (0.0, 6.0, False),            # IVSd, PWd
    "volume_ml": (0.0, 1500.0, False),
    "lv_mass_g": (0.0, 2000.0, False),
    "bsa_m2": (0.0, 5.0, False),
    "lvmi_g_m2": (0.0, 1500.0, False),
    "rwt": (0.0, 5.0, False),
    "distance_m": (0.0, 2000.0, True),       # observed 6MWD; 0 m (unable to walk) is allowed
    "creatinine_mg_dl": (0.0, 40.0, False),  # > 40 mg/dL (3536 umol/L): probably umol/L entered
    "creatinine_umol_l": (0.0, 40.0 * 88.4, False),
})

#: LV mass index upper limit of normal (linear method), g/m2: men 115, women 95 (ASE/EACVI 2015 [S60]).
LVMI_UPPER_NORMAL_G_M2: Mapping[str, float] = MappingProxyType({"M": 115.0, "F": 95.0})
#: RWT > 0.42 = concentric (ASE/EACVI 2015 [S60]).
RWT_UPPER_NORMAL = 0.42
#: Enright & Sherrill 1998 lower limit of normal = predicted - 153 m (men) / - 139 m (women).
#: RECALLED from the paper's abstract, NOT confirmed in a source read (instruments.md section 7).
SIXMWD_LLN_OFFSET_M: Mapping[str, float] = MappingProxyType({"M": 153.0, "F": 139.0})

GEOMETRY_NORMAL = "normal geometry"
GEOMETRY_CONCENTRIC_REMODELING = "concentric remodeling"
GEOMETRY_CONCENTRIC_HYPERTROPHY = "concentric hypertrophy"
GEOMETRY_ECCENTRIC_HYPERTROPHY = "eccentric hypertrophy"

METHODS_NOTES: Mapping[str, str] = MappingProxyType({
    "bsa": "Body surface area by Mosteller (sqrt(height_cm x weight_kg / 3600)) or DuBois & DuBois "
           "(0.007184 x weight_kg^0.425 x height_cm^0.725); the SAP must name the formula used to index "
           "LV mass.",
    "echo": "Teichholz volumes V = 7/(2.4 + D) x D^3 (mL, D in cm); EF = (EDV - ESV)/EDV x 100; FS = "
            "(LVIDd - LVIDs)/LVIDd x 100; LV mass by the ASE-recommended Devereux-corrected cube formula "
            "0.8 x 1.04 x [(IVSd + LVIDd + PWd)^3 - LVIDd^3] + 0.6 g (cm inputs); RWT = 2 x PWd/LVIDd; "
            "geometry per ASE/EACVI 2015 (LVMI > 115 g/m2 men / > 95 g/m2 women; RWT > 0.42). Whether ASE "
            "2015 advises against Teichholz-based EF was not confirmed.",
    "sixmwt": "Predicted 6-minute walk distance by Enright & Sherrill 1998 (men 7.57 x height_cm - 5.02 x "
              "age - 1.76 x weight_kg - 309; women 2.11 x height_cm - 2.29 x weight_kg - 5.78 x age + 667; "
              "derivation sample aged 40-80). The lower limits of normal (predicted - 153 m men, - 139 m "
              "women) and the BMI-form coefficients other than the men's intercept 1140 and BMI "
              "coefficient 5.61 were recalled from the paper and remain TO BE VERIFIED against it. "
              "No heart-failure-specific MCID was found.",
    "egfr": "eGFR by the race-free CKD-EPI 2021 creatinine equation (Inker et al. NEJM 2021), IDMS-"
            "standardized creatinine in mg/dL (umol/L / 88.4), adults only, mL/min/1.73 m2, no rounding "
            "before display.",
})


# --------------------------------------------------------------------------------------------------
# input handling


def _as_float_array(name: str, value: Any) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind == "b":
        raise ValueError(f"{name}: boolean value {value!r} is not a number")
    if a.dtype.kind in "iuf":
        return a.astype(np.float64, copy=False)
    if a.dtype.kind == "O":
        flat = a.ravel()
        out = np.empty(flat.shape, np.float64)
        for i, v in enumerate(flat):
            if v is None or v is pd.NA:
                out[i] = np.nan
            elif isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
                raise ValueError(f"{name}: value {v!r} is not a number")
            else:
                out[i] = float(v)
        return out.reshape(a.shape)
    raise ValueError(f"{name}: value {value!r} is not a number")


def _check(name: str, value: Any, limit: str) -> np.ndarray:
    """Float array of ``value``; NaN allowed (missing); refuses values outside ``LIMITS[limit]``."""
    a = _as_float_array(name, value)
    lo, hi, lo_inclusive = LIMITS[limit]
    with np.errstate(invalid="ignore"):
        ok = ((a >= lo) if lo_inclusive else (a > lo)) & (a <= hi)
    bad = ~(ok | np.isnan(a))
    if bad.any():
        v = float(a[bad].flat[0]) if a.ndim else float(a)
        bracket = "[" if lo_inclusive else "("
        raise ValueError(f"{name}: value {v!r} is impossible or implausible; allowed range "
                         f"{bracket}{lo:g}, {hi:g}]" + (" (must be positive)" if lo == 0 else ""))
    return a


_SEX_WORDS = {"M": True, "MALE": True, "F": False, "FEMALE": False}


def _sex(value: Any) -> tuple[np.ndarray, np.ndarray]:
    """(is_male, is_missing) arrays; accepts M/F or male/female in any case, None/NaN = missing."""
    a = np.asarray(value, dtype=object)
    flat = a.ravel()
    codes, uniques = pd.factorize(flat, use_na_sentinel=True)
    male_u = np.zeros(len(uniques), dtype=bool)
    for i, u in enumerate(uniques):
        s = u.strip().upper() if isinstance(u, str) else None
        if s not in _SEX_WORDS:
            raise ValueError(f"sex: value {u!r} is not M, F, male or female (any case)")
        male_u[i] = _SEX_WORDS[s]
    missing = codes < 0
    is_male = np.where(missing, False, male_u[np.where(missing, 0, codes)] if len(uniques) else False)
    return is_male.reshape(a.shape), missing.reshape(a.shape)


def _out(result: np.ndarray, *inputs: Any):
    if all(np.ndim(x) == 0 for x in inputs):
        return float(result) if np.ndim(result) == 0 else float(np.asarray(result).item())
    return result


# --------------------------------------------------------------------------------------------------
# anthropometry


def bmi(height_cm, weight_kg):
    """Body-mass index, kg/m2 = weight_kg / (height_cm / 100)^2."""
    h = _check("height_cm", height_cm, "height_cm")
    w = _check("weight_kg", weight_kg, "weight_kg")
    return _out(w / (h / 100.0) ** 2, height_cm, weight_kg)


def bsa_mosteller(height_cm, weight_kg):
    """Body surface area (m2) by Mosteller (NEJM 1987;317:1098): sqrt(height_cm x weight_kg / 3600).

    Example: 170 cm, 70 kg -> 1.818119 m2.
    """
    h = _check("height_cm", height_cm, "height_cm")
    w = _check("weight_kg", weight_kg, "weight_kg")
    return _out(np.sqrt(h * w / 3600.0), height_cm, weight_kg)


def bsa_dubois(height_cm, weight_kg):
    """Body surface area (m2) by DuBois & DuBois (Arch Intern Med 1916;17:863):
    0.007184 x weight_kg^0.425 x height_cm^0.725. Example: 170 cm, 70 kg -> 1.809708 m2.
    """
    h = _check("height_cm", height_cm, "height_cm")
    w = _check("weight_kg", weight_kg, "weight_kg")
    return _out(0.007184 * w**0.425 * h**0.725, height_cm, weight_kg)


# --------------------------------------------------------------------------------------------------
# echocardiography


def teichholz_volume(diameter_cm):
    """LV volume (mL) by Teichholz (Am J Cardiol 1976;37:7-11): 7.0 / (2.4 + D) x D^3, D in cm
    (LVIDd for end-diastolic, LVIDs for end-systolic volume)."""
    d = _check("diameter_cm", diameter_cm, "diameter_cm")
    return _out(7.0 / (2.4 + d) * d**3, diameter_cm)


def ejection_fraction(edv_ml, esv_ml):
    """Ejection fraction (%) = (EDV - ESV) / EDV x 100 (volumes in mL). ESV > EDV is refused."""
    edv = _check("edv_ml", edv_ml, "volume_ml")
    esv = _check("esv_ml", esv_ml, "volume_ml")
    with np.errstate(invalid="ignore"):
        bad = esv > edv
    if np.any(bad):
        e, s = np.broadcast_arrays(edv, esv)
        i = np.flatnonzero(np.broadcast_to(bad, e.shape))[0]
        raise ValueError(f"esv_ml: value {float(s.flat[i])!r} exceeds edv_ml {float(e.flat[i])!r} "
                         "(impossible)")
    return _out((edv - esv) / edv * 100.0, edv_ml, esv_ml)


def fractional_shortening(lvidd_cm, lvids_cm):
    """Fractional shortening (%) = (LVIDd - LVIDs) / LVIDd x 100 (cm). LVIDs > LVIDd is refused."""
    dd = _check("lvidd_cm", lvidd_cm, "diameter_cm")
    ds = _check("lvids_cm", lvids_cm, "diameter_cm")
    with np.errstate(invalid="ignore"):
        bad = ds > dd
    if np.any(bad):
        a, b = np.broadcast_arrays(dd, ds)
        i = np.flatnonzero(np.broadcast_to(bad, a.shape))[0]
        raise ValueError(f"lvids_cm: value {float(b.flat[i])!r} exceeds lvidd_cm {float(a.flat[i])!r} "
                         "(impossible)")
    return _out((dd - ds) / dd * 100.0, lvidd_cm, lvids_cm)


def lv_mass_ase(ivsd_cm, lvidd_cm, pwd_cm):
    """LV mass (g), ASE-recommended Devereux-corrected cube formula (Lang et al. JASE 2015 [S60][S61]):
    0.8 x {1.04 x [(IVSd + LVIDd + PWd)^3 - LVIDd^3]} + 0.6, all dimensions end-diastolic in cm
    (NOT mm: the + 0.6 g term assumes cm). Not the Penn convention (-14 g)."""
    ivs = _check("ivsd_cm", ivsd_cm, "wall_cm")
    lvid = _check("lvidd_cm", lvidd_cm, "diameter_cm")
    pw = _check("pwd_cm", pwd_cm, "wall_cm")
    return _out(0.8 * (1.04 * ((ivs + lvid + pw) ** 3 - lvid**3)) + 0.6, ivsd_cm, lvidd_cm, pwd_cm)


def lv_mass_index(lv_mass_g, bsa_m2):
    """LV mass index (g/m2) = LV mass (g) / BSA (m2)."""
    m = _check("lv_mass_g", lv_mass_g, "lv_mass_g")
    b = _check("bsa_m2", bsa_m2, "bsa_m2")
    return _out(m / b, lv_mass_g, bsa_m2)


def relative_wall_thickness(pwd_cm, lvidd_cm):
    """Relative wall thickness (dimensionless) = 2 x PWd / LVIDd (ASE definition [S60])."""
    pw = _check("pwd_cm", pwd_cm, "wall_cm")
    lvid = _check("lvidd_cm", lvidd_cm, "diameter_cm")
    return _out(2.0 * pw / lvid, pwd_cm, lvidd_cm)


def lv_geometry(lvmi_g_m2, rwt, sex):
    """LV geometry pattern (ASE/EACVI 2015 [S60][S66]) from LV mass index (g/m2), RWT and sex ("M"/"F").

    Increased LVMI: > 115 g/m2 (M) / > 95 g/m2 (F); concentric: RWT > 0.42.
    normal LVMI & RWT <= 0.42 -> "normal geometry"; normal LVMI & RWT > 0.42 -> "concentric remodeling";
    increased LVMI & RWT > 0.42 -> "concentric hypertrophy"; increased LVMI & RWT <= 0.42 ->
    "eccentric hypertrophy". Missing input -> None. Scalars -> str; arrays -> object array.
    """
    m = _check("lvmi_g_m2", lvmi_g_m2, "lvmi_g_m2")
    r = _check("rwt", rwt, "rwt")
    male, sex_missing = _sex(sex)
    m, r, male, sex_missing = np.broadcast_arrays(m, r, male, sex_missing)
    limit = np.where(male, LVMI_UPPER_NORMAL_G_M2["M"], LVMI_UPPER_NORMAL_G_M2["F"])
    with np.errstate(invalid="ignore"):
        increased = m > limit
        concentric = r > RWT_UPPER_NORMAL
    out = np.where(increased,
                   np.where(concentric, GEOMETRY_CONCENTRIC_HYPERTROPHY, GEOMETRY_ECCENTRIC_HYPERTROPHY),
                   np.where(concentric, GEOMETRY_CONCENTRIC_REMODELING, GEOMETRY_NORMAL)).astype(object)
    out[np.isnan(m) | np.isnan(r) | sex_missing] = None
    if all(np.ndim(x) == 0 for x in (lvmi_g_m2, rwt, sex)):
        return out.item()
    return out


# --------------------------------------------------------------------------------------------------
# six-minute walk test


def sixmwd_predicted_enright(sex, height_cm, weight_kg, age_years):
    """Predicted 6-minute walk distance (m), Enright & Sherrill 1998 (Am J Respir Crit Care Med
    158:1384-1387; ERS/ATS 2014 Table 5 [S50][S51]):
    men   7.57 x height_cm - 5.02 x age_years - 1.76 x weight_kg - 309;
    women 2.11 x height_cm - 2.29 x weight_kg - 5.78 x age_years + 667.
    Derived in healthy adults aged 40-80: values outside that age range are extrapolations.
    """
    male, missing = _sex(sex)
    h = _check("height_cm", height_cm, "height_cm")
    w = _check("weight_kg", weight_kg, "weight_kg")
    a = _check("age_years", age_years, "age_years")
    men = 7.57 * h - 5.02 * a - 1.76 * w - 309.0
    women = 2.11 * h - 2.29 * w - 5.78 * a + 667.0
    res = np.where(missing, np.nan, np.where(male, men, women))
    return _out(res, sex, height_cm, weight_kg, age_years)


def sixmwd_lln_enright(sex, height_cm, weight_kg, age_years):
    """Lower limit of normal 6MWD (m) = Enright predicted - 153 m (men) / - 139 m (women).

    WARNING: the 153/139 m offsets are RECALLED from Enright & Sherrill 1998 and were not confirmed
    in a source read (shared/reference/instruments.md section 7): verify against the paper.
    """
    male, _ = _sex(sex)
    pred = np.asarray(sixmwd_predicted_enright(sex, height_cm, weight_kg, age_years), dtype=np.float64)
    offset = np.where(male, SIXMWD_LLN_OFFSET_M["M"], SIXMWD_LLN_OFFSET_M["F"])
    return _out(pred - offset, sex, height_cm, weight_kg, age_years)


def sixmwd_percent_predicted_enright(observed_m, sex, height_cm, weight_kg, age_years):
    """Observed 6MWD as percent of the Enright & Sherrill predicted value: 100 x observed_m / predicted_m.

    NaN where the predicted distance is not positive (extreme anthropometry outside the equation's range).
    """
    obs = _check("observed_m", observed_m, "distance_m")
    pred = np.asarray(sixmwd_predicted_enright(sex, height_cm, weight_kg, age_years), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        res = np.where(pred > 0, 100.0 * obs / pred, np.nan)
    return _out(res, observed_m, sex, height_cm, weight_kg, age_years)


#: Alias of :func:`sixmwd_percent_predicted_enright`.
sixmwd_percent_predicted = sixmwd_percent_predicted_enright


def sixmwd_predicted_enright_bmi(sex, bmi_kg_m2, age_years):
    """Predicted 6MWD (m), Enright & Sherrill 1998 BMI form: men 1140 - 5.61 x BMI - 6.94 x age;
    women 1017 - 6.24 x BMI - 5.83 x age.

    WARNING: only the men's intercept (1140) and BMI coefficient (5.61) were seen in a source (ERS/ATS
    2014 Table 5 [S51]); the other coefficients are RECALLED: verify against [S50] before use.
    """
    male, missing = _sex(sex)
    b = _check("bmi_kg_m2", bmi_kg_m2, "bmi_kg_m2")
    a = _check("age_years", age_years, "age_years")
    men = 1140.0 - 5.61 * b - 6.94 * a
    women = 1017.0 - 6.24 * b - 5.83 * a
    res = np.where(missing, np.nan, np.where(male, men, women))
    return _out(res, sex, bmi_kg_m2, age_years)


# --------------------------------------------------------------------------------------------------
# kidney function


def creatinine_umol_l_to_mg_dl(creatinine_umol_l):
    """Serum creatinine conversion: mg/dL = umol/L / 88.4 (``CREATININE_UMOL_PER_MG_DL``)."""
    c = _check("creatinine_umol_l", creatinine_umol_l, "creatinine_umol_l")
    return _out(c / CREATININE_UMOL_PER_MG_DL, creatinine_umol_l)


def egfr_ckd_epi_2021(creatinine_mg_dl, age_years, sex):
    """eGFR (mL/min/1.73 m2), race-free CKD-EPI 2021 creatinine equation (Inker et al. NEJM
    2021;385:1737-49 [S70]):
    142 x min(Scr/k, 1)^a x max(Scr/k, 1)^-1.200 x 0.9938^age x 1.012 [female],
    k = 0.7 (F) / 0.9 (M), a = -0.241 (F) / -0.302 (M); Scr IDMS-standardized in mg/dL
    (convert umol/L with :func:`creatinine_umol_l_to_mg_dl`). Adults (>= 18 y) only.
    Example: F, 55 y, 0.9 mg/dL -> 75.4988; M, 60 y, 1.4 mg/dL -> 57.5394.
    """
    scr = _check("creatinine_mg_dl", creatinine_mg_dl, "creatinine_mg_dl")
    age = _check("age_years", age_years, "age_years")
    male, missing = _sex(sex)
    kappa = np.where(male, 0.9, 0.7)
    alpha = np.where(male, -0.302, -0.241)
    ratio = scr / kappa
    res = (142.0 * np.minimum(ratio, 1.0) ** alpha * np.maximum(ratio, 1.0) ** -1.200
           * 0.9938**age * np.where(male, 1.0, 1.012))
    res = np.where(missing, np.nan, res)
    return _out(res, creatinine_mg_dl, age_years, sex)
