"""Read CDISC ODM 1.3.x clinical data (OpenClinica, Medidata Rave, REDCap, regenheart) into :class:`SourceData`.

Walks ``ClinicalData/SubjectData/StudyEventData/FormData/ItemGroupData/ItemData`` (repeat keys
included) and resolves each OID to a name with the metadata in the same file, in this order:
REDCap's own attribute (``redcap:UniqueEventName``, ``redcap:FormName``), the definition's
``Name``, the OID itself, the OID without a common prefix (``SE.``, ``Event.``, ``F.``, ``Form.``,
``IT.``), the OID's last dot-separated part, and each of these in lower case. The first name the
:class:`~regenheart.exchange.mapping.Mapping` resolves wins.

Conventions:

* Several transactions of one item (a transactional file with history, such as regenheart's own
  export) give the **last** value in document order; ``TransactionType="Remove"`` or
  ``IsNull="Yes"`` leaves the item without a value, unless an ``Annotation`` flags a missing-data
  code (``FlagType`` ``MISSING``, ``FlagValue`` the code, ``Comment`` the reason: regenheart's export),
  which is read back as that code; a ``Value`` equal to a declared code (REDCap) is that code too.
* A ``visit_date`` item (any form of an event) is the date of that visit. The protocol's ``dates``
  section applies as in the other readers: ``visit`` names the field that dates a visit,
  ``screening``/``consent``/``enrolment`` the baseline fields of the subject dates, and
  ``undated: entry_date`` dates what is still undated with the day of entry (said so in the origin).
* A form named ``subject`` holds subject-level facts (``site``, ``screening_date``,
  ``consent_date``, ``enrolled_date``, ``arm``, ``eligible`` as the source's stated verdict); its
  derived items (status, infusion date, failed criteria) are recomputed by the capture service. A
  subject marked ``synthetic`` = ``Y`` is reported, since the importing database labels its own data.
* The site is the subject's ``SiteRef`` (a ``Location`` OID or name, the OID without ``LOC.``, or the
  OID's last ``_``/``.``/``-`` token, as in OpenClinica's ``S_STUDY_01``),
  else the item named by the mapping's ``subject.site``, else ``subject.default_site``.
* REDCap writes forms of a classic (non-longitudinal) project directly under ``SubjectData``;
  their event is called ``event_1_arm_1``, REDCap's name of the single event of such a project.
* Items defined with ``Origin="Derived"`` (regenheart's scores) that the mapping does not name are
  skipped: they are derived data, recomputed by the capture service, never imported. REDCap
  ``calc`` fields the mapping does not name are reported as unmapped (with a note), like any other.

Nothing raises on a bad file: unreadable or malformed XML and a wrong root become a
:class:`Refusal` in ``problems``; names that map to nothing become :class:`Unmapped` entries
(one per source name, with the first place it occurs). Entities are not resolved and no network
access is made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from regenheart.exchange.mapping import Mapping
from regenheart.exchange.odm_write import MISSING_CODES
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
from regenheart.protocol.missing import coded, is_missing

ODM13_NS = "http://www.cdisc.org/ns/odm/v1.3"
ODM20_NS = "http://www.cdisc.org/ns/odm/v2.0"
REDCAP_NS = "https://projectredcap.org"
CLASSIC_REDCAP_EVENT = "event_1_arm_1"
SUBJECT_FORM = "subject"
SUBJECT_FIELDS = ("site", "screening_date", "consent_date", "enrolled_date", "arm", "eligible")
VISIT_DATE = "visit_date"
MISSING_FLAG = "MISSING"  # FlagType of a missing-data code (regenheart's export)
SYNTHETIC_NOTE = ("the source marks its subjects as SYNTHETIC demonstration data; the importing database labels "
                  "its own data, so import synthetic data only into a database created as synthetic")
_PREFIXES = ("SE.", "SE_", "Event.", "F.", "F_", "Form.", "IT.", "I_", "IG.", "LOC.")


def _q(tag: str) -> str:
    return f"{{{ODM13_NS}}}{tag}"


def _rc(name: str) -> str:
    return f"{{{REDCAP_NS}}}{name}"


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


@dataclass
class _Def:
    """A definition's candidate names (best first) and flags."""

    names: list[str]
    derived: bool = False  # ODM Origin="Derived": computed data, never imported
    calc: bool = False  # a REDCap calculated field
    repeating: bool = False


