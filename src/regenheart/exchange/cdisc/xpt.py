"""SAS transport version 5 (XPORT) files, the format FDA and PMDA require for SDTM and ADaM datasets.

Written with pyreadstat's ``write_xport(..., file_format_version=5)``. Version 5 limits, checked before
anything is written (a value that cannot fit is a :class:`SubmissionError` naming dataset, variable and
subject, never silently truncated): dataset and variable names at most 8 characters (letters, digits,
underscore, not starting with a digit), dataset and variable labels at most 40 characters, character values
at most 200 bytes. Character lengths are sized to the data (readstat stores each text column with the
width of its longest value). ADaM dates are SAS numeric dates with a display format (DATE9. by default).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyreadstat

from regenheart.derive.datasets import Dataset
from regenheart.exchange.cdisc.metadata import (
    SubmissionError,
    byte_lengths,
    display_format,
    kind,
    numeric,
    sas_date,
    sas_datetime,
    subject_of,
    text_column,
)

MAX_NAME = 8
MAX_LABEL = 40
MAX_CHAR_BYTES = 200
SAS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def xpt_problems(dataset: Dataset) -> list[tuple[str | None, int | None, str]]:
    """Every reason ``dataset`` cannot go into XPT v5: (variable or None, row or None, message)."""
    problems: list[tuple[str | None, int | None, str]] = []
    if len(dataset.name) > MAX_NAME or not SAS_NAME.match(dataset.name):
        problems.append((None, None, (f"dataset name {dataset.name!r} is not a SAS v5 name "
                                     f"(at most {MAX_NAME} letters, digits or '_', not starting with a digit)")))
    if len(dataset.label) > MAX_LABEL:
        problems.append((None, None, (f"dataset label {dataset.label!r} has {len(dataset.label)} characters "
                                     f"(at most {MAX_LABEL})")))
    for variable in dataset.variables:
        if len(variable.name) > MAX_NAME or not SAS_NAME.match(variable.name):
            problems.append((variable.name, None, (f"variable name {variable.name!r} is not a SAS v5 name "
                                                  f"(at most {MAX_NAME} letters, digits or '_')")))
        if len(variable.label) > MAX_LABEL:
            problems.append((variable.name, None, (f"label {variable.label!r} has {len(variable.label)} characters "
                                                  f"(at most {MAX_LABEL})")))
        if kind(dataset, variable) in ("text", "isodate") and variable.name in dataset.records.columns:
            values = text_column(dataset.records[variable.name])
            for row, size in enumerate(byte_lengths(values)):
                if size > MAX_CHAR_BYTES:
                    value = values[row]
                    problems.append((variable.name, row, (f"value of {size} bytes (at most {MAX_CHAR_BYTES}): "
                                                         f"{value[:40]!r}...")))
    return problems


def xpt_frame(dataset: Dataset) -> tuple[pd.DataFrame, dict[str, str]]:
    """The records as SAS can hold them (text or float64) in the order of the metadata, and the formats."""
    missing = [v.name for v in dataset.variables if v.name not in dataset.records.columns]
    if missing:
        raise SubmissionError(f"dataset {dataset.name}: variables {missing} are described but not in the records")
    out: dict[str, object] = {}
    formats: dict[str, str] = {}
    for variable in dataset.variables:
        values = dataset.records[variable.name]
        k = kind(dataset, variable)
        if k in ("text", "isodate"):
            # numpy object arrays: pyreadstat reads them much faster than pandas string arrays
            out[variable.name] = pd.Series(text_column(values), dtype=object, index=range(len(values)))
        elif k == "sasdate":
            out[variable.name] = [sas_date(v) for v in values]
        elif k == "sasdatetime":
            out[variable.name] = [sas_datetime(v) for v in values]
        else:
            out[variable.name] = numeric(values).to_numpy()
        fmt = display_format(dataset, variable)
        if fmt:
            formats[variable.name] = fmt.rstrip(".")
    frame = pd.DataFrame(out, index=range(len(dataset.records)))
    for variable in dataset.variables:
        if kind(dataset, variable) not in ("text", "isodate"):
            frame[variable.name] = frame[variable.name].astype(float)
    return frame, formats


def write_xpt(dataset: Dataset, path: Path) -> Path:
    """Write ``dataset`` as a SAS transport v5 file at ``path`` (file name conventionally ``<name>.xpt``)."""
    problems = xpt_problems(dataset)
    if problems:
        variable, row, message = problems[0]
        where = f"dataset {dataset.name}" + (f", variable {variable}" if variable else "") + \
                (f", {subject_of(dataset, row)} (row {row + 1})" if row is not None else "")
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise SubmissionError(f"{where}: cannot be written as SAS XPT v5: {message}{more}")
    frame, formats = xpt_frame(dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        pyreadstat.write_xport(frame, str(path), file_label=dataset.label, table_name=dataset.name,
                               column_labels=[v.label for v in dataset.variables], file_format_version=5,
                               variable_format=formats or None)
    except pyreadstat.ReadstatError as exc:
        path.unlink(missing_ok=True)
        raise SubmissionError(f"dataset {dataset.name}: SAS XPT v5 writer refused it: {exc}") from exc
    return path
