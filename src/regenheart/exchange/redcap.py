"""REDCap in: a flat records export (CSV, raw coded values) as :class:`SourceData`.

``read_redcap_records(path, protocol, mapping, *, dictionary=None, events=None, event_mapping=None)``
reads the records export REDCap writes (``Export Data`` / API ``content=record&type=flat&format=csv``,
raw values, not labels). ``path`` is the CSV or a folder holding it (``records.csv``/``data.csv``)
with, when present, ``data_dictionary.csv``/``dictionary.csv``, ``events.csv`` and
``instrument_event_mapping.csv`` (the files :func:`regenheart.exchange.redcap_export.export_redcap`
writes, so an export reads back without a mapping file).

How REDCap's structure becomes the protocol's:

* the record ID (the mapping's ``subject.id``, else the dictionary's first field, else the first
  column) is the subject code; ``redcap_data_access_group`` is the site (a DAG named like a site
  code or ``site_<code>``), else the mapping's ``subject.default_site``, else the protocol's only site;
* ``redcap_event_name`` is the visit (the mapping's ``events``; else ``<visit>_arm_N`` by name); a
  classic project (no event column) is the protocol's first visit;
* columns are fields of their dictionary form (no dictionary: the form is read from the column
  order, each form's columns ending in ``<form>_complete``); checkbox columns ``field___code`` are
  the protocol's yes/no option fields of the same name (0/1); ``<form>_complete`` is consumed,
  never data; calculated, file and descriptive fields are reported as not imported;
* a value equal to one of the protocol's missing-data codes (REDCap's project setting "missing data
  codes": ``ND``, ``UNK``, ...) is that code, not a value, unless the field's own code list has it; a
  code that needs a reason gets ``recorded as <CODE> in <file>`` (REDCap keeps no reason);
* a form is taken at a visit when it holds a value (a ticked box counts, an unticked one does not)
  or is marked complete (2);
* the repeating instrument that maps to ``adverse_events`` is the AE log (instance = sequence);
  any other repeating instrument or repeating event keeps instance 1 as the visit's form and
  refuses further instances (capture holds one record per form and visit);
* subject dates and visit dates come from the export's ``enrolment``/``visit`` instruments, else
  from the protocol's ``dates`` section (``undated: entry_date``: today, said so in the origin).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
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
from regenheart.exchange.redcap_export import (
    AE_FORM,
    DISPOSITION_FORM,
    ENROLMENT,
    SCORES_SUFFIX,
    VISIT_FORM,
    dag_for,
    redcap_layout,
)
from regenheart.exchange.redcap_format import (
    CHECKBOX_SEPARATOR,
    COMPLETE_SUFFIX,
    IDENTITY_COLUMNS,
    NOT_DATA_TYPES,
    DictionaryField,
    RedcapFormatError,
    event_stem,
    read_csv_rows,
    read_dictionary,
    read_event_mapping,
    read_events,
    visit_code_for_event,
)
from regenheart.protocol.models import Protocol

__all__ = ["RedcapFormatError", "read_redcap_records"]

RECORD_FILES = ("records.csv", "data.csv")
DICTIONARY_FILES = ("data_dictionary.csv", "dictionary.csv")
EVENT_FILES = ("events.csv",)
MAPPING_FILES = ("instrument_event_mapping.csv",)


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _blank(text: str | None) -> bool:
    return text is None or text.strip() == ""


class _Resolver:
    """Source column -> (protocol container, field), from the mapping, the export layout and the names."""

    def __init__(self, protocol: Protocol, mapping: Mapping):
        self.protocol = protocol
        self.mapping = mapping
        self.layout = redcap_layout(protocol)
        # The log forms, unless a visit form has the same name (a project drafted from REDCap): forms win.
        self.containers = {}
        if protocol.adverse_events is not None:
            self.containers[AE_FORM] = protocol.adverse_events
        if protocol.disposition is not None:
            self.containers[DISPOSITION_FORM] = protocol.disposition
        self.containers.update(protocol.forms)
        # regenheart's export instruments that are not protocol forms (enrolment facts, visit dates, logs)
        self._cache: dict[tuple[str, str | None], tuple[str, str] | None] = {}
        self.pseudo = {name for name in (ENROLMENT, VISIT_FORM, AE_FORM, DISPOSITION_FORM) if name not in protocol.forms}

    def is_ae_log(self, source_form: str) -> bool:
        return self.protocol.adverse_events is not None and AE_FORM in self.pseudo and self.form(source_form) == AE_FORM

    def form(self, source_form: str | None) -> str | None:
        if source_form is None:
            return None
        if source_form in self.mapping.spec.forms:
            return self.mapping.spec.forms[source_form]
        return source_form if source_form in self.containers else None

    def field(self, column: str, source_form: str | None) -> tuple[str, str] | None:
        key = (column, source_form)
        if key not in self._cache:  # asked once per cell: rows x columns
            self._cache[key] = self._field(column, source_form)
        return self._cache[key]

    def _field(self, column: str, source_form: str | None) -> tuple[str, str] | None:
        explicit = self.mapping.spec.fields.get(column)
        if explicit is not None:
            form, _, name = explicit.partition(".")
            return (form, name) if form in self.containers and name in self.containers[form].field_names else None
        form = self.form(source_form)
        if form is not None and column in self.containers[form].field_names:
            return form, column
        if column in self.layout.columns:  # the names of regenheart's own export
            container, name = self.layout.columns[column]
            if container in self.containers or container in self.pseudo:
                return container, name
        if column in self.layout.checkbox_columns:
            return self.layout.checkbox_columns[column]
        if form is not None or source_form in self.pseudo:
            return None
        matches = [name for name, c in self.containers.items() if column in c.field_names]
        return (matches[0], column) if len(matches) == 1 else None


def _column_forms(header: list[str], dictionary: list[DictionaryField] | None) -> dict[str, str | None]:
    """The REDCap form of every data column (from the dictionary, else from the column order)."""
    forms: dict[str, str | None] = {}
    if dictionary is not None:
        by_name = {f.field_name: f for f in dictionary}
        for column in header:
            base = column.split(CHECKBOX_SEPARATOR)[0] if CHECKBOX_SEPARATOR in column else column
            f = by_name.get(column) or by_name.get(base)
            forms[column] = f.form_name if f else None
        return forms
    pending: list[str] = []
    for column in header:
        if column in IDENTITY_COLUMNS:
            continue
        if column.endswith(COMPLETE_SUFFIX):
            form = column.removesuffix(COMPLETE_SUFFIX)
            for name in pending:
                forms[name] = form
            pending = []
        else:
            pending.append(column)
    for name in pending:
        forms[name] = None
    return forms


def read_redcap_records(path: str | Path, protocol: Protocol, mapping: Mapping, *,
                        dictionary: str | Path | None = None, events: str | Path | None = None,
                        event_mapping: str | Path | None = None) -> SourceData:
    """Read a REDCap flat records export into :class:`SourceData` (protocol names, raw values).

    File-level problems (not UTF-8, malformed CSV, a dictionary without REDCap's 18 columns) are
    returned as ``problems`` with no subjects; value-level problems as refusals with row and column.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    records = _find(path, RECORD_FILES) if path.is_dir() else path
    if path.is_dir():
        dictionary = dictionary or _find(folder, DICTIONARY_FILES)
        events = events or _find(folder, EVENT_FILES)
        event_mapping = event_mapping or _find(folder, MAPPING_FILES)
    source = SourceData(source=str(path), sha256="", format="redcap")
    if records is None:
        source.problems.append(Refusal(Origin(str(path)), "file", f"no {' or '.join(RECORD_FILES)} in the folder"))
        return source
    digest = hashlib.sha256()
    for extra in sorted({p for p in (records, dictionary, events, event_mapping) if p}, key=str):
        try:
            digest.update(Path(extra).read_bytes())
        except OSError as exc:
            source.problems.append(Refusal(Origin(str(extra)), "file", f"cannot read: {exc.strerror}"))
            return source
    source.sha256 = digest.hexdigest()
    try:
        fields = read_dictionary(dictionary) if dictionary else None
        event_rows = read_events(events) if events else []
        designations = read_event_mapping(event_mapping) if event_mapping else []
        header, rows = read_csv_rows(records)
    except RedcapFormatError as exc:
        source.problems.append(Refusal(Origin(str(exc).split(": ", 1)[0]), "format", str(exc)))
        return source
    _Reader(source, str(records), protocol, mapping, header, fields, event_rows, designations).read(rows)
    return source


class _Reader:
    def __init__(self, source: SourceData, file: str, protocol: Protocol, mapping: Mapping, header: list[str],
                 fields: list[DictionaryField] | None, event_rows, designations):
        self.source, self.file, self.protocol, self.mapping = source, file, protocol, mapping
        self.header, self.fields = header, fields
        self.resolver = _Resolver(protocol, mapping)
        self.kinds = {f.field_name: f.field_type for f in fields} if fields else {}
        self.forms = _column_forms(header, fields)
        self.id_column = mapping.spec.subject.id or (fields[0].field_name if fields else header[0])
        self.site_column = mapping.spec.subject.site or "redcap_data_access_group"
        self.event_labels = {e.unique_event_name: e for e in event_rows}
        # REDCap designations need no check here: a form's data at a visit that does not collect it
        # are refused by the protocol's schedule (the visit_form rule below).
        del designations
        self.today = dt.datetime.now(dt.UTC).date().isoformat()
        self.subjects: dict[str, SubjectEntry] = {}
        self.unmapped_seen: set[str] = set()

    # ------------------------------------------------------------------ lookups
    def _unmapped(self, what: str, note: str | None = None, column: str | None = None) -> None:
        if what not in self.unmapped_seen:
            self.unmapped_seen.add(what)
            args = (Origin(self.file, "line 1", column), what) + ((note,) if note else ())
            self.source.unmapped.append(Unmapped(*args))

    def _visit(self, event: str) -> str | None:
        visit = self.mapping.visit(event)
        if visit is not None:
            return visit
        codes = self.protocol.visit_codes
        for candidate in (visit_code_for_event(event), event_stem(event).upper()):
            if candidate in codes:
                return candidate
        label = self.event_labels.get(event)
        if label is not None:
            for v in self.protocol.visits:
                if label.event_name in (v.code, v.label) or label.custom_event_label == v.label:
                    return v.code
        return None

    def _site(self, raw: str | None) -> str | None:
        if not _blank(raw):
            raw = raw.strip()
            for site in self.protocol.study.sites:
                if raw in (site.code, dag_for(site.code)):
                    return site.code
            return raw
        if self.mapping.spec.subject.default_site:
            return self.mapping.spec.subject.default_site
        sites = self.protocol.study.sites
        return sites[0].code if len(sites) == 1 else None

    # ------------------------------------------------------------------ rows
    def read(self, rows: list[tuple[int, dict[str, str]]]) -> None:
        if self.id_column not in self.header:
            self.source.problems.append(Refusal(Origin(self.file, "line 1"), "record_id",
                                                f"no record ID column '{self.id_column}' in the header"))
            return
        self._report_columns()
        longitudinal = "redcap_event_name" in self.header
        first_visit = self.protocol.visits[0].code
        for line, row in rows:
            where = Origin(self.file, f"line {line}")
            code = (row.get(self.id_column) or "").strip()
            if not code:
                self.source.problems.append(Refusal(Origin(self.file, f"line {line}", self.id_column), "required",
                                                    "the record ID is blank"))
                continue
            subject = self.subjects.get(code)
            if subject is None:
                subject = SubjectEntry(code=code, origin=where)
                self.subjects[code] = subject
                self.source.subjects.append(subject)
            site_raw = row.get(self.site_column)
            if subject.site is None or not _blank(site_raw):
                site = self._site(site_raw)
                if site is not None:
                    column = self.site_column if not _blank(site_raw) else None
                    subject.site = SourceValue(site, Origin(self.file, f"line {line}", column)
                                               if column else Origin("mapping/protocol", "default site"))
            event = (row.get("redcap_event_name") or "").strip() if longitudinal else ""
            visit = self._visit(event) if longitudinal else first_visit
            if visit is None:
                self._unmapped(f"event '{event}'", column="redcap_event_name")
                continue
            repeat_form = (row.get("redcap_repeat_instrument") or "").strip()
            instance_text = (row.get("redcap_repeat_instance") or "").strip()
            instance = int(instance_text) if instance_text.isdigit() else None
            if instance_text and instance is None:
                self._refuse(where, "redcap_repeat_instance", instance_text, "type",
                             "the repeat instance must be a whole number", subject=code)
                continue
            if repeat_form and self.resolver.is_ae_log(repeat_form):
                self._adverse_event(subject, row, line, repeat_form, instance)
                continue
            if instance is not None and instance > 1:
                self._refuse(where, "redcap_repeat_instance", instance_text, "repeat_instance",
                             f"instance {instance} of {repeat_form or 'event ' + event}: the protocol holds one "
                             f"record per form and visit; only instance 1 is imported", subject=code, visit=visit)
                continue
            self._row(subject, row, line, visit, event, repeat_form or None)

    def _refuse(self, origin: Origin, column: str, value: Any, rule: str, message: str, **where: Any) -> None:
        self.source.problems.append(Refusal(Origin(origin.file, origin.location, column), rule, message,
                                            value=value, **where))

    def _report_columns(self) -> None:
        for column in self.header:
            if column in IDENTITY_COLUMNS or column == self.id_column or column == self.site_column:
                continue
            if column.endswith(COMPLETE_SUFFIX) and column not in self.resolver.layout.columns:
                continue
            base = column.split(CHECKBOX_SEPARATOR)[0]
            if self.mapping.ignored(column) or self.mapping.ignored(base):
                continue  # deliberately not imported (the mapping file's ignore list)
            kind = self.kinds.get(column) or self.kinds.get(base)
            if kind in NOT_DATA_TYPES:
                self._unmapped(f"column '{column}'", f"REDCap {kind} field: not imported (no value to capture)",
                               column)
                continue
            form = self.forms.get(column)
            if form is not None and form.endswith(SCORES_SUFFIX) and form.removesuffix(SCORES_SUFFIX) in \
                    self.protocol.forms:
                self._unmapped(f"column '{column}'", "derived score: recomputed by capture from the item "
                                                     "responses, not imported", column)
                continue
            if self.resolver.field(column, form) is None:
                self._unmapped(f"column '{column}'", column=column)

    def _values(self, row: dict[str, str], line: int, only_form: str | None) -> dict[str, dict[str, SourceValue]]:
        """Mapped non-blank values of one row by protocol container (checkbox 0s kept, see _row)."""
        out: dict[str, dict[str, SourceValue]] = defaultdict(dict)
        for column, raw in row.items():
            if column in IDENTITY_COLUMNS or column == self.id_column or _blank(raw) or column.endswith(COMPLETE_SUFFIX):
                continue
            if self.mapping.ignored(column):
                continue
            form = self.forms.get(column)
            if only_form is not None and form != only_form:
                continue
            target = self.resolver.field(column, form)
            if target is None:
                continue
            container, name = target
            value = raw.strip() if CHECKBOX_SEPARATOR in column else raw
            if container in self.resolver.containers:
                value = self.mapping.convert(container, name, value)
                # REDCap's missing-data codes ("ND" in any field) become the coded value here, before the
                # importer: a code needing a reason gets "recorded as ND in <file>" (REDCap keeps no reason)
                if CHECKBOX_SEPARATOR not in column:
                    value = self.mapping.missing(container, name, value, Path(self.file).name)
            out[container][name] = SourceValue(value, Origin(self.file, f"line {line}", column))
        return out

    def _complete(self, row: dict[str, str], redcap_form: str) -> bool:
        return (row.get(f"{redcap_form}{COMPLETE_SUFFIX}") or "").strip() == "2"

    def _row(self, subject: SubjectEntry, row: dict[str, str], line: int, visit: str, event: str,
             only_form: str | None) -> None:
        values = self._values(row, line, only_form)
        where = Origin(self.file, f"line {line}")
        pseudo = self.resolver.pseudo
        enrolment = values.pop(ENROLMENT, {}) if ENROLMENT in pseudo else {}
        attributes = {"arm_code": "arm", "eligible": "stated_eligible"}
        for key in ("screening_date", "consent_date", "eligible", "enrolled_date", "arm_code"):
            if key in enrolment:
                setattr(subject, attributes.get(key, key), enrolment[key])
        visit_date = values.pop(VISIT_FORM, {}).get("visit_date") if VISIT_FORM in pseudo else None
        dates = self.protocol.dates
        if dates is not None:
            for key, attr in (("screening", "screening_date"), ("consent", "consent_date"),
                              ("enrolment", "enrolled_date")):
                target = getattr(dates, key)
                if target and getattr(subject, attr) is None:
                    form, _, name = target.partition(".")
                    if name in values.get(form, {}):
                        setattr(subject, attr, values[form][name])
            if visit_date is None and dates.visit:
                visit_date = next((v[dates.visit] for v in values.values() if dates.visit in v), None)
        disposition = values.pop(DISPOSITION_FORM, None) if DISPOSITION_FORM in pseudo else None
        if disposition:
            subject.disposition, subject.disposition_origin = disposition, where
        if AE_FORM in pseudo:
            values.pop(AE_FORM, None)
        source_forms = {self.forms.get(c) for c in row if self.forms.get(c)}
        for form, form_values in values.items():
            if form not in self.protocol.visit(visit).forms:
                for sv in form_values.values():
                    self._refuse(sv.origin, sv.origin.column or "", sv.raw, "visit_form",
                                 f"form {form} is not collected at visit {visit}", subject=subject.code,
                                 visit=visit, form=form)
                continue
            ticked = any(CHECKBOX_SEPARATOR not in (sv.origin.column or "") or str(sv.raw).strip() == "1"
                         for sv in form_values.values())
            complete = any(self._complete(row, f) for f in source_forms if self.resolver.form(f) == form)
            if not (ticked or complete):
                continue  # REDCap writes 0 for every unticked box of a form never entered
            subject.forms.append(FormEntry(visit, form, form_values, where, visit_date or self._undated(
                "visit date", line)))
        self._fill_undated(subject, line)

    def _undated(self, what: str, line: int) -> SourceValue | None:
        if self.protocol.dates is not None and self.protocol.dates.undated == "entry_date":
            return SourceValue(self.today, Origin(self.file, f"line {line}: no {what} in the source; date of "
                                                             "entry (protocol dates.undated)"))
        return None

    def _fill_undated(self, subject: SubjectEntry, line: int) -> None:
        for attr, what in (("screening_date", "screening date"), ("consent_date", "consent date"),
                           ("enrolled_date", "enrolment date")):
            if getattr(subject, attr) is None:
                setattr(subject, attr, self._undated(what, line))

    def _adverse_event(self, subject: SubjectEntry, row: dict[str, str], line: int, repeat_form: str,
                       instance: int | None) -> None:
        values = self._values(row, line, repeat_form).get(AE_FORM, {})
        if values:
            subject.adverse_events.append(AdverseEventEntry(values, Origin(self.file, f"line {line}"), instance))