@dataclass
class _MetaData:
    events: dict[str, _Def] = field(default_factory=dict)
    forms: dict[str, _Def] = field(default_factory=dict)
    groups: dict[str, _Def] = field(default_factory=dict)
    items: dict[str, _Def] = field(default_factory=dict)
    record_id_items: set[str] = field(default_factory=set)  # REDCap's record id field: the SubjectKey


def _candidates(oid: str, *names: str | None) -> list[str]:
    """Names to try for a definition, best first: its own names, the OID, the OID without a prefix,
    the OID's last dot-separated part (``IT.ECHO.LVEF_PCT`` -> ``LVEF_PCT``), then all of them in lower case."""
    result: list[str] = []
    tried = [*names, oid, *(oid[len(p):] for p in _PREFIXES if oid.startswith(p)), oid.rsplit(".", 1)[-1]]
    for name in (*tried, *(n.lower() for n in tried if n)):
        if name and name not in result:
            result.append(name)
    return result


def _read_metadata(mdv: etree._Element) -> _MetaData:
    md = _MetaData()
    if mdv.get(_rc("RecordIdField")):
        md.record_id_items.add(mdv.get(_rc("RecordIdField")))
    for d in mdv.iterfind(_q("StudyEventDef")):
        oid = d.get("OID", "")
        md.events[oid] = _Def(_candidates(oid, d.get(_rc("UniqueEventName")), d.get("Name")),
                              repeating=d.get("Repeating") == "Yes")
    for d in mdv.iterfind(_q("FormDef")):
        oid = d.get("OID", "")
        md.forms[oid] = _Def(_candidates(oid, d.get(_rc("FormName")), d.get("Name")),
                             repeating=d.get("Repeating") == "Yes")
    for d in mdv.iterfind(_q("ItemGroupDef")):
        oid = d.get("OID", "")
        md.groups[oid] = _Def(_candidates(oid, d.get("Name")), repeating=d.get("Repeating") == "Yes")
    for d in mdv.iterfind(_q("ItemDef")):
        oid = d.get("OID", "")
        derived = (d.get("Origin") or "").strip().lower().startswith("derived")
        md.items[oid] = _Def(_candidates(oid, d.get("Name"), d.get(_rc("Variable"))), derived=derived,
                             calc=d.get(_rc("FieldType")) == "calc")
    return md


def _merge(parts: Iterable[_MetaData]) -> _MetaData:
    merged = _MetaData()
    for part in parts:
        for name in ("events", "forms", "groups", "items"):
            getattr(merged, name).update(getattr(part, name))
        merged.record_id_items |= part.record_id_items
    return merged


def _attr_path(tag: str, attrs: Iterable[tuple[str, str | None]]) -> str:
    return tag + "".join(f"[@{k}='{v}']" for k, v in attrs if v is not None)


