"""Write a study database as CDISC ODM 1.3.2 (metadata, administrative data, clinical data with history).

The file is valid against the official ``ODM1-3-2.xsd`` (the tests check it with lxml). Layout:

* ``Study``: ``GlobalVariables``; ``BasicDefinitions`` with one ``MeasurementUnit`` per unit the
  protocol uses; one ``MetaDataVersion`` (the active protocol version) with ``Protocol`` (the visit
  schedule in order), a ``StudyEventDef`` per visit (target day and window stated in its
  ``Description`` and as ``Alias`` elements with contexts ``regenheart:target-study-day`` and
  ``regenheart:window-study-days``: ODM 1.3.2 has no window element, and its schema allows no
  foreign attributes),
  one common event ``SE.SUBJECT`` for what is not tied to a visit (subject-level facts, the
  adverse-event log with a repeating item group, the disposition), a ``FormDef``/``ItemGroupDef``
  per form, an ``ItemDef`` per field (data type, length, significant digits, question, unit,
  hard range checks from the protocol's plausible range, code list), and ``CodeList``s.
  Questionnaire scores are ``ItemDef``s with ``Origin="Derived"`` and a ``MethodDef``: exported,
  never imported as data (the capture service recomputes them).
* ``AdminData``: the users who appear in the audit trail or signed forms, the sites as
  ``Location``s, and one ``SignatureDef`` per signature meaning.
* ``ClinicalData`` (``FileType="Transactional"``): per subject its site (``SiteRef``), each
  value's full history as successive ``ItemData`` transactions (``Insert``, ``Update``, ``Remove``)
  in audit-trail order, each with its ``AuditRecord`` (user, site, UTC time, reason, and the audit
  sequence number as ``SourceID``): ODM 1.3.2 has no old-value element, so the old value of a
  change is the value of the transaction before it. Visit dates are a ``visit_date`` item of a
  ``visit`` form at every visit. The current electronic signature of a signed form is a
  ``Signature`` on its ``FormData``, that of a signed adverse event a ``Signature`` on its
  ``ItemGroupData``. An absent value is not written.

ODM 1.3.2 has no element for the EDC workflow, so each form's status, source-data verification and
lock are ``Flag``s of an ``Annotation`` on its ``FormData`` (an adverse event's SDV and lock: on its
``ItemGroupData``, with its queries; code lists ``CL.REGENHEART.FLAGTYPE`` and
``CL.REGENHEART.FLAGVALUE``), and each data query is an ``Annotation`` with its whole thread as the
``Comment`` and its status as a flag. A missing-data code recorded in place of a value (protocol
``missing_codes``) is an ``ItemData`` with ``IsNull="Yes"`` and no value, carrying an ``Annotation``
whose ``Flag`` has the code as ``FlagValue`` (code list ``CL.REGENHEART.MISSING``) and ``MISSING`` as
``FlagType``, and whose ``Comment`` is the reason given with it; its ``AuditRecord`` is that of any
value. Not exported: the randomization list.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload

from regenheart import __version__
from regenheart.capture.sites import study_sites
from regenheart.protocol.missing import is_missing, missing_code, missing_reason
from regenheart.protocol.models import FieldDef, Protocol
from regenheart.store.db import DatabaseError
from regenheart.store.models import (
    AdverseEvent,
    AdverseEventSignature,
    AuditRecord,
    DataQuery,
    DerivedValue,
    FormRecord,
    ItemValue,
    Signature,
    StudyMeta,
    Subject,
    User,
    Visit,
)
from regenheart.store.reconcile import CodeHistory, require_integrity

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_NSMAP = {None: ODM_NS}

# OIDs of what regenheart adds to the protocol's forms (fixed, documented in the module docstring).
SUBJECT_EVENT = "SE.SUBJECT"
VISIT_FORM, VISIT_GROUP, VISIT_DATE_ITEM = "F.VISIT", "IG.VISIT", "IT.VISIT.VISIT_DATE"
SUBJECT_FORM, SUBJECT_GROUP = "F.SUBJECT", "IG.SUBJECT"
AE_FORM, AE_GROUP = "F.AE", "IG.AE"
DS_FORM, DS_GROUP = "F.DS", "IG.DS"
YES_NO_LIST = "CL.REGENHEART.NY"
# Form workflow state as ODM Annotation flags (ODM 1.3.2 has no SDV, lock or query element).
FLAG_TYPES, FLAG_VALUES = "CL.REGENHEART.FLAGTYPE", "CL.REGENHEART.FLAGVALUE"
FLAG_TYPE_DECODES = {"STATUS": "Form status", "SDV": "Source data verified by a monitor",
                     "LOCK": "Locked by data management", "QUERY": "Data query status",
                     "MISSING": "Missing-data code recorded in place of the value"}
# The protocol's missing-data codes (ND, UNK, ...): the FlagValue code list of a null ItemData's flag.
MISSING_CODES = "CL.REGENHEART.MISSING"
FLAG_VALUE_DECODES = {"complete": "Complete", "incomplete": "Incomplete", "Y": "Yes", "N": "No",
                      "open": "Open", "answered": "Answered", "closed": "Closed"}

# Subject-level facts: database column -> (item name, data type, derived by capture?, description).
SUBJECT_ITEMS: dict[str, tuple[str, str, bool, str]] = {
    "site_code": ("site", "text", False, "Site code (also the subject's SiteRef)"),
    "screening_date": ("screening_date", "date", False, "Screening date"),
    "consent_date": ("consent_date", "date", False, "Date informed consent was signed"),
    "eligible": ("eligible", "text", True, ("Eligibility outcome evaluated by the capture service from the "
                 "screening forms (Y/N)")),
    "eligibility_failed": ("eligibility_failed", "text", True, "Criteria not met or not assessed, comma-separated"),
    "enrolled_date": ("enrolled_date", "date", False, "Enrolment date"),
    "arm_code": ("arm", "text", False, "Arm"),
    "infusion_date": ("infusion_date", "date", True, ("Day 0: date of the infusion visit whose catheterization "
                      "record gives cells")),
    "status": ("status", "text", True, "Subject status in the capture workflow"),
    "synthetic": ("synthetic", "text", False, "Y when the subject is SYNTHETIC demonstration data"),
}
# Disposition is stored on the subject; capture's record_disposition maps the protocol's
# disposition fields status/date/reason to these columns.
DISPOSITION_COLUMNS = {"disposition": "status", "disposition_date": "date", "disposition_reason": "reason"}
HISTORY_ENTITIES = ("subject", "visit", "item", "score", "adverse_event")
DERIVED_NOTE = "Derived: computed by regenheart, exported for review and never imported as data"


class OdmExportError(ValueError):
    """The database cannot be exported faithfully (broken audit chain, data and audit trail disagree)."""


def _oid_part(text: str) -> str:
    """An OID fragment: upper case, anything but letters, digits and '_' replaced."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text).upper()


