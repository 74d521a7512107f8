"""Metadata of a CDISC dataset (SDTM or ADaM) travelling with its records.

The tabulation (:mod:`regenheart.derive.sdtm`) and analysis (:mod:`regenheart.derive.adam`)
builders return :class:`Dataset` objects; the writers at the edge (SAS XPT v5, Dataset-JSON 1.1,
Define-XML 2.1, conformance checks) read only this metadata and the records, so they know nothing
of any particular study.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

DataType = Literal["text", "integer", "float", "date", "datetime"]
Origin = Literal["Collected", "Derived", "Assigned", "Protocol", "Predecessor"]
Core = Literal["Req", "Exp", "Perm"]


@dataclass(frozen=True)
class Variable:
    """One column: name (<= 8), label (<= 40), Define data type, origin and where it comes from.

    ``codelist`` names a CDISC codelist by its NCI code (e.g. ``C66731`` SEX) or a sponsor codelist
    (``SPONSOR:<name>``); ``source`` says for Collected values the CRF form.field, for Predecessor
    the SDTM DOMAIN.VARIABLE, for Derived the method id (see :attr:`Dataset.methods`).
    """

    name: str
    label: str
    type: DataType
    origin: Origin = "Collected"
    source: str | None = None
    role: str | None = None           # SDTM role: Identifier, Topic, Timing, Grouping/Result/Record/Synonym Qualifier ...
    core: Core = "Perm"
    codelist: str | None = None
    length: int | None = None         # None: sized to the data by the writer
    significant_digits: int | None = None
    display_format: str | None = None  # e.g. DATE9. for ADaM numeric dates
    comment: str | None = None


@dataclass(frozen=True)
class ValueLevel:
    """Value-level metadata of a findings result variable: per --TESTCD (or PARAMCD) its unit and type."""

    variable: str                     # e.g. CVORRES, AVAL
    where_variable: str               # e.g. CVTESTCD, PARAMCD
    where_value: str                  # e.g. LVEF
    label: str
    type: DataType
    unit: str | None = None
    origin: Origin = "Collected"
    source: str | None = None
    codelist: str | None = None


@dataclass(frozen=True)
class Method:
    """A derivation, named in Define-XML (MethodDef) and referenced by variables' ``source``."""

    id: str                           # e.g. MT.DY
    name: str
    description: str
    type: Literal["Computation", "Imputation"] = "Computation"


@dataclass
class Dataset:
    """Records plus everything Define-XML and the writers need to describe them."""

    name: str                          # e.g. DM, SUPPAE, ADSL (<= 8)
    label: str                         # <= 40
    standard: Literal["SDTM", "ADaM"]
    structure: str                     # e.g. "One record per subject", "One record per subject per parameter per analysis visit"
    klass: str                         # Define class: SPECIAL PURPOSE, FINDINGS, EVENTS, INTERVENTIONS, TRIAL DESIGN, RELATIONSHIP, SUBJECT LEVEL ANALYSIS DATASET, BASIC DATA STRUCTURE, OCCURRENCE DATA STRUCTURE
    keys: list[str]
    variables: list[Variable]
    records: pd.DataFrame              # columns in the order of ``variables``
    value_level: list[ValueLevel] = field(default_factory=list)
    methods: list[Method] = field(default_factory=list)
    comment: str | None = None

    def variable(self, name: str) -> Variable:
        """The variable called ``name`` (KeyError if absent)."""
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(name)