class _Reader:
    def __init__(self, path: Path, protocol_mapping: Mapping, data: SourceData):
        self.file = str(path)
        self.mapping = protocol_mapping
        self.data = data
        self.subjects: dict[str, SubjectEntry] = {}
        self._forms: dict[tuple[str, str, str], FormEntry] = {}
        self._aes: dict[tuple[str, str], AdverseEventEntry] = {}
        self._unmapped: set[str] = set()
        self.locations: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ reporting
    def origin(self, location: str, element: etree._Element | None = None) -> Origin:
        line = getattr(element, "sourceline", None)
        return Origin(self.file, f"{location} (line {line})" if line else location)

    def unmapped(self, what: str, origin: Origin, note: str | None = None) -> None:
        if what in self._unmapped:
            return
        self._unmapped.add(what)
        self.data.unmapped.append(Unmapped(origin, what, note) if note else Unmapped(origin, what))

    def refuse(self, origin: Origin, rule: str, message: str, **kw: Any) -> None:
        self.data.problems.append(Refusal(origin, rule, message, **kw))

    # ------------------------------------------------------------------ name resolution
    def _first(self, names: list[str], resolve) -> tuple[Any, str]:
        for name in names:
            target = resolve(name)
            if target is not None:
                return target, name
        return None, names[0] if names else ""

    def site_code(self, location_oid: str) -> str:
        sites = {s.code: s for s in self.mapping.protocol.study.sites}
        # OpenClinica names sites S_<STUDY>_<SITE>: the last token may be the protocol's site code.
        names = self.locations.get(location_oid, []) + _candidates(location_oid) + \
            [re.split(r"[._-]", location_oid)[-1]]
        for name in names:
            if name in sites:
                return name
            for site in sites.values():
                if site.name == name:
                    return site.code
        return location_oid

    # ------------------------------------------------------------------ clinical data
    def read(self, root: etree._Element) -> None:
        mdvs = {m.get("OID", ""): _read_metadata(m) for m in root.iterfind(f"{_q('Study')}/{_q('MetaDataVersion')}")}
        everything = _merge(mdvs.values())
        for loc in root.iterfind(f"{_q('AdminData')}/{_q('Location')}"):
            self.locations[loc.get("OID", "")] = [n for n in (loc.get("Name"),) if n]
        for cd in root.iterfind(_q("ClinicalData")):
            md = mdvs.get(cd.get("MetaDataVersionOID", ""), everything)
            for sd in cd.iterfind(_q("SubjectData")):
                self.subject(sd, md)
        self.data.subjects = list(self.subjects.values())
        for entry in self.data.subjects:
            self.protocol_dates(entry)

    def protocol_dates(self, entry: SubjectEntry) -> None:
        """Dates the protocol's ``dates`` section says where to find (as the REDCap reader does).

        ``screening``/``consent``/``enrolment`` name a ``form.field`` of the baseline visit; ``visit``
        names the field giving a visit's date; ``undated: entry_date`` makes every date still missing
        the date of entry, said so in its origin.
        """
        dates = getattr(self.mapping.protocol, "dates", None)
        if dates is None:
            return
        baseline = self.mapping.protocol.baseline_visit.code
        for key, attr in (("screening", "screening_date"), ("consent", "consent_date"),
                          ("enrolment", "enrolled_date")):
            target = getattr(dates, key)
            if target and getattr(entry, attr) is None:
                form, _, name = target.partition(".")
                found = next((f.values[name] for f in entry.forms
                              if f.visit == baseline and f.form == form and name in f.values), None)
                setattr(entry, attr, found)
        if dates.visit:
            for visit in {f.visit for f in entry.forms}:
                found = next((f.values[dates.visit] for f in entry.forms
                              if f.visit == visit and dates.visit in f.values), None)
                for f in entry.forms:
                    if f.visit == visit and f.visit_date is None:
                        f.visit_date = found
        if dates.undated == "entry_date":
            today = dt.datetime.now(dt.UTC).date().isoformat()

            def undated(what: str, origin: Origin) -> SourceValue:
                return SourceValue(today, Origin(self.file, f"{origin.location}: no {what} in the source; date of "
                                                            "entry (protocol dates.undated)"))

            for attr, what in (("screening_date", "screening date"), ("consent_date", "consent date"),
                               ("enrolled_date", "enrolment date")):
                if getattr(entry, attr) is None:
                    setattr(entry, attr, undated(what, entry.origin))
            for f in entry.forms:
                if f.visit_date is None:
                    f.visit_date = undated("visit date", f.origin)

    def subject(self, sd: etree._Element, md: _MetaData) -> None:
        key = (sd.get("SubjectKey") or "").strip()
        path = _attr_path("SubjectData", [("SubjectKey", key)])
        origin = self.origin(path, sd)
        if not key:
            self.refuse(origin, "subject_key", "SubjectData has no SubjectKey")
            return
        if sd.get("TransactionType") == "Remove":
            self.refuse(origin, "transaction", "removing a subject is not supported: remove it in the study "
                                               "database with a reason instead", subject=key)
            return
        entry = self.subjects.get(key)
        if entry is None:
            entry = self.subjects[key] = SubjectEntry(code=key, origin=origin)
        site_ref = sd.find(_q("SiteRef"))
        if site_ref is not None and site_ref.get("LocationOID"):
            entry.site = SourceValue(self.site_code(site_ref.get("LocationOID")),
                                     self.origin(f"{path}/SiteRef", site_ref))
        events = list(sd.iterfind(_q("StudyEventData")))
        loose_forms = list(sd.iterfind(_q("FormData")))  # REDCap classic projects
        for se in events:
            self.event(entry, se, path, md, list(se.iterfind(_q("FormData"))), se.get("StudyEventOID", ""),
                       se.get("StudyEventRepeatKey"))
        if loose_forms:
            self.event(entry, sd, path, md, loose_forms, None, None)
        if entry.site is None and self.mapping.spec.subject.default_site:
            entry.site = SourceValue(self.mapping.spec.subject.default_site,
                                     Origin(self.file, path, "mapping subject.default_site"))

    def event(self, entry: SubjectEntry, se: etree._Element, parent: str, md: _MetaData,
              forms: list[etree._Element], event_oid: str | None, repeat: str | None) -> None:
        if event_oid is None:
            path, names = parent, [CLASSIC_REDCAP_EVENT]
        else:
            path = f"{parent}/" + _attr_path("StudyEventData", [("StudyEventOID", event_oid),
                                                                ("StudyEventRepeatKey", repeat)])
            d = md.events.get(event_oid)
            names = d.names if d else _candidates(event_oid)
        if se.get("TransactionType") == "Remove" and event_oid is not None:
            self.refuse(self.origin(path, se), "transaction", "removing a visit is not supported",
                        subject=entry.code)
            return
        visit, event_name = self._first(names, self.mapping.visit)
        if visit is not None and repeat not in (None, "1"):
            self.refuse(self.origin(path, se), "repeat", f"visit {visit} is not repeating in the protocol; "
                        f"StudyEventRepeatKey {repeat} cannot be imported", subject=entry.code, visit=visit)
            return
        visit_date: SourceValue | None = None
        for fd in forms:
            form_oid = fd.get("FormOID", "")
            f_repeat = fd.get("FormRepeatKey")
            f_path = f"{path}/" + _attr_path("FormData", [("FormOID", form_oid), ("FormRepeatKey", f_repeat)])
            d = md.forms.get(form_oid)
            f_names = d.names if d else _candidates(form_oid)
            form, form_name = self._first(f_names, self.mapping.form)
            removed = fd.get("TransactionType") == "Remove" or any(
                ig.get("TransactionType") == "Remove" for ig in fd.iterfind(_q("ItemGroupData")))
            if removed:
                self.refuse(self.origin(f_path, fd), "transaction", "removing a form or an item group (such as an "
                            "adverse event) is not supported: correct the record with a reason instead",
                            subject=entry.code, visit=visit, form=form)
                continue
            if form == "adverse_events":
                self.adverse_events(entry, fd, f_path, md, f_repeat)
                continue
            if form not in (None, "disposition") and visit is None:
                self.unmapped(f"event '{event_oid or CLASSIC_REDCAP_EVENT}' ({event_name})", self.origin(path, se))
                continue
            values = self.form_values(fd, f_path, md, form, form_name, entry, visit, form_oid)
            if VISIT_DATE in values:
                visit_date = values.pop(VISIT_DATE)
            if form_name == SUBJECT_FORM and form is None:
                self.subject_facts(entry, values)
                continue
            if form is None:
                continue  # its items were reported with the form as unmapped
            if form == "disposition":
                if values:
                    entry.disposition = {k: v for k, v in values.items()}
                    entry.disposition_origin = self.origin(f_path, fd)
                continue
            if f_repeat not in (None, "1"):
                self.refuse(self.origin(f_path, fd), "repeat", f"form {form} is not repeating in the protocol; "
                            f"FormRepeatKey {f_repeat} cannot be imported", subject=entry.code, visit=visit,
                            form=form)
                continue
            if form not in self.mapping.protocol.forms or form not in self.mapping.protocol.visit(visit).forms:
                self.refuse(self.origin(f_path, fd), "schedule", f"form {form} is not collected at visit {visit} "
                            "in the protocol", subject=entry.code, visit=visit, form=form)
                continue
            if not values:
                continue
            key = (entry.code, visit, form)
            existing = self._forms.get(key)
            if existing is not None:
                existing.values.update(values)
            else:
                self._forms[key] = fe = FormEntry(visit, form, values, self.origin(f_path, fd))
                entry.forms.append(fe)
        if visit_date is not None and visit is not None:
            for fe in [f for f in entry.forms if f.visit == visit]:
                fe.visit_date = visit_date

    def _last_values(self, container: etree._Element, path: str, md: _MetaData,
                     ) -> dict[str, tuple[Any, Origin, etree._Element]]:
        """Item OID -> (last value, origin) over the ItemData of one item group (history collapsed)."""
        values: dict[str, tuple[Any, Origin, etree._Element]] = {}
        for item in container:
            tag = _local(item)
            if not tag.startswith("ItemData"):
                continue
            oid = item.get("ItemOID", "")
            origin = self.origin(f"{path}/" + _attr_path("ItemData", [("ItemOID", oid)]), item)
            if tag in ("ItemDataBase64Binary", "ItemDataHexBinary"):
                self.unmapped(f"ItemOID '{oid}'", origin, "binary (file) values are not imported")
                continue
            transaction = item.get("TransactionType")
            if transaction == "Context":
                continue
            if transaction == "Remove":
                values[oid] = (None, origin, item)
                continue
            if item.get("IsNull") == "Yes":  # a null value, or a missing-data code given as its flag
                values[oid] = (self._missing_flag(item), origin, item)
                continue
            value = item.get("Value") if tag == "ItemData" else (item.text or "")
            values[oid] = (value, origin, item)
        return values

    def _missing_flag(self, item: etree._Element) -> dict[str, Any] | None:
        """The coded value of a null ItemData whose Annotation flags a missing-data code (regenheart's
        export: FlagType ``MISSING`` or FlagValue of code list ``CL.REGENHEART.MISSING``; the Comment is
        the reason); None for a plain null. A code needing a reason without one gets ``recorded as <CODE>
        in <file>``; a code the protocol does not declare is passed on for capture to refuse, naming it."""
        for annotation in item.iterfind(_q("Annotation")):
            for flag in annotation.iterfind(_q("Flag")):
                value, kind = flag.find(_q("FlagValue")), flag.find(_q("FlagType"))
                is_code = (kind is not None and (kind.text or "").strip() == MISSING_FLAG) or (
                    value is not None and value.get("CodeListOID") == MISSING_CODES)
                if value is None or not is_code or not (value.text or "").strip():
                    continue
                code = value.text.strip()
                comment = annotation.find(_q("Comment"))
                reason = (comment.text or "").strip() if comment is not None else ""
                declared = self.mapping.protocol.missing_code(code)
                if not reason and declared is not None and declared.reason_required:
                    reason = f"recorded as {code} in {Path(self.file).name}"
                return coded(code, reason or None)
        return None

    def form_values(self, fd: etree._Element, f_path: str, md: _MetaData, form: str | None, form_name: str,
                    entry: SubjectEntry, visit: str | None, form_oid: str) -> dict[str, SourceValue]:
        """Values of a non-repeating form, by protocol field name (plus visit_date / subject facts)."""
        if form == "adverse_events":
            return {}
        out: dict[str, SourceValue] = {}
        site_item = self.mapping.spec.subject.site
        for ig in fd.iterfind(_q("ItemGroupData")):
            ig_repeat = ig.get("ItemGroupRepeatKey")
            ig_path = f"{f_path}/" + _attr_path("ItemGroupData", [("ItemGroupRepeatKey", ig_repeat)])
            if ig_repeat not in (None, "1") and form is not None:
                self.refuse(self.origin(ig_path, ig), "repeat", f"item group {ig.get('ItemGroupOID')} repeats "
                            f"(ItemGroupRepeatKey {ig_repeat}) but form {form} does not repeat in the protocol",
                            subject=entry.code, visit=visit, form=form)
                continue
            for oid, (raw, origin, element) in self._last_values(ig, ig_path, md).items():
                d = md.items.get(oid)
                names = d.names if d else _candidates(oid)
                if any(self.mapping.ignored(n) for n in names) or oid in md.record_id_items:
                    continue
                if site_item and site_item in names:
                    if raw not in (None, ""):
                        entry.site = SourceValue(raw, origin)
                    continue
                if any(n.lower() == VISIT_DATE for n in names) and (form is None or self.mapping.field(
                        names[0], form_name) is None):
                    if raw not in (None, ""):
                        out[VISIT_DATE] = SourceValue(self.mapping.date(raw), origin)
                    continue
                if form is None:
                    if form_name != SUBJECT_FORM:
                        self.unmapped(f"form '{form_oid}' ({form_name})", self.origin(f_path, fd))
                        continue
                    name = next((n for n in names if n in SUBJECT_FIELDS), None)
                    if name is None and d is not None and d.derived:
                        continue
                    if name is None and names[0] == "synthetic":
                        if raw == "Y":
                            self.unmapped(f"ItemOID '{oid}' (synthetic) on form '{form_name}'", origin,
                                          SYNTHETIC_NOTE)
                    elif name is None:
                        self.unmapped(f"ItemOID '{oid}' ({names[0]}) on form '{form_name}'", origin)
                    elif raw not in (None, ""):
                        out[name] = SourceValue(raw, origin)
                    continue
                target, item_name = self._first(names, lambda n, fn=form_name: self.mapping.field(n, fn))
                if target is None or target[0] != form:
                    if d is None or not d.derived:
                        self.unmapped(f"ItemOID '{oid}' ({item_name}) on form '{form_name}'", origin,
                                      _CALC_NOTE if d is not None and d.calc else None)
                    continue
                if raw is None:
                    out.pop(target[1], None)
                    continue
                if not is_missing(raw):  # a value; REDCap's ODM gives a missing-data code as the value itself
                    raw = self.mapping.missing(form, target[1], self.mapping.convert(form, target[1], raw),
                                               Path(self.file).name)
                out[target[1]] = SourceValue(raw, origin)
        return out

    def subject_facts(self, entry: SubjectEntry, values: dict[str, SourceValue]) -> None:
        for name, value in values.items():
            if name == "site":
                if entry.site is None:
                    entry.site = SourceValue(self.site_code(str(value.raw)), value.origin)
            elif name == "screening_date":
                entry.screening_date = SourceValue(self.mapping.date(value.raw), value.origin)
            elif name == "consent_date":
                entry.consent_date = SourceValue(self.mapping.date(value.raw), value.origin)
            elif name == "enrolled_date":
                entry.enrolled_date = SourceValue(self.mapping.date(value.raw), value.origin)
            elif name == "arm":
                entry.arm = value
            elif name == "eligible":
                entry.stated_eligible = value

    def adverse_events(self, entry: SubjectEntry, fd: etree._Element, f_path: str, md: _MetaData,
                       f_repeat: str | None) -> None:
        """One adverse event per repeat of the form or of its item groups (merged across groups)."""
        for ig in fd.iterfind(_q("ItemGroupData")):
            ig_repeat = ig.get("ItemGroupRepeatKey")
            ig_path = f"{f_path}/" + _attr_path("ItemGroupData", [("ItemGroupRepeatKey", ig_repeat)])
            values: dict[str, SourceValue] = {}
            for oid, (raw, origin, _element) in self._last_values(ig, ig_path, md).items():
                d = md.items.get(oid)
                names = d.names if d else _candidates(oid)
                if any(self.mapping.ignored(n) for n in names):
                    continue
                target, item_name = self._first(names, lambda n: self.mapping.field(n, "adverse_events"))
                if target is None or target[0] != "adverse_events":
                    if d is None or not d.derived:
                        self.unmapped(f"ItemOID '{oid}' ({item_name}) on the adverse-event form", origin,
                                      _CALC_NOTE if d is not None and d.calc else None)
                    continue
                if raw is not None:
                    values[target[1]] = SourceValue(self.mapping.convert("adverse_events", target[1], raw), origin)
            if not values:
                continue
            repeats = [r for r in (f_repeat, ig_repeat) if r not in (None, "1")]
            key = (entry.code, f"{f_repeat or '1'}/{ig_repeat or '1'}")
            seq = int(repeats[0]) if len(repeats) == 1 and repeats[0].isdigit() else (
                1 if not repeats else None)
            existing = self._aes.get(key)
            if existing is not None:
                existing.values.update(values)
            else:
                self._aes[key] = ae = AdverseEventEntry(values, self.origin(ig_path, ig), seq)
                entry.adverse_events.append(ae)


