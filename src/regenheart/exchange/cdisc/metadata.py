"""Shared reading of the dataset metadata model for every CDISC writer: OIDs, storage kinds, sizes.

One place decides how a variable is stored (text, integer, float, SAS numeric date, ISO 8601 text), how long
a text variable is (sized to the data, in bytes), and which OIDs name datasets and variables, so the XPT,
Dataset-JSON and Define-XML files of one package always agree.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd

from regenheart.derive.datasets import Dataset, ValueLevel, Variable

SAS_EPOCH = dt.date(1960, 1, 1)
SAS_EPOCH_DATETIME = dt.datetime(1960, 1, 1)
MAX_SIGNIFICANT_DIGITS = 8
Kind = Literal["text", "integer", "float", "sasdate", "sasdatetime", "isodate"]


class SubmissionError(ValueError):
    """Data or metadata that cannot be written in a submission format; the message names what and where."""


# Dictionaries Define-XML names in ExternalCodeList (CDISC "External Code List Dictionary", C66788).
EXTERNAL_DICTIONARIES = ("ISO 3166", "ISO 8601", "ISO 21090", "MedDRA", "WHODD", "WHODrug", "LOINC", "SNOMED",
                         "UNII", "CTCAE", "ICD-O", "ICD", "MED-RT", "COSTART", "WHOART", "D-U-N-S NUMBER")


def external_dictionary(ref: str) -> tuple[str, str] | None:
    """(dictionary, version) when a codelist reference names an external dictionary, e.g.
    ``ISO 3166-1 alpha-3`` -> ("ISO 3166", "ISO 3166-1 alpha-3") or ``EXTERNAL:MedDRA:27.1``."""
    if ref.startswith("EXTERNAL:"):
        _, dictionary, version = (ref.split(":", 2) + [""])[:3]
        return dictionary, version or "unspecified"
    for dictionary in EXTERNAL_DICTIONARIES:
        if ref == dictionary or ref.startswith((dictionary + " ", dictionary + "-")):
            return dictionary, ref
    return None


def item_group_oid(dataset: str) -> str:
    """Define-XML ItemGroupDef OID and Dataset-JSON itemGroupOID of a dataset, e.g. ``IG.DM``."""
    return f"IG.{dataset}"


def item_oid(dataset: str, variable: str) -> str:
    """ItemDef OID and Dataset-JSON itemOID, e.g. ``IT.DM.USUBJID``."""
    return f"IT.{dataset}.{variable}"


def oid_part(text: str) -> str:
    """A value made safe for use inside an OID (letters, digits, '.', '_', '-')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(text)) or "_"


def value_level_oid(dataset: str, vl: ValueLevel) -> str:
    """ItemDef OID of a value-level definition, e.g. ``IT.CV.CVORRES.LVEF``."""
    return f"IT.{dataset}.{vl.variable}.{oid_part(vl.where_value)}"


def where_clause_oid(dataset: str, vl: ValueLevel) -> str:
    """WhereClauseDef OID, e.g. ``WC.CV.CVTESTCD.LVEF``."""
    return f"WC.{dataset}.{vl.where_variable}.{oid_part(vl.where_value)}"


def value_list_oid(dataset: str, variable: str) -> str:
    return f"VL.{dataset}.{variable}"


def kind(dataset: Dataset, variable: Variable) -> Kind:
    """How a variable is stored: ADaM dates are SAS numeric dates (days since 1960-01-01) / datetimes
    (seconds), SDTM dates and every ``*DTC`` variable are ISO 8601 text."""
    if variable.type in ("date", "datetime"):
        if dataset.standard == "ADaM" and not variable.name.endswith("DTC"):
            return "sasdate" if variable.type == "date" else "sasdatetime"
        return "isodate"
    if variable.type == "integer":
        return "integer"
    if variable.type == "float":
        return "float"
    return "text"


