"""Define-XML 2.1 for a set of SDTM or ADaM datasets, from the dataset metadata model alone.

The document (an ODM 1.3.2 extension, namespace ``http://www.cdisc.org/ns/def/v2.1``) holds:
Study/GlobalVariables; one MetaDataVersion with ``def:Standards`` (the implementation guide and the CT packages
used), ``def:SupplementalDoc`` (e.g. the study report), ``def:ValueListDef``/``def:WhereClauseDef`` for
value-level metadata (per --TESTCD or PARAMCD: type, unit, origin), one ItemGroupDef per dataset (structure,
class, purpose, keys, ``def:leaf`` to the transport file), one ItemDef per variable (type, length and
significant digits sized to the data, display format, origin and source), CodeLists (CDISC terms with their
NCI codes, extended values flagged ``def:ExtendedValue="Yes"``; sponsor codelists as enumerated values),
MethodDefs for every derivation, ``def:CommentDef`` and ``def:leaf`` for every referenced file.
The result validates against the CDISC Define-XML 2.1 schema (``define2-1-0.xsd``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
from lxml import etree

from regenheart.derive.datasets import Dataset, Method, ValueLevel, Variable
from regenheart.exchange.cdisc.ct import TerminologySet
from regenheart.exchange.cdisc.metadata import (
    SubmissionError,
    column,
    defined_length,
    display_format,
    external_dictionary,
    integer_length,
    item_group_oid,
    item_oid,
    kind,
    missing_mask,
    oid_part,
    significant_digits,
    text_column,
    text_length,
    text_series,
    value_level_oid,
    value_list_oid,
    where_clause_oid,
)

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
DEF_NS = "http://www.cdisc.org/ns/def/v2.1"
XLINK_NS = "http://www.w3.org/1999/xlink"
XML_NS = "http://www.w3.org/XML/1998/namespace"
NSMAP = {None: ODM_NS, "def": DEF_NS, "xlink": XLINK_NS}
STYLESHEET = "define.xsl"

# Implementation guide of each standard (Define-XML def:Standard Name/Version).
IMPLEMENTATION_GUIDES = {"SDTM": ("SDTMIG", "3.4"), "ADaM": ("ADaMIG", "1.3")}
PURPOSE = {"SDTM": "Tabulation", "ADaM": "Analysis"}


def _o(tag: str) -> str:
    return f"{{{ODM_NS}}}{tag}"


def _d(tag: str) -> str:
    return f"{{{DEF_NS}}}{tag}"


@dataclass(frozen=True)
class StudyInfo:
    """What Define-XML says about the study and the file (all text; times ISO 8601 UTC)."""

    oid: str
    name: str
    description: str
    protocol_name: str
    created_utc: str
    originator: str = "regenheart"
    source_system: str = "regenheart"
    source_system_version: str = ""
    note: str | None = None                      # becomes the MetaDataVersion comment (e.g. SYNTHETIC DATA)
    documents: Sequence[tuple[str, str, str]] = field(default_factory=tuple)  # (leaf id, href, title)


def _text(parent: etree._Element, tag: str, text: str) -> etree._Element:
    """``<tag><TranslatedText xml:lang="en">text</TranslatedText></tag>`` under ``parent``."""
    element = etree.SubElement(parent, tag)
    translated = etree.SubElement(element, _o("TranslatedText"))
    translated.set(f"{{{XML_NS}}}lang", "en")
    translated.text = text
    return element


def _define_type(dataset: Dataset, variable: Variable | ValueLevel) -> str:
    if isinstance(variable, Variable):
        k = kind(dataset, variable)
    else:
        k = kind(dataset, Variable(variable.variable, variable.label, variable.type))
    return {"text": "text", "integer": "integer", "float": "float", "sasdate": "integer",
            "sasdatetime": "integer"}.get(k, variable.type)


@dataclass
class _Codes:
    """Values a codelist must list (collected over every variable that references it)."""

    data_type: str
    values: set[str] = field(default_factory=set)


class _DefineBuilder:
    def __init__(self, datasets: Sequence[Dataset], standard: Literal["SDTM", "ADaM"], study: StudyInfo,
                 terminology: TerminologySet, files: dict[str, str]):
        self.datasets = datasets
        self.standard = standard
        self.study = study
        self.ct = terminology
        self.files = files
        self.codes: dict[str, _Codes] = {}
        self.comments: dict[str, str] = {}
        self.methods: dict[str, Method] = {}
        self.used_ct: set[str] = set()
        self.where_text: dict[tuple[str, str], pd.Series] = {}

    # ------------------------------------------------------------------ helpers
    def codelist_oid(self, ref: str) -> str:
        found = self.ct.find(ref)
        if found:
            return f"CL.{oid_part(found[1].short_name)}"
        external = external_dictionary(ref)
        if external:
            return f"CL.{oid_part(external[0])}"
        return f"CL.{oid_part(ref.removeprefix('SPONSOR:'))}"

    def note_codes(self, ref: str, dataset: Dataset, variable: Variable | ValueLevel, values: pd.Series) -> None:
        data_type = _define_type(dataset, variable)
        entry = self.codes.setdefault(ref, _Codes(data_type))
        entry.values.update(v for v in text_column(values) if v != "")

    def method_oid(self, dataset: Dataset, variable: Variable | ValueLevel) -> str | None:
        if variable.origin != "Derived" or not variable.source:
            return None
        for method in dataset.methods:
            if method.id == variable.source:
                known = self.methods.get(method.id)
                if known is not None and known != method:
                    raise SubmissionError(f"method {method.id} is defined twice with different content "
                                          f"(dataset {dataset.name})")
                self.methods[method.id] = method
                return method.id
        return None

    def origin(self, parent: etree._Element, variable: Variable | ValueLevel) -> None:
        origin = etree.SubElement(parent, _d("Origin"), Type=variable.origin)
        if variable.origin == "Collected":
            origin.set("Source", "Investigator")
        elif variable.origin in ("Derived", "Assigned", "Protocol"):
            origin.set("Source", "Sponsor")
        if variable.source and variable.origin != "Derived":
            _text(origin, _o("Description"), variable.source)

    # ------------------------------------------------------------------ sections
    def standards(self, mdv: etree._Element) -> None:
        standards = etree.SubElement(mdv, _d("Standards"))
        name, version = IMPLEMENTATION_GUIDES[self.standard]
        etree.SubElement(standards, _d("Standard"), OID="STD.IG", Name=name, Type="IG", Version=version,
                         Status="Final")
        packages = [self.ct.sdtm] if self.standard == "SDTM" else [self.ct.adam, self.ct.sdtm]
        for package in packages:
            etree.SubElement(standards, _d("Standard"), OID=f"STD.CT.{package.standard}", Name="CDISC/NCI",
                             Type="CT", PublishingSet=package.standard, Version=package.version, Status="Final")

    def supplemental_docs(self, mdv: etree._Element) -> None:
        if not self.study.documents:
            return
        docs = etree.SubElement(mdv, _d("SupplementalDoc"))
        for leaf_id, _href, _title in self.study.documents:
            etree.SubElement(docs, _d("DocumentRef"), leafID=leaf_id)

    def value_lists(self, mdv: etree._Element) -> list[tuple[Dataset, ValueLevel]]:
        """ValueListDefs and WhereClauseDefs; returns every value-level entry for its ItemDef."""
        entries: list[tuple[Dataset, ValueLevel]] = []
        where_clauses: list[etree._Element] = []
        for dataset in self.datasets:
            by_variable: dict[str, list[ValueLevel]] = defaultdict(list)
            for vl in dataset.value_level:
                by_variable[vl.variable].append(vl)
            for variable_name, levels in by_variable.items():
                if variable_name not in {v.name for v in dataset.variables}:
                    raise SubmissionError(f"dataset {dataset.name}: value-level metadata for {variable_name}, "
                                          "which is not a variable of the dataset")
                vl_def = etree.SubElement(mdv, _d("ValueListDef"), OID=value_list_oid(dataset.name, variable_name))
                for order, vl in enumerate(levels, start=1):
                    if vl.where_variable not in {v.name for v in dataset.variables}:
                        raise SubmissionError(f"dataset {dataset.name}: value-level metadata of {vl.variable} is "
                                              f"conditioned on {vl.where_variable}, which is not a variable")
                    rows = self.rows_of(dataset, vl)
                    mandatory = "Yes" if len(rows) and not missing_mask(rows).any() else "No"
                    ref = etree.SubElement(vl_def, _o("ItemRef"), ItemOID=value_level_oid(dataset.name, vl),
                                           OrderNumber=str(order), Mandatory=mandatory)
                    method = self.method_oid(dataset, vl)
                    if method:
                        ref.set("MethodOID", method)
                    etree.SubElement(ref, _d("WhereClauseRef"), WhereClauseOID=where_clause_oid(dataset.name, vl))
                    clause = etree.Element(_d("WhereClauseDef"), OID=where_clause_oid(dataset.name, vl))
                    check = etree.SubElement(clause, _o("RangeCheck"), Comparator="EQ", SoftHard="Soft")
                    check.set(_d("ItemOID"), item_oid(dataset.name, vl.where_variable))
                    etree.SubElement(check, _o("CheckValue")).text = vl.where_value
                    where_clauses.append(clause)
                    entries.append((dataset, vl))
        seen: set[str] = set()
        for clause in where_clauses:
            if clause.get("OID") not in seen:
                seen.add(clause.get("OID"))
                mdv.append(clause)
        return entries

    def rows_of(self, dataset: Dataset, vl: ValueLevel) -> pd.Series:
        key = (dataset.name, vl.where_variable)
        if key not in self.where_text:
            self.where_text[key] = text_series(column(dataset, vl.where_variable))
        return column(dataset, vl.variable)[self.where_text[key] == vl.where_value]

    def item_group(self, mdv: etree._Element, dataset: Dataset) -> None:
        subject_level = set(dataset.keys) <= {"STUDYID", "USUBJID"}
        attrs = {"OID": item_group_oid(dataset.name)}
        if self.standard == "SDTM":
            attrs["Domain"] = dataset.name
        attrs.update({"Name": dataset.name, "Repeating": "No" if subject_level else "Yes",
                      "IsReferenceData": "Yes" if dataset.klass == "TRIAL DESIGN" else "No",
                      "SASDatasetName": dataset.name, "Purpose": PURPOSE[self.standard]})
        group = etree.SubElement(mdv, _o("ItemGroupDef"), **attrs)
        group.set(_d("Structure"), dataset.structure)
        group.set(_d("StandardOID"), "STD.IG")
        group.set(_d("ArchiveLocationID"), f"LF.{dataset.name}")
        if dataset.comment:
            self.comments[f"COM.{dataset.name}"] = dataset.comment
            group.set(_d("CommentOID"), f"COM.{dataset.name}")
        _text(group, _o("Description"), dataset.label)
        for order, variable in enumerate(dataset.variables, start=1):
            values = column(dataset, variable.name)
            mandatory = variable.core == "Req" or variable.name in dataset.keys
            ref = etree.SubElement(group, _o("ItemRef"), ItemOID=item_oid(dataset.name, variable.name),
                                   OrderNumber=str(order), Mandatory="Yes" if mandatory else "No")
            if variable.name in dataset.keys:
                ref.set("KeySequence", str(dataset.keys.index(variable.name) + 1))
            method = self.method_oid(dataset, variable)
            if method:
                ref.set("MethodOID", method)
            if variable.role and self.standard == "SDTM":
                ref.set("Role", variable.role)
            if not mandatory and (len(values) == 0 or missing_mask(values).all()):
                ref.set(_d("HasNoData"), "Yes")
        etree.SubElement(group, _d("Class"), Name=dataset.klass)
        href = self.files.get(dataset.name, f"{dataset.name.lower()}.xpt")
        leaf = etree.SubElement(group, _d("leaf"), ID=f"LF.{dataset.name}")
        leaf.set(f"{{{XLINK_NS}}}href", href)
        etree.SubElement(leaf, _d("title")).text = href

    def item_def(self, mdv: etree._Element, dataset: Dataset, variable: Variable) -> None:
        values = column(dataset, variable.name)
        data_type = _define_type(dataset, variable)
        item = etree.SubElement(mdv, _o("ItemDef"), OID=item_oid(dataset.name, variable.name), Name=variable.name,
                                DataType=data_type)
        length = defined_length(dataset, variable, values)
        if data_type in ("text", "integer", "float") and length:
            item.set("Length", str(length))
        if data_type == "float":
            digits = variable.significant_digits if variable.significant_digits is not None \
                else significant_digits(values)
            item.set("SignificantDigits", str(digits))
        item.set("SASFieldName", variable.name)
        fmt = display_format(dataset, variable)
        if fmt:
            item.set(_d("DisplayFormat"), fmt)
        if variable.comment:
            oid = f"COM.{dataset.name}.{variable.name}"
            self.comments[oid] = variable.comment
            item.set(_d("CommentOID"), oid)
        _text(item, _o("Description"), variable.label)
        if variable.codelist:
            self.note_codes(variable.codelist, dataset, variable, values)
            etree.SubElement(item, _o("CodeListRef"), CodeListOID=self.codelist_oid(variable.codelist))
        self.origin(item, variable)
        if any(vl.variable == variable.name for vl in dataset.value_level):
            etree.SubElement(item, _d("ValueListRef"), ValueListOID=value_list_oid(dataset.name, variable.name))

    def value_item_def(self, mdv: etree._Element, dataset: Dataset, vl: ValueLevel) -> None:
        values = self.rows_of(dataset, vl)
        data_type = _define_type(dataset, vl)
        item = etree.SubElement(mdv, _o("ItemDef"), OID=value_level_oid(dataset.name, vl), Name=vl.variable,
                                DataType=data_type)
        if data_type == "text":
            item.set("Length", str(text_length(text_column(values))))
        elif data_type == "integer":
            item.set("Length", str(max(integer_length(values), 1)))
        elif data_type == "float":
            item.set("Length", "8")
            item.set("SignificantDigits", str(significant_digits(values)))
        item.set("SASFieldName", vl.variable)
        label = vl.label + (f" ({vl.unit})" if vl.unit else "")
        _text(item, _o("Description"), label)
        if vl.codelist:
            self.note_codes(vl.codelist, dataset, vl, values)
            etree.SubElement(item, _o("CodeListRef"), CodeListOID=self.codelist_oid(vl.codelist))
        self.origin(item, vl)

    def codelists(self, mdv: etree._Element) -> None:
        for ref in sorted(self.codes, key=self.codelist_oid):
            entry = self.codes[ref]
            found = self.ct.find(ref)
            oid = self.codelist_oid(ref)
            external = external_dictionary(ref)
            if found is None and external:
                cl = etree.SubElement(mdv, _o("CodeList"), OID=oid, Name=external[1], DataType=entry.data_type)
                etree.SubElement(cl, _o("ExternalCodeList"), Dictionary=external[0], Version=external[1])
                continue
            if found is None:
                if not ref.startswith("SPONSOR:"):
                    raise SubmissionError(f"codelist {ref!r} is neither in CDISC CT ({self.ct.sdtm.version}) nor a "
                                          "sponsor codelist ('SPONSOR:<name>')")
                cl = etree.SubElement(mdv, _o("CodeList"), OID=oid, Name=ref.removeprefix("SPONSOR:"),
                                      DataType=entry.data_type)
                cl.set(_d("IsNonStandard"), "Yes")
                values = sorted(entry.values, key=_order_key) or ["(no data)"]
                for order, value in enumerate(values, start=1):
                    etree.SubElement(cl, _o("EnumeratedItem"), CodedValue=value, OrderNumber=str(order))
                continue
            package, codelist = found
            self.used_ct.add(package.standard)
            cl = etree.SubElement(mdv, _o("CodeList"), OID=oid, Name=codelist.name, DataType=entry.data_type)
            cl.set(_d("StandardOID"), f"STD.CT.{package.standard}")
            # The codelist lists the terms used in the data (all terms when none is used).
            values = sorted(entry.values or set(codelist.terms), key=_order_key)
            for order, value in enumerate(values, start=1):
                term = codelist.terms.get(value)
                item = etree.SubElement(cl, _o("CodeListItem"), CodedValue=value, OrderNumber=str(order))
                if term is None:
                    item.set(_d("ExtendedValue"), "Yes")
                _text(item, _o("Decode"), term.preferred_term if term else value)
                if term is not None:
                    etree.SubElement(item, _o("Alias"), Context="nci:ExtCodeID", Name=term.code)
            etree.SubElement(cl, _o("Alias"), Context="nci:ExtCodeID", Name=codelist.code)

    def method_defs(self, mdv: etree._Element) -> None:
        for method in sorted(self.methods.values(), key=lambda m: m.id):
            element = etree.SubElement(mdv, _o("MethodDef"), OID=method.id, Name=method.name, Type=method.type)
            _text(element, _o("Description"), method.description)

    def comment_defs(self, mdv: etree._Element) -> None:
        for oid, text in self.comments.items():
            element = etree.SubElement(mdv, _d("CommentDef"), OID=oid)
            _text(element, _o("Description"), text)

    def leaves(self, mdv: etree._Element) -> None:
        for leaf_id, href, title in self.study.documents:
            leaf = etree.SubElement(mdv, _d("leaf"), ID=leaf_id)
            leaf.set(f"{{{XLINK_NS}}}href", href)
            etree.SubElement(leaf, _d("title")).text = title

    # ------------------------------------------------------------------ document
    def build(self) -> etree._ElementTree:
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise SubmissionError(f"dataset names must be unique in one Define-XML: {names}")
        wrong = [d.name for d in self.datasets if d.standard != self.standard]
        if wrong:
            raise SubmissionError(f"datasets {wrong} are not {self.standard} datasets")
        s = self.study
        root = etree.Element(_o("ODM"), nsmap=NSMAP, ODMVersion="1.3.2",
                             FileOID=f"{s.oid}.Define-XML.{self.standard}", FileType="Snapshot",
                             CreationDateTime=s.created_utc, Originator=s.originator, SourceSystem=s.source_system,
                             SourceSystemVersion=s.source_system_version or "unknown")
        root.set(_d("Context"), "Submission")
        study = etree.SubElement(root, _o("Study"), OID=s.oid)
        glob = etree.SubElement(study, _o("GlobalVariables"))
        etree.SubElement(glob, _o("StudyName")).text = s.name
        etree.SubElement(glob, _o("StudyDescription")).text = s.description
        etree.SubElement(glob, _o("ProtocolName")).text = s.protocol_name
        name, version = IMPLEMENTATION_GUIDES[self.standard]
        mdv = etree.SubElement(study, _o("MetaDataVersion"), OID=metadata_version_oid(s.oid, self.standard),
                               Name=f"{self.standard} datasets",
                               Description=f"{self.standard} datasets of {s.name} ({name} {version})")
        mdv.set(_d("DefineVersion"), "2.1.0")
        if s.note:
            self.comments["COM.MDV"] = s.note
            mdv.set(_d("CommentOID"), "COM.MDV")
        self.standards(mdv)
        self.supplemental_docs(mdv)
        entries = self.value_lists(mdv)
        for dataset in self.datasets:
            self.item_group(mdv, dataset)
        for dataset in self.datasets:
            for variable in dataset.variables:
                self.item_def(mdv, dataset, variable)
        for dataset, vl in entries:
            self.value_item_def(mdv, dataset, vl)
        self.codelists(mdv)
        self.method_defs(mdv)
        self.comment_defs(mdv)
        self.leaves(mdv)
        tree = etree.ElementTree(root)
        root.addprevious(etree.PI("xml-stylesheet", f'type="text/xsl" href="{STYLESHEET}"'))
        return tree


def _order_key(value: str) -> tuple[int, float, str]:
    """Numbers in numeric order, then text in alphabetical order."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def metadata_version_oid(study_oid: str, standard: str) -> str:
    """MetaDataVersion OID (also Dataset-JSON ``metaDataVersionOID``)."""
    return f"MDV.{oid_part(study_oid)}.{standard}"


def build_define(datasets: Iterable[Dataset], standard: Literal["SDTM", "ADaM"], study: StudyInfo,
                 terminology: TerminologySet, files: dict[str, str] | None = None) -> etree._ElementTree:
    """The Define-XML 2.1 document describing ``datasets`` (all of one standard).

    ``files`` maps a dataset name to the path of its transport file relative to define.xml (default
    ``<name lowercase>.xpt``); every CDISC codelist reference is resolved in ``terminology``.
    """
    return _DefineBuilder(list(datasets), standard, study, terminology, files or {}).build()


def write_define(tree: etree._ElementTree, path: Path) -> Path:
    """Write a Define-XML document (UTF-8, with XML declaration and the stylesheet instruction)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(str(path), xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return path
