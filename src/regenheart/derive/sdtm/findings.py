"""Findings domains (VS, LB, CV, FT, QS, RS, ... and IE) built from the protocol's annotations.

A field annotated with ``testcd`` is one record per subject and visit in its domain; a form's derived
scores listed under ``sdtm.scores`` are records with ``--DRVFL = Y``. Qualifiers (category, location,
direction, method, specimen, time point, unit) come from the field and form annotations; a field
annotated ``var`` fills that variable on every record of its form row (or, with ``of``, on one);
an "Other" answer of such a field is followed by its specify text (``OTHER: <text>``). A result
recorded as a missing-data code (protocol ``missing_codes``) is a record with --ORRES/--STRESC/--STRESN
null, --STAT = NOT DONE and --REASND = the reason given with the code (else the code's label).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from regenheart.derive.datasets import Dataset, ValueLevel
from regenheart.derive.sdtm.common import (
    Context,
    assign_seq,
    build_dataset,
    code_map,
    epoch,
    format_result,
    iso,
    last_before_exposure,
    missing_codes_of,
    not_done_reason,
    study_day,
    to_ts,
    with_reference,
)
from regenheart.protocol.models import FieldDef, FormDef, SdtmField

_QUALIFIERS = ("CAT", "SCAT", "LOC", "DIR", "METHOD", "SPEC", "TPT", "EVLINT")
_KEYS = ("CAT", "LOC", "DIR", "METHOD", "TPT")
ORDER = ["STUDYID", "DOMAIN", "USUBJID", "SEQ", "TESTCD", "TEST", "CAT", "SCAT", "ORRES", "ORRESU", "ORNRLO",
         "ORNRHI", "STRESC", "STRESN", "STRESU", "STNRLO", "STNRHI", "NRIND", "STAT", "REASND", "LOC", "DIR",
         "METHOD", "SPEC", "LOBXFL", "DRVFL", "VISITNUM", "VISIT", "VISITDY", "EPOCH", "DTC", "DY", "TPT", "EVLINT"]


def _form_frame(ctx: Context, form_code: str) -> pd.DataFrame:
    """One row per subject and visit of a form, with the visit date, item values and derived scores."""
    frame = ctx.wide(form_code)
    scores = ctx.scores(form_code)
    if len(scores.columns) > 2:
        frame = frame.merge(scores, on=["subject_code", "visit_code"], how="left", suffixes=("", "__score"))
    frame["visit_date"] = ctx.visit_dates(frame["subject_code"], frame["visit_code"])
    return frame


def _unit(field: FieldDef | None, ann: SdtmField) -> str | None:
    if ann.unit is not None:
        return ann.unit
    return field.unit if field is not None else None


def findings_records(ctx: Context) -> tuple[dict[str, pd.DataFrame], dict[str, list[tuple[str, FormDef]]]]:
    """Raw findings records per domain, with provenance columns (``_form``, ``_item``, ``_visit``).

    Vectorised per form: the form's rows are melted to one row per item, and every qualifier is mapped
    from the item's annotation.
    """
    protocol = ctx.protocol
    parts: dict[str, list[pd.DataFrame]] = {}
    forms_of: dict[str, list[tuple[str, FormDef]]] = {}
    for form_code, form in protocol.forms.items():
        if form.sdtm is None:
            continue
        specs = [(f.name, f, f.sdtm) for f in form.fields if f.sdtm is not None and f.sdtm.testcd]
        specs += [(name, None, ann) for name, ann in form.sdtm.scores.items()]
        if not specs:
            continue
        frame = _form_frame(ctx, form_code)
        present = [(n, f, a) for n, f, a in specs if n in frame or f"{n}__score" in frame]
        if frame.empty or not present:
            continue
        for _, _, ann in present:
            domain = ann.domain or form.sdtm.domain
            if (form_code, form) not in forms_of.setdefault(domain, []):
                forms_of[domain].append((form_code, form))
        frame = frame.rename(columns={f"{n}__score": n for n, f, _ in present if f is None and f"{n}__score" in frame})
        row_vars = [f for f in form.fields if f.sdtm is not None and f.sdtm.var and not f.sdtm.of and f.name in frame]
        of_vars = [f for f in form.fields if f.sdtm is not None and f.sdtm.var and f.sdtm.of and f.name in frame]
        ids = ["subject_code", "visit_code", "visit_date"]
        extra = {}
        for f in row_vars + of_vars:
            extra[f"_v_{f.name}"] = _with_specify(protocol, form, frame, f)
        if form.sdtm.performed and form.sdtm.performed in frame:
            extra["_not_done"] = frame[form.sdtm.performed].astype(object).astype(str).eq("N")
        else:
            extra["_not_done"] = pd.Series(False, index=frame.index)
        base = pd.concat([frame[ids], pd.DataFrame(extra, index=frame.index)], axis=1)
        values = frame[[n for n, _, _ in present]].astype(object)
        long = pd.concat([base] * len(present), ignore_index=True)
        long["_item"] = np.repeat([n for n, _, _ in present], len(frame))
        long["_value"] = np.concatenate([values[n].to_numpy(dtype=object) for n, _, _ in present])
        by_item = {n: (f, a) for n, f, a in present}
        rec = pd.DataFrame({"subject_code": long["subject_code"], "_visit": long["visit_code"],
                            "_date": long["visit_date"], "_form": form_code, "_item": long["_item"]})
        item = long["_item"]
        item_names = list(by_item)
        item_codes = np.repeat(np.arange(len(present)), len(frame))

        def attr(get, item_names=item_names, item_codes=item_codes, by_item=by_item, index=long.index):
            table = np.array([get(*by_item[n]) for n in item_names] + [None], dtype=object)[:-1]
            return pd.Series(table[item_codes], index=index, dtype=object)

        fs = form.sdtm
        rec["DOMAIN"] = attr(lambda f, a, fs=fs: a.domain or fs.domain)
        rec["TESTCD"] = attr(lambda f, a: a.testcd)
        rec["TEST"] = attr(lambda f, a: a.test)
        for q in _QUALIFIERS:
            rec[q] = attr(lambda f, a, q=q, fs=fs: getattr(a, q.lower(), None) or getattr(fs, q.lower(), None))
        orres = pd.Series(None, index=long.index, dtype=object)
        stresn = pd.Series(np.nan, index=long.index, dtype=float)
        # Items formatted alike are formatted together (one pandas call per group, not per item).
        groups: dict[tuple, list[str]] = {}
        for n, (f, _) in by_item.items():
            groups.setdefault(_format_key(protocol, f), []).append(n)
        for key, names in groups.items():
            sel = item.isin(names).to_numpy()
            vals = long.loc[sel, "_value"]
            if key[0] == "derived":
                num = pd.to_numeric(vals, errors="coerce")
                orres[sel] = num.map("{:.10g}".format).where(num.notna(), None).to_numpy()
                stresn[sel] = num.to_numpy(dtype=float)
                continue
            field = by_item[names[0]][0]
            orres[sel] = format_result(vals, field, protocol).to_numpy()
            if key[0] in ("number", "identity"):
                stresn[sel] = pd.to_numeric(vals, errors="coerce").to_numpy(dtype=float)
        rec["ORRES"], rec["STRESN"] = orres, stresn
        rec["DRVFL"] = attr(lambda f, a: "Y" if f is None else None)
        unit = attr(lambda f, a: _unit(f, a))
        rec["ORRESU"] = unit.where(orres.notna(), None)
        rec["STRESC"], rec["STRESU"] = rec["ORRES"], rec["ORRESU"]
        for f in row_vars:
            rec[f.sdtm.var[2:] if f.sdtm.var[:2] == (f.sdtm.domain or form.sdtm.domain) else f.sdtm.var] = \
                long[f"_v_{f.name}"]
        for f in of_vars:
            column = f.sdtm.var[2:]
            current = rec[column] if column in rec else pd.Series(None, index=rec.index, dtype=object)
            rec[column] = current.where(item != f.sdtm.of, long[f"_v_{f.name}"])
        nd = long["_not_done"].to_numpy(dtype=bool)
        # A missing-data code in place of the result: --STAT NOT DONE, --REASND its reason (else its label)
        code, reason = missing_codes_of(ctx, form_code, long["subject_code"], long["visit_code"], item)
        is_coded = code.notna().to_numpy() & orres.isna().to_numpy()
        rec["STAT"] = np.where(nd | is_coded, "NOT DONE", None)
        if "REASND" in rec:
            rec["REASND"] = rec["REASND"].where(nd, None)
        if is_coded.any():
            why = not_done_reason(protocol, code, reason)
            current = rec["REASND"] if "REASND" in rec else pd.Series(None, index=rec.index, dtype=object)
            rec["REASND"] = current.where(~is_coded, why.to_numpy())
        rec = rec[orres.notna().to_numpy() | nd | is_coded]
        for domain, part in rec.groupby("DOMAIN", sort=False):
            parts.setdefault(domain, []).append(part)
    return {d: pd.concat(p, ignore_index=True) for d, p in parts.items()}, forms_of


def _with_specify(protocol, form: FormDef, frame: pd.DataFrame, field: FieldDef) -> pd.Series:
    """A ``var`` field's SDTM values; an answer that needs free text ("Other") followed by it:
    ``OTHER: <text>`` from the form's ``specify_for`` field (e.g. --REASND of a test not done)."""
    values = format_result(frame[field.name].astype(object), field, protocol)
    specify = next((f for f in form.fields if f.specify_for == field.name and f.name in frame), None)
    wanted = {str(c) for c in protocol.specify_codes(field)}
    if specify is None or not wanted:
        return values
    text = frame[specify.name].astype(object)
    has_text = text.notna() & text.astype(str).str.strip().ne("")
    use = frame[field.name].astype(object).astype(str).isin(wanted) & has_text & values.notna()
    return values.where(~use, values.astype(str) + ": " + text.astype(str).str.strip())