_CALC_NOTE = "REDCap calculated field: maps to no protocol field (name it in the mapping to import it)"


def read_odm(path: str | Path, protocol, mapping: Mapping | None = None) -> SourceData:
    """Read an ODM 1.3.x file into :class:`SourceData` with protocol names (see the module docstring).

    ``protocol`` is the study's :class:`~regenheart.protocol.models.Protocol`; ``mapping`` (default:
    identity) turns the source's names and codes into the protocol's. Never raises on bad input.
    """
    path = Path(path)
    mapping = mapping or Mapping.identity(protocol)
    try:
        content = path.read_bytes()
    except OSError as exc:
        data = SourceData(str(path), "", "odm")
        data.problems.append(Refusal(Origin(str(path)), "file", f"cannot read the file: {exc.strerror or exc}"))
        return data
    data = SourceData(str(path), hashlib.sha256(content).hexdigest(), "odm")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True,
                             remove_comments=True)
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError as exc:
        line = exc.position[0] if exc.position else None
        data.problems.append(Refusal(Origin(str(path), f"line {line}" if line else ""), "xml",
                                     f"not well-formed XML: {exc.msg}"))
        return data
    namespace = etree.QName(root).namespace
    if _local(root) != "ODM" or namespace != ODM13_NS:
        found = f"{{{namespace}}}{_local(root)}" if namespace else _local(root)
        hint = " (ODM 2.0 is not supported; export ODM 1.3.2)" if namespace == ODM20_NS else ""
        data.problems.append(Refusal(Origin(str(path), f"line {root.sourceline}"), "format",
                                     f"not a CDISC ODM 1.3 file: the root element is {found}, expected "
                                     f"{{{ODM13_NS}}}ODM{hint}"))
        return data
    try:
        _Reader(path, mapping, data).read(root)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # a structure this reader does not expect
        data.subjects = []
        data.problems.append(Refusal(Origin(str(path)), "odm", f"cannot read this ODM file's structure "
                                                               f"({type(exc).__name__}: {exc}); nothing was taken"))
    return data


