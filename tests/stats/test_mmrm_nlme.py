"""Covariance structures other than UN against R nlme::gls on fev_data.

Reference values were produced once with R 4.2 and nlme 3.1-162 (Debian r-cran-nlme):
``gls(FEV1 ~ RACE + SEX + ARMCD*AVISIT, method = "REML", control = glsControl(tolerance = 1e-10,
msTol = 1e-10))`` with ``corCompSymm`` (cs), ``corAR1`` (ar1), ``corARMA(p = 3)`` (toep: an AR(3)
correlation is a general Toeplitz correlation on 4 visits), the same with ``varIdent(~1 | AVISIT)``
(csh, ar1h, toeph) and ``corSymm + varIdent`` (us), time index ``as.integer(AVISIT)``.

nlme's REML log-likelihood uses SAS's convention (with the 2 pi constant and log|X'V^-1X|), so
-2 logL is compared directly (1e-6; nlme's corSymm fit stops 2e-7 above the optimum). Covariance: nlme ``getVarCov`` for subject PT2 (observed at
VIS2, VIS3, VIS4), upper triangle column by column. Tolerances are set by nlme's optimizer
(1e-10 relative on the objective; corSymm converges least tightly): 1e-5 relative on estimates, 3e-5 on SEs,
2e-4 relative on covariances.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_mmrm_sas import load_fev

from regenheart.stats.mmrm import fit_mmrm

pytestmark = pytest.mark.filterwarnings("ignore::regenheart.stats.mmrm.MMRMWarning")

NLME = {
    # structure: (-2 REML logL, ARMCDTRT estimate, SE, PT2 covariance upper triangle)
    "cs": (3522.04294892, 3.43767591, 1.15071894, [44.472631, 7.511253, 44.472631, 7.511253, 7.511253, 44.472631]),
    "ar1": (3525.07876301, 3.63053244, 1.15957139, [45.082992, 11.358016, 45.082992, 2.861490, 11.358016, 45.082992]),
    "csh": (3398.00102698, 3.66078283, 1.08130531, [26.101950, 4.158663, 15.427672, 10.484868, 8.060773, 98.066102]),
    "ar1h": (3404.21924573, 3.75219596, 1.08132458, [25.971751, 4.595030, 15.738419, 2.605371, 8.923645, 97.951055]),
    "toep": (3520.64399578, 3.44438311, 1.15279047, [44.725668, 10.220664, 44.725668, 5.856874, 10.220664, 44.725668]),
    "toeph": (3397.13130574, 3.58112856, 1.07746757, [26.041385, 4.461785, 15.501980, 8.518653, 8.691493, 98.817892]),
    "us": (3386.44987138, 3.77439971, 1.07417395, [26.571489, 2.783392, 14.897444, 7.476529, 0.903733, 95.556639]),
}


@pytest.fixture(scope="module")
def fits():
    fev = load_fev()
    return {s: fit_mmrm(fev, f"FEV1 ~ RACE + SEX + ARMCD*AVISIT + {s}(AVISIT | USUBJID)") for s in NLME}


@pytest.mark.parametrize("structure", list(NLME))
def test_against_nlme(fits, structure):
    m2ll, est, se, cov = NLME[structure]
    fit = fits[structure]
    assert fit.converged
    row = fit.coef("ARMCDTRT")
    assert row["estimate"] == pytest.approx(est, rel=1e-5)
    assert row["std_error"] == pytest.approx(se, rel=3e-5)
    assert fit.neg2loglik == pytest.approx(m2ll, abs=1e-6)
    assert fit.neg2loglik <= m2ll + 1e-8  # never worse than nlme's optimum
    S = fit.covariance.loc[["VIS2", "VIS3", "VIS4"], ["VIS2", "VIS3", "VIS4"]].to_numpy()
    upper = [S[i, j] for j in range(3) for i in range(j + 1)]
    np.testing.assert_allclose(upper, cov, rtol=2e-4)