def _format_key(protocol, field: FieldDef | None) -> tuple:
    """Items with equal keys format their results the same way."""
    if field is None:
        return ("derived",)
    if field.type in ("integer", "float"):
        return ("number", field.type, field.decimals)
    if field.type == "code":
        mapping = code_map(protocol, field)
        if all(k == v for k, v in mapping.items()):
            return ("identity",)
        return ("code", field.codelist or tuple(field.codes or ()))
    return ("text",)


def finish_findings(ctx: Context, domain: str, raw: pd.DataFrame,
                    forms: list[tuple[str, FormDef]]) -> tuple[Dataset, pd.DataFrame]:
    """Identifiers, timing (VISITNUM, --DTC, --DY, EPOCH), --SEQ, --LOBXFL, reference ranges, metadata.

    Returns the dataset and its trace: per record the subject, visit, form and item it came from, its
    --SEQ and the standardized result variable holding the value (--STRESN, or --STRESC for text).
    """
    protocol = ctx.protocol
    rec = with_reference(raw, ctx)
    rec["_date"] = to_ts(rec["_date"])
    rec["STUDYID"] = ctx.studyid
    rec["VISITNUM"] = rec["_visit"].map(ctx.visitnum)
    rec["VISIT"] = rec["_visit"].map({v.code: v.label for v in protocol.visits})
    rec["VISITDY"] = rec["_visit"].map({v.code: v.day + 1 if v.day >= 0 else v.day for v in protocol.visits})
    rec["DTC"] = iso(rec["_date"])
    rec["DY"] = study_day(rec["_date"], rec["RFSTDTC"])
    rec["EPOCH"] = epoch(rec["_date"], rec["RFSTDTC"])
    for col in ("ORNRLO", "ORNRHI"):
        if col not in rec:
            rec[col] = None
    rec["STNRLO"] = pd.to_numeric(rec["ORNRLO"], errors="coerce")
    rec["STNRHI"] = pd.to_numeric(rec["ORNRHI"], errors="coerce")
    has_range = rec["STNRHI"].notna() | rec["STNRLO"].notna()
    rec["NRIND"] = np.where(~has_range | rec["STRESN"].isna(), None,
                            np.where(rec["STRESN"] > rec["STNRHI"], "HIGH",
                                     np.where(rec["STRESN"] < rec["STNRLO"], "LOW", "NORMAL")))
    rec = rec.rename(columns={"SEQ": "_seq"}) if "SEQ" in rec else rec
    prefixed = {c: f"{domain}{c}" for c in ORDER if c not in ("STUDYID", "DOMAIN", "USUBJID", "VISITNUM", "VISIT",
                                                              "VISITDY", "EPOCH")}
    rec = rec.rename(columns=prefixed)
    rec = assign_seq(rec, domain, ["VISITNUM", f"{domain}DTC", f"{domain}CAT", f"{domain}TESTCD", f"{domain}LOC",
                                   f"{domain}DIR", f"{domain}METHOD", f"{domain}TPT"])
    rec[f"{domain}LOBXFL"] = last_before_exposure(rec, domain, [f"{domain}{k}" for k in ("TESTCD", *_KEYS)])
    order = [prefixed.get(c, c) for c in ORDER]
    origins = _origins(domain, forms, rec)
    vlm = _value_level(domain, forms, protocol)
    methods = ["MT.SEQ", "MT.DY", "MT.EPOCH", "MT.LOBXFL", "MT.VISITDY", "MT.STRES"]
    codelists = {}
    tc = [f.sdtm.testcd_codelist for _, f in forms if f.sdtm.testcd_codelist]
    tn = [f.sdtm.test_codelist for _, f in forms if f.sdtm.test_codelist]
    sponsor = [code for code, f in forms if not f.sdtm.testcd_codelist]
    codelists[f"{domain}TESTCD"] = tc[0] if tc and not sponsor else f"SPONSOR:{domain}TESTCD"
    codelists[f"{domain}TEST"] = tn[0] if tn and not sponsor else f"SPONSOR:{domain}TEST"
    comments = [f"{code}: {f.sdtm.comment}" for code, f in forms if f.sdtm.comment]
    keys = ["STUDYID", "USUBJID", f"{domain}TESTCD", f"{domain}CAT", f"{domain}LOC", f"{domain}DIR",
            f"{domain}METHOD", "VISITNUM", f"{domain}TPT"]
    specific = {}
    if domain == "LB":  # the reference range variables are Expected in LB (SDTMIG 3.4), Permissible elsewhere
        from regenheart.derive.sdtm.common import generic_spec
        for suffix in ("ORNRLO", "ORNRHI", "STNRLO", "STNRHI", "NRIND"):
            label, typ, role, _ = generic_spec(f"LB{suffix}", "LB")
            specific[f"LB{suffix}"] = (label, typ, role, "Exp")
    ds = build_dataset(domain, rec, order, keys=[k for k in keys if k in rec and rec[k].notna().any()],
                       specific=specific,
                       structure="One record per subject per test per visit (per location/method/time point)",
                       origins=origins, codelists=codelists, value_level=vlm, methods=methods,
                       comment="; ".join(comments) or None)
    if comments:  # e.g. sponsor-defined test codes: say so on the test code and category variables
        from dataclasses import replace
        note = "; ".join(comments)
        ds.variables[:] = [replace(v, comment=note) if v.name in (f"{domain}TESTCD", f"{domain}TEST", f"{domain}CAT")
                           else v for v in ds.variables]
    trace = pd.DataFrame({"subject_code": rec["subject_code"], "visit_code": rec["_visit"], "form": rec["_form"],
                          "item": rec["_item"], "DOMAIN": domain, "SEQ": rec[f"{domain}SEQ"].to_numpy(),
                          "SRCVAR": np.where(rec[f"{domain}STRESN"].notna(), f"{domain}STRESN", f"{domain}STRESC"),
                          "STRESC": rec[f"{domain}STRESC"].to_numpy()})
    return ds, trace


