"""Spreadsheet templates of a protocol's forms: written for sites to fill in, read back for import.

Layout (an xlsx workbook with one sheet per table, or a folder with one CSV file per table):

- ``README``: how to fill the template in (xlsx sheet / ``README.txt``).
- ``subjects``: subject, site, screening_date, consent_date, eligible (the site's stated outcome,
  Y/N; capture re-evaluates the protocol's criteria on the screening forms and refuses a
  mismatch), enrolled_date, arm. The infusion date is not a column: it comes from the day-0 form.
- one table per form: subject, visit, visit_date and every field by its protocol name.
- ``adverse_events``: subject, ae_seq (1, 2, ... per subject) and the AE log's fields.
- ``disposition``: subject and the disposition fields.
- ``dictionary``: per field its label, type, unit, plausible range, decimals, required flag and
  code list, so the data entry person knows what each column accepts.

In the workbook, code-list columns carry drop-down lists, numeric columns range checks and every
header a comment with label and unit (openpyxl data validation); a hidden ``_lists`` sheet holds the
lists. Dates are ISO 8601 (YYYY-MM-DD) or real spreadsheet dates. A form cell may hold one of the
protocol's missing-data codes instead of a value, ``ND`` or ``ND: sample haemolysed`` (README and
header comments list the codes; the workbook's checks on those columns warn rather than stop). :func:`read_templates` turns a
filled template into :class:`~regenheart.exchange.records.SourceData` with the origin of every value
(file, sheet and row, column), applying a mapping file when the column names differ.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import math
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regenheart.exchange.mapping import Mapping
from regenheart.exchange.records import (
    AdverseEventEntry,
    FormEntry,
    Origin,
    Refusal,
    SourceData,
    SourceValue,
    SubjectEntry,
    Unmapped,
)
from regenheart.protocol.missing import coded, is_missing, missing_code, missing_reason
from regenheart.protocol.models import FieldDef, Protocol

SUBJECTS = "subjects"
ADVERSE_EVENTS = "adverse_events"
DISPOSITION = "disposition"
DICTIONARY = "dictionary"
README = "README"
LISTS = "_lists"
SUBJECT_COLUMNS = ("subject", "site", "screening_date", "consent_date", "eligible", "enrolled_date", "arm",
                   "synthetic")
FORM_LEAD = ("subject", "visit", "visit_date")
AE_LEAD = ("subject", "ae_seq")
DICTIONARY_COLUMNS = ("table", "column", "label", "type", "unit", "range_min", "range_max", "decimals", "required",
                      "codes")
VALIDATED_ROWS = 5000  # rows of each sheet that carry drop-downs and range checks
_RESERVED = {SUBJECTS, ADVERSE_EVENTS, DISPOSITION, DICTIONARY, README, LISTS}


class TemplateError(ValueError):
    """The protocol cannot be laid out as a template (e.g. a form named like a reserved sheet)."""


@dataclass(frozen=True)
class Table:
    """One sheet or CSV file of the template: its name, columns and (for filled templates) rows."""

    name: str
    columns: tuple[str, ...]
    kind: str  # subjects | form | adverse_events | disposition


def template_tables(protocol: Protocol) -> list[Table]:
    """The tables of the protocol's template, in workbook order."""
    clash = _RESERVED & set(protocol.forms)
    if clash:
        raise TemplateError(f"form name(s) {', '.join(sorted(clash))} clash with the template's own sheets")
    tables = [Table(SUBJECTS, SUBJECT_COLUMNS, "subjects")]
    for code, form in protocol.forms.items():
        tables.append(Table(code, FORM_LEAD + tuple(form.field_names), "form"))
    tables.append(Table(ADVERSE_EVENTS, AE_LEAD + tuple(protocol.adverse_events.field_names), "adverse_events"))
    tables.append(Table(DISPOSITION, ("subject", *protocol.disposition.field_names), "disposition"))
    return tables


def _codes_text(protocol: Protocol, fdef: FieldDef) -> str:
    if fdef.type != "code":
        return ""
    if fdef.codelist:
        return "; ".join(f"{c.code}={c.decode}" for c in protocol.codelists[fdef.codelist])
    return "; ".join(str(c) for c in fdef.codes or [])


