"""CDISC Dataset-JSON 1.1 (final 2024-12-05): one dataset per ``.json`` file.

Attribute order follows the specification (creation time, version, file OID, ..., itemGroupOID, records, name,
label, columns, rows). ``itemGroupOID``/``itemOID`` are the Define-XML OIDs (``IG.DM``, ``IT.DM.USUBJID``), so
a reader can join the file to the package's define.xml. Data types per the specification's "Supported Column
Data Type Combinations": text -> string, integer -> integer, float -> float (JSON number), SDTM ISO 8601 dates
-> date/datetime strings; ADaM numeric dates -> ISO 8601 strings with ``targetDataType: integer`` and the SAS
``displayFormat`` (the receiving system converts them to SAS dates). Missing values are null.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from regenheart.derive.datasets import Dataset, Variable
from regenheart.exchange.cdisc.metadata import (
    SubmissionError,
    as_date,
    as_datetime,
    defined_length,
    display_format,
    item_group_oid,
    item_oid,
    kind,
    numeric,
    text_series,
)

DATASET_JSON_VERSION = "1.1.0"


def _column(dataset: Dataset, variable: Variable) -> dict[str, Any]:
    k = kind(dataset, variable)
    col: dict[str, Any] = {"itemOID": item_oid(dataset.name, variable.name), "name": variable.name,
                           "label": variable.label}
    if k == "text":
        col["dataType"] = "string"
    elif k == "integer":
        col["dataType"] = "integer"
    elif k == "float":
        col["dataType"] = "float"
    elif k == "isodate":
        col["dataType"] = variable.type
    else:  # ADaM numeric date/datetime: ISO string in JSON, integer once received (spec section Date/Time)
        col["dataType"] = variable.type
        col["targetDataType"] = "integer"
    if k == "text":
        col["length"] = defined_length(dataset, variable)
    fmt = display_format(dataset, variable)
    if fmt:
        col["displayFormat"] = fmt
    if variable.name in dataset.keys:
        col["keySequence"] = dataset.keys.index(variable.name) + 1
    return col


def _values(dataset: Dataset, variable: Variable) -> list[Any]:
    values = dataset.records[variable.name]
    k = kind(dataset, variable)
    if k in ("text", "isodate"):
        # Character variables: '' and missing are the same to SAS; Dataset-JSON keeps missing as null.
        return [v or None for v in text_series(values).tolist()]
    if k == "integer":
        return [None if math.isnan(x) else int(x) for x in numeric(values)]
    if k == "float":
        return [None if math.isnan(x) else float(x) for x in numeric(values)]
    if k == "sasdate":
        return [None if (d := as_date(v)) is None else d.isoformat() for v in values]
    if k == "sasdatetime":
        return [None if (t := as_datetime(v)) is None else t.isoformat(timespec="seconds") for v in values]
    raise AssertionError(k)  # every storage kind is handled above


def dataset_json(dataset: Dataset, *, created_utc: str, study_oid: str | None = None,
                 metadata_version_oid: str | None = None, define_ref: str | None = "define.xml",
                 originator: str | None = None, source_system: tuple[str, str] | None = None,
                 db_last_modified_utc: str | None = None) -> dict[str, Any]:
    """The Dataset-JSON 1.1 document of ``dataset`` (a dict in the specification's attribute order).

    ``created_utc`` and ``db_last_modified_utc`` are ISO 8601 date-times (e.g. ``2026-01-01T10:00:00Z``).
    """
    missing = [v.name for v in dataset.variables if v.name not in dataset.records.columns]
    if missing:
        raise SubmissionError(f"dataset {dataset.name}: variables {missing} are described but not in the records")
    doc: dict[str, Any] = {"datasetJSONCreationDateTime": created_utc, "datasetJSONVersion": DATASET_JSON_VERSION}
    if study_oid:
        doc["fileOID"] = f"{study_oid}/{dataset.standard}/{dataset.name}"
    if db_last_modified_utc:
        doc["dbLastModifiedDateTime"] = db_last_modified_utc
    if originator:
        doc["originator"] = originator
    if source_system:
        doc["sourceSystem"] = {"name": source_system[0], "version": source_system[1]}
    if study_oid:
        doc["studyOID"] = study_oid
    if metadata_version_oid:
        doc["metaDataVersionOID"] = metadata_version_oid
    if define_ref:
        doc["metaDataRef"] = define_ref
    doc["itemGroupOID"] = item_group_oid(dataset.name)
    doc["records"] = len(dataset.records)
    doc["name"] = dataset.name
    doc["label"] = dataset.label
    doc["columns"] = [_column(dataset, v) for v in dataset.variables]
    columns = [_values(dataset, v) for v in dataset.variables]
    doc["rows"] = [list(row) for row in zip(*columns, strict=True)] if columns else []
    return doc


def write_dataset_json(dataset: Dataset, path: Path, **kwargs: Any) -> Path:
    """Write :func:`dataset_json` of ``dataset`` to ``path`` (UTF-8, compact rows); keyword arguments as there."""
    doc = dataset_json(dataset, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")), encoding="utf-8")
    return path
