"""The import report: a CSV file with one row per refusal or unmapped name, and a console summary."""

from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console
from rich.table import Table

from regenheart.exchange.importer import ImportReport
from regenheart.exchange.records import Refusal


def write_report_csv(report: ImportReport, path: str | Path) -> Path:
    """Write every refusal and unmapped source name (columns :attr:`Refusal.REPORT_COLUMNS`) as UTF-8 CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, Refusal.REPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(report.rows())
    return path


def _verdict(report: ImportReport) -> str:
    if report.dry_run:
        return "[yellow]dry run: every check ran, nothing was written[/]"
    if report.committed:
        return "[green]written[/]" if report.ok else "[yellow]written, except the refused subjects[/]"
    if report.all_or_nothing and report.refusals:
        return "[red]nothing written (all-or-nothing, something was refused)[/]"
    return "[red]nothing written (the source could not be read completely)[/]"


def print_summary(report: ImportReport, console: Console, *, max_rows: int = 40) -> None:
    """Counts of subjects, forms and values written, unchanged and refused, then the refusals."""
    written = "would be written" if report.dry_run else "written"
    console.print(f"Import of [bold]{report.source}[/] ({report.format}, sha256 {report.sha256[:16]}...): "
                  f"{_verdict(report)} in {report.seconds:.1f} s")
    counts = Table(show_edge=False, pad_edge=False)
    counts.add_column("")
    for column in (written, "unchanged", "refused"):
        counts.add_column(column, justify="right")
    for label, c in (("subjects", report.subjects), ("forms and records", report.forms),
                     ("values", report.values)):
        counts.add_row(label, str(c.written), str(c.unchanged), str(c.refused))
    console.print(counts)
    console.print(f"Audit records {written}: {report.audit_records}; soft-check warnings (e.g. visits out of "
                  f"window): {report.warnings}; audit reason: '{report.reason}'")
    rows = report.rows()
    if not rows:
        return
    table = Table(title=f"{len(report.refusals)} refusal(s), {len(report.unmapped)} unmapped source name(s)",
                  show_lines=False)
    for column in ("where", "subject", "visit", "form", "field", "value", "rule", "message"):
        table.add_column(column, overflow="fold")
    for row in rows[:max_rows]:
        where = ", ".join(str(x) for x in (row["file"], row["location"], row["column"] and f"column {row['column']}")
                          if x)
        table.add_row(where, row["subject"], row["visit"], row["form"], row["field"], str(row["value"]), row["rule"],
                      row["message"])
    console.print(table)
    if len(rows) > max_rows:
        console.print(f"... and {len(rows) - max_rows} more: see the report CSV (--report FILE.csv)")
