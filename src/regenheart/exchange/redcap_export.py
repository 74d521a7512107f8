"""A study as a REDCap project: data dictionary, arms, events, instrument-event mapping, records.

Layout (:func:`redcap_layout`, shared with the reader so an export reads back without a mapping):

* one arm; one event per protocol visit (``scr_arm_1`` for visit ``SCR``) with ``day_offset`` =
  target day and ``offset_min``/``offset_max`` = the window's distance below/above it;
* instrument ``enrolment`` at the first event: ``record_id`` (first field of the first form, as
  REDCap requires), screening, consent and enrolment dates, arm; the site is the record's data
  access group (``site_<code>``);
* instrument ``visit`` (``visit_date``) at every event: REDCap events carry no date of their own;
* each protocol form as an instrument at the events of the visits that collect it;
* the adverse-event log as the repeating instrument ``adverse_events`` at the first event
  (instance = AE sequence number), the disposition as ``disposition`` at the last event;
* derived questionnaire scores as ``@READONLY`` number fields of a separate instrument
  ``<form>_scores`` (never calculated fields: REDCap would recompute them with its own formula,
  and they are re-derived by capture on import, not read back).

Field names are unique project-wide (REDCap's rule): a protocol field keeps its name unless another
form uses it too (then ``<form>_<field>``); log fields are prefixed ``ae_`` / ``ds_``. Protocol
fields named ``<base>___<code>`` with codes 0/1 are the options of one REDCap checkbox ``<base>``.
"""

from __future__ import annotations

import ast
import datetime as dt
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from regenheart.exchange.redcap_format import (
    ARMS_COLUMNS,
    CHECKBOX_SEPARATOR,
    COMPLETE_SUFFIX,
    DICTIONARY_COLUMNS,
    EVENTS_COLUMNS,
    MAPPING_COLUMNS,
    REPEATING_COLUMNS,
    format_choices,
    write_csv,
)
from regenheart.exchange.redcap_logic import Untranslatable, discrepancy_logic
from regenheart.protocol.models import FieldDef, Protocol
from regenheart.protocol.rules import compile_rule
from regenheart.store.snapshot import Snapshot

RECORD_ID = "record_id"
ENROLMENT = "enrolment"
VISIT_FORM = "visit"
AE_FORM = "adverse_events"
DISPOSITION_FORM = "disposition"
SCORES_SUFFIX = "_scores"
ENROLMENT_FIELDS = ("screening_date", "consent_date", "eligible", "enrolled_date", "arm_code")
TEXT_MAX = 255  # longer (or unlimited) text becomes a 'notes' box
FILES = {"dictionary": "data_dictionary.csv", "arms": "arms.csv", "events": "events.csv",
         "mapping": "instrument_event_mapping.csv", "repeating": "repeating_instruments.csv",
         "dags": "data_access_groups.csv", "rules": "data_quality_rules.csv", "records": "records.csv",
         "missing_codes": "missing_data_codes.txt", "readme": "README.txt"}
DQ_COLUMNS = ("rule_name", "rule_logic", "real_time_execution")
_OPTION = re.compile(r"^([a-z][a-z0-9_]*?)___([a-z0-9_]+)$")


@dataclass
class Item:
    """One REDCap field of the layout; ``targets`` maps export columns to (container, protocol field)."""

    name: str
    form: str
    kind: str                 # REDCap field type
    label: str
    choices: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""
    validation: str = ""
    vmin: str = ""
    vmax: str = ""
    required: bool = False
    branching: str = ""
    annotation: str = ""
    container: str = ""       # protocol form, 'adverse_events', 'disposition', 'enrolment', 'visit', scores
    source: str | None = None  # protocol field (None: a checkbox, see options; or the record ID)
    options: dict[str, str] = field(default_factory=dict)  # checkbox code -> protocol option field
    decimals: int | None = None

    @property
    def columns(self) -> list[str]:
        if self.kind == "checkbox":
            return [f"{self.name}{CHECKBOX_SEPARATOR}{code}" for code, _ in self.choices]
        return [self.name]


@dataclass
class Instrument:
    name: str
    label: str
    items: list[Item]
    repeating: bool = False