def dictionary_rows(protocol: Protocol) -> list[dict[str, Any]]:
    """One row per template column: label, type, unit, plausible range, decimals, required, codes."""
    rows: list[dict[str, Any]] = []

    def lead(table: str, column: str, label: str, type_: str, required: bool, codes: str = "") -> None:
        rows.append({"table": table, "column": column, "label": label, "type": type_, "unit": "", "range_min": "",
                     "range_max": "", "decimals": "", "required": "Y" if required else "N", "codes": codes})

    sites = "; ".join(f"{s.code}={s.name}" for s in protocol.study.sites)
    arms = "; ".join(f"{a.code}={a.label}" for a in protocol.active_version.arms)
    for column, label, type_, required, codes in (
            ("subject", "Subject number", "text", True, ""), ("site", "Site", "code", True, sites),
            ("screening_date", "Screening date", "date", True, ""),
            ("consent_date", "Informed consent date", "date", True, ""),
            ("eligible", "Eligibility outcome as stated by the site", "code", False, "Y=Eligible; N=Not eligible"),
            ("enrolled_date", "Enrolment date (eligible subjects)", "date", False, ""),
            ("arm", "Arm (randomized designs)", "code", False, arms),
            ("synthetic", "Synthetic (generated) data, not a real patient", "code", False, "Y=Yes; N=No")):
        lead(SUBJECTS, column, label, type_, required, codes)

    def fields(table: str, defs: Iterable[FieldDef]) -> None:
        for f in defs:
            rows.append({"table": table, "column": f.name, "label": f.label, "type": f.type, "unit": f.unit or "",
                         "range_min": "" if f.range is None else f.range[0],
                         "range_max": "" if f.range is None else f.range[1],
                         "decimals": "" if f.decimals is None else f.decimals, "required": "Y" if f.required else "N",
                         "codes": _codes_text(protocol, f)})

    for code, form in protocol.forms.items():
        visits = ", ".join(v.code for v in protocol.visits if code in v.forms)
        lead(code, "subject", "Subject number", "text", True)
        lead(code, "visit", "Visit", "code", True, visits)
        lead(code, "visit_date", "Visit date", "date", True)
        fields(code, form.fields)
    lead(ADVERSE_EVENTS, "subject", "Subject number", "text", True)
    lead(ADVERSE_EVENTS, "ae_seq", "Adverse event number within the subject (1, 2, ...)", "integer", True)
    fields(ADVERSE_EVENTS, protocol.adverse_events.fields)
    lead(DISPOSITION, "subject", "Subject number", "text", True)
    fields(DISPOSITION, protocol.disposition.fields)
    return rows


def missing_code_lines(protocol: Protocol) -> list[str]:
    """README lines on the study's missing-data codes (none when the protocol declares no codes)."""
    if not protocol.missing_codes:
        return []
    codes = "; ".join(f"{m.code} = {m.label}" + (" (reason required)" if m.reason_required else "")
                      for m in protocol.missing_codes)
    return [
        ("7. Missing-data codes: a form field (not subjects, adverse events or disposition) that was not "
         "collected for a known reason holds a code instead of a value, alone or followed by a colon and the "
         "reason, e.g. 'ND: sample haemolysed'. A code list's own answer (a code list with NA) stays that answer. "
         f"Codes: {codes}."),
    ]


def _cell_text(value: Any) -> Any:
    """A stored value as a template cell: a missing-data code as ``CODE`` or ``CODE: reason``."""
    if is_missing(value):
        reason = missing_reason(value)
        return f"{missing_code(value)}: {reason}" if reason else missing_code(value)
    return value


