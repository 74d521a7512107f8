"""Analysis datasets (CDISC ADaM style) derived from a database snapshot: ADSL, ADEFF, ADAE, ADPSE."""

from regenheart.derive.adam import AnalysisDatasets, derive_all

__all__ = ["AnalysisDatasets", "derive_all"]