@dataclass
class Layout:
    """The REDCap project of a protocol: instruments in order, events and designations."""

    instruments: list[Instrument]
    events: list[dict[str, Any]]              # rows of events.csv
    designations: dict[str, list[str]]        # unique event name -> instruments
    visit_event: dict[str, str]               # protocol visit -> unique event name
    columns: dict[str, tuple[str, str]]       # export column -> (container, protocol field)
    checkbox_columns: dict[str, tuple[str, str]]  # 'race___1' -> (container, option field)

    def instrument(self, name: str) -> Instrument:
        return next(i for i in self.instruments if i.name == name)


def event_name_for(visit_code: str) -> str:
    return f"{visit_code.lower()}_arm_1"


def dag_for(site_code: str) -> str:
    """The data access group's unique name for a site (REDCap: lower-case letters, digits, _)."""
    return "site_" + re.sub(r"[^a-z0-9]", "_", site_code.lower())


def _codes(protocol: Protocol, f: FieldDef) -> list[tuple[str, str]]:
    if f.codelist is not None:
        return [(str(c.code), c.decode) for c in protocol.codelists[f.codelist]]
    return [(str(c), str(c)) for c in (f.codes or [])]


def _validation(f: FieldDef) -> str:
    if f.type == "integer":
        return "integer"
    if f.type == "float":
        if f.decimals == 0:
            return "integer"
        if f.decimals is not None and 1 <= f.decimals <= 4:
            return f"number_{f.decimals}dp"
        return "number"
    return "date_ymd" if f.type == "date" else ""


def _fmt_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else format(Decimal(str(x)), "f")


def _branching(protocol: Protocol, checks, target: str, rename) -> str:
    """``x == 'N' or target is not None`` (target needed unless x is N) -> show target if ``[x] = 'Y'``.

    Only that shape is translated; with a two-code list the other code is named, else ``<> 'N'``.
    """
    for check in checks:
        tree = compile_rule(check.rule).tree.body
        if not (isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.Or) and len(tree.values) == 2):
            continue
        cond, need = tree.values
        if not (isinstance(need, ast.Compare) and isinstance(need.left, ast.Name) and need.left.id == target
                and isinstance(need.ops[0], ast.IsNot) and isinstance(need.comparators[0], ast.Constant)
                and need.comparators[0].value is None):
            continue
        if not (isinstance(cond, ast.Compare) and isinstance(cond.left, ast.Name) and len(cond.ops) == 1
                and isinstance(cond.ops[0], ast.Eq) and isinstance(cond.comparators[0], ast.Constant)):
            continue
        other, value = cond.left.id, cond.comparators[0].value
        codes = rename.get(other)
        if codes is None:
            continue
        name, allowed = codes
        rest = [c for c in allowed if c != str(value)]
        return f"[{name}] = '{rest[0]}'" if len(rest) == 1 else f"[{name}] <> '{value}'"
    return ""