def item_oid(form: str, name: str) -> str:
    return f"IT.{_oid_part(form)}.{_oid_part(name)}"


def form_oid(form: str) -> str:
    return f"F.{_oid_part(form)}"


def group_oid(form: str) -> str:
    return f"IG.{_oid_part(form)}"


def event_oid(visit: str) -> str:
    return f"SE.{_oid_part(visit)}"


def unit_oid(unit: str) -> str:
    return "MU." + (re.sub(r"[^A-Za-z0-9]+", "_", unit.replace("%", "PCT")).strip("_") or "UNIT")


def user_oid(username: str) -> str:
    return "USR." + re.sub(r"[^A-Za-z0-9_.-]", "_", username)


def location_oid(site: str) -> str:
    return f"LOC.{site}"


# ---------------------------------------------------------------------------------------- XML helpers
def _el(parent: etree._Element | None, tag: str, attrs: dict[str, Any] | None = None,
        text: str | None = None) -> etree._Element:
    attributes = {k: str(v) for k, v in (attrs or {}).items() if v is not None}
    node = etree.Element(f"{{{ODM_NS}}}{tag}", attributes, nsmap=_NSMAP) if parent is None \
        else etree.SubElement(parent, f"{{{ODM_NS}}}{tag}", attributes)
    if text is not None:
        node.text = text
    return node


def _translated(parent: etree._Element, tag: str, text: str) -> etree._Element:
    node = _el(parent, tag)
    _el(node, "TranslatedText", {XML_LANG: "en"}, text)
    return node


