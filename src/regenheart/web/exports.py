"""Exports from the browser: the study's data as one zip file built in memory.

Formats: ``csv`` (one file per form, subjects, adverse events), ``redcap`` (REDCap flat records and
project files, :mod:`exchange.redcap_export`), ``sdtm`` (SDTM domains as SAS transport v5,
:mod:`derive.sdtm` and :mod:`exchange.cdisc.xpt`), ``adam`` (ADaM datasets as SAS transport v5 and CSV,
:func:`report.exports.write_adam`). Only accounts with the ``export`` permission; a site account
exports its own site only. The database must verify and reconcile with its audit trail first
(:func:`store.reconcile.require_integrity`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from regenheart.capture.common import require
from regenheart.capture.errors import PermissionDenied
from regenheart.capture.permissions import Actor
from regenheart.capture.sites import SiteService
from regenheart.protocol.models import Protocol
from regenheart.store.reconcile import require_integrity
from regenheart.store.snapshot import Snapshot, take_snapshot

FORMATS = {
    "csv": "CSV, one file per form (+ subjects, adverse events)",
    "redcap": "REDCap flat records + data dictionary and project files",
    "sdtm": "SDTM tabulation datasets (one per domain) as SAS XPT v5",
    "adam": "ADaM datasets (ADSL, ADEFF, ADAE, ADPSE) as SAS XPT v5 and CSV",
}
SYNTHETIC_NOTE = "SYNTHETIC DATA: generated for demonstration; not trial data."


class ExportError(ValueError):
    """A request the export cannot serve (unknown format or site); the message says which value."""


@dataclass(frozen=True)
class ExportFile:
    filename: str
    content: bytes
    files: list[str]
    subjects: int

    def summary(self) -> str:
        return f"{len(self.files)} files, {self.subjects} subjects, {len(self.content)} bytes"


def site_subset(snapshot: Snapshot, site: str | None) -> Snapshot:
    """The snapshot restricted to one site's subjects (unchanged for None)."""
    if site is None:
        return snapshot
    keep = set(snapshot.subjects.loc[snapshot.subjects["site_code"] == site, "subject_code"]) \
        if len(snapshot.subjects) else set()

    def only(frame: pd.DataFrame) -> pd.DataFrame:
        if "subject_code" not in frame.columns:
            return frame
        return frame[frame["subject_code"].isin(keep)].reset_index(drop=True)
    return dataclasses.replace(snapshot, subjects=only(snapshot.subjects), visits=only(snapshot.visits),
                               items=only(snapshot.items), derived=only(snapshot.derived), forms=only(snapshot.forms),
                               adverse_events=only(snapshot.adverse_events))


def _decode(protocol: Protocol, codelist: str | None, value: object) -> object:
    if codelist is None or value is None or (isinstance(value, float) and pd.isna(value)):
        return value
    try:
        return protocol.decode(codelist, value)
    except (KeyError, ValueError):
        return value


def form_tables(protocol: Protocol, snapshot: Snapshot, labels: bool) -> dict[str, pd.DataFrame]:
    """One table per form (subject x visit rows, fields in protocol order, form status, derived scores),
    plus ``subjects`` and ``adverse_events``. ``labels``: code-list values as their labels."""
    site = dict(zip(snapshot.subjects.get("subject_code", []), snapshot.subjects.get("site_code", []), strict=True))
    dates = {(r.subject_code, r.visit_code): r.visit_date for r in snapshot.visits.itertuples(index=False)}
    status = snapshot.forms.set_index(["subject_code", "visit_code", "form_code"]) if len(snapshot.forms) else None
    out: dict[str, pd.DataFrame] = {"subjects": snapshot.subjects.copy()}
    items = snapshot.items
    coded = items[items["missing_code"].notna()] if "missing_code" in items else items.iloc[0:0]
    # A missing-data code is exported as the code itself (REDCap's convention), never as an empty cell.
    codes = {(r.subject_code, r.visit_code, r.form_code, r.field): r.missing_code for r in coded.itertuples(index=False)}
    for code, form in protocol.forms.items():
        wide = snapshot.wide(code)
        scores = snapshot.scores(code)
        if len(scores) and len(wide):
            wide = wide.merge(scores, on=["subject_code", "visit_code"], how="left")
        fields = [f.name for f in form.fields]
        for name in fields:
            if name not in wide.columns:
                wide[name] = None
        if labels:
            for f in form.fields:
                if f.codelist:
                    wide[f.name] = wide[f.name].map(lambda v, cl=f.codelist: _decode(protocol, cl, v))
        extra = [c for c in wide.columns if c not in fields and c not in ("subject_code", "visit_code")]
        rows = []
        for rec in wide.to_dict("records"):
            key = (rec["subject_code"], rec["visit_code"], code)
            meta = status.loc[key] if status is not None and key in status.index else None
            rows.append({"subject_code": rec["subject_code"], "site_code": site.get(rec["subject_code"]),
                         "visit_code": rec["visit_code"], "visit_date": dates.get(key[:2]),
                         **{n: codes.get((*key[:2], code, n), rec.get(n)) for n in fields},
                         **{n: rec.get(n) for n in extra},
                         "form_status": None if meta is None else meta["status"],
                         "form_version": None if meta is None else meta["version"],
                         "verified": None if meta is None else bool(meta["verified"]),
                         "locked": None if meta is None else bool(meta["locked"])})
        columns = ["subject_code", "site_code", "visit_code", "visit_date", *fields, *extra, "form_status",
                   "form_version", "verified", "locked"]
        out[code] = pd.DataFrame(rows, columns=columns)
    aes = snapshot.adverse_events.copy()
    if labels and protocol.adverse_events is not None and len(aes):
        for f in protocol.adverse_events.fields:
            if f.codelist and f.name in aes.columns:
                aes[f.name] = aes[f.name].map(lambda v, cl=f.codelist: _decode(protocol, cl, v))
    out["adverse_events"] = aes
    return out