def readme_lines(protocol: Protocol, *, synthetic: bool = False) -> list[str]:
    """How to fill the template in (README sheet or README.txt)."""
    lines = []
    if synthetic:
        lines += [("SYNTHETIC DATA: this filled template was generated from a synthetic regenheart database; "
                  "it is not trial data."), ""]
    lines += [
        (f"{protocol.study.acronym} ({protocol.study.nct_id}) data template, protocol version "
        f"{protocol.active_protocol_version}."),
        "",
        "How to fill it in:",
        ("1. 'subjects': one row per subject: number, site, screening date, informed consent date; 'eligible' is "
        "your eligibility outcome (Y/N); enrolment date (and arm, in randomized designs) for enrolled subjects."),
        ("2. One sheet (or CSV file) per form: one row per subject and visit, with the visit code and the visit date. "
        "Leave a cell empty when the value was not collected."),
        "3. 'adverse_events': one row per event, numbered 1, 2, ... within each subject (ae_seq).",
        "4. 'disposition': one row per subject who completed or left the study.",
        ("5. Column names are the protocol's field names; do not rename or add columns (an unknown column is "
        "reported and not imported). The 'dictionary' sheet gives each column's label, type, unit, plausible "
        "range, decimals, whether it is required, and its codes."),
        ("6. Dates: YYYY-MM-DD (or spreadsheet dates). Codes: the code, not its label (drop-downs offer them). "
        "Numbers: at most the decimals the dictionary allows, inside the plausible range."),
        *missing_code_lines(protocol),
        "",
        ("Importing: regenheart import --db STUDY.db FILE.xlsx (or a folder of CSV files). Every value goes through "
        "the same checks and audit trail as data typed into the EDC; add --dry-run to check without writing. "
        "The infusion date comes from the day-0 catheterization form; questionnaire scores are computed, "
        "never imported. Re-importing the same file changes nothing; a corrected file changes only what "
        "differs (audited, with the file's name and SHA-256 as the reason)."),
    ]
    return lines


# ---------------------------------------------------------------------------------------------
# Writing


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):  # NaN from pandas: an empty cell
        return None
    if isinstance(value, bool):
        return "Y" if value else "N"
    return value


def _text(value: Any) -> str:
    value = _cell(value)
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def write_templates(protocol: Protocol, out: str | Path, fmt: str = "xlsx",
                    rows: dict[str, list[dict[str, Any]]] | None = None, *, synthetic: bool = False) -> list[Path]:
    """Write the template (empty, or filled with ``rows`` per table name) into folder ``out``.

    ``fmt``: ``xlsx`` (one workbook ``<acronym>-data.xlsx``) or ``csv`` (one file per table plus
    ``dictionary.csv`` and ``README.txt``). Returns the files written.
    """
    if fmt not in ("xlsx", "csv"):
        raise TemplateError(f"unknown template format '{fmt}': use xlsx or csv")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = template_tables(protocol)
    rows = rows or {}
    if fmt == "csv":
        written = []
        for table in tables:
            path = out / f"{table.name}.csv"
            with path.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(table.columns)
                for row in rows.get(table.name, []):
                    writer.writerow([_text(row.get(c)) for c in table.columns])
            written.append(path)
        path = out / f"{DICTIONARY}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, DICTIONARY_COLUMNS)
            writer.writeheader()
            writer.writerows(dictionary_rows(protocol))
        readme = out / "README.txt"
        readme.write_text("\n".join(readme_lines(protocol, synthetic=synthetic)) + "\n", encoding="utf-8")
        return [*written, path, readme]
    path = out / f"{protocol.study.acronym.lower()}-data.xlsx"
    _write_workbook(protocol, tables, rows, path, synthetic)
    return [path]


