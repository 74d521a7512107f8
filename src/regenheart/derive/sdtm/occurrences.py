"""Event and intervention records read from annotated forms (shared by the events and interventions modules).

Three kinds of record come out of a form row:

- *prespecified*: a field annotated ``term`` (MH history item, CM therapy, PR device) is one record:
  the term (or, for a code field, the decoded answer), ``--PRESP = Y`` and ``--OCCUR`` from the Y/N answer
  (N for the code meaning "none"); a missing-data code in place of the answer gives --OCCUR null,
  ``--STAT = NOT DONE`` and ``--REASND`` (the reason, else the code's label);
- *single*: the form's ``fixed`` values and fields annotated ``var`` make one record per domain prefix
  (a catheterization form gives one EX and one PR record);
- *log*: each row of a log form (adverse events) is one record, its fields annotated ``var``.

Supplemental qualifiers (``qnam``) are collected beside, keyed to the record they qualify.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from regenheart.derive.sdtm.common import Context, code_map, format_result, missing_codes_of, not_done_reason
from regenheart.protocol.models import FieldDef

_YES_NO = {"Y", "N"}


def _is_yes_no(protocol, field: FieldDef) -> bool:
    return field.type == "code" and {str(c) for c in protocol.allowed_codes(field)} <= _YES_NO | {"U", "NA"}


def _value(protocol, field: FieldDef, values: pd.Series) -> pd.Series:
    if field.type == "date":
        from regenheart.derive.sdtm.common import iso
        return iso(values)
    if field.type in ("integer", "float"):
        return pd.to_numeric(values, errors="coerce")
    return format_result(values, field, protocol)


def form_records(ctx: Context) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Raw event/intervention records per domain from visit forms, and their supplemental qualifiers."""
    protocol = ctx.protocol
    parts: dict[str, list[pd.DataFrame]] = {}
    supp: list[pd.DataFrame] = []
    visits = ctx.snap.visits[["subject_code", "visit_code", "visit_date"]]
    for form_code, form in protocol.forms.items():
        if form.sdtm is None:
            continue
        annotated = [f for f in form.fields if f.sdtm is not None]
        terms = [f for f in annotated if f.sdtm.term]
        singles: dict[str, dict[str, object]] = {}
        for var, value in form.sdtm.fixed.items():
            singles.setdefault(var[:2], {})[var] = value
        var_fields = [f for f in annotated if f.sdtm.var and not f.sdtm.of and not f.sdtm.testcd
                      and (f.sdtm.domain or form.sdtm.domain) != "DM"]
        for f in var_fields:
            dom = f.sdtm.var[:2]
            if not any(g.sdtm.testcd and (g.sdtm.domain or form.sdtm.domain) == dom for g in annotated):
                singles.setdefault(dom, {})
        supps = [f for f in annotated if f.sdtm.qnam]
        if not terms and not singles and not supps:
            continue
        frame = ctx.wide(form_code)
        if frame.empty:
            continue
        frame = frame.merge(visits, on=["subject_code", "visit_code"], how="left")
        base = pd.DataFrame({"subject_code": frame["subject_code"], "_visit": frame["visit_code"],
                             "_date": frame["visit_date"], "_form": form_code})
        for f in terms:
            if f.name not in frame:
                continue
            dom = f.sdtm.domain or form.sdtm.domain
            rec = base.copy()
            rec["_anchor"] = f.name
            answer = frame[f.name].astype(object)
            if _is_yes_no(protocol, f):
                rec["TERM"], rec["PRESP"], rec["OCCUR"] = f.sdtm.term, "Y", answer.map(
                    lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)).to_numpy()
            else:
                decoded = format_result(answer, f, protocol)
                none_code = f.sdtm.none_code
                none = answer.astype(str).eq(str(none_code)) if none_code is not None else answer.isna() & False
                rec["TERM"] = np.where(none, f.sdtm.term, decoded)
                rec["PRESP"] = "Y" if f.sdtm.none_code is not None else None
                rec["OCCUR"] = np.where(none, "N", "Y") if f.sdtm.none_code is not None else None
            rec["CAT"], rec["CLAS"] = f.sdtm.cat or form.sdtm.cat, f.sdtm.klass
            rec["DOMAIN"] = dom
            # A prespecified question answered with a missing-data code: asked but not answered, so the
            # record says so (--OCCUR null, --STAT NOT DONE, --REASND why); a free answer coded gives no record.
            code, reason = missing_codes_of(ctx, form_code, frame["subject_code"], frame["visit_code"],
                                            pd.Series(f.name, index=frame.index))
            prespecified = _is_yes_no(protocol, f) or f.sdtm.none_code is not None
            not_done = (code.notna() & answer.isna()).to_numpy() & prespecified
            if not_done.any():
                rec.loc[not_done, "TERM"], rec.loc[not_done, "OCCUR"] = f.sdtm.term, None
                rec["STAT"] = np.where(not_done, "NOT DONE", None)
                rec["REASND"] = not_done_reason(protocol, code, reason).where(not_done, None).to_numpy()
            rec = rec[answer.notna().to_numpy() | not_done]
            parts.setdefault(dom, []).append(rec)
        for dom, fixed in singles.items():
            rec = base.copy()
            rec["_anchor"] = None
            rec["DOMAIN"] = dom
            for var, value in fixed.items():
                rec[var[2:]] = value
            for f in var_fields:
                if f.sdtm.var[:2] == dom and f.name in frame:
                    rec[f.sdtm.var[2:]] = _value(protocol, f, frame[f.name]).to_numpy()
            parts.setdefault(dom, []).append(rec)
        for f in supps:
            if f.name not in frame:
                continue
            dom = f.sdtm.domain or form.sdtm.domain
            values = format_result(frame[f.name].astype(object), f, protocol)
            s = pd.DataFrame({"subject_code": frame["subject_code"], "_visit": frame["visit_code"],
                              "_form": form_code, "_anchor": f.sdtm.of, "RDOMAIN": dom, "QNAM": f.sdtm.qnam,
                              "QLABEL": f.sdtm.qlabel, "QVAL": values.to_numpy(), "QORIG": "Collected"})
            supp.append(s[s["QVAL"].notna()])
    supp_frame = pd.concat(supp, ignore_index=True) if supp else pd.DataFrame(
        columns=["subject_code", "_visit", "_form", "_anchor", "RDOMAIN", "QNAM", "QLABEL", "QVAL", "QORIG"])
    return {d: pd.concat(p, ignore_index=True) for d, p in parts.items()}, supp_frame