def redcap_layout(protocol: Protocol, score_names: dict[str, list[str]] | None = None) -> Layout:
    """The REDCap project for ``protocol``; ``score_names``: derived scores per scored form."""
    containers: list[tuple[str, str, Any]] = [(name, form.label, form) for name, form in protocol.forms.items()]
    logs = [(AE_FORM, protocol.adverse_events), (DISPOSITION_FORM, protocol.disposition)]
    uses: dict[str, int] = defaultdict(int)
    for _, _, form in containers:
        for f in form.fields:
            uses[f.name] += 1
    reserved = {RECORD_ID, *ENROLMENT_FIELDS, "visit_date"}

    def unique(form: str, name: str) -> str:
        if uses[name] > 1 or name in reserved or name.endswith(COMPLETE_SUFFIX) or name.startswith("redcap_"):
            return f"{form}_{name}"
        return name

    instruments: list[Instrument] = []
    arms = [(a.code, a.label) for a in protocol.active_version.arms]
    instruments.append(Instrument(ENROLMENT, "Enrolment", [
        Item(RECORD_ID, ENROLMENT, "text", "Subject code", container=ENROLMENT, required=True),
        Item("screening_date", ENROLMENT, "text", "Screening date", validation="date_ymd", required=True,
             container=ENROLMENT, source="screening_date"),
        Item("consent_date", ENROLMENT, "text", "Informed consent date", validation="date_ymd", required=True,
             container=ENROLMENT, source="consent_date"),
        Item("eligible", ENROLMENT, "radio", "Eligible (regenheart's evaluation of the criteria)",
             choices=[("Y", "Yes"), ("N", "No")], annotation="@READONLY", container=ENROLMENT, source="eligible"),
        Item("enrolled_date", ENROLMENT, "text", "Enrolment date", validation="date_ymd",
             container=ENROLMENT, source="enrolled_date"),
        Item("arm_code", ENROLMENT, "radio" if len(arms) <= 4 else "dropdown", "Arm", choices=arms,
             container=ENROLMENT, source="arm_code"),
    ]))
    instruments.append(Instrument(VISIT_FORM, "Visit", [
        Item("visit_date", VISIT_FORM, "text", "Visit date", validation="date_ymd", required=True,
             container=VISIT_FORM, source="visit_date")]))

    def items_of(container: str, fields: list[FieldDef], checks, prefix: str | None) -> list[Item]:
        names = {f.name: (prefix + f.name if prefix and not f.name.startswith(prefix) else unique(container, f.name))
                 for f in fields}
        code_names = {f.name: (names[f.name], [c for c, _ in _codes(protocol, f)]) for f in fields if f.type == "code"}
        out: list[Item] = []
        groups: dict[str, Item] = {}
        for f in fields:
            option = _OPTION.match(f.name)
            if option and f.type == "code" and sorted(str(c) for c, _ in _codes(protocol, f)) == ["0", "1"]:
                base, code = option.groups()
                question, _, option_label = f.label.rpartition(": ")
                group = groups.get(base)
                if group is None:
                    group_name = prefix + base if prefix and not base.startswith(prefix) else unique(container, base)
                    group = Item(group_name, container, "checkbox", question or f.label, container=container)
                    groups[base] = group
                    out.append(group)
                group.choices.append((code, option_label or f.label))
                group.options[code] = f.name
                continue
            item = Item(names[f.name], container, "text", f.label, container=container, source=f.name,
                        required=f.required, note=f.unit or "", decimals=f.decimals)
            if f.type == "code":
                choices = _codes(protocol, f)
                codes = [c for c, _ in choices]
                if sorted(codes) == ["0", "1"] and {label.lower() for _, label in choices} == {"yes", "no"}:
                    item.kind = "yesno"
                else:
                    item.kind = "radio" if len(choices) <= 4 else "dropdown"
                    item.choices = choices
            elif f.type == "text":
                if f.max_length is not None and f.max_length <= TEXT_MAX:
                    item.annotation = f"@CHARLIMIT={f.max_length}"
                else:
                    item.kind = "notes"
            else:
                item.validation = _validation(f)
                if f.range is not None:
                    item.vmin, item.vmax = _fmt_number(f.range[0]), _fmt_number(f.range[1])
                    item.annotation = "@FORCE-MINMAX"  # the protocol's plausible range is a hard check
            if f.specify_for is not None and f.specify_for in code_names:  # the "Other" answer's free text
                target = code_names[f.specify_for][0]
                wanted = [str(c) for c in protocol.specify_codes(next(x for x in fields if x.name == f.specify_for))]
                item.branching = " or ".join(f"[{target}] = '{c}'" for c in wanted)
            elif not f.required:
                item.branching = _branching(protocol, checks, f.name, code_names)
            out.append(item)
        return out

    for name, label, form in containers:
        instruments.append(Instrument(name, label, items_of(name, form.fields, form.checks, None)))
        if form.instrument:
            scores = (score_names or {}).get(name) or []
            if scores:
                instruments.append(Instrument(f"{name}{SCORES_SUFFIX}", f"{label}: derived scores", [
                    Item(f"{name}_{s}", f"{name}{SCORES_SUFFIX}", "text", f"{label}: {s.replace('_', ' ')} (derived)",
                         validation="number", annotation="@READONLY", container=f"{name}{SCORES_SUFFIX}", source=s)
                    for s in scores]))
    for key, log in logs:
        if log is not None:
            prefix = "ae_" if key == AE_FORM else "ds_"
            instruments.append(Instrument(key, log.label, items_of(key, log.fields, log.checks, prefix),
                                          repeating=key == AE_FORM))
    for inst in instruments:
        for item in inst.items:
            item.form = inst.name

    events, designations, visit_event = [], {}, {}
    for visit in protocol.visits:
        unique_name = event_name_for(visit.code)
        visit_event[visit.code] = unique_name
        events.append({"event_name": visit.code.lower(), "arm_num": 1, "unique_event_name": unique_name,
                       "custom_event_label": visit.label, "day_offset": visit.day,
                       "offset_min": visit.day - visit.window[0], "offset_max": visit.window[1] - visit.day})
        forms = [VISIT_FORM]
        for form in visit.forms:
            forms.append(form)
            if any(i.name == f"{form}{SCORES_SUFFIX}" for i in instruments):
                forms.append(f"{form}{SCORES_SUFFIX}")
        designations[unique_name] = forms
    first, last = event_name_for(protocol.visits[0].code), event_name_for(protocol.visits[-1].code)
    designations[first] = [ENROLMENT, *designations[first]]
    if protocol.adverse_events is not None:
        designations[first].append(AE_FORM)
    if protocol.disposition is not None:
        designations[last].append(DISPOSITION_FORM)

    columns, checkbox_columns = {}, {}
    for inst in instruments:
        for item in inst.items:
            if item.kind == "checkbox":
                for code, option in item.options.items():
                    checkbox_columns[f"{item.name}{CHECKBOX_SEPARATOR}{code}"] = (item.container, option)
            elif item.source is not None:
                columns[item.name] = (item.container, item.source)
    return Layout(instruments, events, designations, visit_event, columns, checkbox_columns)