def odm_source_names(path: str | Path) -> tuple[list[Any], list[Any], list[Any]]:
    """(fields, events, forms) an ODM file's metadata defines, as ``mapping.SourceName``s for a draft mapping.

    Fields carry their form and their question text as the label; REDCap's own names are preferred.
    A file without metadata (or not readable) gives empty lists.
    """
    from regenheart.exchange.mapping import SourceName

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
    try:
        root = etree.parse(str(path), parser).getroot()
    except (OSError, etree.XMLSyntaxError):
        return [], [], []

    def text(element: etree._Element, child: str) -> str | None:
        return element.findtext(f"{_q(child)}/{_q('TranslatedText')}") or None

    fields: list[SourceName] = []
    events: list[SourceName] = []
    forms: list[SourceName] = []
    for mdv in root.iterfind(f"{_q('Study')}/{_q('MetaDataVersion')}"):
        item_defs = {d.get("OID"): d for d in mdv.iterfind(_q("ItemDef"))}
        groups = {d.get("OID"): d for d in mdv.iterfind(_q("ItemGroupDef"))}
        for d in mdv.iterfind(_q("StudyEventDef")):
            events.append(SourceName(d.get(_rc("UniqueEventName")) or d.get("Name") or d.get("OID", ""),
                                     text(d, "Description")))
        for form in mdv.iterfind(_q("FormDef")):
            form_name = form.get(_rc("FormName")) or form.get("Name") or form.get("OID", "")
            forms.append(SourceName(form_name, text(form, "Description")))
            for group_ref in form.iterfind(_q("ItemGroupRef")):
                group = groups.get(group_ref.get("ItemGroupOID"))
                for ref in group.iterfind(_q("ItemRef")) if group is not None else ():
                    item = item_defs.get(ref.get("ItemOID"))
                    if item is not None:
                        fields.append(SourceName(item.get("Name") or item.get("OID", ""), text(item, "Question"),
                                                 form_name))
    return fields, events, forms