def _write_workbook(protocol: Protocol, tables: list[Table], rows: dict[str, list[dict[str, Any]]], path: Path,
                    synthetic: bool) -> None:
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter, quote_sheetname
    from openpyxl.worksheet.datavalidation import DataValidation

    workbook = Workbook()
    readme = workbook.active
    readme.title = README
    for line in readme_lines(protocol, synthetic=synthetic):
        readme.append([line])
    readme.column_dimensions["A"].width = 140
    lists = workbook.create_sheet(LISTS)
    lists.sheet_state = "hidden"
    list_ranges: dict[str, str] = {}

    def list_range(key: str, codes: list[Any]) -> str:
        if key not in list_ranges:
            column = len(list_ranges) + 1
            letter = get_column_letter(column)
            lists.cell(row=1, column=column, value=key)
            for i, code in enumerate(codes, start=2):
                lists.cell(row=i, column=column, value=code)
            list_ranges[key] = f"{quote_sheetname(LISTS)}!${letter}$2:${letter}${len(codes) + 1}"
        return list_ranges[key]

    definitions = {row["table"] + "." + row["column"]: row for row in dictionary_rows(protocol)}
    missing = [m.code for m in protocol.missing_codes]
    codes_note = ("or a missing-data code: " + ", ".join(missing) + " (alone or 'CODE: reason')") if missing else ""
    bold = Font(bold=True)
    required_fill = PatternFill("solid", fgColor="FFF2CC")
    for table in tables:
        sheet = workbook.create_sheet(table.name)
        sheet.append(list(table.columns))
        sheet.freeze_panes = "B2"
        container = {"form": lambda n=table.name: protocol.forms[n], "adverse_events": lambda: protocol.adverse_events,
                     "disposition": lambda: protocol.disposition}.get(table.kind)
        fields = {f.name: f for f in container().fields} if container else {}
        for index, column in enumerate(table.columns, start=1):
            letter = get_column_letter(index)
            header = sheet.cell(row=1, column=index)
            header.font = bold
            meta = definitions.get(f"{table.name}.{column}", {})
            note = [str(meta.get("label", column))]
            if meta.get("unit"):
                note.append(f"unit: {meta['unit']}")
            if meta.get("range_min") != "" and meta.get("range_min") is not None:
                note.append(f"plausible range {meta['range_min']} to {meta['range_max']}")
            if meta.get("codes"):
                note.append(f"codes: {meta['codes']}"[:900])
            if meta.get("required") == "Y":
                note.append("required")
                header.fill = required_fill
            if codes_note and column in fields and table.kind == "form":
                note.append(codes_note)
            header.comment = Comment("\n".join(note), "regenheart")
            sheet.column_dimensions[letter].width = max(12, min(30, len(column) + 4))
            cells = f"{letter}2:{letter}{VALIDATED_ROWS}"
            validation = None
            fdef = fields.get(column)
            if fdef is not None and fdef.type == "code":
                key = fdef.codelist or f"{table.name}.{fdef.name}"
                validation = DataValidation(type="list", formula1=list_range(key, protocol.allowed_codes(fdef)))
            elif fdef is not None and fdef.range is not None:
                kind = "whole" if fdef.type == "integer" else "decimal"
                validation = DataValidation(type=kind, operator="between", formula1=str(fdef.range[0]),
                                            formula2=str(fdef.range[1]))
            elif column == "visit" and table.kind == "form":
                visits = [v.code for v in protocol.visits if table.name in v.forms]
                validation = DataValidation(type="list", formula1=list_range(f"visits.{table.name}", visits))
            elif column == "site" and table.kind == "subjects":
                validation = DataValidation(type="list",
                                            formula1=list_range("sites", [s.code for s in protocol.study.sites]))
            elif column in ("eligible", "synthetic") and table.kind == "subjects":
                validation = DataValidation(type="list", formula1=list_range("eligible", ["Y", "N"]))
            elif column == "arm" and table.kind == "subjects":
                validation = DataValidation(type="list", formula1=list_range(
                    "arms", [a.code for a in protocol.active_version.arms]))
            if validation is not None:
                validation.error = f"{column}: {meta.get('label', column)} - see the dictionary sheet"
                validation.errorTitle = "Value not allowed"
                validation.showErrorMessage = True
                if fdef is not None and table.kind == "form" and missing:
                    # a warning, not a stop: 'ND: sample haemolysed' must be enterable in a numeric column
                    validation.errorStyle = "warning"
                    validation.error += f" (or a missing-data code: {', '.join(missing)}, e.g. 'ND: reason')"
                sheet.add_data_validation(validation)
                validation.add(cells)
        for row in rows.get(table.name, []):
            sheet.append([_cell(row.get(c)) for c in table.columns])
        for cells_in_column, column in zip(sheet.iter_cols(min_row=2), table.columns, strict=False):
            if column.endswith("date"):
                for cell in cells_in_column:
                    cell.number_format = "yyyy-mm-dd"
    dictionary = workbook.create_sheet(DICTIONARY)
    dictionary.append(list(DICTIONARY_COLUMNS))
    for cell in dictionary[1]:
        cell.font = bold
    for row in dictionary_rows(protocol):
        dictionary.append([row[c] for c in DICTIONARY_COLUMNS])
    dictionary.freeze_panes = "C2"
    workbook.move_sheet(LISTS, offset=len(workbook.sheetnames))
    workbook.save(path)


