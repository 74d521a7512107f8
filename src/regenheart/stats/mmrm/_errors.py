"""Error and warning classes of the MMRM engine."""

from __future__ import annotations


class MMRMError(ValueError):
    """The model cannot be fitted as specified (bad formula, unusable data, singular design...).

    The message always names the cause (the column, level, visit or term concerned).
    """


class MMRMWarning(UserWarning):
    """The model was fitted, but something needs the analyst's attention.

    Examples: rows dropped for missing covariates, aliased (non-estimable) coefficients that were
    dropped, an empty factor level that was removed, an optimizer that did not converge, a Hessian
    that is not positive definite at the optimum.
    """