def is_missing(value: Any) -> bool:
    """None, NaN, NaT and pandas NA are missing; an empty string is missing text."""
    if value is None:
        return True
    if isinstance(value, str):
        return value == ""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def as_text(value: Any) -> str:
    """Text of a value for a character variable ('' when missing; dates as ISO 8601; 3.0 as '3')."""
    if is_missing(value):
        return ""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds") if value.time() != dt.time(0) else value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def as_date(value: Any) -> dt.date | None:
    """A date from a date, datetime, Timestamp or ISO 8601 text (None when missing or partial)."""
    if is_missing(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def as_datetime(value: Any) -> dt.datetime | None:
    """A datetime from a datetime, date (midnight), Timestamp or ISO 8601 text."""
    if is_missing(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime().replace(tzinfo=None)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    try:
        return dt.datetime.fromisoformat(str(value)).replace(tzinfo=None)
    except ValueError:
        return None


def sas_date(value: Any) -> float:
    """SAS date: days since 1960-01-01 (NaN when missing)."""
    d = as_date(value)
    return math.nan if d is None else float((d - SAS_EPOCH).days)


def sas_datetime(value: Any) -> float:
    """SAS datetime: seconds since 1960-01-01T00:00:00 (NaN when missing)."""
    t = as_datetime(value)
    return math.nan if t is None else (t - SAS_EPOCH_DATETIME).total_seconds()


def missing_mask(values: pd.Series) -> pd.Series:
    """True where a value is missing (None, NaN, NaT, NA or an empty string)."""
    return values.isna() | (values.astype(object) == "")


def numeric(values: pd.Series) -> pd.Series:
    """A column as float64 (missing and non-numbers as NaN); booleans become 1/0."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    cleaned = values.astype(object).where(~missing_mask(values), math.nan)
    return pd.to_numeric(cleaned.map(lambda v: float(v) if isinstance(v, bool) else v), errors="coerce").astype(float)


def iso_dates(values: pd.Series) -> pd.Series:
    """Complete dates (YYYY-MM-DD...) of a column as ``datetime.date``; partial or missing values as None."""
    text = text_series(values)
    head = text.str.slice(0, 10).where(text.str.len() >= 10)
    parsed = pd.to_datetime(head, format="%Y-%m-%d", errors="coerce")
    return pd.Series([None if pd.isna(t) else t.date() for t in parsed], index=values.index, dtype=object)


def text_series(values: pd.Series) -> pd.Series:
    """A column as text ('' when missing), vectorised when every value already is text."""
    if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        return values.fillna("")
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        return values.astype(object).fillna("")
    return values.map(as_text).astype(object)


def text_column(values: pd.Series) -> list[str]:
    """:func:`text_series` as a list."""
    return text_series(values).tolist()


def byte_lengths(values: Iterable[str]) -> list[int]:
    """UTF-8 length of each text (characters when all are ASCII, the common case, without encoding)."""
    values = list(values)
    if "".join(values).isascii():
        return list(map(len, values))
    return [len(v.encode("utf-8")) for v in values]


def text_length(values: Iterable[str]) -> int:
    """Length of a character variable sized to the data: longest value in UTF-8 bytes (at least 1)."""
    return max(byte_lengths(values) + [1])


def significant_digits(values: pd.Series) -> int:
    """Digits after the decimal point needed to show every value exactly (capped at 8)."""
    x = numeric(values).dropna().to_numpy()
    if len(x) == 0:
        return 0
    for digits in range(MAX_SIGNIFICANT_DIGITS + 1):
        if np.all(np.abs(np.round(x, digits) - x) <= 1e-9 * np.maximum(1.0, np.abs(x))):
            return digits
    return MAX_SIGNIFICANT_DIGITS


def integer_length(values: pd.Series) -> int:
    """Characters of the longest integer (sign included), at least 1."""
    x = numeric(values).dropna()
    return max([len(str(int(v))) for v in x] + [1])


def display_format(dataset: Dataset, variable: Variable) -> str | None:
    """The SAS display format: the variable's own, else DATE9./DATETIME20. for ADaM numeric dates."""
    if variable.display_format:
        return variable.display_format
    return {"sasdate": "DATE9.", "sasdatetime": "DATETIME20."}.get(kind(dataset, variable))


def column(dataset: Dataset, name: str) -> pd.Series:
    """The records of a variable (an all-missing column when the records lack it)."""
    if name in dataset.records.columns:
        return dataset.records[name]
    return pd.Series([None] * len(dataset.records), index=dataset.records.index, dtype=object)


def defined_length(dataset: Dataset, variable: Variable, values: pd.Series | None = None) -> int | None:
    """Define-XML/Dataset-JSON length: the variable's own, else sized to the data (text, integer, float)."""
    if variable.length:
        return variable.length
    values = column(dataset, variable.name) if values is None else values
    k = kind(dataset, variable)
    if k == "text":
        return text_length(text_column(values))
    if k in ("integer", "float", "sasdate", "sasdatetime"):
        return 8
    return None


def with_text_columns(dataset: Dataset) -> Dataset:
    """A copy of ``dataset`` whose character and ISO 8601 columns already hold text ('' when missing), so the
    writers, which each read every column, convert each value once (same output, several times faster)."""
    records = dataset.records.copy(deep=False)
    for variable in dataset.variables:
        if variable.name in records.columns and kind(dataset, variable) in ("text", "isodate"):
            records[variable.name] = pd.Series(text_column(records[variable.name]), index=records.index,
                                               dtype=object)
    return dataclasses.replace(dataset, records=records)


def subject_of(dataset: Dataset, row: int) -> str:
    """USUBJID of a record (for messages), or its row number when the dataset has none."""
    if "USUBJID" in dataset.records.columns:
        return f"USUBJID {as_text(dataset.records['USUBJID'].iloc[row]) or '(missing)'}"
    return f"record {row + 1}"