# ---------------------------------------------------------------------------------------------- writing
def dictionary_rows(layout: Layout) -> list[dict[str, str]]:
    """The data dictionary: one row per field with REDCap's 18 column headers."""
    rows = []
    for inst in layout.instruments:
        for item in inst.items:
            rows.append(dict(zip(DICTIONARY_COLUMNS, (
                item.name, inst.name, "", item.kind, item.label, format_choices(item.choices), item.note,
                item.validation, item.vmin, item.vmax, "", item.branching, "y" if item.required else "",
                "", "", "", "", item.annotation), strict=True)))
    return rows


def missing_codes_setting(protocol: Protocol) -> str:
    """The study's missing-data codes in REDCap's project setting format ``ND, Not done | UNK, Unknown``."""
    return " | ".join(f"{m.code}, {m.label}" for m in protocol.missing_codes)


def _missing(value: Any) -> bool:
    """None, or pandas' NaN/NaT for a missing value in a snapshot frame."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in ("NaT", "nan")


def quality_rules(layout: Layout, protocol: Protocol) -> tuple[list[dict[str, str]], list[str]]:
    """The protocol's cross-field checks as REDCap custom data-quality rules; and those REDCap cannot say."""
    containers = [(name, form) for name, form in protocol.forms.items()]
    containers += [(key, log) for key, log in ((AE_FORM, protocol.adverse_events),
                                               (DISPOSITION_FORM, protocol.disposition)) if log is not None]
    rules, skipped = [], []
    for name, container in containers:
        names: dict[str, str] = {}
        for item in next(i for i in layout.instruments if i.name == name).items:
            if item.kind == "checkbox":
                names.update({option: f"{item.name}({code})" for code, option in item.options.items()})
            elif item.source is not None:
                names[item.source] = item.name
        for check in container.checks:
            try:
                logic = discrepancy_logic(check.rule, names)
            except Untranslatable as exc:
                skipped.append(f"{name} {check.id} ({exc})")
                continue
            rules.append({"rule_name": f"{check.id} ({name}, {check.severity}): {check.message}",
                          "rule_logic": logic, "real_time_execution": "y"})
    return rules, skipped


def _cell(value: Any, decimals: int | None = None) -> str:
    if _missing(value):
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()[:10]
    if isinstance(value, (int, float)) and decimals is not None:
        return f"{float(value):.{decimals}f}"
    if isinstance(value, float):
        return _fmt_number(value)
    return str(value)


