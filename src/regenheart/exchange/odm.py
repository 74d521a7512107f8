"""CDISC ODM 1.3.2 both ways: :func:`write_odm` (a study database out) and :func:`read_odm` (clinical data in).

The writer is in :mod:`regenheart.exchange.odm_write`, the reader in :mod:`regenheart.exchange.odm_read`;
their module docstrings describe the file layout and the reading conventions.
"""

from __future__ import annotations

from regenheart.exchange.odm_read import odm_source_names, read_odm
from regenheart.exchange.odm_write import (
    ODM_NS,
    OdmExport,
    OdmExportError,
    build_metadata_odm,
    build_odm,
    write_metadata_odm,
    write_odm,
)

__all__ = ["ODM_NS", "OdmExport", "OdmExportError", "build_metadata_odm", "build_odm", "odm_source_names", "read_odm",
           "write_metadata_odm", "write_odm"]