# ---------------------------------------------------------------------------------------- values
def _value_text(value: Any) -> str:
    """An ODM value: ISO dates, Y/N flags, whole floats without ".0" (decimals are fixed by the caller)."""
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def _number_text(number: float) -> str:
    """A range bound as written in the protocol (18, not 18.0)."""
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def _decode_canonical(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _subject_value(column: str, value: Any) -> Any:
    """A subject column (as stored or as canonical-decoded from the audit trail) as an ODM value."""
    if value is None:
        return None
    if column in ("eligible", "synthetic"):
        return "Y" if value in (True, "true", 1) else "N"
    if column == "eligibility_failed":
        failed = json.loads(value) if isinstance(value, str) else value
        return ", ".join(failed) if failed else None
    return value


@dataclass
class _Change:
    """One audited value of one item: the value after the change and its audit record."""

    value: Any
    seq: int
    ts: str
    username: str
    role: str
    reason: str | None


@dataclass
class _History:
    """All audit changes of one subject, grouped by where they land in the ODM file."""

    subject: list[_Change] = field(default_factory=list)
    subject_fields: dict[str, list[_Change]] = field(default_factory=lambda: defaultdict(list))
    visits: dict[str, list[_Change]] = field(default_factory=lambda: defaultdict(list))
    items: dict[tuple[str, str, str], list[_Change]] = field(default_factory=lambda: defaultdict(list))
    scores: dict[tuple[str, str, str], list[_Change]] = field(default_factory=lambda: defaultdict(list))
    aes: dict[tuple[int, str], list[_Change]] = field(default_factory=lambda: defaultdict(list))


def _collect_history(session: Session) -> dict[str, _History]:
    """Read the audit trail once (in sequence order) into per-subject, per-item histories."""
    history: dict[str, _History] = defaultdict(_History)
    ae_key = re.compile(r"^.*/AE(\d+)$")
    a = AuditRecord
    rows = session.execute(
        select(a.seq, a.ts_utc, a.username, a.role, a.action, a.entity, a.subject_code, a.visit_code, a.form_code,
               a.record_key, a.field, a.new_value, a.reason)
        .where(a.subject_code.is_not(None), a.field.is_not(None), a.entity.in_(HISTORY_ENTITIES))
        .order_by(a.seq).execution_options(yield_per=5000))
    codes = CodeHistory.load(session)  # records under a code corrected since belong to the subject's code of today
    for r in rows:
        change = _Change(_decode_canonical(r.new_value), r.seq, r.ts_utc, r.username, r.role, r.reason)
        h = history[codes.current(r.subject_code, r.seq) if codes else r.subject_code]
        if r.entity == "subject":
            h.subject_fields[r.field].append(change)
            if r.action == "create":
                h.subject.append(change)
        elif r.entity == "visit" and r.field == "visit_date":
            h.visits[r.visit_code].append(change)
        elif r.entity == "item":
            h.items[(r.visit_code, r.form_code, r.field)].append(change)
        elif r.entity == "score":
            h.scores[(r.visit_code, r.form_code, r.field)].append(change)
        elif r.entity == "adverse_event" and (m := ae_key.match(r.record_key or "")):
            h.aes[(int(m.group(1)), r.field)].append(change)
    return history


# ---------------------------------------------------------------------------------------- metadata
@dataclass(frozen=True)
class _ItemSpec:
    """What the metadata says about one exported item."""

    oid: str
    name: str
    label: str
    data_type: str
    length: int | None = None
    digits: int | None = None
    unit: str | None = None
    range: tuple[float, float] | None = None
    codelist: str | None = None
    mandatory: bool = False
    derived: bool = False
    description: str | None = None
    method: str | None = None


class _Metadata:
    """The protocol as ODM definitions, plus the lookups the clinical-data writer needs."""

    def __init__(self, protocol: Protocol):
        self.protocol = protocol
        self.codelists: dict[str, tuple[str, list[tuple[str, str]]]] = {}  # OID -> (data type, [(code, decode)])
        self.units: dict[str, str] = {}  # unit -> OID
        self.forms: dict[str, list[_ItemSpec]] = {}  # protocol form -> items (fields, then scores)
        self.methods: dict[str, tuple[str, str]] = {}  # OID -> (name, description)
        for name, items in protocol.codelists.items():
            self.codelists[f"CL.{_oid_part(name)}"] = (
                "integer" if all(isinstance(i.code, int) for i in items) else "text",
                [(str(i.code), i.decode) for i in items])
        self.codelists[YES_NO_LIST] = ("text", [("Y", "Yes"), ("N", "No")])
        self.codelists[FLAG_TYPES] = ("text", list(FLAG_TYPE_DECODES.items()))
        self.codelists[FLAG_VALUES] = ("text", list(FLAG_VALUE_DECODES.items()))
        if protocol.missing_codes:
            self.codelists[MISSING_CODES] = ("text", [(m.code, m.label) for m in protocol.missing_codes])
        arms = {a.code: a.label for v in protocol.protocol_versions for a in v.arms}
        self.codelists["CL.REGENHEART.ARM"] = ("text", sorted(arms.items()))
        for code, form in protocol.forms.items():
            items = [self._field_item(code, f) for f in form.fields]
            if form.instrument:
                items += self._score_items(code, form.instrument)
            self.forms[code] = items
        self.ae_items = [self._field_item("AE", f) for f in protocol.adverse_events.fields]
        self.ds_items = [self._field_item("DS", f) for f in protocol.disposition.fields]
        self.subject_items = [
            _ItemSpec(item_oid("SUBJECT", name), name, description, dtype,
                      codelist=YES_NO_LIST if column in ("eligible", "synthetic")
                      else ("CL.REGENHEART.ARM" if column == "arm_code" else None),
                      mandatory=column in ("site_code", "screening_date", "consent_date"), derived=derived,
                      description=(f"{DERIVED_NOTE}: {description}" if derived else description))
            for column, (name, dtype, derived, description) in SUBJECT_ITEMS.items()]
        self.visit_item = _ItemSpec(VISIT_DATE_ITEM, "visit_date", "Visit date", "date", mandatory=True)

    def _unit(self, unit: str | None) -> str | None:
        if unit is None:
            return None
        self.units.setdefault(unit, unit_oid(unit))
        return unit

    def _field_item(self, form: str, f: FieldDef) -> _ItemSpec:
        codelist = None
        length = digits = None
        if f.type == "code":
            if f.codelist:
                codelist = f"CL.{_oid_part(f.codelist)}"
            else:
                codelist = f"CL.{_oid_part(form)}.{_oid_part(f.name)}"
                codes = list(f.codes or [])
                # Inline codes have no published wording (questionnaires): the decode is the code.
                self.codelists[codelist] = ("integer" if all(isinstance(c, int) for c in codes) else "text",
                                            [(str(c), str(c)) for c in codes])
            length = max(len(c) for c, _ in self.codelists[codelist][1])
            data_type = self.codelists[codelist][0]
        elif f.type == "integer":
            data_type = "integer"
            length = len(str(int(f.range[1]))) if f.range else None
        elif f.type == "float":
            data_type = "float"
            digits = f.decimals
            if f.range:
                length = len(str(int(f.range[1]))) + (f.decimals or 0)
        elif f.type == "date":
            data_type = "date"
        else:
            data_type = "text"
            length = f.max_length
        return _ItemSpec(item_oid(form, f.name), f.name, f.label, data_type, length, digits, self._unit(f.unit),
                         f.range, codelist, f.required)

    def _score_items(self, form: str, instrument: str) -> list[_ItemSpec]:
        from regenheart import instruments

        spec = instruments.get_instrument(instrument)
        version = instruments.scoring_version(instrument)
        method = f"MT.{_oid_part(instrument)}"
        self.methods[method] = (f"{instrument} scoring", (f"Scores computed from the item responses by "
                                f"regenheart.instruments, scoring version {version}."))
        return [_ItemSpec(item_oid(form, s.name), s.name, s.label, "float", unit=self._unit(s.unit),
                          range=(s.minimum, s.maximum), derived=True, method=method,
                          description=f"{DERIVED_NOTE}: {s.label}, {s.direction} ({version})")
                for s in spec.scores]

    def field_decimals(self, form: str, name: str) -> int | None:
        for item in self.forms.get(form, []):
            if item.name == name and not item.derived:
                return item.digits
        return None


def _study_event_description(visit) -> str:
    return (f"{visit.label}. Target study day {visit.day} (day 0 = infusion); window days {visit.window[0]} "
            f"to {visit.window[1]} inclusive" + ("; baseline visit" if visit.baseline else "") + ".")


def _write_metadata(study: etree._Element, md: _Metadata, mdv_oid: str) -> None:
    p = md.protocol
    # MeasurementUnits are collected while the item definitions are built: build those first.
    basic = _el(study, "BasicDefinitions")
    for unit, oid in sorted(md.units.items(), key=lambda kv: kv[1]):
        mu = _el(basic, "MeasurementUnit", {"OID": oid, "Name": unit})
        _translated(mu, "Symbol", unit)
    mdv = _el(study, "MetaDataVersion", {"OID": mdv_oid, "Name": f"Protocol {p.active_protocol_version}",
                                         "Description": f"{p.study.acronym} protocol version "
                                                        f"{p.active_protocol_version} ({p.active_version.date})"})
    proto = _el(mdv, "Protocol")
    _translated(proto, "Description", f"Visit schedule; {p.study.day0_definition} Subject-level facts, the "
                                      "adverse-event log and the disposition are in the common event SE.SUBJECT.")
    for order, visit in enumerate(p.visits, start=1):
        _el(proto, "StudyEventRef", {"StudyEventOID": event_oid(visit.code), "OrderNumber": order,
                                     "Mandatory": "Yes"})
    _el(proto, "StudyEventRef", {"StudyEventOID": SUBJECT_EVENT, "OrderNumber": len(p.visits) + 1,
                                 "Mandatory": "Yes"})
    for visit in p.visits:
        sed = _el(mdv, "StudyEventDef", {"OID": event_oid(visit.code), "Name": visit.code, "Repeating": "No",
                                         "Type": "Scheduled"})
        _translated(sed, "Description", _study_event_description(visit))
        _el(sed, "FormRef", {"FormOID": VISIT_FORM, "OrderNumber": 1, "Mandatory": "Yes"})
        for order, form in enumerate(visit.forms, start=2):
            _el(sed, "FormRef", {"FormOID": form_oid(form), "OrderNumber": order, "Mandatory": "Yes"})
        # Machine-readable timing: ODM 1.3.2 allows no foreign attributes, but Alias (Context, Name) is open.
        _el(sed, "Alias", {"Context": "regenheart:target-study-day", "Name": visit.day})
        _el(sed, "Alias", {"Context": "regenheart:window-study-days", "Name": f"{visit.window[0]}..{visit.window[1]}"})
    sed = _el(mdv, "StudyEventDef", {"OID": SUBJECT_EVENT, "Name": "subject", "Repeating": "No", "Type": "Common"})
    _translated(sed, "Description", "Not tied to a visit: subject-level facts (site, screening, consent, "
                                    "eligibility, enrolment, arm, infusion), adverse events, disposition.")
    for order, oid in enumerate((SUBJECT_FORM, AE_FORM, DS_FORM), start=1):
        _el(sed, "FormRef", {"FormOID": oid, "OrderNumber": order, "Mandatory": "Yes" if oid == SUBJECT_FORM
                             else "No"})

    forms: list[tuple[str, str, str, str, str | None, bool, list[_ItemSpec]]] = [
        (VISIT_FORM, VISIT_GROUP, "visit", "Visit date", "SV", False, [md.visit_item]),
        (SUBJECT_FORM, SUBJECT_GROUP, "subject", "Subject-level facts", "DM", False, md.subject_items),
    ]
    for code, form in p.forms.items():
        forms.append((form_oid(code), group_oid(code), code, form.label, form.cdisc_domain, False, md.forms[code]))
    forms.append((AE_FORM, AE_GROUP, "adverse_events", p.adverse_events.label, "AE", True, md.ae_items))
    forms.append((DS_FORM, DS_GROUP, "disposition", p.disposition.label, "DS", False, md.ds_items))
    for f_oid, g_oid, name, label, _, _, _ in forms:
        fd = _el(mdv, "FormDef", {"OID": f_oid, "Name": name, "Repeating": "No"})
        _translated(fd, "Description", label)
        _el(fd, "ItemGroupRef", {"ItemGroupOID": g_oid, "OrderNumber": 1, "Mandatory": "Yes"})
    for _, g_oid, name, label, domain, repeating, items in forms:
        ig = _el(mdv, "ItemGroupDef", {"OID": g_oid, "Name": name, "Repeating": "Yes" if repeating else "No",
                                       "Domain": domain})
        _translated(ig, "Description", label + (" (one group per adverse event; ItemGroupRepeatKey = the "
                                                "event's sequence number)" if repeating else ""))
        for order, item in enumerate(items, start=1):
            _el(ig, "ItemRef", {"ItemOID": item.oid, "OrderNumber": order,
                                "Mandatory": "Yes" if item.mandatory else "No", "MethodOID": item.method})
    for *_, items in forms:
        for item in items:
            idef = _el(mdv, "ItemDef", {"OID": item.oid, "Name": item.name, "DataType": item.data_type,
                                        "Length": item.length, "SignificantDigits": item.digits,
                                        "Origin": "Derived" if item.derived else "CRF"})
            if item.description:
                _translated(idef, "Description", item.description)
            _translated(idef, "Question", item.label + (f" ({item.unit})" if item.unit else ""))
            if item.unit:
                _el(idef, "MeasurementUnitRef", {"MeasurementUnitOID": md.units[item.unit]})
            if item.range:
                for comparator, bound in (("GE", item.range[0]), ("LE", item.range[1])):
                    rc = _el(idef, "RangeCheck", {"Comparator": comparator, "SoftHard": "Hard"})
                    _el(rc, "CheckValue", text=_number_text(bound))
                    _translated(rc, "ErrorMessage", f"must be between {_number_text(item.range[0])} and "
                                                    f"{_number_text(item.range[1])}"
                                                    + (f" {item.unit}" if item.unit else ""))
            if item.codelist:
                _el(idef, "CodeListRef", {"CodeListOID": item.codelist})
    for oid, (dtype, entries) in md.codelists.items():
        cl = _el(mdv, "CodeList", {"OID": oid, "Name": oid.removeprefix("CL."), "DataType": dtype})
        for order, (code, decode) in enumerate(entries, start=1):
            cli = _el(cl, "CodeListItem", {"CodedValue": code, "OrderNumber": order})
            _translated(cli, "Decode", decode)
    for oid, (name, description) in md.methods.items():
        method = _el(mdv, "MethodDef", {"OID": oid, "Name": name, "Type": "Computation"})
        _translated(method, "Description", description)


# ---------------------------------------------------------------------------------------- clinical data
class _ClinicalWriter:
    def __init__(self, md: _Metadata, users: set[str]):
        self.md = md
        self.users = users  # usernames referenced; AdminData lists them

    def audit(self, parent: etree._Element, change: _Change, site: str) -> None:
        self.users.add(change.username)
        attrs = {"EditPoint": "DataManagement" if change.role in ("data_manager", "admin") else None}
        ar = _el(parent, "AuditRecord", attrs)
        _el(ar, "UserRef", {"UserOID": user_oid(change.username)})
        _el(ar, "LocationRef", {"LocationOID": location_oid(site)})
        _el(ar, "DateTimeStamp", text=change.ts)
        if change.reason:
            _el(ar, "ReasonForChange", text=change.reason)
        _el(ar, "SourceID", text=str(change.seq))

    def item_history(self, group: etree._Element, oid: str, changes: list[_Change], site: str,
                     fmt: Callable[[Any], Any], where: str, current: Any, check: bool = True) -> None:
        """Successive ItemData transactions of one item; the last one must equal the stored value."""
        previous = None
        for change in changes:
            value = fmt(change.value)
            if value is None and previous is None:
                continue
            kind = "Remove" if value is None else ("Insert" if previous is None else "Update")
            code = missing_code(value)
            item = _el(group, "ItemData", {"ItemOID": oid, "TransactionType": kind,
                                           "IsNull": "Yes" if code else None,
                                           "Value": None if value is None or code else _value_text(value)})
            self.audit(item, change, site)
            if code:  # ODM 1.3.2: a null value, its code as a flag and its reason as the comment
                annotation = _el(item, "Annotation", {"SeqNum": 1})
                reason = missing_reason(value)
                if reason:
                    _el(annotation, "Comment", {"SponsorOrSite": "Site"}, reason)
                flag = _el(annotation, "Flag")
                _el(flag, "FlagValue", {"CodeListOID": MISSING_CODES}, code)
                _el(flag, "FlagType", {"CodeListOID": FLAG_TYPES}, "MISSING")
            previous = value
        if check and _norm(previous) != _norm(fmt(current)):
            raise OdmExportError(f"{where}: the stored value {fmt(current)!r} is not the last value in the audit "
                                 f"trail ({previous!r}); the database was changed outside the capture service")


def _norm(value: Any) -> str | None:
    if is_missing(value):
        return json.dumps(value, sort_keys=True)
    return None if value is None else _value_text(value)


def _fmt_for(decimals: int | None) -> Callable[[Any], Any]:
    def fmt(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, float) and decimals is not None:
            return f"{value:.{decimals}f}"
        return value
    return fmt


@dataclass
class _Stored:
    """The current data of the whole database, read in bulk (a few queries, not one per form)."""

    visits: dict[int, dict[str, Visit]]
    records: dict[int, dict[tuple[str, str], FormRecord]]
    items: dict[int, dict[str, Any]]
    derived: dict[int, dict[str, float | None]]
    aes: dict[int, list[AdverseEvent]]
    queries: dict[int, list[DataQuery]]  # by form record
    ae_queries: dict[int, list[DataQuery]]  # by adverse event id

    @classmethod
    def load(cls, session: Session) -> _Stored:
        visits: dict[int, dict[str, Visit]] = defaultdict(dict)
        for v in session.scalars(select(Visit)):
            visits[v.subject_id][v.visit_code] = v
        records: dict[int, dict[tuple[str, str], FormRecord]] = defaultdict(dict)
        for r in session.scalars(select(FormRecord)):
            records[r.subject_id][(r.visit_code, r.form_code)] = r
        items: dict[int, dict[str, Any]] = defaultdict(dict)
        for record_id, name, value in session.execute(select(ItemValue.record_id, ItemValue.field, ItemValue.value)):
            items[record_id][name] = _decode_canonical(value)
        derived: dict[int, dict[str, float | None]] = defaultdict(dict)
        for record_id, name, value in session.execute(
                select(DerivedValue.record_id, DerivedValue.name, DerivedValue.value)):
            derived[record_id][name] = value
        aes: dict[int, list[AdverseEvent]] = defaultdict(list)
        for ae in session.scalars(select(AdverseEvent).order_by(AdverseEvent.subject_id, AdverseEvent.ae_seq)):
            aes[ae.subject_id].append(ae)
        queries: dict[int, list[DataQuery]] = defaultdict(list)
        record_of = {(r.subject_id, r.visit_code, r.form_code): r.id for by in records.values() for r in by.values()}
        ae_queries: dict[int, list[DataQuery]] = defaultdict(list)
        for q in session.scalars(select(DataQuery).options(selectinload(DataQuery.messages))
                                 .order_by(DataQuery.subject_id, DataQuery.query_seq)):
            if q.ae_id is not None:
                ae_queries[q.ae_id].append(q)
                continue
            record_id = record_of.get((q.subject_id, q.visit_code, q.form_code))
            if record_id is not None:
                queries[record_id].append(q)
        return cls(visits, records, items, derived, aes, queries, ae_queries)


def _flag(annotation: etree._Element, flag_type: str, value: str) -> None:
    flag = _el(annotation, "Flag")
    _el(flag, "FlagValue", {"CodeListOID": FLAG_VALUES}, value)
    _el(flag, "FlagType", {"CodeListOID": FLAG_TYPES}, flag_type)


def _write_annotations(parent: etree._Element, record: FormRecord | AdverseEvent, queries: list[DataQuery]) -> None:
    """The workflow state (form status, SDV, lock) of a form (on its FormData) or an adverse event (on its
    ItemGroupData), and its data queries with their threads, as Annotations."""
    state = _el(parent, "Annotation", {"SeqNum": 1})
    if isinstance(record, FormRecord):  # an adverse event has no status: it is saved complete or not at all
        _flag(state, "STATUS", record.status)
    _flag(state, "SDV", "Y" if record.verified else "N")
    _flag(state, "LOCK", "Y" if record.locked else "N")
    for number, query in enumerate(queries, start=2):
        annotation = _el(parent, "Annotation", {"SeqNum": number})
        thread = " | ".join(f"{m.kind} by {m.username} ({m.role}) at {m.ts_utc}" + (f": {m.text}" if m.text else "")
                            for m in query.messages)
        _el(annotation, "Comment", {"SponsorOrSite": "Sponsor"},
            f"Query {query.query_seq} on {query.field} ({query.status}): {thread}")
        _flag(annotation, "QUERY", query.status)


def _check_fits_protocol(p: Protocol, code: str, visits: dict[str, Visit],
                         records: dict[tuple[str, str], FormRecord], stored: _Stored) -> None:
    """Refuse data the protocol has no place for: nothing stored may be left out of the file silently."""
    schedule = {v.code: set(v.forms) for v in p.visits}
    problems = [f"visit {v}" for v in visits if v not in schedule]
    for (visit, form), record in records.items():
        if form not in schedule.get(visit, set()):
            problems.append(f"form {form} at visit {visit}")
            continue
        extra = set(stored.items.get(record.id, {})) - set(p.forms[form].field_names)
        problems += [f"field {form}.{name} at visit {visit}" for name in sorted(extra)]
    if problems:
        raise OdmExportError(f"subject {code}: the database holds {', '.join(problems)}, which the protocol does "
                             "not define; export with the protocol the data were captured under (--protocol)")


def _write_subject(cd: etree._Element, w: _ClinicalWriter, stored_data: _Stored, subject: Subject,
                   h: _History, signatures: dict[int, Signature], ae_signatures: dict[int, AdverseEventSignature],
                   sigdefs: dict[str, str]) -> None:
    md, p = w.md, w.md.protocol
    site = subject.site_code
    code = subject.subject_code
    sd = _el(cd, "SubjectData", {"SubjectKey": code, "TransactionType": "Insert"})
    if not h.subject:
        raise OdmExportError(f"subject {code}: no creation record in the audit trail")
    w.audit(sd, h.subject[0], site)
    _el(sd, "SiteRef", {"LocationOID": location_oid(site)})

    # Subject-level event: facts, adverse events, disposition.
    se = _el(sd, "StudyEventData", {"StudyEventOID": SUBJECT_EVENT, "TransactionType": "Insert"})
    w.audit(se, h.subject[0], site)
    fd = _el(se, "FormData", {"FormOID": SUBJECT_FORM, "TransactionType": "Insert"})
    w.audit(fd, h.subject[0], site)
    ig = _el(fd, "ItemGroupData", {"ItemGroupOID": SUBJECT_GROUP, "TransactionType": "Insert"})
    for column, (name, *_rest) in SUBJECT_ITEMS.items():
        w.item_history(ig, item_oid("SUBJECT", name), h.subject_fields.get(column, []), site,
                       lambda v, c=column: _subject_value(c, v), f"subject {code}, {name}",
                       getattr(subject, column))
    aes = stored_data.aes.get(subject.id, [])
    if aes:
        fd = _el(se, "FormData", {"FormOID": AE_FORM, "TransactionType": "Insert"})
        for ae in aes:
            stored = json.loads(ae.data)
            first = min((c for f in p.adverse_events.fields for c in h.aes.get((ae.ae_seq, f.name), [])),
                        key=lambda c: c.seq, default=None)
            ig = _el(fd, "ItemGroupData", {"ItemGroupOID": AE_GROUP, "ItemGroupRepeatKey": ae.ae_seq,
                                           "TransactionType": "Insert"})
            if first is not None:
                w.audit(ig, first, site)
            signature = ae_signatures.get(ae.id)
            if signature is not None:
                _write_signature(w, ig, signature, site, sigdefs)
            _write_annotations(ig, ae, stored_data.ae_queries.get(ae.id, []))
            for f, spec in zip(p.adverse_events.fields, md.ae_items, strict=True):
                w.item_history(ig, spec.oid, h.aes.get((ae.ae_seq, f.name), []), site, _fmt_for(f.decimals),
                               f"subject {code}, adverse event {ae.ae_seq}, {f.name}", stored.get(f.name))
    if subject.disposition is not None:
        fd = _el(se, "FormData", {"FormOID": DS_FORM, "TransactionType": "Insert"})
        ig = _el(fd, "ItemGroupData", {"ItemGroupOID": DS_GROUP, "TransactionType": "Insert"})
        by_field = {v: k for k, v in DISPOSITION_COLUMNS.items()}
        for f, spec in zip(p.disposition.fields, md.ds_items, strict=True):
            column = by_field.get(f.name)
            if column is None:  # a protocol disposition field capture does not store on the subject
                continue
            w.item_history(ig, spec.oid, h.subject_fields.get(column, []), site, _fmt_for(f.decimals),
                           f"subject {code}, disposition {f.name}", getattr(subject, column))

    # Visits in protocol order.
    visits = stored_data.visits.get(subject.id, {})
    records = stored_data.records.get(subject.id, {})
    _check_fits_protocol(p, code, visits, records, stored_data)
    for visit in p.visits:
        if visit.code not in visits:
            continue
        changes = h.visits.get(visit.code, [])
        se = _el(sd, "StudyEventData", {"StudyEventOID": event_oid(visit.code), "TransactionType": "Insert"})
        if changes:
            w.audit(se, changes[0], site)
        fd = _el(se, "FormData", {"FormOID": VISIT_FORM, "TransactionType": "Insert"})
        ig = _el(fd, "ItemGroupData", {"ItemGroupOID": VISIT_GROUP, "TransactionType": "Insert"})
        w.item_history(ig, VISIT_DATE_ITEM, changes, site, lambda v: v, f"subject {code}, {visit.code} visit date",
                       visits[visit.code].visit_date)
        for form_code in visit.forms:
            record = records.get((visit.code, form_code))
            if record is None:
                continue
            form = p.forms[form_code]
            stored = stored_data.items.get(record.id, {})
            derived = stored_data.derived.get(record.id, {})
            fd = _el(se, "FormData", {"FormOID": form_oid(form_code), "TransactionType": "Insert"})
            all_changes = [c for f in form.fields for c in h.items.get((visit.code, form_code, f.name), [])]
            if all_changes:
                w.audit(fd, min(all_changes, key=lambda c: c.seq), site)
            signature = signatures.get(record.id)
            if signature is not None:
                _write_signature(w, fd, signature, site, sigdefs)
            _write_annotations(fd, record, stored_data.queries.get(record.id, []))
            ig = _el(fd, "ItemGroupData", {"ItemGroupOID": group_oid(form_code), "TransactionType": "Insert"})
            for spec in md.forms[form_code]:
                where = f"subject {code}, {visit.code}/{form_code}.{spec.name}"
                if spec.derived:
                    w.item_history(ig, spec.oid, h.scores.get((visit.code, form_code, spec.name), []), site,
                                   lambda v: v, where, derived.get(spec.name), check=spec.name in derived)
                else:
                    w.item_history(ig, spec.oid, h.items.get((visit.code, form_code, spec.name), []), site,
                                   _fmt_for(spec.digits), where, stored.get(spec.name))


def _write_signature(w: Any, parent: etree._Element, signature: Signature | AdverseEventSignature, site: str,
                     sigdefs: dict[str, str]) -> None:
    """The signature that still applies to a form (FormData) or an adverse event (ItemGroupData)."""
    w.users.add(signature.username)
    sig = _el(parent, "Signature")
    _el(sig, "UserRef", {"UserOID": user_oid(signature.username)})
    _el(sig, "LocationRef", {"LocationOID": location_oid(site)})
    _el(sig, "SignatureRef", {"SignatureOID": sigdefs[signature.meaning]})
    _el(sig, "DateTimeStamp", text=signature.ts_utc)


def _current_signatures(session: Session, signed_model: type[FormRecord | AdverseEvent],
                        signature_model: type[Signature | AdverseEventSignature], owner: str) -> dict[int, Any]:
    """Per signed form record or adverse event (``signed_model``), the signature that still applies: the
    newest ``signature_model`` row whose ``owner`` column names it, made at its current version."""
    signed = {o.id: o.version for o in session.scalars(select(signed_model).where(signed_model.signed.is_(True)))}
    current: dict[int, Any] = {}
    for s in session.scalars(select(signature_model).order_by(signature_model.id)):
        if signed.get(getattr(s, owner)) == s.record_version:
            current[getattr(s, owner)] = s
    return current


def _write_admin(root: etree._Element, protocol: Protocol, session: Session, usernames: Iterable[str],
                 mdv_oid: str, study_oid: str, sigdefs: dict[str, str]) -> etree._Element:
    admin = _el(root, "AdminData", {"StudyOID": study_oid})
    accounts = {u.username: u for u in session.scalars(select(User))}
    for username in sorted(usernames):
        account = accounts.get(username)
        user = _el(admin, "User", {"OID": user_oid(username),
                                   "UserType": "Investigator" if account and account.role == "investigator"
                                   else "Other"})
        _el(user, "LoginName", text=username)
        _el(user, "DisplayName", text=f"{account.full_name} ({account.role})" if account else username)
        if account:
            _el(user, "FullName", text=account.full_name)
        if account and account.site_code:
            _el(user, "LocationRef", {"LocationOID": location_oid(account.site_code)})
    # Every site of the database (protocol sites and those administrators added; a deactivated site stays,
    # its subjects and accounts refer to it), with its current name.
    for site in study_sites(session, protocol):
        loc = _el(admin, "Location", {"OID": location_oid(site.code), "Name": site.name, "LocationType": "Site"})
        _el(loc, "MetaDataVersionRef", {"StudyOID": study_oid, "MetaDataVersionOID": mdv_oid,
                                        "EffectiveDate": protocol.active_version.date.isoformat()})
    for meaning, oid in sigdefs.items():
        sd = _el(admin, "SignatureDef", {"OID": oid, "Methodology": "Electronic"})
        _el(sd, "Meaning", text=meaning)
        _el(sd, "LegalReason", text="Electronic signature (21 CFR 11.50, 11.200): the signer re-entered their "
                                    "password; printed name, UTC date and time and meaning are recorded. It applies "
                                    "to the form's data at the time of signing.")
    return admin


@dataclass(frozen=True)
class OdmExport:
    """What :func:`write_odm` wrote: the file, counts, and whether the data are synthetic."""

    path: Path
    subjects: int
    item_data: int
    audit_records: int
    users: int
    signatures: int
    synthetic: bool


def _write_study(root: etree._Element, protocol: Protocol, label: str, study_oid: str, mdv_oid: str) -> _Metadata:
    study = _el(root, "Study", {"OID": study_oid})
    gv = _el(study, "GlobalVariables")
    _el(gv, "StudyName", text=protocol.study.acronym)
    _el(gv, "StudyDescription", text=f"{label}{protocol.study.brief_title}")
    _el(gv, "ProtocolName", text=f"{protocol.study.org_study_id} ({protocol.study.nct_id})")
    md = _Metadata(protocol)
    _write_metadata(study, md, mdv_oid)
    return md


def build_metadata_odm(protocol: Protocol, *, now: dt.datetime | None = None) -> etree._ElementTree:
    """The protocol alone as an ODM 1.3.2 ``Metadata`` snapshot (no database): for building the study in
    another EDC or metadata repository. Same study, visits, forms, items and code lists as :func:`build_odm`."""
    now = now or dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    study_oid = f"ST.{protocol.study.nct_id}"
    root = _el(None, "ODM", {
        "FileType": "Snapshot", "Granularity": "Metadata",
        "FileOID": f"{study_oid}.METADATA.{now.strftime('%Y%m%dT%H%M%S')}", "CreationDateTime": stamp,
        "ODMVersion": "1.3.2", "Originator": "regenheart", "SourceSystem": "regenheart",
        "SourceSystemVersion": __version__,
        "Description": f"{protocol.study.acronym} ({protocol.study.nct_id}) protocol "
                       f"{protocol.active_protocol_version} as study metadata",
    })
    _write_study(root, protocol, "", study_oid, f"MDV.{protocol.active_protocol_version}")
    return etree.ElementTree(root)


def write_metadata_odm(protocol: Protocol, path: str | Path, *, now: dt.datetime | None = None) -> Path:
    """Write :func:`build_metadata_odm` to ``path`` (UTF-8); the file appears only when complete."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a folder, not a file", str(path))
    _write_tree(build_metadata_odm(protocol, now=now), path)
    return path


def _write_tree(tree: etree._ElementTree, path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    try:
        tree.write(str(tmp), xml_declaration=True, encoding="UTF-8", pretty_print=True)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # nothing half-written is left behind


def build_odm(engine: Engine, protocol: Protocol, *, progress: Callable[[int, int], None] | None = None,
              now: dt.datetime | None = None) -> etree._ElementTree:
    """The whole study database as an ODM 1.3.2 document tree (see the module docstring for the layout).

    Refuses (:class:`OdmExportError`) a database whose audit chain does not verify or whose stored
    values are not the last values of their audit history. ``progress(done, total)`` per subject.
    """
    try:
        integrity = require_integrity(engine, protocol, purpose="exported")
    except DatabaseError as exc:
        raise OdmExportError(str(exc)) from None
    chain = integrity.chain
    now = now or dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    study_oid = f"ST.{protocol.study.nct_id}"
    mdv_oid = f"MDV.{protocol.active_protocol_version}"
    with Session(engine) as session, session.begin():
        meta = {m.key: m.value for m in session.scalars(select(StudyMeta))}
        synthetic = meta.get("synthetic") == "true"
        label = ("SYNTHETIC DATA generated by regenheart.synth for demonstration; not trial data. "
                 if synthetic else "")
        root = _el(None, "ODM", {
            "FileType": "Transactional", "Granularity": "All",
            "FileOID": f"{study_oid}.{now.strftime('%Y%m%dT%H%M%S')}", "CreationDateTime": stamp,
            "AsOfDateTime": stamp, "ODMVersion": "1.3.2", "Originator": "regenheart",
            "SourceSystem": "regenheart", "SourceSystemVersion": __version__,
            "Description": f"{label}{protocol.study.acronym} ({protocol.study.nct_id}) study database with the "
                           f"full audit history of every value, audit head {chain.head_hash}",
        })
        md = _write_study(root, protocol, label, study_oid, mdv_oid)

        signatures = _current_signatures(session, FormRecord, Signature, "record_id")
        ae_signatures = _current_signatures(session, AdverseEvent, AdverseEventSignature, "ae_id")
        meanings = {s.meaning for s in signatures.values()} | {s.meaning for s in ae_signatures.values()}
        sigdefs = {m: f"SD.{i}" for i, m in enumerate(sorted(meanings), start=1)}
        admin_position = len(root)
        clinical = etree.Element(f"{{{ODM_NS}}}ClinicalData", {"StudyOID": study_oid, "MetaDataVersionOID": mdv_oid})
        writer = _ClinicalWriter(md, set())
        history = _collect_history(session)
        stored = _Stored.load(session)
        subjects = session.scalars(select(Subject).order_by(Subject.subject_code)).all()
        for done, subject in enumerate(subjects, start=1):
            _write_subject(clinical, writer, stored, subject, history.get(subject.subject_code, _History()),
                           signatures, ae_signatures, sigdefs)
            if progress:
                progress(done, len(subjects))
        admin = _write_admin(root, protocol, session, writer.users, mdv_oid, study_oid, sigdefs)
        root.insert(admin_position, admin)
        root.append(clinical)
    return etree.ElementTree(root)


def write_odm(engine: Engine, protocol: Protocol, path: str | Path, *,
              progress: Callable[[int, int], None] | None = None, now: dt.datetime | None = None) -> OdmExport:
    """Write the study database to ``path`` as ODM 1.3.2 (UTF-8); the file appears only when complete."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a folder, not a file", str(path))
    tree = build_odm(engine, protocol, progress=progress, now=now)
    root = tree.getroot()
    ns = {"odm": ODM_NS}
    _write_tree(tree, path)
    return OdmExport(
        path=path,
        subjects=len(root.findall("odm:ClinicalData/odm:SubjectData", ns)),
        item_data=len(root.findall(".//odm:ItemData", ns)),
        audit_records=len(root.findall(".//odm:ItemData/odm:AuditRecord", ns)),
        users=len(root.findall("odm:AdminData/odm:User", ns)),
        signatures=len(root.findall(".//odm:FormData/odm:Signature", ns)),
        synthetic=(root.get("Description") or "").startswith("SYNTHETIC"),
    )