def record_rows(layout: Layout, snapshot: Snapshot, protocol: Protocol) -> tuple[list[str], list[dict[str, str]]]:
    """The records as REDCap's flat export: one row per record x event (+ one per AE instance)."""
    header = [RECORD_ID, "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
              "redcap_data_access_group"]
    for inst in layout.instruments:
        header += [c for item in inst.items for c in item.columns if c != RECORD_ID]
        header.append(f"{inst.name}{COMPLETE_SUFFIX}")
    items = defaultdict(dict)
    for row in snapshot.items.itertuples(index=False):  # a missing-data code is exported as the code itself
        code = getattr(row, "missing_code", None)
        items[(row.subject_code, row.visit_code, row.form_code)][row.field] = row.value if _missing(code) else code
    derived = defaultdict(dict)
    for row in snapshot.derived.itertuples(index=False):
        derived[(row.subject_code, row.visit_code, row.form_code)][row.name] = row.value
    status = {(r.subject_code, r.visit_code, r.form_code): r.status for r in snapshot.forms.itertuples(index=False)}
    visit_dates = {(r.subject_code, r.visit_code): r.visit_date for r in snapshot.visits.itertuples(index=False)}
    aes = defaultdict(list)
    if len(snapshot.adverse_events):
        for ae in snapshot.adverse_events.to_dict("records"):
            aes[ae["subject_code"]].append(ae)

    def fill(row: dict[str, str], inst: Instrument, values: dict[str, Any], complete: bool) -> None:
        for item in inst.items:
            if item.name == RECORD_ID:
                continue
            if item.kind == "checkbox":
                for code, option in item.options.items():
                    row[f"{item.name}{CHECKBOX_SEPARATOR}{code}"] = _cell(values.get(option))
            else:
                row[item.name] = _cell(values.get(item.source), item.decimals)
        row[f"{inst.name}{COMPLETE_SUFFIX}"] = "2" if complete else "0"

    first, last = protocol.visits[0].code, protocol.visits[-1].code
    rows = []
    for subject in snapshot.subjects.to_dict("records"):
        code = subject["subject_code"]
        base = {RECORD_ID: code, "redcap_data_access_group": dag_for(subject["site_code"])}
        for visit in protocol.visits:
            date = visit_dates.get((code, visit.code))
            has_disposition = not _missing(subject.get("disposition"))
            if _missing(date) and visit.code != first and not (visit.code == last and has_disposition):
                continue
            row = {**base, "redcap_event_name": layout.visit_event[visit.code]}
            if visit.code == first:
                eligible = subject.get("eligible")
                facts = {**subject, "eligible": None if _missing(eligible) else ("Y" if eligible else "N")}
                fill(row, layout.instrument(ENROLMENT), facts, not _missing(subject.get("enrolled_date")))
            if not _missing(date):
                fill(row, layout.instrument(VISIT_FORM), {"visit_date": date}, True)
            for form in visit.forms:
                key = (code, visit.code, form)
                if key in status:
                    fill(row, layout.instrument(form), items[key], status[key] == "complete")
                    scores = f"{form}{SCORES_SUFFIX}"
                    if any(i.name == scores for i in layout.instruments):
                        fill(row, layout.instrument(scores), derived[key], True)
            if visit.code == last and has_disposition and protocol.disposition is not None:
                fill(row, layout.instrument(DISPOSITION_FORM), {
                    "status": subject["disposition"], "date": subject["disposition_date"],
                    "reason": subject["disposition_reason"]}, True)
            rows.append(row)
        if protocol.adverse_events is not None:
            for ae in aes.get(code, []):
                row = {**base, "redcap_event_name": layout.visit_event[first],
                       "redcap_repeat_instrument": AE_FORM, "redcap_repeat_instance": str(ae["ae_seq"])}
                fill(row, layout.instrument(AE_FORM), ae, True)
                rows.append(row)
    return header, rows


def score_names_of(protocol: Protocol, snapshot: Snapshot | None = None) -> dict[str, list[str]]:
    """Derived score names per scored form (from the instruments library; else from the data)."""
    out: dict[str, list[str]] = {}
    for name, form in protocol.forms.items():
        if not form.instrument:
            continue
        try:
            from regenheart import instruments

            out[name] = list(instruments.score(form.instrument, {}))
        except Exception:  # noqa: BLE001 - an instrument the library does not know: use the stored names
            if snapshot is not None:
                rows = snapshot.derived[snapshot.derived["form_code"] == name]
                out[name] = list(dict.fromkeys(rows["name"]))
    return out