def _origins(domain: str, forms: list[tuple[str, FormDef]], rec: pd.DataFrame) -> dict[str, tuple[str, str | None]]:
    sources = ", ".join(code for code, _ in forms)
    collected = {"ORRES", "ORRESU", "ORNRHI", "ORNRLO", "STAT", "REASND", "DTC"}
    out = {f"{domain}{v}": ("Collected", sources) for v in collected}
    out.update({f"{domain}{v}": ("Derived", "MT.STRES") for v in ("STRESC", "STRESN", "STRESU", "STNRLO", "STNRHI")})
    out.update({f"{domain}{v}": ("Assigned", None) for v in ("TESTCD", "TEST", "CAT", "SCAT", "LOC", "DIR", "SPEC",
                                                             "TPT", "EVLINT", "DRVFL")})
    out[f"{domain}METHOD"] = ("Collected" if any(f.sdtm and f.sdtm.var == f"{domain}METHOD"
                                                 for _, form in forms for f in form.fields) else "Assigned", None)
    out[f"{domain}NRIND"] = ("Derived", "MT.NRIND")
    out[f"{domain}LOBXFL"] = ("Derived", "MT.LOBXFL")
    out[f"{domain}SEQ"], out[f"{domain}DY"] = ("Derived", "MT.SEQ"), ("Derived", "MT.DY")
    out["EPOCH"], out["VISITDY"] = ("Derived", "MT.EPOCH"), ("Derived", "MT.VISITDY")
    out["VISITNUM"], out["VISIT"] = ("Assigned", None), ("Assigned", None)
    return out


