"""Derived clinical values (instruments.md sections 7-9) against derived_spec_vectors.json and hand-worked
examples. The spec vectors print a varying number of decimals: each value is compared with a tolerance
of half a unit of its last printed decimal (+1e-9), i.e. <= 1e-4 whenever 4 or more decimals are printed."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import numpy as np
import pytest

from regenheart.instruments import derive as d

from ._oracles import ORACLES

SPEC = json.loads((ORACLES / "derived_spec_vectors.json").read_text(encoding="utf-8"), parse_float=Decimal)


def approx_printed(value: Decimal):
    decimals = max(0, -value.as_tuple().exponent)
    return pytest.approx(float(value), abs=0.5 * 10.0**-decimals + 1e-9)


# ---------------------------------------------------------------------------------------------- spec


@pytest.mark.parametrize("case", SPEC["bsa"], ids=lambda c: f"{c['height_cm']}cm-{c['weight_kg']}kg")
def test_bsa_spec_vectors(case):
    assert d.bsa_mosteller(case["height_cm"], case["weight_kg"]) == approx_printed(case["mosteller_m2"])
    assert d.bsa_dubois(case["height_cm"], case["weight_kg"]) == approx_printed(case["dubois_m2"])


@pytest.mark.parametrize("case", SPEC["echo"], ids=lambda c: f"lvidd{c['lvidd_cm']}")
def test_echo_spec_vectors(case):
    edv = d.teichholz_volume(float(case["lvidd_cm"]))
    esv = d.teichholz_volume(float(case["lvids_cm"]))
    assert edv == approx_printed(case["teichholz_edv_ml"])
    assert esv == approx_printed(case["teichholz_esv_ml"])
    assert d.ejection_fraction(edv, esv) == approx_printed(case["ef_teichholz_pct"])
    fs = d.fractional_shortening(float(case["lvidd_cm"]), float(case["lvids_cm"]))
    assert fs == approx_printed(case["fs_pct"])
    mass = d.lv_mass_ase(float(case["ivsd_cm"]), float(case["lvidd_cm"]), float(case["pwd_cm"]))
    assert mass == approx_printed(case["lv_mass_g"])
    bsa = d.bsa_mosteller(case["height_cm"], case["weight_kg"])
    assert bsa == approx_printed(case["bsa_mosteller_m2"])
    lvmi = d.lv_mass_index(mass, bsa)
    assert lvmi == approx_printed(case["lvmi_g_m2"])
    rwt = d.relative_wall_thickness(float(case["pwd_cm"]), float(case["lvidd_cm"]))
    assert rwt == approx_printed(case["rwt"])
    assert d.lv_geometry(lvmi, rwt, case["sex"]) == case["geometry_ase2015"]


@pytest.mark.parametrize("case", SPEC["sixmwt_enright_sherrill_1998"],
                         ids=lambda c: f"{c['sex']}{c['age_y']}")
def test_sixmwt_spec_vectors(case):
    args = (case["sex"], case["height_cm"], case["weight_kg"], case["age_y"])
    assert d.sixmwd_predicted_enright(*args) == approx_printed(case["pred_m"])
    assert d.sixmwd_lln_enright(*args) == approx_printed(case["lln_m"])
    assert d.sixmwd_percent_predicted_enright(case["observed_m"], *args) == approx_printed(case["pct_pred"])
    bmi = d.bmi(case["height_cm"], case["weight_kg"])
    assert bmi == approx_printed(case["bmi"])
    pred_bmi = d.sixmwd_predicted_enright_bmi(case["sex"], bmi, case["age_y"])
    assert pred_bmi == approx_printed(case["pred_bmi_eq_m"])


@pytest.mark.parametrize("case", SPEC["egfr_ckdepi2021_examples"], ids=lambda c: f"{c['sex']}{c['age']}")
def test_egfr_spec_vectors(case):
    got = d.egfr_ckd_epi_2021(float(case["scr_mg_dl"]), case["age"], case["sex"])
    assert got == approx_printed(case["egfr_exact"])  # 6 decimals printed


def test_egfr_kidney_epi_two_decimals():
    # kidney.epi 1.3.0 returns round(x, 2): 57.54 (M, 60 y, 1.4 mg/dL) and 75.5 (F, 55 y, 0.9 mg/dL)
    assert round(d.egfr_ckd_epi_2021(1.4, 60, "M"), 2) == 57.54
    assert round(d.egfr_ckd_epi_2021(0.9, 55, "F"), 2) == 75.50


@pytest.mark.parametrize("word,code", [("male", "M"), ("Male", "M"), ("MALE", "M"), ("female", "F"),
                                       ("Female", "F"), ("f", "F")])
def test_sex_words_equal_codes(word, code):
    # the words male/female (any case) mean the same as the codes M/F in every formula taking sex
    assert d.egfr_ckd_epi_2021(1.4, 60, word) == d.egfr_ckd_epi_2021(1.4, 60, code)
    assert d.sixmwd_predicted_enright(word, 170, 80, 60) == d.sixmwd_predicted_enright(code, 170, 80, 60)
    assert d.lv_geometry(120.0, 0.45, word) == d.lv_geometry(120.0, 0.45, code)


def test_sex_unknown_word_refused():
    with pytest.raises(ValueError, match="not M, F, male or female"):
        d.egfr_ckd_epi_2021(1.4, 60, "man")


# ---------------------------------------------------------------------------------------- hand-worked


def test_bsa_hand_worked():
    # Mosteller: sqrt(170 * 70 / 3600) = sqrt(11900 / 3600) = sqrt(3.3055556) = 1.8181187
    assert d.bsa_mosteller(170, 70) == pytest.approx(math.sqrt(11900 / 3600), abs=1e-12)
    assert d.bsa_mosteller(170, 70) == pytest.approx(1.818119, abs=1e-6)
    # DuBois: 0.007184 * 70**0.425 * 170**0.725 = 0.007184 * 6.08375 * 41.4097 = 1.809708
    assert d.bsa_dubois(170, 70) == pytest.approx(1.809708, abs=1e-6)


def test_echo_hand_worked():
    # Teichholz D = 5 cm: 7 / (2.4 + 5) * 5**3 = 0.9459459 * 125 = 118.2432 mL
    assert d.teichholz_volume(5.0) == pytest.approx(7 / 7.4 * 125, abs=1e-12)
    # EF: (120 - 48) / 120 * 100 = 60 %
    assert d.ejection_fraction(120.0, 48.0) == pytest.approx(60.0, abs=1e-12)
    # FS: (5.0 - 3.3) / 5.0 * 100 = 34 %
    assert d.fractional_shortening(5.0, 3.3) == pytest.approx(34.0, abs=1e-12)
    # LV mass: (1 + 5 + 1)**3 - 5**3 = 343 - 125 = 218; * 1.04 = 226.72; * 0.8 = 181.376; + 0.6 = 181.976 g
    assert d.lv_mass_ase(1.0, 5.0, 1.0) == pytest.approx(181.976, abs=1e-9)
    # LVMI: 181.976 g / 2.0 m2 = 90.988 g/m2; RWT: 2 * 1.1 / 5.0 = 0.44
    assert d.lv_mass_index(181.976, 2.0) == pytest.approx(90.988, abs=1e-12)
    assert d.relative_wall_thickness(1.1, 5.0) == pytest.approx(0.44, abs=1e-12)


@pytest.mark.parametrize("lvmi,rwt,sex,expected", [
    (115.0, 0.42, "M", "normal geometry"),         # thresholds are strict: > 115, > 0.42
    (115.1, 0.42, "M", "eccentric hypertrophy"),
    (100.0, 0.43, "M", "concentric remodeling"),
    (100.0, 0.43, "f", "concentric hypertrophy"),  # > 95 for women; lower-case sex accepted
    (95.0, 0.30, "F", "normal geometry"),
])
def test_geometry_thresholds(lvmi, rwt, sex, expected):
    assert d.lv_geometry(lvmi, rwt, sex) == expected


def test_sixmwt_hand_worked():
    # men: 7.57*175 - 5.02*60 - 1.76*80 - 309 = 1324.75 - 301.2 - 140.8 - 309 = 573.75 m
    assert d.sixmwd_predicted_enright("M", 175, 80, 60) == pytest.approx(573.75, abs=1e-9)
    # women: 2.11*162 - 2.29*65 - 5.78*65 + 667 = 341.82 - 148.85 - 375.7 + 667 = 484.27 m
    assert d.sixmwd_predicted_enright("F", 162, 65, 65) == pytest.approx(484.27, abs=1e-9)
    # LLN = predicted - 153 (M) / - 139 (F); % predicted = 100 * 450 / 573.75 = 78.4314 %
    assert d.sixmwd_lln_enright("M", 175, 80, 60) == pytest.approx(420.75, abs=1e-9)
    assert d.sixmwd_lln_enright("F", 162, 65, 65) == pytest.approx(345.27, abs=1e-9)
    assert d.sixmwd_percent_predicted_enright(450, "M", 175, 80, 60) == pytest.approx(78.4314, abs=1e-4)
    assert "RECALLED" in d.sixmwd_lln_enright.__doc__


def test_bmi_and_bmi_form_hand_worked():
    # BMI: 80 / 1.75**2 = 80 / 3.0625 = 26.122449 kg/m2
    assert d.bmi(175, 80) == pytest.approx(26.122449, abs=1e-6)
    # men, BMI form: 1140 - 5.61*26.122449 - 6.94*60 = 1140 - 146.546939 - 416.4 = 577.053061 m
    assert d.sixmwd_predicted_enright_bmi("M", 80 / 1.75**2, 60) == pytest.approx(577.053061, abs=1e-6)
    # women, BMI form: 1017 - 6.24*25 - 5.83*50 = 1017 - 156 - 291.5 = 569.5 m (recalled coefficients)
    assert d.sixmwd_predicted_enright_bmi("F", 25.0, 50) == pytest.approx(569.5, abs=1e-9)
    assert "RECALLED" in d.sixmwd_predicted_enright_bmi.__doc__


def test_egfr_hand_worked():
    # F, 55 y, Scr 0.9: Scr/0.7 = 1.285714 -> min term 1; max term 1.285714**-1.2 = 0.739640;
    # 0.9938**55 = 0.710316; 142 * 0.739640 * 0.710316 * 1.012 = 75.4988
    expected = 142 * (0.9 / 0.7) ** -1.2 * 0.9938**55 * 1.012
    assert d.egfr_ckd_epi_2021(0.9, 55, "F") == pytest.approx(expected, abs=1e-9)
    # M, 40 y, Scr 0.6: 0.6/0.9 = 0.6667 -> min term 0.6667**-0.302; max term 1
    expected_m = 142 * (0.6 / 0.9) ** -0.302 * 0.9938**40
    assert d.egfr_ckd_epi_2021(0.6, 40, "m") == pytest.approx(expected_m, abs=1e-9)
    # umol/L: 79.56 / 88.4 = 0.9 mg/dL
    assert d.CREATININE_UMOL_PER_MG_DL == 88.4
    assert d.creatinine_umol_l_to_mg_dl(79.56) == pytest.approx(0.9, abs=1e-12)


# ------------------------------------------------------------------------------------ vectorization


def test_vectorized_and_scalar_types():
    h = np.array([170.0, 180.0, np.nan])
    w = np.array([70.0, 95.0, 80.0])
    out = d.bsa_mosteller(h, w)
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    assert out[0] == pytest.approx(1.818119, abs=1e-6) and np.isnan(out[2])  # NaN propagates
    assert isinstance(d.bsa_mosteller(170, 70), float)
    sexes = np.array(["F", "M", None], dtype=object)
    egfr = d.egfr_ckd_epi_2021(np.array([0.9, 1.4, 1.0]), np.array([55, 60, 70]), sexes)
    assert egfr[0] == pytest.approx(75.498805, abs=1e-6) and egfr[1] == pytest.approx(57.539391, abs=1e-6)
    assert np.isnan(egfr[2])  # missing sex -> missing
    geo = d.lv_geometry(np.array([92.0, 134.4, np.nan]), np.array([0.4, 0.28, 0.5]), "M")
    assert list(geo) == ["normal geometry", "eccentric hypertrophy", None]
    pred = d.sixmwd_predicted_enright(np.array(["M", "F"]), [175, 162], [80, 65], [60, 65])
    np.testing.assert_allclose(pred, [573.75, 484.27], rtol=0, atol=1e-9)


def test_vectorized_matches_scalar():
    rng = np.random.default_rng(3)
    h = rng.uniform(140, 200, 50)
    w = rng.uniform(40, 150, 50)
    scalar = [d.bsa_dubois(a, b) for a, b in zip(h, w)]
    np.testing.assert_allclose(d.bsa_dubois(h, w), scalar, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("call,arg,value", [
    (lambda: d.bsa_mosteller(-170, 70), "height_cm", "-170"),
    (lambda: d.bsa_mosteller(1.75, 70), "height_cm", "1.75"),                 # metres, not cm
    (lambda: d.bsa_dubois(170, 0), "weight_kg", "0"),
    (lambda: d.bsa_mosteller(np.array([170, 0.0]), 70), "height_cm", "0"),     # arrays: refused too
    (lambda: d.teichholz_volume(50.0), "diameter_cm", "50"),                  # mm, not cm
    (lambda: d.teichholz_volume(0.0), "diameter_cm", "0"),
    (lambda: d.lv_mass_ase(10.0, 50.0, 10.0), "ivsd_cm", "10"),
    (lambda: d.ejection_fraction(100.0, 120.0), "esv_ml", "120"),
    (lambda: d.fractional_shortening(4.0, 4.5), "lvids_cm", "4.5"),
    (lambda: d.egfr_ckd_epi_2021(88.0, 60, "M"), "creatinine_mg_dl", "88"),    # umol/L entered
    (lambda: d.egfr_ckd_epi_2021(1.0, 17, "M"), "age_years", "17"),            # adults only
    (lambda: d.egfr_ckd_epi_2021(1.0, 60, "X"), "sex", "X"),
    (lambda: d.egfr_ckd_epi_2021("1.0", 60, "M"), "creatinine_mg_dl", "1.0"),
    (lambda: d.lv_mass_index(180.0, -2.0), "bsa_m2", "-2"),
    (lambda: d.sixmwd_percent_predicted_enright(-5, "M", 175, 80, 60), "observed_m", "-5"),
])
def test_refuses_impossible_inputs(call, arg, value):
    with pytest.raises(ValueError) as ei:
        call()
    assert arg in str(ei.value) and value in str(ei.value)


def test_methods_notes_flag_recalled_values():
    assert "TO BE VERIFIED" in d.METHODS_NOTES["sixmwt"]
    assert set(d.METHODS_NOTES) == {"bsa", "echo", "sixmwt", "egfr"}
