"""SDTM tabulations (SDTMIG 3.4, CDISC CT 2025-03-28) built from a study-database snapshot.

The mapping of forms and fields to domains, test codes and qualifiers is read from the protocol's
``sdtm`` annotations (:class:`~regenheart.protocol.models.SdtmForm`, :class:`~regenheart.protocol.models.SdtmField`),
so another study defined in a protocol file gets its SDTM the same way. Only the special-purpose and
trial-design domains (DM, DS, SV, SE, IE, TA, TE, TV, TI, TS) are generic code over protocol concepts.

:func:`build_sdtm` is pure: the same snapshot and protocol give the same datasets.
"""

from __future__ import annotations

import pandas as pd

from regenheart.derive.datasets import Dataset
from regenheart.derive.sdtm.common import iso, make_context
from regenheart.derive.sdtm.events import build_ae, build_ds, build_mh
from regenheart.derive.sdtm.findings import build_ie, findings_records, finish_findings
from regenheart.derive.sdtm.interventions import build_intervention
from regenheart.derive.sdtm.occurrences import form_records
from regenheart.derive.sdtm.special import build_dm, build_se, build_sv
from regenheart.derive.sdtm.supp import build_supp
from regenheart.derive.sdtm.trial_design import build_ta, build_te, build_ti, build_ts, build_tv
from regenheart.protocol.loader import ProtocolError, ProtocolIssue
from regenheart.protocol.models import Protocol
from regenheart.store.snapshot import Snapshot

__all__ = ["SdtmAnnotationError", "build_sdtm", "build_sdtm_traced", "check_annotations"]


class SdtmAnnotationError(ProtocolError):
    """The protocol's SDTM annotations name something that does not exist; one issue per problem, with its path.

    A :class:`~regenheart.protocol.ProtocolError`, so the command line reports it as one clear message."""

    def __init__(self, problems: list[str]):
        issues = [ProtocolIssue(*p.split(": ", 1)) for p in problems]
        super().__init__("SDTM annotations", issues)
        self.problems = problems


def check_annotations(protocol: Protocol) -> list[str]:
    """Cross-references of the ``sdtm`` annotations: ``of``, ``performed`` and ``scores`` name fields or scores of
    the same form; a variable in ``var``/``fixed`` is at most 8 characters. Returns one message per problem."""
    problems: list[str] = []
    containers = [(f"forms.{code}", form) for code, form in protocol.forms.items()]
    containers += [(name, log) for name in ("adverse_events", "disposition") if (log := getattr(protocol, name))]
    for where, form in containers:
        names = set(form.field_names)
        ann = form.sdtm
        if ann is not None:
            if ann.performed and ann.performed not in names:
                problems.append(f"{where}.sdtm.performed: {ann.performed!r} is not a field of this form")
            for var in ann.fixed:
                if len(var) > 8 or not var.isupper():
                    problems.append(f"{where}.sdtm.fixed: {var!r} is not an SDTM variable name (<= 8, upper case)")
            if ann.scores and getattr(form, "instrument", None) is None:
                problems.append(f"{where}.sdtm.scores: the form has no instrument, so it has no derived scores")
        for f in form.fields:
            if f.sdtm is None:
                continue
            if f.sdtm.of and f.sdtm.of not in names:
                problems.append(f"{where}.fields[{f.name}].sdtm.of: {f.sdtm.of!r} is not a field of this form")
            if (f.sdtm.testcd or f.sdtm.term or f.sdtm.var or f.sdtm.qnam) and ann is None and not f.sdtm.domain:
                problems.append(f"{where}.fields[{f.name}].sdtm: the form has no 'sdtm: {{domain: ...}}'")
    return problems


def build_sdtm(snapshot: Snapshot, protocol: Protocol) -> dict[str, Dataset]:
    """Every SDTM dataset of the study, by name (DM, SV, SE, DS, IE, MH, AE, CM, EX, PR, findings, TA..TS, SUPP--)."""
    return build_sdtm_traced(snapshot, protocol)[0]


def build_sdtm_traced(snapshot: Snapshot, protocol: Protocol) -> tuple[dict[str, Dataset], pd.DataFrame]:
    """The SDTM datasets plus a trace of findings records to their source (SdtmAnnotationError on bad annotations).

    The trace has one row per findings record: ``subject_code``, ``visit_code``, ``form``, ``item`` (field or
    score name), ``DOMAIN``, ``SEQ`` (--SEQ), ``SRCVAR`` (the standardized result variable) and ``STRESC``, so that an
    analysis dataset can say exactly which SDTM record each value came from.
    """
    problems = check_annotations(protocol)
    if problems:
        raise SdtmAnnotationError(problems)
    ctx = make_context(snapshot, protocol)
    out: dict[str, Dataset] = {}
    out["DM"] = build_dm(ctx)
    out["SE"] = build_se(ctx)
    out["SV"] = build_sv(ctx)
    out["DS"] = build_ds(ctx)
    ie = build_ie(ctx)
    if ie is not None:
        out["IE"] = ie
    raw_events, supp_forms = form_records(ctx)
    anchors: dict[str, pd.DataFrame] = {}
    mh = build_mh(ctx, raw_events.pop("MH", None))
    if mh is not None:
        out["MH"], anchors["MH"] = mh
    ae, supp_ae, anchors_ae = build_ae(ctx)
    if ae is not None:
        out["AE"], anchors["AE"] = ae, anchors_ae
    for domain in sorted(raw_events):
        out[domain], anchors[domain] = build_intervention(ctx, domain, raw_events[domain])
    raw_findings, forms_of = findings_records(ctx)
    traces = []
    for domain in sorted(raw_findings):
        out[domain], trace = finish_findings(ctx, domain, raw_findings[domain], forms_of[domain])
        traces.append(trace)
    for domain in sorted(set(supp_forms["RDOMAIN"]) if not supp_forms.empty else ()):
        supp = build_supp(ctx, domain, supp_forms[supp_forms["RDOMAIN"] == domain], anchors.get(domain, pd.DataFrame()))
        if supp is not None:
            out[supp.name] = supp
    if ae is not None and not supp_ae.empty:
        supp = build_supp(ctx, "AE", supp_ae, anchors["AE"])
        if supp is not None:
            out[supp.name] = supp
    out["TE"], out["TA"], out["TV"] = build_te(ctx), build_ta(ctx), build_tv(ctx)
    ti = build_ti(ctx)
    if ti is not None:
        out["TI"] = ti
    dm = out["DM"].records
    treated = int(dm["RFXSTDTC"].notna().sum()) if "RFXSTDTC" in dm else 0
    first = dm["RFICDTC"].dropna().min() if "RFICDTC" in dm and dm["RFICDTC"].notna().any() else None
    closed = snapshot.subjects["status"].isin(["completed", "discontinued", "screen_failed"]).all()
    last = iso(pd.Series([dm["RFPENDTC"].dropna().max()])).iloc[0] if closed and dm["RFPENDTC"].notna().any() else None
    out["TS"] = build_ts(ctx, treated, first, last)
    trace = pd.concat(traces, ignore_index=True) if traces else pd.DataFrame(
        columns=["subject_code", "visit_code", "form", "item", "DOMAIN", "SEQ", "SRCVAR", "STRESC"])
    return out, trace

