"""CDISC Controlled Terminology (NCI EVS files): codelists by NCI code or short name, their terms, extensibility.

The SDTM package is the NCI EVS tab-delimited text file; the ADaM package is the EVS CSV. In both, a codelist
header row has an empty ``Codelist Code`` and its own C-code in ``Code``; a term row names its codelist in
``Codelist Code``. The value allowed in a dataset is the term's ``CDISC Submission Value``.
Loading is cached: each file is parsed once per process (about 0.2 s for the 13 MB SDTM file).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

TERMINOLOGY_DIR = Path(__file__).with_name("terminology")
SDTM_CT_FILE = TERMINOLOGY_DIR / "SDTM_Terminology_2025-03-28.txt.gz"
ADAM_CT_FILE = TERMINOLOGY_DIR / "ADaM_CT_2025-03-28.csv"
_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")


class TerminologyError(ValueError):
    """A CT file that cannot be read, or a codelist reference that names no codelist."""


@dataclass(frozen=True)
class Term:
    """One term of a codelist: NCI code, submission value, synonyms, NCI preferred term."""

    code: str
    value: str
    synonyms: tuple[str, ...]
    preferred_term: str
    definition: str


@dataclass(frozen=True)
class Codelist:
    """A CDISC codelist: NCI code (C66731), short name (SEX), long name, extensible flag and terms by value."""

    code: str
    short_name: str
    name: str
    extensible: bool
    terms: dict[str, Term] = field(default_factory=dict)

    def __contains__(self, value: object) -> bool:
        return value in self.terms


@dataclass(frozen=True)
class Terminology:
    """A CT package: its standard (SDTM, ADaM), version date, source file and codelists."""

    standard: str
    version: str
    path: Path
    codelists: dict[str, Codelist]      # by NCI code
    by_short_name: dict[str, Codelist]
    by_name: dict[str, Codelist] = field(default_factory=dict)

    def find(self, ref: str) -> Codelist | None:
        """The codelist named by NCI code (``C66731``), short name (``SEX``) or name (``Sex``), or None."""
        return self.codelists.get(ref) or self.by_short_name.get(ref) or self.by_name.get(ref)

    def get(self, ref: str) -> Codelist:
        """Like :meth:`find` but raises :class:`TerminologyError` naming the package when absent."""
        found = self.find(ref)
        if found is None:
            raise TerminologyError(f"codelist {ref!r} is not in {self.standard} CT {self.version} ({self.path.name})")
        return found


def _parse(frame: pd.DataFrame, standard: str, version: str, path: Path) -> Terminology:
    required = ["Code", "Codelist Code", "Codelist Extensible (Yes/No)", "Codelist Name", "CDISC Submission Value",
                "CDISC Synonym(s)", "CDISC Definition", "NCI Preferred Term"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise TerminologyError(f"{path}: not an NCI EVS CDISC terminology file (missing columns {missing})")
    frame = frame.rename(columns={"Code": "code", "Codelist Code": "parent", "Codelist Extensible (Yes/No)": "ext",
                                  "Codelist Name": "name", "CDISC Submission Value": "value",
                                  "CDISC Synonym(s)": "synonyms", "CDISC Definition": "definition",
                                  "NCI Preferred Term": "preferred"})
    codelists: dict[str, Codelist] = {
        row.code: Codelist(row.code, row.value, row.name, row.ext == "Yes", {})
        for row in frame[frame["parent"] == ""].itertuples(index=False)
    }
    for row in frame[frame["parent"] != ""].itertuples(index=False):
        parent = codelists.get(row.parent)
        if parent is None:
            raise TerminologyError(f"{path}: term {row.code} names codelist {row.parent}, which has no header row")
        synonyms = tuple(s.strip() for s in row.synonyms.split(";") if s.strip())
        parent.terms[row.value] = Term(row.code, row.value, synonyms, row.preferred, row.definition)
    return Terminology(standard, version, path, codelists, {c.short_name: c for c in codelists.values()},
                       {c.name: c for c in codelists.values()})


def _version_of(path: Path) -> str:
    match = _DATE.search(path.name)
    if not match:
        raise TerminologyError(f"{path}: the package date (YYYY-MM-DD) must be part of the file name")
    return match.group(1)


@functools.lru_cache(maxsize=8)
def load_terminology(path: Path, standard: str) -> Terminology:
    """Parse an NCI EVS CDISC CT file (tab-delimited ``.txt``/``.txt.gz`` or ``.csv``); cached per path."""
    try:
        sep = "," if path.name.endswith(".csv") else "\t"
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise TerminologyError(f"cannot read CDISC terminology {path}: {exc}") from exc
    frame.columns = [c.strip() for c in frame.columns]
    return _parse(frame, standard, _version_of(path), path)


def sdtm_ct(path: Path | None = None) -> Terminology:
    """The SDTM CT package (default: the shipped SDTM CT 2025-03-28)."""
    return load_terminology(Path(path or SDTM_CT_FILE), "SDTM")


def adam_ct(path: Path | None = None) -> Terminology:
    """The ADaM CT package (default: the shipped ADaM CT 2025-03-28)."""
    return load_terminology(Path(path or ADAM_CT_FILE), "ADaM")


@dataclass(frozen=True)
class TerminologySet:
    """The CT packages a submission uses; a reference is looked up in SDTM CT first, then ADaM CT."""

    sdtm: Terminology
    adam: Terminology

    def find(self, ref: str) -> tuple[Terminology, Codelist] | None:
        """(package, codelist) for an NCI code or short name, or None for a sponsor-defined codelist."""
        for package in (self.sdtm, self.adam):
            found = package.find(ref)
            if found is not None:
                return package, found
        return None


def default_terminology() -> TerminologySet:
    """SDTM CT and ADaM CT 2025-03-28, as shipped with regenheart."""
    return TerminologySet(sdtm_ct(), adam_ct())