def filled_rows(snapshot: Any, protocol: Protocol) -> dict[str, list[dict[str, Any]]]:
    """Template rows (per table) holding a study database's current data, from its snapshot."""
    import pandas as pd

    rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in template_tables(protocol)}
    subjects = snapshot.subjects
    for raw in subjects.to_dict("records") if len(subjects) else []:
        s = {k: None if _missing(v) or v is pd.NaT else v for k, v in raw.items() if not isinstance(v, list)}
        eligible = s.get("eligible")
        rows[SUBJECTS].append({
            "subject": s["subject_code"], "site": s["site_code"], "screening_date": s["screening_date"],
            "consent_date": s["consent_date"], "eligible": None if eligible is None else ("Y" if eligible else "N"),
            "enrolled_date": s.get("enrolled_date"), "arm": s.get("arm_code") if s.get("enrolled_date") else None,
            "synthetic": "Y" if s.get("synthetic") else None})
        if s.get("disposition"):
            rows[DISPOSITION].append({"subject": s["subject_code"], "status": s["disposition"],
                                      "date": s["disposition_date"], "reason": s.get("disposition_reason")})
    dates = {(v["subject_code"], v["visit_code"]): v["visit_date"] for v in snapshot.visits.to_dict("records")}
    order = {code: i for i, code in enumerate(protocol.visit_codes)}
    forms: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in snapshot.items.to_dict("records"):
        key = (item["form_code"], item["subject_code"], item["visit_code"])
        code = item.get("missing_code")
        reason = item.get("missing_reason")
        value = item["value"] if code is None or _missing(code) else \
            coded(code, None if reason is None or _missing(reason) else reason)
        forms.setdefault(key, {})[item["field"]] = _cell_text(value)
    for record in snapshot.forms.to_dict("records"):  # a saved form whose every value is empty still has a row
        forms.setdefault((record["form_code"], record["subject_code"], record["visit_code"]), {})
    for (form, subject, visit), values in sorted(forms.items(), key=lambda kv: (kv[0][1], order.get(kv[0][2], 99))):
        if form in rows:
            rows[form].append({"subject": subject, "visit": visit, "visit_date": dates.get((subject, visit)),
                               **values})
    fields = protocol.adverse_events.field_names
    for ae in snapshot.adverse_events.to_dict("records") if len(snapshot.adverse_events) else []:
        rows[ADVERSE_EVENTS].append({"subject": ae["subject_code"], "ae_seq": ae["ae_seq"],
                                     **{f: ae.get(f) for f in fields}})
    return rows


def write_filled_templates(snapshot: Any, protocol: Protocol, out: str | Path, fmt: str = "xlsx") -> list[Path]:
    """Write a study database's data (a :class:`~regenheart.store.snapshot.Snapshot`) as filled templates."""
    synthetic = snapshot.meta.get("synthetic") == "true" or bool(
        len(snapshot.subjects) and snapshot.subjects["synthetic"].any())
    return write_templates(protocol, out, fmt, filled_rows(snapshot, protocol), synthetic=synthetic)


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class _RawTable:
    """A table as read: its name (sheet or file stem), file shown in origins, header and data rows."""

    name: str
    file: str
    sheet: str | None
    header: list[str]
    rows: list[tuple[int, list[Any]]]  # (spreadsheet row number, cells)

    def origin(self, row: int | None = None, column: str | None = None) -> Origin:
        where = [f"sheet {self.sheet}"] if self.sheet else []
        if row is not None:
            where.append(f"row {row}")
        return Origin(self.file, ", ".join(where), column)


