"""Mixed models for repeated measures (MMRM), in numpy/scipy, matching SAS PROC MIXED.

Public API::

    from regenheart.stats.mmrm import fit_mmrm, fit_ancova, MMRMResult, MMRMError, MMRMWarning

    fit = fit_mmrm(df, "FEV1 ~ RACE + SEX + ARMCD*AVISIT + us(AVISIT | USUBJID)", df="satterthwaite")
    fit.coefficients            # estimate, std_error, df, t_value, p_value by R-style term name
    fit.lsmeans(["AVISIT", "ARMCD"]); fit.pairwise("ARMCD", by="AVISIT"); fit.type3()

Conventions (details in ``MMRMResult``): coefficient names follow R (``"ARMCDTRT:AVISITVIS2"``;
``fit.coef()`` also takes ``"ARMCD[TRT]:AVISIT[VIS2]"`` and other spellings); pairwise differences
are later level minus earlier level (TRT - PBO); AIC/BIC follow SAS (REML: k = covariance
parameters; BIC's n = subjects in SAS's Dimensions table); ``loglik`` includes the 2 pi constant.

References: Satterthwaite (1946) Biometrics Bulletin 2:110-114; Kenward & Roger (1997) Biometrics
53:983-997; Kuznetsova, Brockhoff & Christensen (2017) lmerTest, J Stat Softw 82(13) (the multi-df
Satterthwaite F); SAS/STAT PROC MIXED documentation (REML objective, DDFM= methods, type 3 tests).
"""

from ._errors import MMRMError, MMRMWarning
from .fit import fit_ancova, fit_mmrm
from .formula import parse_formula
from .result import MMRMResult

__all__ = ["MMRMError", "MMRMResult", "MMRMWarning", "fit_ancova", "fit_mmrm", "parse_formula"]