def export_redcap(snapshot: Snapshot, protocol: Protocol, out: str | Path) -> dict[str, Path]:
    """Write the REDCap project files and the records into folder ``out``; returns the paths by kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layout = redcap_layout(protocol, score_names_of(protocol, snapshot))
    paths = {k: out / v for k, v in FILES.items()}
    write_csv(paths["dictionary"], DICTIONARY_COLUMNS, dictionary_rows(layout))
    write_csv(paths["arms"], ARMS_COLUMNS, [{"arm_num": 1, "name": "All subjects"}])
    write_csv(paths["events"], EVENTS_COLUMNS, layout.events)
    write_csv(paths["mapping"], MAPPING_COLUMNS, [{"arm_num": 1, "unique_event_name": e, "form": f}
                                                  for e, forms in layout.designations.items() for f in forms])
    write_csv(paths["repeating"], REPEATING_COLUMNS, [
        {"event_name": layout.visit_event[protocol.visits[0].code], "form_name": i.name, "custom_form_label": ""}
        for i in layout.instruments if i.repeating])
    write_csv(paths["dags"], ("data_access_group_name", "unique_group_name"),
              [{"data_access_group_name": f"{s.code} {s.name}"[:100], "unique_group_name": dag_for(s.code)}
               for s in protocol.study.sites])
    rules, untranslated = quality_rules(layout, protocol)
    write_csv(paths["rules"], DQ_COLUMNS, rules)
    header, rows = record_rows(layout, snapshot, protocol)
    write_csv(paths["records"], header, rows)
    codes_setting = missing_codes_setting(protocol)
    if protocol.missing_codes:
        paths["missing_codes"].write_text(codes_setting + "\n", encoding="utf-8")
    else:
        del paths["missing_codes"]
    scored = [f"{i.name} ({', '.join(x.source or '' for x in i.items)})" for i in layout.instruments
              if i.name.endswith(SCORES_SUFFIX)]
    synthetic = snapshot.meta.get("synthetic") == "true"
    paths["readme"].write_text("\n".join([
        (f"REDCap project files for {protocol.study.acronym}, written by regenheart from a study database "
         f"snapshot of {snapshot.taken_utc} (audit head {snapshot.audit_head_hash[:16]})."),
        *(["SYNTHETIC DATA: these records were generated for demonstration; they are not trial data."]
          if synthetic else []),
        "",
        "Build the project (Project Setup): upload data_dictionary.csv (Dictionary), enable longitudinal",
        "data collection and upload arms.csv, events.csv, then instrument_event_mapping.csv (Define My Events /",
        "Designate Instruments); make 'adverse_events' a repeating instrument (repeating_instruments.csv);",
        "create the data access groups of data_access_groups.csv; then load records.csv with the Data Import",
        "Tool (raw values, dates Y-M-D).",
        "",
        "Derived scores are exported as @READONLY number fields, not calculated fields: " + (", ".join(scored) or
                                                                                          "none in this study"),
        "Cross-field edit checks are custom data-quality rules (data_quality_rules.csv: Data Quality > import;",
        "TRUE = discrepancy, flagged once every field the rule compares is filled); simple 'show only if' checks",
        "are also branching logic. Plausible ranges are hard limits (@FORCE-MINMAX).",
        "Checks REDCap logic cannot express: " + ("; ".join(untranslated) or "none"),
        "",
        *([
            "Missing-data codes: enter the contents of missing_data_codes.txt as the project's 'Missing Data",
            "Codes' (Project Setup > Additional customizations), before loading records.csv: a coded field holds",
            "the code itself (e.g. ND) in records.csv, which REDCap accepts in any field, numeric validations",
            "included, once the codes are defined. The free-text reason given with a code (e.g. ND: sample",
            "haemolysed) has no place in REDCap's model and is not in these files (it is in the study database's",
            "audit trail, the ODM export and SDTM --REASND). Importing records.csv back, a code that needs a reason",
            "gets the reason 'recorded as <CODE> in records.csv'.",
            "Codes: " + codes_setting,
            "",
        ] if protocol.missing_codes else []),
    ]), encoding="utf-8")
    return paths