def _value_level(domain: str, forms: list[tuple[str, FormDef]], protocol) -> list[ValueLevel]:
    """Per test code: the result's type and unit (value-level metadata of --ORRES and --STRESN)."""
    seen: dict[str, ValueLevel] = {}
    for code, form in forms:
        for f in form.fields:
            ann = f.sdtm
            if ann is None or not ann.testcd or (ann.domain or form.sdtm.domain) != domain or ann.testcd in seen:
                continue
            typ = "integer" if f.type == "integer" else "float" if f.type == "float" else "text"
            if f.type == "code" and all(k == v for k, v in code_map(protocol, f).items()):
                typ = "integer" if all(str(c).lstrip("-").isdigit() for c in protocol.allowed_codes(f)) else "text"
            seen[ann.testcd] = ValueLevel(variable=f"{domain}ORRES", where_variable=f"{domain}TESTCD",
                                          where_value=ann.testcd, label=ann.test or ann.testcd, type=typ,
                                          unit=_unit(f, ann), origin="Collected", source=f"{code}.{f.name}",
                                          codelist=None if f.type != "code" else
                                          (f"SPONSOR:{f.codelist}" if f.codelist else None))
        for name, ann in form.sdtm.scores.items():
            if (ann.domain or form.sdtm.domain) == domain and ann.testcd not in seen:
                seen[ann.testcd] = ValueLevel(variable=f"{domain}STRESN", where_variable=f"{domain}TESTCD",
                                              where_value=ann.testcd, label=ann.test or ann.testcd, type="float",
                                              unit=ann.unit, origin="Derived", source=f"{code}.{name}")
    return list(seen.values())