def _redcap_labels(folder: Path, records: Path, dictionary: Path) -> None:
    """Rewrite REDCap's raw choice codes in the records as their labels (REDCap's "labels" export)."""
    from regenheart.exchange.redcap_format import parse_choices

    with dictionary.open(newline="", encoding="utf-8") as fh:
        choices = {row["Variable / Field Name"]: dict(parse_choices(row["Choices, Calculations, OR Slider Labels"]))
                   for row in csv.DictReader(fh)
                   if row["Field Type"] in ("radio", "dropdown", "yesno") and
                   row["Choices, Calculations, OR Slider Labels"]}
    with records.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = [{k: choices.get(k, {}).get(v, v) for k, v in row.items()} for row in reader]
    with records.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, header)
        writer.writeheader()
        writer.writerows(rows)


def _recorded_protocol(protocol: Protocol, snapshot: Snapshot) -> Protocol:
    """The protocol version the database records (the one its data were entered under)."""
    version = snapshot.meta.get("protocol_version")
    known = {v.version for v in protocol.protocol_versions}
    if version and version in known and version != protocol.active_protocol_version:
        return protocol.model_copy(update={"active_protocol_version": version})
    return protocol


def _write_files(protocol: Protocol, snapshot: Snapshot, fmt: str, labels: bool, folder: Path) -> None:
    if fmt == "csv":
        for name, table in form_tables(protocol, snapshot, labels).items():
            table.to_csv(folder / f"{name}.csv", index=False)
    elif fmt == "redcap":
        from regenheart.exchange.redcap_export import export_redcap

        paths = export_redcap(snapshot, protocol, folder)
        if labels:
            _redcap_labels(folder, paths["records"], paths["dictionary"])
    elif fmt == "sdtm":
        from regenheart.derive.sdtm import build_sdtm
        from regenheart.exchange.cdisc.xpt import write_xpt

        for name, dataset in build_sdtm(snapshot, _recorded_protocol(protocol, snapshot)).items():
            write_xpt(dataset, folder / f"{name.lower()}.xpt")
    else:
        from regenheart.derive.adam import derive_all
        from regenheart.report.exports import write_adam

        write_adam(derive_all(_recorded_protocol(protocol, snapshot), snapshot), folder)


def build_export(engine: Engine, protocol: Protocol, actor: Actor, fmt: str, *, site: str | None = None,
                 labels: bool = False) -> ExportFile:
    """The export zip (bytes) of ``fmt`` for ``site`` (None: every site the actor may see).

    Raises PermissionDenied (no ``export`` permission, or another site's data), ExportError (unknown
    format or site) and store.reconcile.IntegrityError (the data do not reconcile with the audit trail).
    """
    require(actor, "export")
    if fmt not in FORMATS:
        raise ExportError(f"format '{fmt}' is not one of {', '.join(FORMATS)}")
    if site is not None and site not in {s.code for s in SiteService(engine, protocol).list_sites()}:
        raise ExportError(f"site '{site}' is not a site of the study")
    if actor.site is not None:
        if site not in (None, actor.site):
            raise PermissionDenied(f"{actor.username} may export site {actor.site} only, not site {site}")
        site = actor.site
    require_integrity(engine, protocol, "exported")
    snapshot = site_subset(take_snapshot(engine), site)
    synthetic = snapshot.meta.get("synthetic") == "true"
    stamp = snapshot.taken_utc[:19].replace(":", "").replace("-", "")
    base = f"{protocol.study.acronym}_{fmt}_{'site' + site if site else 'all-sites'}_{stamp}"
    with tempfile.TemporaryDirectory(prefix="regenheart-export-") as tmp:
        folder = Path(tmp)
        _write_files(protocol, snapshot, fmt, labels, folder)
        readme = [f"{protocol.study.acronym} ({protocol.study.nct_id}) export: {FORMATS[fmt]}",
                  (f"site: {site or 'all sites'}; values: {'labels' if labels else 'codes'}; "
                  f"subjects: {len(snapshot.subjects)}"),
                  (f"snapshot {snapshot.taken_utc}, audit records {snapshot.audit_records}, "
                  f"audit head {snapshot.audit_head_hash}"),
                  f"exported by {actor.username} ({actor.role})"]
        if protocol.missing_codes and fmt == "csv":
            readme.append("missing-data codes in place of a value (reasons are in the audit trail and the ODM export): "
                          + " | ".join(f"{m.code}, {m.label}" for m in protocol.missing_codes))
        if synthetic:
            readme.insert(0, SYNTHETIC_NOTE)
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{base}/EXPORT_README.txt", "\n".join(readme) + "\n")
            for name in names:
                zf.write(folder / name, f"{base}/{name}")
    return ExportFile(f"{base}.zip", buffer.getvalue(), ["EXPORT_README.txt", *names], len(snapshot.subjects))
