"""REDCap's file formats: the data dictionary, arms/events/instrument-event mapping CSVs, choices.

Facts from REDCap's own exports and client libraries (shared/reference/standards.md section 1):
the data dictionary has exactly the 18 columns of :data:`DICTIONARY_COLUMNS` (the API's
``content=metadata`` uses the snake_case names of :data:`API_COLUMNS`, also accepted here); choices
are ``code, label | code, label``; checkbox options export as ``field___code`` columns (0/1); every
instrument has a ``<form>_complete`` status (0 incomplete, 1 unverified, 2 complete); unique event
names are ``<name>_arm_<n>``. Pure functions on text rows; the readers report every problem with
file, row, column, value and rule.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

DICTIONARY_COLUMNS = (
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note", "Text Validation Type OR Show Slider Number",
    "Text Validation Min", "Text Validation Max", "Identifier?", "Branching Logic (Show field only if...)",
    "Required Field?", "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name",
    "Matrix Ranking?", "Field Annotation",
)
API_COLUMNS = (
    "field_name", "form_name", "section_header", "field_type", "field_label", "select_choices_or_calculations",
    "field_note", "text_validation_type_or_show_slider_number", "text_validation_min", "text_validation_max",
    "identifier", "branching_logic", "required_field", "custom_alignment", "question_number",
    "matrix_group_name", "matrix_ranking", "field_annotation",
)
FIELD_TYPES = ("text", "notes", "dropdown", "radio", "checkbox", "yesno", "truefalse", "calc", "file",
               "slider", "descriptive", "sql")
NOT_DATA_TYPES = ("calc", "file", "descriptive")  # nothing typed in: computed, uploaded or display-only
ARMS_COLUMNS = ("arm_num", "name")
EVENTS_COLUMNS = ("event_name", "arm_num", "unique_event_name", "custom_event_label", "day_offset",
                  "offset_min", "offset_max")
MAPPING_COLUMNS = ("arm_num", "unique_event_name", "form")
REPEATING_COLUMNS = ("event_name", "form_name", "custom_form_label")
IDENTITY_COLUMNS = ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
                    "redcap_data_access_group", "redcap_survey_identifier")
COMPLETE_SUFFIX = "_complete"
CHECKBOX_SEPARATOR = "___"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ARM_SUFFIX = re.compile(r"_arm_\d+$")


class RedcapFormatError(ValueError):
    """A REDCap file cannot be read (encoding, CSV syntax, headers); the message names file and row."""


@dataclass(frozen=True)
class DictionaryField:
    """One row of a REDCap data dictionary (API names); ``row`` is the 1-based CSV line of the row."""

    field_name: str
    form_name: str
    field_type: str
    field_label: str = ""
    section_header: str = ""
    select_choices_or_calculations: str = ""
    field_note: str = ""
    text_validation_type_or_show_slider_number: str = ""
    text_validation_min: str = ""
    text_validation_max: str = ""
    identifier: str = ""
    branching_logic: str = ""
    required_field: str = ""
    custom_alignment: str = ""
    question_number: str = ""
    matrix_group_name: str = ""
    matrix_ranking: str = ""
    field_annotation: str = ""
    row: int = 0

    @property
    def validation(self) -> str:
        return self.text_validation_type_or_show_slider_number.strip()

    @property
    def choices(self) -> list[tuple[str, str]]:
        return parse_choices(self.select_choices_or_calculations)

    @property
    def required(self) -> bool:
        return self.required_field.strip().lower() == "y"


@dataclass(frozen=True)
class RedcapEvent:
    """One row of an events CSV (REDCap: Arms/Events download or API ``content=event``)."""

    event_name: str
    arm_num: int
    unique_event_name: str
    custom_event_label: str = ""
    day_offset: float | None = None
    offset_min: float | None = None
    offset_max: float | None = None


def read_csv_rows(path: str | Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and rows of a CSV file as text; each row with its 1-based line number in the file.

    Accepts a UTF-8 byte-order mark (REDCap writes one). Raises :class:`RedcapFormatError` for a
    file that is not UTF-8, not CSV, has duplicate column names or a row with more cells than the header.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise RedcapFormatError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise RedcapFormatError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); export it again "
                                "from REDCap or convert it to UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise RedcapFormatError(f"{path}: the file is empty")
        header = [h.strip() for h in header]
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
            raise RedcapFormatError(f"{path}: line 1: duplicate column(s) {', '.join(duplicates)}")
        rows = []
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                raise RedcapFormatError(f"{path}: line {line}: {len(cells)} cells but the header has "
                                        f"{len(header)} columns (unquoted comma?)")
            rows.append((line, dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=True))))
    except csv.Error as exc:
        raise RedcapFormatError(f"{path}: line {reader.line_num}: not valid CSV: {exc}") from None
    return header, rows


def read_dictionary(path: str | Path) -> list[DictionaryField]:
    """Read a REDCap data dictionary CSV (UI headers or API names); every problem is one error line."""
    header, rows = read_csv_rows(path)
    if tuple(header[:18]) == DICTIONARY_COLUMNS:
        names = dict(zip(DICTIONARY_COLUMNS, API_COLUMNS, strict=True))
    elif tuple(header[:18]) == API_COLUMNS:
        names = {c: c for c in API_COLUMNS}
    else:
        missing = [c for c in DICTIONARY_COLUMNS if c not in header]
        raise RedcapFormatError(f"{path}: line 1: not a REDCap data dictionary: the 18 columns must be "
                                f"{', '.join(DICTIONARY_COLUMNS)} in this order"
                                + (f" (missing: {', '.join(missing)})" if missing else ""))
    fields: list[DictionaryField] = []
    problems: list[str] = []
    seen: set[str] = set()
    for line, row in rows:
        values = {names[k]: (v or "").strip() if names[k] != "field_label" else (v or "")
                  for k, v in row.items() if k in names}
        name, form, kind = values["field_name"], values["form_name"], values["field_type"]
        if not NAME.match(name):
            problems.append(f"line {line}, column Variable / Field Name: '{name}' is not a REDCap field name "
                            "(lower-case letters, digits, _; starts with a letter)")
        elif name in seen:
            problems.append(f"line {line}, column Variable / Field Name: '{name}' is defined twice")
        if not NAME.match(form):
            problems.append(f"line {line}, column Form Name: '{form}' is not a REDCap form name")
        if kind not in FIELD_TYPES:
            problems.append(f"line {line}, column Field Type: '{kind}' is not a REDCap field type "
                            f"({', '.join(FIELD_TYPES)})")
        if kind in ("dropdown", "radio", "checkbox"):
            try:
                choices = parse_choices(values["select_choices_or_calculations"])
                if not choices:
                    raise ValueError("no choices")
            except ValueError as exc:
                problems.append(f"line {line}, column Choices, Calculations, OR Slider Labels: "
                                f"'{values['select_choices_or_calculations']}': {exc}")
        seen.add(name)
        fields.append(DictionaryField(**values, row=line))
    if not fields:
        problems.append("the dictionary has no fields")
    if problems:
        raise RedcapFormatError(f"{path}: " + "; ".join(problems))
    return fields


def parse_choices(text: str) -> list[tuple[str, str]]:
    """``"1, Yes | 0, No"`` -> ``[("1", "Yes"), ("0", "No")]``; the label may itself hold commas."""
    if not text or not text.strip():
        return []
    out = []
    for part in text.split("|"):
        part = part.strip()
        if not part:
            continue
        code, sep, label = part.partition(",")
        if not sep or not code.strip():
            raise ValueError(f"choice '{part}' is not 'code, label'")
        out.append((code.strip(), label.strip()))
    codes = [c for c, _ in out]
    if len(set(codes)) != len(codes):
        raise ValueError("a choice code is used twice")
    return out


def format_choices(choices: list[tuple[str, str]]) -> str:
    """The inverse of :func:`parse_choices` (a '|' inside a label would split it: written as '/')."""
    return " | ".join(f"{code}, {label.replace('|', '/')}" for code, label in choices)


def _number(text: str, where: str, problems: list[str]) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        problems.append(f"{where}: '{text}' is not a number")
        return None


def read_events(path: str | Path) -> list[RedcapEvent]:
    """Read an events CSV (``event_name,arm_num,unique_event_name[,custom_event_label,day_offset,...]``)."""
    header, rows = read_csv_rows(path)
    missing = [c for c in ("event_name", "arm_num", "unique_event_name") if c not in header]
    if missing:
        raise RedcapFormatError(f"{path}: line 1: not a REDCap events file: missing column(s) {', '.join(missing)}")
    events, problems = [], []
    for line, row in rows:
        arm = _number(row["arm_num"], f"line {line}, column arm_num", problems)
        values = {k: _number(row.get(k, ""), f"line {line}, column {k}", problems)
                  for k in ("day_offset", "offset_min", "offset_max")}
        unique = row["unique_event_name"].strip()
        if not NAME.match(unique):
            problems.append(f"line {line}, column unique_event_name: '{unique}' is not a REDCap event name")
        events.append(RedcapEvent(row["event_name"].strip(), int(arm or 1), unique,
                                  row.get("custom_event_label", "").strip(), **values))
    if problems:
        raise RedcapFormatError(f"{path}: " + "; ".join(problems))
    return events


def read_event_mapping(path: str | Path) -> list[tuple[int, str, str]]:
    """Read an instrument-event mapping CSV: ``(arm_num, unique_event_name, form)`` rows."""
    header, rows = read_csv_rows(path)
    missing = [c for c in MAPPING_COLUMNS if c not in header]
    if missing:
        raise RedcapFormatError(f"{path}: line 1: not a REDCap instrument-event mapping: missing column(s) "
                                f"{', '.join(missing)}")
    out, problems = [], []
    for line, row in rows:
        arm = _number(row["arm_num"], f"line {line}, column arm_num", problems)
        out.append((int(arm or 1), row["unique_event_name"].strip(), row["form"].strip()))
    if problems:
        raise RedcapFormatError(f"{path}: " + "; ".join(problems))
    return out


def event_stem(unique_event_name: str) -> str:
    """``month_1_arm_1`` -> ``month_1``."""
    return _ARM_SUFFIX.sub("", unique_event_name)


def visit_code_for_event(unique_event_name: str) -> str:
    """The protocol visit code a drafted protocol gives a REDCap event: ``month_1_arm_1`` -> ``MONTH1``."""
    code = re.sub(r"[^A-Z0-9]", "", event_stem(unique_event_name).upper())
    return code if code[:1].isalpha() else f"V{code}"


def unique_event_name(event_name: str, arm: int = 1) -> str:
    """REDCap's unique event name: lower case, hyphens removed, other non-alphanumerics '_', ``_arm_N``."""
    stem = re.sub(r"[^a-z0-9]", "_", event_name.lower().replace("-", ""))
    return f"{stem}_arm_{arm}"


def write_csv(path: Path, columns: tuple[str, ...] | list[str], rows: list[dict[str, object]]) -> Path:
    """Write rows as UTF-8 CSV with every cell quoted when needed and '\\n' line ends (REDCap's import)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n", extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return path
