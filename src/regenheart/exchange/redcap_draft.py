"""Draft a regenheart protocol file from any REDCap project (data dictionary [+ events, mapping]).

What becomes what:

* instruments -> forms; ``text`` with validation ``integer`` -> integer, ``number``/``number_Ndp``
  -> float (N decimals), ``date_*`` -> date, other text and ``notes`` -> text; ``dropdown``/
  ``radio`` -> code with a code list from the choices; ``yesno``/``truefalse`` -> code 1/0;
  ``slider`` -> integer 0-100; ``checkbox`` -> one 0/1 code field per option named ``field___code``
  (REDCap's own export column), labelled ``question: option``;
* validation min/max -> the plausible ``range`` when the field carries ``@FORCE-MINMAX`` (a hard
  limit in REDCap too); otherwise REDCap's soft range becomes a warning check;
* ``Required Field? = y`` -> required; a field note that looks like a unit -> unit;
* events -> visits (target day = ``day_offset``, window = offset_min/max; without scheduling the
  event order and a wide window); a classic project -> one visit; designations -> forms per visit;
* branching logic and calc formulas are quoted in comments (TODO), as are calculated, file and
  descriptive fields, which hold nothing to capture and are not imported;
* ``dates``: fields that look like screening/consent/enrolment/visit dates are declared; a project
  without them is declared ``undated: entry_date``.

The output is YAML text with comments for a data manager to review; it loads as it is.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from pathlib import Path

import yaml

from regenheart.exchange.redcap_format import (
    CHECKBOX_SEPARATOR,
    NOT_DATA_TYPES,
    DictionaryField,
    RedcapEvent,
    visit_code_for_event,
)

_UNIT = re.compile(r"^(%|[a-zA-Zµ°]{1,6}(/[a-zA-Z0-9µ²³.]{1,8})*(\^?-?\d)?|10\^\d+/[a-zA-Z]+)$")
_KNOWN_UNITS = {"kg", "g", "mg", "cm", "mm", "m", "km", "l", "ml", "years", "yrs", "months", "weeks", "days",
                "hours", "min", "s", "mmhg", "bpm", "%", "c", "°c", "f", "lb", "lbs", "in", "ft"}
_DATE_KINDS = ("date_ymd", "date_mdy", "date_dmy")
_TAGS = re.compile(r"<[^>]+>")
_WIDE = 3650  # days: a visit window that flags nothing when the source has no scheduling


def _looks_like_unit(note: str) -> bool:
    text = note.strip()
    return bool(text) and (text.lower() in _KNOWN_UNITS or ("/" in text and bool(_UNIT.match(text))))


def _code(text: str) -> int | str:
    return int(text) if re.fullmatch(r"-?[1-9]\d*|0", text) else text


def _label(text: str, fallback: str) -> str:
    clean = " ".join(_TAGS.sub(" ", text or "").split())
    return clean or fallback


def _flow(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True, sort_keys=False).strip()
    return text.removesuffix("...").strip()  # a scalar is dumped as a document ending in '...'


def _first_visit_forms(events: list[RedcapEvent] | None, designations: list[tuple[int, str, str]] | None,
                       kept: list[str]) -> list[str]:
    """The forms the drafted first visit collects (all forms for a classic project or without designations)."""
    if not events or not designations:
        return kept
    arm = min(e.arm_num for e in events)
    arm_events = [e for e in events if e.arm_num == arm]
    if all(e.day_offset is not None for e in arm_events):
        arm_events = sorted(arm_events, key=lambda e: e.day_offset)
    first = arm_events[0].unique_event_name
    return [f for _, e, f in designations if e == first and f in kept] or kept


def draft_protocol(fields: list[DictionaryField], events: list[RedcapEvent] | None = None,
                   designations: list[tuple[int, str, str]] | None = None, *, source: str = "REDCap project",
                   title: str | None = None) -> str:
    """Protocol YAML (with review comments) for the REDCap project of ``fields`` (+ events, designations)."""
    today = dt.datetime.now(dt.UTC).date().isoformat()
    record_id = fields[0].field_name
    codelists: dict[str, list[dict]] = {}
    forms: dict[str, list[str]] = {}
    form_labels: dict[str, str] = {}
    checks: dict[str, list[str]] = defaultdict(list)
    comments: dict[str, list[str]] = defaultdict(list)
    not_imported: list[str] = []
    date_fields: list[tuple[str, str, str]] = []

    def codelist(name: str, choices: list[tuple[str, str]]) -> str:
        items = [{"code": _code(c), "decode": label or c} for c, label in choices]
        codes = [i["code"] for i in items]
        if len({type(c) for c in codes}) > 1:  # mixed numeric / text codes: keep all as text
            items = [{"code": str(i["code"]), "decode": i["decode"]} for i in items]
        for existing, values in codelists.items():
            if values == items:
                return existing
        key = name
        while key in codelists:
            key += "_codes"
        codelists[key] = items
        return key

    for f in fields:
        form = f.form_name
        forms.setdefault(form, [])
        form_labels.setdefault(form, form.replace("_", " ").capitalize())
        if f.field_name == record_id:
            comments[form].append(f"{f.field_name}: the record ID (subject code), not a form field")
            continue
        kind, label = f.field_type, _label(f.field_label, f.field_name)
        if kind in NOT_DATA_TYPES or kind == "sql":
            detail = f" = {f.select_choices_or_calculations}" if kind == "calc" else ""
            not_imported.append(f"{form}.{f.field_name} ({kind}{detail})")
            continue
        entry: dict = {"name": f.field_name, "label": label}
        validation = f.validation
        if kind == "checkbox":
            for code, option in f.choices:
                option_name = f"{f.field_name}{CHECKBOX_SEPARATOR}{str(code).lower().replace('-', '_')}"
                forms[form].append(_flow({"name": option_name, "label": f"{label}: {_label(option, code)}",
                                          "type": "code", "codelist": codelist("checkbox", [("0", "Unchecked"),
                                                                                           ("1", "Checked")])}))
            if f.required:
                comments[form].append(f"{f.field_name}: required in REDCap (at least one option ticked) - TODO")
            if f.branching_logic:
                comments[form].append(f"{f.field_name}: TODO branching logic {f.branching_logic}")
            continue
        if kind in ("dropdown", "radio"):
            entry.update(type="code", codelist=codelist(f.field_name, f.choices))
        elif kind == "yesno":
            entry.update(type="code", codelist=codelist("yesno", [("1", "Yes"), ("0", "No")]))
        elif kind == "truefalse":
            entry.update(type="code", codelist=codelist("truefalse", [("1", "True"), ("0", "False")]))
        elif kind == "slider":
            entry.update(type="integer", range=[0, 100])
        elif kind == "text" and validation == "integer":
            entry["type"] = "integer"
        elif kind == "text" and (validation == "number" or re.fullmatch(r"number_\ddp", validation)):
            entry["type"] = "float"
            if validation != "number":
                entry["decimals"] = int(validation[7])
        elif kind == "text" and validation in _DATE_KINDS:
            entry["type"] = "date"
            date_fields.append((form, f.field_name, label))
        else:
            entry["type"] = "text"
            limit = re.search(r"@CHARLIMIT\s*=\s*['\"]?(\d+)", f.field_annotation)
            if limit:
                entry["max_length"] = int(limit.group(1))
            if validation:
                comments[form].append(f"{f.field_name}: REDCap validation '{validation}' kept as text - TODO")
        if _looks_like_unit(f.field_note):
            entry["unit"] = f.field_note.strip()
        if entry["type"] in ("integer", "float") and (f.text_validation_min or f.text_validation_max):
            try:
                lo, hi = float(f.text_validation_min), float(f.text_validation_max)
            except ValueError:
                comments[form].append(f"{f.field_name}: min/max '{f.text_validation_min}'/'{f.text_validation_max}' "
                                      "not both numbers - TODO")
            else:
                lo_t, hi_t = (int(x) if x.is_integer() else x for x in (lo, hi))
                if "@FORCE-MINMAX" in f.field_annotation:
                    entry["range"] = [lo_t, hi_t]
                else:
                    checks[form].append(_flow({
                        "id": f"{f.field_name.upper()}_RANGE", "severity": "warning", "fields": [f.field_name],
                        "rule": f"{f.field_name} >= {lo_t} and {f.field_name} <= {hi_t}",
                        "message": f"outside the expected range {lo_t} to {hi_t} (REDCap soft limits)"}))
        elif entry["type"] == "date" and (f.text_validation_min or f.text_validation_max):
            comments[form].append(f"{f.field_name}: date limits {f.text_validation_min} to "
                                  f"{f.text_validation_max} - TODO")
        if f.required:
            entry["required"] = True
        if f.branching_logic:
            comments[form].append(f"{f.field_name}: TODO branching logic (show only if) {f.branching_logic}")
        if f.identifier.lower() == "y":
            comments[form].append(f"{f.field_name}: identifier (personal data) in REDCap")
        forms[form].append(_flow(entry))

    empty = [name for name, items in forms.items() if not items]
    lines = [
        f"# Drafted by 'regenheart protocol from-redcap' from {source} on {today}.",
        "# Review every TODO. Branching logic is quoted, not translated: add checks where a value is required.",
    ]
    if not_imported:
        lines.append("# Not imported (nothing to capture): " + "; ".join(not_imported))
    if empty:
        lines.append(f"# Instruments with no capturable field, left out: {', '.join(empty)}")
    lines += [
        "", "schema_version: 1", "", "study:", "  nct_id: null  # TODO: registry number when registered",
        f"  acronym: {_flow(title or Path(source).stem)}",
        f"  brief_title: {_flow(title or 'Study drafted from ' + Path(source).name)}",
        "  sites:",
        '    - {code: "01", name: "TODO: one entry per site (REDCap data access group)"}',
        "", "protocol_versions:",
        (f"  - {{version: \"1.0\", date: {today}, design: single_arm, allocation: none, planned_enrollment: 1,"
         " summary: \"TODO: drafted from a REDCap project\","),
        "     arms: [{code: ALL, label: All subjects, description: \"TODO\", receives_cells: false}]}",
        'active_protocol_version: "1.0"', "", "codelists:",
    ]
    lines += [f"  {name}: {_flow(items)}" for name, items in codelists.items()] or ["  {}"]
    if not codelists:
        lines[-2:] = ["codelists: {}"]
    lines += ["", "forms:"]
    kept = [name for name in forms if forms[name]]
    for name in kept:
        lines.append(f"  {name}:")
        lines.append(f"    label: {_flow(form_labels[name])}")
        lines += [f"    # {c}" for c in comments[name]]
        lines.append("    fields:")
        lines += [f"      - {item}" for item in forms[name]]
        if checks[name]:
            lines.append("    checks:")
            lines += [f"      - {c}" for c in checks[name]]
    lines += ["", "visits:"]
    visit_codes: list[str] = []
    if events:
        arm1 = [e for e in events if e.arm_num == min(x.arm_num for x in events)]
        if len(arm1) < len(events):
            lines.append("  # TODO: only the first arm's events are drafted (one schedule per protocol)")
        scheduled = all(e.day_offset is not None for e in arm1)
        ordered = sorted(arm1, key=lambda e: e.day_offset) if scheduled else arm1
        designated: dict[str, list[str]] = defaultdict(list)
        for _, event, form in designations or []:
            designated[event].append(form)
        seen_days: set[int] = set()
        for i, e in enumerate(ordered):
            code = visit_code_for_event(e.unique_event_name)
            while code in visit_codes:
                code += "X"
            visit_codes.append(code)
            day = int(e.day_offset) if scheduled else i
            while day in seen_days:  # visits need increasing target days
                day += 1
            seen_days.add(day)
            lo = day - int(e.offset_min or 0) if scheduled else day - _WIDE
            hi = day + int(e.offset_max or 0) if scheduled else day + _WIDE
            visit_forms = [f for f in (designated.get(e.unique_event_name) or (kept if not designations else []))
                           if f in kept] or kept
            lines.append(f"  - {_flow({'code': code, 'label': e.custom_event_label or e.event_name, 'day': day, 'window': [lo, hi], **({'baseline': True} if i == 0 else {}), 'forms': visit_forms})}"
                         + f"  # event {e.unique_event_name}")
        if not scheduled:
            lines.append("  # TODO: no day offsets in the events file: target days are the event order, windows wide")
    else:
        lines.append(f"  - {_flow({'code': 'V1', 'label': 'Record', 'day': 0, 'window': [-_WIDE, _WIDE], 'baseline': True, 'forms': kept})}"
                     "  # classic (non-longitudinal) project: one visit")
    lines += ["", "# Where imported records carry capture's dates (see DateSources in protocol/models.py)."]
    dates: dict[str, str] = {}
    first_forms = set(_first_visit_forms(events, designations, kept))
    visit_form = None
    for form, name, label in date_fields:
        words = re.findall(r"[a-z]+", f"{name} {label}".lower())
        for key, stems in (("screening", ("scr", "screen")), ("consent", ("consent", "icf")),
                           ("enrolment", ("enrol", "enroll", "random", "registration"))):
            # subject dates must be on a form of the first visit (the loader checks it)
            if key not in dates and form in first_forms and any(w.startswith(stems) for w in words):
                dates[key] = f"{form}.{name}"
        if "visit" not in dates and ("visit" in words or name.lower() in ("date", "assessment_date")):
            dates["visit"] = name
            visit_form = form
    # A REDCap record has no screening/consent/enrolment of its own: a subject date the project does
    # not hold is the first one it does (else the first visit's date), stated in a comment.
    anchor = dates.get("screening") or dates.get("consent") or dates.get("enrolment")
    if anchor is None and "visit" in dates and visit_form in first_forms:
        anchor = f"{visit_form}.{dates['visit']}"
    reused = [key for key in ("screening", "consent", "enrolment") if key not in dates and anchor]
    for key in reused:
        dates[key] = anchor
    if dates:
        if not {"screening", "consent", "visit"} <= set(dates):
            dates["undated"] = "entry_date"  # the dates not found: date of entry
        note = f"; {', '.join(reused)}: not in the project, {anchor} used" if reused else ""
        lines.append(f"dates: {_flow(dates)}  # TODO: check{note}")
    else:
        lines.append("dates: {undated: entry_date}  # no screening or visit dates in the project: date of entry")
    if "adverse_events" in kept:  # the project's own form keeps the name
        lines += ["", "# No regenheart adverse-event log: the project has a form named 'adverse_events'."]
    else:
        lines += [
            "", "# regenheart's adverse-event log (the EDC's AE pages and capture use these fields); adapt the",
            "# category list. A REDCap repeating instrument is read into it when the mapping file maps its",
            "# name here (forms: {your_ae_instrument: adverse_events}).",
            "adverse_events:", "  label: Adverse events", "  fields:",
            "    - {name: term, label: Verbatim term, type: text, max_length: 200, required: true}",
            "    - {name: category, label: Category, type: code, codes: [OTHER], required: true}  # TODO: categories",
            "    - {name: onset_date, label: Onset date, type: date, required: true}",
            "    - {name: stop_date, label: Stop date, type: date}",
            "    - {name: ctcae_grade, label: CTCAE grade, type: code, codes: [1, 2, 3, 4, 5], required: true}",
            "    - {name: serious, label: Serious, type: code, codes: [Y, N], required: true}",
            ("    - {name: related_product, label: Relationship to study treatment, type: code, "
             "codes: [NOT, UNLIKELY, POSSIBLE, PROBABLE, DEFINITE], required: true}"),
            ("    - {name: related_procedure, label: Relationship to study procedures, type: code, "
             "codes: [NOT, UNLIKELY, POSSIBLE, PROBABLE, DEFINITE], required: true}"),
            ("    - {name: outcome, label: Outcome, type: code, codes: [RECOVERED, RECOVERING, NOT_RECOVERED, "
             "SEQUELAE, FATAL, UNKNOWN], required: true}"),
            "  checks:",
            ('    - {id: AE01, rule: "stop_date is None or stop_date >= onset_date", fields: [stop_date], '
             'message: "stop date must not be before onset date"}'),
        ]
    if "disposition" in kept:  # the project's own form keeps the name
        lines += ["", "# No regenheart end-of-study record: the project has a form named 'disposition'.", ""]
        return "\n".join(lines)
    lines += [
        "", "# regenheart's end-of-study record (status, date, reason); delete if the study has none.",
        "disposition:", "  label: End of study",
        "  fields:",
        ("    - {name: status, label: Status, type: code, codes: [COMPLETED, WITHDRAWAL, LOST, DEATH, OTHER], "
         "required: true}"),
        "    - {name: date, label: Date of completion or discontinuation, type: date, required: true}",
        "    - {name: reason, label: Reason / details, type: text, max_length: 500}",
        "",
    ]
    return "\n".join(lines)