def _normalise(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.date() if value.time() == dt.time(0) else value
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _read_csv(path: Path, problems: list[Refusal]) -> _RawTable | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(Refusal(Origin(path.name), "unreadable", f"cannot read the file: {exc.strerror or exc}"))
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        problems.append(Refusal(Origin(path.name, f"row {line}"), "encoding",
                                f"not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
                                "save the file as CSV UTF-8", value=None))
        return None
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        problems.append(Refusal(Origin(path.name), "csv", f"malformed CSV: {exc}"))
        return None
    if not records:
        problems.append(Refusal(Origin(path.name), "empty", "the file is empty (no header row)"))
        return None
    header = [h.strip() for h in records[0]]
    rows = [(i, [_normalise(v) for v in r]) for i, r in enumerate(records[1:], start=2)]
    return _RawTable(path.stem, path.name, None, header, rows)


def _read_xlsx(path: Path, problems: list[Refusal]) -> list[_RawTable]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (OSError, zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, TypeError) as exc:
        problems.append(Refusal(Origin(path.name), "unreadable",
                                f"not a readable xlsx workbook ({exc.__class__.__name__}: {exc})"))
        return []
    tables = []
    try:
        for sheet in workbook.worksheets:
            if sheet.title in (README, DICTIONARY, LISTS):
                continue
            records = sheet.iter_rows(values_only=True)
            first = next(records, None)
            if first is None:
                continue
            header = ["" if h is None else str(h).strip() for h in first]
            while header and header[-1] == "":
                header.pop()
            rows = [(i, [_normalise(v) for v in r]) for i, r in enumerate(records, start=2)]
            tables.append(_RawTable(sheet.title, path.name, sheet.title, header, rows))
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        problems.append(Refusal(Origin(path.name), "unreadable", f"malformed xlsx workbook: {exc}"))
        return []
    finally:
        workbook.close()
    return tables


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        try:
            digest.update(path.read_bytes())
        except OSError:
            continue
    return digest.hexdigest()


class _Builder:
    """Assembles SubjectEntry objects from template tables, applying the mapping."""

    def __init__(self, protocol: Protocol, mapping: Mapping, data: SourceData):
        self.protocol = protocol
        self.mapping = mapping
        self.data = data
        self.subjects: dict[str, SubjectEntry] = {}
        self.seen_subject_rows: dict[str, Origin] = {}

    def subject(self, code: str, origin: Origin) -> SubjectEntry:
        entry = self.subjects.get(code)
        if entry is None:
            entry = self.subjects[code] = SubjectEntry(code, origin)
            self.data.subjects.append(entry)
        return entry

    def problem(self, origin: Origin, rule: str, message: str, subject: str | None = None, **kw: Any) -> None:
        self.data.problems.append(Refusal(origin, rule, message, subject, **kw))

    def columns(self, table: _RawTable, lead: tuple[str, ...], form: str | None,
                required: tuple[str, ...]) -> dict[int, tuple[str, str]] | None:
        """Map header positions to (form, field), lead columns to ('', name); None when the header is unusable."""
        aliases = {self.mapping.spec.subject.id: "subject", self.mapping.spec.subject.site: "site"}
        positions: dict[int, tuple[str, str]] = {}
        seen: dict[str, int] = {}
        for index, name in enumerate(table.header):
            if name == "":
                continue
            if name in seen:
                self.problem(table.origin(1, name), "duplicate_column",
                             f"column '{name}' appears twice (columns {seen[name] + 1} and {index + 1})")
                return None
            seen[name] = index
            lead_name = aliases.get(name, name)
            if lead_name in lead:
                positions[index] = ("", lead_name)
                seen[lead_name] = index
                continue
            if self.mapping.ignored(name):
                continue
            target = self.mapping.field(name, form) if form else None
            if target is None or target[0] != self.mapping.form(form or ""):
                self.data.unmapped.append(Unmapped(table.origin(1, name), f"column '{name}'",
                                                   f"is not a column of the {table.name} table (nor mapped to one)"))
                continue
            positions[index] = target
        missing = [c for c in required if c not in seen]
        if missing:
            self.problem(table.origin(1), "missing_column", f"required column(s) missing: {', '.join(missing)}")
            return None
        return positions

    def rows(self, table: _RawTable, positions: dict[int, tuple[str, str]]):
        for number, cells in table.rows:
            if all(c is None for c in cells):
                continue
            lead: dict[str, SourceValue] = {}
            values: dict[str, SourceValue] = {}
            for index, (form, name) in positions.items():
                raw = cells[index] if index < len(cells) else None
                value = SourceValue(raw, table.origin(number, table.header[index]))
                (values if form else lead)[name] = value
            extra = [c for i, c in enumerate(cells) if i >= len(table.header) and c is not None]
            if extra:
                self.problem(table.origin(number), "extra_cells", f"{len(extra)} value(s) beyond the last column "
                             "header", subject=self._code(lead), value=extra[0])
            code = self._code(lead)
            if code is None:
                self.problem(table.origin(number, "subject"), "required", "the subject number is missing")
                continue
            yield number, code, lead, values

    @staticmethod
    def _code(lead: dict[str, SourceValue]) -> str | None:
        raw = lead.get("subject")
        if raw is None or raw.raw is None:
            return None
        value = raw.raw
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value).strip()

    def date(self, value: SourceValue | None) -> SourceValue | None:
        if value is None or value.raw is None:
            return value
        raw = value.raw.isoformat() if isinstance(value.raw, dt.date) else self.mapping.date(value.raw)
        return SourceValue(raw, value.origin)

    def convert(self, form: str, values: dict[str, SourceValue]) -> dict[str, SourceValue]:
        converted = {}
        for (name, value) in values.items():
            raw = value.raw.isoformat() if isinstance(value.raw, dt.date) else value.raw
            raw = self.mapping.convert(form, name, raw)
            # "ND" or "ND: reason" in a form cell is a missing-data code (before the importer sees it)
            raw = self.mapping.missing(form, name, raw, value.origin.file, with_reason=True)
            converted[name] = SourceValue(raw, value.origin)
        return converted

    # ---------------------------------------------------------------- tables
    def subjects_table(self, table: _RawTable) -> None:
        positions = self.columns(table, SUBJECT_COLUMNS, None, SUBJECT_COLUMNS[:4])
        if positions is None:
            return
        for number, code, lead, _ in self.rows(table, positions):
            origin = table.origin(number)
            if code in self.seen_subject_rows:
                self.problem(origin, "duplicate", f"subject {code} has a second row (first: "
                             f"{self.seen_subject_rows[code].location})", subject=code)
                continue
            self.seen_subject_rows[code] = origin
            entry = self.subject(code, origin)
            entry.origin = origin
            site = lead.get("site")
            if (site is None or site.raw is None) and self.mapping.spec.subject.default_site:
                site = SourceValue(self.mapping.spec.subject.default_site, origin)
            if site is not None and isinstance(site.raw, float) and site.raw.is_integer():
                site = SourceValue(f"{int(site.raw):02d}", site.origin)
            entry.site = site
            entry.screening_date = self.date(lead.get("screening_date"))
            entry.consent_date = self.date(lead.get("consent_date"))
            entry.stated_eligible = lead.get("eligible")
            entry.enrolled_date = self.date(lead.get("enrolled_date"))
            entry.arm = lead.get("arm")
            entry.synthetic = lead.get("synthetic")

    def form_table(self, table: _RawTable, form: str) -> None:
        positions = self.columns(table, FORM_LEAD, table.name, FORM_LEAD)
        if positions is None:
            return
        first: dict[tuple[str, str], int] = {}
        for number, code, lead, values in self.rows(table, positions):
            origin = table.origin(number)
            visit_raw = lead.get("visit").raw if lead.get("visit") else None  # type: ignore[union-attr]
            visit = self.mapping.visit(str(visit_raw).strip()) if visit_raw is not None else None
            entry = self.subject(code, origin)
            if visit is None:
                self.problem(table.origin(number, "visit"), "unknown_visit" if visit_raw is not None else "required",
                             f"visit '{visit_raw}' is not a protocol visit (nor mapped to one)" if visit_raw is not None
                             else "the visit is missing", subject=code, form=form, field="visit", value=visit_raw)
                continue
            if (code, visit) in first:
                self.problem(origin, "duplicate", f"a second {form} row for subject {code} at visit {visit} "
                             f"(first: row {first[(code, visit)]})", subject=code, visit=visit, form=form)
                continue
            first[(code, visit)] = number
            entry.forms.append(FormEntry(visit, form, self.convert(form, values), origin,
                                         visit_date=self.date(lead.get("visit_date"))))

    def adverse_event_table(self, table: _RawTable) -> None:
        positions = self.columns(table, AE_LEAD, ADVERSE_EVENTS, ("subject",))
        if positions is None:
            return
        seen: dict[tuple[str, int], int] = {}
        for number, code, lead, values in self.rows(table, positions):
            origin = table.origin(number)
            entry = self.subject(code, origin)
            seq_value = lead.get("ae_seq")
            seq = None
            if seq_value is not None and seq_value.raw is not None:
                try:
                    seq = int(float(seq_value.raw))
                    if seq < 1 or float(seq_value.raw) != seq:
                        raise ValueError
                except (TypeError, ValueError):
                    self.problem(seq_value.origin, "type", "ae_seq must be a whole number from 1", subject=code,
                                 form=ADVERSE_EVENTS, field="ae_seq", value=seq_value.raw)
                    continue
                if (code, seq) in seen:
                    self.problem(origin, "duplicate", f"adverse event {seq} of subject {code} has a second row "
                                 f"(first: row {seen[(code, seq)]})", subject=code, form=ADVERSE_EVENTS)
                    continue
                seen[(code, seq)] = number
            entry.adverse_events.append(AdverseEventEntry(self.convert(ADVERSE_EVENTS, values), origin, seq))

    def disposition_table(self, table: _RawTable) -> None:
        positions = self.columns(table, ("subject",), DISPOSITION, ("subject",))
        if positions is None:
            return
        seen: dict[str, int] = {}
        for number, code, _, values in self.rows(table, positions):
            origin = table.origin(number)
            if code in seen:
                self.problem(origin, "duplicate", f"subject {code} has a second disposition row (first: row "
                             f"{seen[code]})", subject=code, form=DISPOSITION)
                continue
            seen[code] = number
            entry = self.subject(code, origin)
            entry.disposition = self.convert(DISPOSITION, values)
            entry.disposition_origin = origin