def build_ie(ctx: Context) -> Dataset | None:
    """IE: one record per criterion a screened subject did not meet (IEORRES N for inclusion, Y for exclusion)."""
    protocol = ctx.protocol
    if not protocol.eligibility:
        return None
    criteria = {c.id: c for c in protocol.eligibility}
    subjects = ctx.snap.subjects[["subject_code", "eligibility_failed", "screening_date"]].explode("eligibility_failed")
    subjects = subjects[subjects["eligibility_failed"].isin(criteria)].rename(columns={"eligibility_failed": "IETESTCD"})
    visits = ctx.snap.visits
    base = protocol.baseline_visit.code
    scr = visits[visits["visit_code"] == base][["subject_code", "visit_date"]]
    rec = with_reference(subjects.merge(scr, on="subject_code", how="left"), ctx)
    rec["_date"] = rec["visit_date"].where(rec["visit_date"].notna(), rec["screening_date"])
    rec["STUDYID"], rec["DOMAIN"] = ctx.studyid, "IE"
    rec["IETEST"] = rec["IETESTCD"].map(lambda c: criteria[c].text[:200])
    rec["IECAT"] = rec["IETESTCD"].map(lambda c: criteria[c].kind.upper())
    rec["IEORRES"] = np.where(rec["IECAT"] == "INCLUSION", "N", "Y")
    rec["IESTRESC"] = rec["IEORRES"]
    rec["VISITNUM"], rec["VISIT"] = ctx.visitnum[base], protocol.baseline_visit.label
    rec["IEDTC"] = iso(rec["_date"])
    rec["IEDY"] = study_day(rec["_date"], rec["RFSTDTC"])
    rec["EPOCH"] = epoch(rec["_date"], rec["RFSTDTC"])
    rec = assign_seq(rec, "IE", ["IECAT", "IETESTCD"])
    order = ["STUDYID", "DOMAIN", "USUBJID", "IESEQ", "IETESTCD", "IETEST", "IECAT", "IEORRES", "IESTRESC",
             "VISITNUM", "VISIT", "EPOCH", "IEDTC", "IEDY"]
    specific = {"IETESTCD": ("Inclusion/Exclusion Criterion Short Name", "text", "Topic", "Req"),
                "IETEST": ("Inclusion/Exclusion Criterion", "text", "Synonym Qualifier", "Req"),
                "IECAT": ("Inclusion/Exclusion Category", "text", "Grouping Qualifier", "Req"),
                "IEORRES": ("I/E Criterion Original Result", "text", "Result Qualifier", "Req"),
                "IESTRESC": ("I/E Criterion Result in Std Format", "text", "Result Qualifier", "Req")}
    origins = {"IETESTCD": ("Protocol", "eligibility"), "IETEST": ("Protocol", "eligibility"),
               "IECAT": ("Protocol", "eligibility"), "IEORRES": ("Derived", "MT.IE"),
               "IESTRESC": ("Derived", "MT.IE"), "IEDTC": ("Collected", "visit date")}
    ds = build_dataset("IE", rec, order, keys=["STUDYID", "USUBJID", "IETESTCD"], specific=specific,
                       origins=origins, codelists={"IETESTCD": "SPONSOR:IETESTCD"},
                       structure="One record per inclusion/exclusion criterion not met per subject",
                       methods=["MT.SEQ", "MT.DY", "MT.EPOCH"], klass="FINDINGS",
                       comment="Criteria not met, from the protocol's criteria rules evaluated on the screening data.")
    from regenheart.derive.datasets import Method
    ds.methods.append(Method("MT.IE", "Criterion not met", "The protocol's criterion rule evaluated on the "
                                                           "merged screening forms: an inclusion criterion not met "
                                                           "is IEORRES N, an exclusion criterion met is Y."))
    return ds