def log_records(ctx: Context, log_name: str, rows: pd.DataFrame, key: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One record per row of a log form (variables from ``var`` annotations) and its supplemental qualifiers."""
    protocol = ctx.protocol
    log = getattr(protocol, log_name)
    if log is None or log.sdtm is None or rows.empty:
        return pd.DataFrame(), pd.DataFrame()
    dom = log.sdtm.domain
    rec = pd.DataFrame({"subject_code": rows["subject_code"], "_key": rows[key], "_form": log_name})
    rec["DOMAIN"] = dom
    for var, value in log.sdtm.fixed.items():
        rec[var] = value
    supp = []
    for f in log.fields:
        if f.sdtm is None or f.name not in rows:
            continue
        if f.sdtm.var:
            rec[f.sdtm.var] = _value(protocol, f, rows[f.name].astype(object)).to_numpy()
        if f.sdtm.qnam:
            values = format_result(rows[f.name].astype(object), f, protocol)
            s = pd.DataFrame({"subject_code": rows["subject_code"], "_key": rows[key], "RDOMAIN": dom,
                              "QNAM": f.sdtm.qnam, "QLABEL": f.sdtm.qlabel, "QVAL": values.to_numpy(),
                              "QORIG": "Collected"})
            supp.append(s[s["QVAL"].notna()])
    return rec, (pd.concat(supp, ignore_index=True) if supp else pd.DataFrame())


def code_field_map(protocol, log_name: str, var: str) -> dict[str, str]:
    """The SDTM values of the log field that fills ``var`` (e.g. the disposition status -> DSDECOD)."""
    log = getattr(protocol, log_name)
    for f in (log.fields if log else []):
        if f.sdtm is not None and f.sdtm.var == var and f.type == "code":
            return code_map(protocol, f)
    return {}