def read_templates(source: str | Path, protocol: Protocol, mapping: Mapping | None = None) -> SourceData:
    """Read a filled template (an xlsx workbook, or a folder of CSV files) into :class:`SourceData`.

    Never raises for bad content: unreadable or non-UTF-8 files, malformed workbooks, duplicate rows
    and columns, unknown visits and missing subject numbers become ``problems`` (each with file,
    sheet and row, column and value); unknown columns, sheets and files become ``unmapped``.
    """
    path = Path(source)
    mapping = mapping or Mapping.identity(protocol)
    problems: list[Refusal] = []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".csv")
        data = SourceData(str(source), _digest(files), "template")
        if not files:
            problems.append(Refusal(Origin(path.name), "empty", "the folder holds no .csv files"))
        tables = [t for t in (_read_csv(f, problems) for f in files if f.stem != DICTIONARY) if t is not None]
    elif path.is_file():
        data = SourceData(str(source), _digest([path]), "template")
        if path.suffix.lower() == ".csv":
            table = _read_csv(path, problems)
            tables = [table] if table else []
        else:
            tables = _read_xlsx(path, problems)
    else:
        data = SourceData(str(source), hashlib.sha256(b"").hexdigest(), "template")
        problems.append(Refusal(Origin(str(source)), "unreadable", "no such file or folder"))
        tables = []
    data.problems.extend(problems)
    builder = _Builder(protocol, mapping, data)
    order = {SUBJECTS: 0, ADVERSE_EVENTS: 2, DISPOSITION: 3}
    for table in sorted(tables, key=lambda t: order.get(t.name, 1)):
        if table.name == SUBJECTS:
            builder.subjects_table(table)
        elif table.name == ADVERSE_EVENTS:
            builder.adverse_event_table(table)
        elif table.name == DISPOSITION:
            builder.disposition_table(table)
        else:
            form = mapping.form(table.name)
            if form is None or form not in protocol.forms:
                what = f"sheet '{table.name}'" if table.sheet else f"file '{table.file}'"
                data.unmapped.append(Unmapped(table.origin(), what, "is not a protocol form (nor mapped to one)"))
                continue
            builder.form_table(table, form)
    return data


def template_columns(source: str | Path) -> list[tuple[str, str]]:
    """(table, column) of every header in a template-like source, for drafting a mapping file."""
    path = Path(source)
    problems: list[Refusal] = []
    if path.is_dir():
        tables = [t for t in (_read_csv(f, problems) for f in sorted(path.glob("*.csv"))) if t is not None]
    elif path.suffix.lower() == ".csv":
        tables = [t for t in [_read_csv(path, problems)] if t is not None]
    else:
        tables = _read_xlsx(path, problems)
    return [(t.name, column) for t in tables for column in t.header if column]
